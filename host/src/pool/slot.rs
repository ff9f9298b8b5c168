//! One pool worker slot, on a thread of its own: keep a worker process alive, feed it jobs
//! from the [`Scheduler`](super::scheduler::Scheduler), turn what comes back into task
//! results, and replace the process when it dies, traps, grows too large or has run its
//! share of tasks. What happens to the tasks of a worker that ends mid-job is the
//! scheduler's business ([`Scheduler::worker_ended`](super::scheduler::Scheduler::worker_ended)).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{debug, warn};

use crate::events::{self, millis};
use crate::exit::ExitStatus;
use crate::link::conn::{Event, HELLO_TIMEOUT};
use crate::link::live::{LiveWorker, TIMEOUT_GRACE};
use crate::link::spawn::{self, SpawnRequest};
use crate::pool::local::{LocalTask, Shared};
use crate::pool::scheduler::{Job, WorkerEnd};
use crate::pool::task::{TaskError, TaskResult};
use crate::protocol::{self, Outcome, ServeSpec, TaskSpec, ToWorker};
use crate::stdio::output::Output;

/// After this many consecutive failed starts the pool gives up and reports why.
const MAX_START_FAILURES: u32 = 5;

/// The first back-off after a failed start; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long a worker told to shut down gets before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Starts the thread of worker slot `index`.
pub(crate) fn start(shared: Arc<Shared>, index: usize) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("wasmp-pool-{index}"))
        .spawn(move || run_slot(&shared, index))
        .context("failed to spawn a pool thread")
}

fn run_slot(shared: &Shared, index: usize) {
    let scheduler = &shared.scheduler;
    let mut failed_starts = 0u32;
    loop {
        if scheduler.is_finished() {
            return;
        }
        let mut worker = match SlotWorker::spawn(shared, index) {
            Ok(worker) => {
                failed_starts = 0;
                worker
            }
            Err(reason) => {
                failed_starts += 1;
                warn!(
                    slot = index,
                    failed_starts, "pool worker failed to start: {reason}"
                );
                if failed_starts >= MAX_START_FAILURES {
                    scheduler.break_pool(format!(
                        "pool workers failed to start {failed_starts} times in a row; last: {reason}"
                    ));
                    return;
                }
                let backoff =
                    (FIRST_BACKOFF * 2u32.saturating_pow(failed_starts - 1)).min(MAX_BACKOFF);
                scheduler.back_off(backoff);
                continue;
            }
        };
        loop {
            let Some(job) = scheduler.next_job() else {
                worker.shut_down(shared);
                return;
            };
            match worker.run_job(shared, job) {
                Some(alive) if alive.recycle.is_some() => {
                    let (pid, reason) = (alive.worker.pid(), alive.recycle.unwrap_or_default());
                    shared
                        .runtime
                        .events()
                        .emit(|| events::Event::WorkerRecycled { pid, reason });
                    alive.shut_down(shared);
                    break;
                }
                Some(alive) => worker = alive,
                None => break,
            }
        }
    }
}

/// The worker process of one slot.
struct SlotWorker {
    index: usize,
    worker: LiveWorker,
    tasks_run: u64,
    /// Replace the process after this job, and why (as `worker_recycled` says): it
    /// trapped or timed out, grew too large or ran its share of tasks.
    recycle: Option<&'static str>,
}

impl SlotWorker {
    /// Spawns a worker, waits for its hello and runs the initializer. `Err` says why the
    /// start failed (the process is reaped).
    fn spawn(shared: &Shared, index: usize) -> Result<SlotWorker, String> {
        let output = match shared.config.output {
            Output::Capture => Output::Tagged,
            other => other,
        };
        let spawned = spawn::spawn(SpawnRequest {
            program: shared.runtime.worker_program().to_path_buf(),
            stdout: output,
            stderr: output,
            standby: false,
        })
        .map_err(|e| format!("{e:#}"))?;
        shared.scheduler.worker_started();
        let name = format!("pool-worker-{index}");
        let queues = shared.grants.queues().clone();
        let worker = LiveWorker::attach(spawned, name, output, output, queues)
            .map_err(|e| format!("{e:#}"))?;
        shared.worker_up(index, worker.signaller().clone());
        let mut slot = SlotWorker {
            index,
            worker,
            tasks_run: 0,
            recycle: None,
        };
        match slot.handshake(shared) {
            Ok(()) => {
                let pid = slot.worker.pid();
                debug!(slot = index, pid, "pool worker ready");
                shared
                    .runtime
                    .events()
                    .emit(|| events::Event::WorkerStarted { slot: index, pid });
                Ok(slot)
            }
            Err(reason) => {
                slot.worker.kill();
                let status = slot.reap(shared);
                Err(format!("{reason} ({status})"))
            }
        }
    }

    /// Hello, ready, and the initializer if the pool has one.
    fn handshake(&mut self, shared: &Shared) -> Result<(), String> {
        let conn = &mut self.worker.conn;
        let _ = conn.send(&ToWorker::Serve(Box::new(ServeSpec {
            grants: shared.wire_grants.clone(),
            reuse_instances: shared.config.reuse_instances,
            track_memory: shared.config.max_memory_kb.is_some(),
            cache_dir: shared.runtime.cache().dir().to_path_buf(),
        })));
        match conn.await_hello() {
            Ok(true) => {}
            Ok(false) => return Err("the worker process died at start-up".into()),
            Err(e) => return Err(format!("{e:#}")),
        }
        match conn.next_event(Some(Instant::now() + HELLO_TIMEOUT)) {
            Ok(Event::Ready) => {}
            Ok(Event::Closed) => return Err("the worker process died setting up".into()),
            Ok(other @ (Event::Finished(_) | Event::TaskDone { .. } | Event::Deadline)) => {
                return Err(format!("the worker did not get ready: {other:?}"));
            }
            Err(e) => return Err(format!("{e:#}")),
        }
        let Some((component, export, args)) = &shared.config.initializer else {
            return Ok(());
        };
        conn.serve_host_calls(component.host_calls(), None);
        let timeout = shared.grants.get_timeout();
        let job = ToWorker::Job(vec![TaskSpec {
            id: 0,
            cwasm: component
                .cwasm_for(shared.grants.get_limits())
                .map_err(|e| format!("{e:#}"))?,
            export: export.clone(),
            args: args.clone(),
            timeout_ms: timeout.map(protocol::millis),
            chunk: None,
        }]);
        conn.send(&job)
            .map_err(|e| format!("the worker died before its initializer: {e}"))?;
        let deadline = timeout.map(|t| Instant::now() + t + TIMEOUT_GRACE);
        match conn.next_event(deadline) {
            Ok(Event::TaskDone {
                outcome: Outcome::Returned(_),
                ..
            }) => Ok(()),
            Ok(Event::TaskDone { outcome, .. }) => {
                Err(format!("the initializer {export} failed: {outcome:?}"))
            }
            Ok(other @ (Event::Finished(_) | Event::Ready | Event::Closed | Event::Deadline)) => {
                Err(format!(
                    "the initializer {export} did not finish: {other:?}"
                ))
            }
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// Runs one job to its end. `None`: the worker ended under it and was reaped; the
    /// scheduler has dealt with the job's tasks.
    fn run_job(mut self, shared: &Shared, mut job: Job<LocalTask>) -> Option<SlotWorker> {
        let scheduler = &shared.scheduler;
        let timeout = shared.grants.get_timeout();
        let specs = job
            .tasks()
            .map(|task| TaskSpec {
                id: task.id(),
                cwasm: task.payload().cwasm.clone(),
                export: task.payload().call.export.clone(),
                args: task.payload().call.args.clone(),
                timeout_ms: task
                    .payload()
                    .call
                    .timeout
                    .or(timeout)
                    .map(protocol::millis),
                chunk: task.chunk(),
            })
            .collect();
        if self.worker.conn.send(&ToWorker::Job(specs)).is_err() {
            // Died before reading the job: nothing was started.
            return self.ended(shared, job, WorkerEnd::Lost);
        }
        scheduler.start(&mut job);
        let mut started = Instant::now();
        self.task_started(shared, &job);
        while let Some(current) = job.current() {
            let limit = current.payload().call.timeout.or(timeout);
            let deadline = limit.map(|t| started + t + TIMEOUT_GRACE);
            self.worker.conn.serve_host_calls(
                current.payload().call.component.host_calls(),
                Some(current.id()),
            );
            match self.worker.conn.next_event(deadline) {
                Ok(Event::TaskDone {
                    id,
                    outcome,
                    rss_kb,
                }) => {
                    debug_assert_eq!(current.id(), id, "workers answer tasks in order");
                    self.tasks_run += 1;
                    self.limits_hit(shared, id, outcome == Outcome::TimedOut, limit);
                    if matches!(outcome, Outcome::Trapped(_) | Outcome::TimedOut) {
                        self.recycle = Some("task_failed");
                    } else if let Some(max) =
                        shared.config.max_memory_kb.filter(|&max| rss_kb > max)
                    {
                        self.recycle = self.recycle.or(Some("memory"));
                        let worker = self.worker.pid();
                        shared.runtime.events().emit(|| events::Event::LimitHit {
                            worker,
                            name: None,
                            task: Some(id),
                            limit: "max_worker_memory",
                            detail: format!(
                                "peak resident memory {rss_kb} KiB is over the pool's \
                                 {max} KiB: the worker is replaced"
                            ),
                        });
                    }
                    let result = to_result(current.payload(), outcome);
                    self.task_ended(shared, &job, started, result.as_ref().err());
                    scheduler.complete(&mut job, result);
                    started = Instant::now();
                    self.task_started(shared, &job);
                }
                // Blocked in a host call, or not answering: the epoch trap could not stop
                // it. The task timed out.
                Ok(Event::Deadline) => {
                    self.limits_hit(shared, current.id(), true, limit);
                    let error = TaskError::TimedOut;
                    self.task_ended(shared, &job, started, Some(&error));
                    return self.ended(shared, job, WorkerEnd::TimedOut);
                }
                Ok(Event::Closed) => {
                    let attempts = job.current().map_or(0, |t| t.attempts());
                    let error = TaskError::WorkerLost { attempts };
                    self.task_ended(shared, &job, started, Some(&error));
                    return self.ended(shared, job, WorkerEnd::Lost);
                }
                Ok(other @ (Event::Finished(_) | Event::Ready)) => {
                    warn!(
                        pid = self.worker.pid(),
                        "a pool worker answered a job with {other:?}"
                    );
                    return self.ended(shared, job, WorkerEnd::Lost);
                }
                Err(e) => {
                    warn!(pid = self.worker.pid(), "{e:#}");
                    return self.ended(shared, job, WorkerEnd::Lost);
                }
            }
        }
        if shared
            .config
            .max_tasks_per_worker
            .is_some_and(|max| self.tasks_run >= max)
        {
            self.recycle = self.recycle.or(Some("max_tasks"));
        }
        Some(self)
    }

    /// Reports the limits task `task` hit: the one its worker said, and the time limit
    /// (`limit`) if it `timed_out`.
    fn limits_hit(&mut self, shared: &Shared, task: u64, timed_out: bool, limit: Option<Duration>) {
        let worker = self.worker.pid();
        let events = shared.runtime.events();
        if let Some(hit) = self.worker.conn.take_limit_hit() {
            events.emit(|| events::Event::LimitHit {
                worker,
                name: None,
                task: Some(task),
                limit: hit.limit.key(),
                detail: hit.detail,
            });
        }
        if timed_out {
            events.emit(|| events::Event::timeout_hit(worker, None, Some(task), limit));
        }
    }

    /// The job's current task (if any) is now running in this worker.
    fn task_started(&self, shared: &Shared, job: &Job<LocalTask>) {
        if let Some(task) = job.current() {
            shared.runtime.events().emit(|| events::Event::TaskStarted {
                id: task.id(),
                export: task.payload().call.export.clone(),
                worker: self.worker.pid(),
                attempt: task.attempts(),
            });
        }
    }

    /// The job's current task, started at `started`, ended: returned, or with `error`.
    fn task_ended(
        &self,
        shared: &Shared,
        job: &Job<LocalTask>,
        started: Instant,
        error: Option<&TaskError>,
    ) {
        let Some(task) = job.current() else {
            return;
        };
        let (id, worker, attempt) = (task.id(), self.worker.pid(), task.attempts());
        let duration_ms = millis(started.elapsed());
        shared.runtime.events().emit(|| match error {
            None => events::Event::TaskDone {
                id,
                worker,
                attempt,
                duration_ms,
            },
            Some(error) => events::Event::TaskFailed {
                id,
                worker,
                attempt,
                duration_ms,
                reason: error.kind(),
                error: error.to_string(),
            },
        });
    }

    /// The worker ended (or must be stopped) while holding `job`: kill, reap, and let the
    /// scheduler settle the job's tasks.
    fn ended(self, shared: &Shared, job: Job<LocalTask>, end: WorkerEnd) -> Option<SlotWorker> {
        self.worker.kill();
        let pid = self.worker.pid();
        let task = job.current().map(|t| t.id());
        let status = self.reap(shared);
        debug!(pid, %status, ?task, ?end, "pool worker ended mid-job");
        let reason = match end {
            WorkerEnd::TimedOut => "timed_out",
            WorkerEnd::Lost => "lost",
        };
        shared
            .runtime
            .events()
            .emit(|| events::Event::WorkerLost { pid, reason });
        shared.scheduler.worker_ended(job, end);
        None
    }

    /// Asks the worker to exit, kills it if it does not, and reaps it.
    fn shut_down(mut self, shared: &Shared) {
        if self.worker.conn.send(&ToWorker::Shutdown).is_ok() {
            let _ = self
                .worker
                .conn
                .next_event(Some(Instant::now() + SHUTDOWN_GRACE));
        }
        self.worker.kill();
        let pid = self.worker.pid();
        self.reap(shared);
        shared
            .runtime
            .events()
            .emit(|| events::Event::WorkerStopped { pid });
    }

    /// Waits for the process (after it exited or was killed) and forgets it.
    fn reap(self, shared: &Shared) -> ExitStatus {
        shared.worker_down(self.index);
        self.worker.reap(None, None).status
    }
}

fn to_result(task: &LocalTask, outcome: Outcome) -> TaskResult {
    match outcome {
        Outcome::Returned(values) => task
            .call
            .component
            .decode_results(&task.call.export, &values)
            .map_err(|e| TaskError::Failed(format!("{e:#}"))),
        Outcome::Exited(code) => Err(TaskError::Exited(code)),
        Outcome::Trapped(message) => Err(TaskError::Trapped(message)),
        Outcome::TimedOut => Err(TaskError::TimedOut),
        Outcome::Failed(message) => Err(TaskError::Failed(message)),
    }
}
