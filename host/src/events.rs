//! What happens in a runtime, as events: processes started and exited, pool tasks started,
//! done, failed and retried, pool workers started, lost and recycled. Subscribers
//! ([`RuntimeBuilder::on_event`](crate::RuntimeBuilder::on_event)) see each event once, on
//! the thread where it happened (a monitor or a pool slot): they must be quick and must
//! not block, as `--events` (one JSON line each) and `--metrics` (counters) are.
//!
//! Nothing of the rest of the crate: events carry plain values, so that every module may
//! emit them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// One thing that happened. Serialised (by `--events`) as a JSON object whose `event`
/// names the variant in snake case, beside a `time` in seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A `Process` started its worker process.
    ProcessStarted {
        /// The process's name.
        name: String,
        /// Its worker's OS process id.
        pid: u32,
    },
    /// A `Process` ended and its worker was reaped.
    ProcessExited {
        /// The process's name.
        name: String,
        /// Its worker's OS process id.
        pid: u32,
        /// How it ended, as `ExitStatus` displays it (`exited with code 0`, `trapped: …`).
        status: String,
        /// The exit code the CLI gives it.
        code: i32,
        /// From start to reaped, in milliseconds.
        duration_ms: f64,
        /// Whether it was stopped by its time limit (`-W timeout`).
        timed_out: bool,
        /// Its peak resident memory in KiB (the worker process, wasmtime included).
        peak_memory_kb: Option<u64>,
    },
    /// A pool started a worker process.
    WorkerStarted {
        /// The slot it fills.
        slot: usize,
        /// Its OS process id.
        pid: u32,
    },
    /// A pool worker process ended under a job: killed, crashed, broke the protocol, or
    /// was killed at its running task's time limit.
    WorkerLost {
        /// Its OS process id.
        pid: u32,
        /// `lost` or `timed_out`.
        reason: &'static str,
    },
    /// A pool worker process was replaced after a job, on purpose.
    WorkerRecycled {
        /// Its OS process id.
        pid: u32,
        /// `task_failed` (it trapped or timed out: its state is not trusted),
        /// `memory` (over `max_worker_memory`) or `max_tasks` (`max_tasks_per_worker`).
        reason: &'static str,
    },
    /// A pool worker process was stopped: the pool closed or it was recycled.
    WorkerStopped {
        /// Its OS process id.
        pid: u32,
    },
    /// A queue was closed: no more puts; getters drain what is waiting.
    QueueClosed {
        /// The queue's name.
        queue: String,
        /// Messages still waiting when it was closed.
        waiting: usize,
    },
    /// A closed queue's last message was taken: its getters now see it closed.
    QueueDrained {
        /// The queue's name.
        queue: String,
    },
    /// A pool worker started a task.
    TaskStarted {
        /// The task's id (unique in its pool).
        id: u64,
        /// The export it calls.
        export: String,
        /// The worker process running it.
        worker: u32,
        /// Which attempt this is, from 1.
        attempt: u32,
    },
    /// A task returned.
    TaskDone {
        /// The task's id.
        id: u64,
        /// The worker process that ran it.
        worker: u32,
        /// Which attempt it was.
        attempt: u32,
        /// From its start, in milliseconds.
        duration_ms: f64,
    },
    /// A task's attempt failed; whether it is retried is a separate `task_retried`.
    TaskFailed {
        /// The task's id.
        id: u64,
        /// The worker process that ran it.
        worker: u32,
        /// Which attempt it was.
        attempt: u32,
        /// From its start, in milliseconds.
        duration_ms: f64,
        /// `TaskError::kind`: `trapped`, `timed_out`, `worker_lost`, `exited`, `failed`.
        reason: &'static str,
        /// The error's message.
        error: String,
    },
    /// A guest ran into one of its limits. Comes before the `process_exited`, or the
    /// `task_done` / `task_failed`, of the run that hit it; at most one per run (the
    /// first limit hit), plus `max_worker_memory` when a pool replaces a worker for it.
    LimitHit {
        /// The worker process.
        worker: u32,
        /// The process's name (a `Process`; `None` for a pool worker).
        name: Option<String>,
        /// The pool task that hit it (`None` for a `Process`, or a pool worker's memory).
        task: Option<u64>,
        /// Which limit: a `-W` key (`max-memory-size`, `max-table-elements`, `fuel`,
        /// `max-wasm-stack`, `timeout`), or `max_worker_memory` (a pool's threshold
        /// for replacing a worker).
        limit: &'static str,
        /// What the guest asked for and what the limit is, in words.
        detail: String,
    },
    /// A failed task goes back in the queue.
    TaskRetried {
        /// The task's id.
        id: u64,
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed (as in `task_failed`).
        reason: &'static str,
        /// How long it waits before it can run again, in milliseconds.
        delay_ms: f64,
    },
}

impl Event {
    /// The `limit_hit` of a run still going at its time limit (`limit`, when known).
    pub(crate) fn timeout_hit(
        worker: u32,
        name: Option<String>,
        task: Option<u64>,
        limit: Option<Duration>,
    ) -> Event {
        Event::LimitHit {
            worker,
            name,
            task,
            limit: "timeout",
            detail: match limit {
                Some(limit) => format!("still running at its time limit of {limit:?}"),
                None => "still running at its time limit".to_string(),
            },
        }
    }
}

/// An event with the time it happened, as `--events` writes it.
#[derive(Debug, Serialize)]
pub struct EventRecord<'a> {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// What happened.
    #[serde(flatten)]
    pub event: &'a Event,
}

impl<'a> EventRecord<'a> {
    /// `event`, stamped with the current time.
    pub fn now(event: &'a Event) -> EventRecord<'a> {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        EventRecord { time, event }
    }
}

/// A subscriber to a runtime's events.
pub(crate) type Subscriber = Arc<dyn Fn(&Event) + Send + Sync>;

/// The subscribers a runtime is built with.
#[derive(Clone, Default)]
pub(crate) struct Subscribers(pub(crate) Vec<Subscriber>);

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} event subscribers", self.0.len())
    }
}

/// Where a runtime's events go: its subscribers. Cheap to clone; with none, an event is
/// never even built.
#[derive(Clone, Default)]
pub(crate) struct Events {
    subscribers: Arc<[Subscriber]>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} event subscribers", self.subscribers.len())
    }
}

impl Events {
    pub(crate) fn new(subscribers: Subscribers) -> Events {
        Events {
            subscribers: subscribers.0.into(),
        }
    }

    /// Hands the event `make` builds to every subscriber (and builds it only if there is
    /// one).
    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        if self.subscribers.is_empty() {
            return;
        }
        let event = make();
        for subscriber in self.subscribers.iter() {
            subscriber(&event);
        }
    }
}

/// A duration in milliseconds, as events carry them.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn events_reach_every_subscriber_and_serialise_with_their_name_and_time() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let events = Events::new(Subscribers(vec![Arc::new(move |event: &Event| {
            log.lock().unwrap().push(event.clone());
        })]));
        events.emit(|| Event::WorkerStarted { slot: 1, pid: 42 });
        let seen = seen.lock().unwrap();
        assert_eq!(seen.as_slice(), [Event::WorkerStarted { slot: 1, pid: 42 }]);
        let json = serde_json::to_value(EventRecord::now(&seen[0])).unwrap();
        assert_eq!(json["event"], "worker_started");
        assert_eq!(json["pid"], 42);
        assert!(json["time"].as_f64().unwrap() > 1.0e9);
    }

    #[test]
    fn without_subscribers_no_event_is_built() {
        Events::default().emit(|| unreachable!("built an event nobody hears"));
    }
}
