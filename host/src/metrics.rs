//! Prometheus metrics of a runtime, counted from its [`Event`]s and read from the queues
//! it watches, rendered in the OpenMetrics text format by the Prometheus project's
//! `prometheus-client`, and served over HTTP for `--metrics`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::events::Event;
use crate::queue::Queue;
use crate::queue::backend::QueueStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

/// What a live worker process is doing, for the `wasmp_workers` gauge.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    Idle,
    Busy,
    Process,
}

impl WorkerState {
    const ALL: [WorkerState; 3] = [WorkerState::Idle, WorkerState::Busy, WorkerState::Process];

    fn label(self) -> StateLabel {
        let state = match self {
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Process => "process",
        };
        StateLabel {
            state: state.to_string(),
        }
    }
}

/// The metrics of one runtime. Subscribe [`observe`](Self::observe) to its events
/// ([`RuntimeBuilder::on_event`](crate::RuntimeBuilder::on_event)), add the queues to
/// report with [`watch_queue`](Self::watch_queue), and [`render`](Self::render) or
/// [`serve`](Self::serve) them.
///
/// | metric | labels | what |
/// |---|---|---|
/// | `wasmp_task_runs_total` | `outcome`: `done` or a `TaskError::kind` | pool task runs (attempts) by how they ended |
/// | `wasmp_task_duration_seconds` | | histogram of task run times, 1 ms to 65 s |
/// | `wasmp_task_retries_total` | `reason` | failed runs put back in the queue |
/// | `wasmp_workers` | `state`: `idle`, `busy` (pool workers), `process` | live worker processes |
/// | `wasmp_worker_starts_total` | `kind`: `pool`, `process` | worker processes started |
/// | `wasmp_worker_ends_total` | `reason`: `lost`, `timed_out`, `recycled_…`, `stopped`, `exited` | worker processes ended |
/// | `wasmp_limit_hits_total` | `limit`: a `-W` key (`max-memory-size`, `fuel`, `timeout`, …) or `max_worker_memory` | guests that ran into a limit |
/// | `wasmp_queue_length` / `_puts_total` / `_gets_total` | `queue` | watched queues |
pub struct Metrics {
    registry: Registry,
    task_runs: Family<OutcomeLabel, Counter>,
    task_seconds: Histogram,
    retries: Family<ReasonLabel, Counter>,
    workers: Family<StateLabel, Gauge>,
    starts: Family<KindLabel, Counter>,
    ends: Family<ReasonLabel, Counter>,
    limit_hits: Family<LimitLabel, Counter>,
    live: Mutex<HashMap<u32, WorkerState>>,
    queues: Arc<QueueCollector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty metrics, every family registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wasmp");
        let task_runs = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "task_runs",
            "Pool task runs (attempts) by how they ended",
            task_runs.clone(),
        );
        let task_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            "task_duration_seconds",
            "Run time of pool tasks",
            task_seconds.clone(),
        );
        let retries = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "task_retries",
            "Failed task runs put back in the queue, by reason",
            retries.clone(),
        );
        let workers = Family::<StateLabel, Gauge>::default();
        registry.register("workers", "Live worker processes by state", workers.clone());
        let starts = Family::<KindLabel, Counter>::default();
        registry.register("worker_starts", "Worker processes started", starts.clone());
        let ends = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "worker_ends",
            "Worker processes ended, by reason",
            ends.clone(),
        );
        let limit_hits = Family::<LimitLabel, Counter>::default();
        registry.register(
            "limit_hits",
            "Guests that ran into one of their limits, by limit",
            limit_hits.clone(),
        );
        let queues = Arc::new(QueueCollector::default());
        registry.register_collector(Box::new(queues.clone()));
        Metrics {
            registry,
            task_runs,
            task_seconds,
            retries,
            workers,
            starts,
            ends,
            limit_hits,
            live: Mutex::new(HashMap::new()),
            queues,
        }
    }

    fn live(&self) -> MutexGuard<'_, HashMap<u32, WorkerState>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one event.
    pub fn observe(&self, event: &Event) {
        let count = |family: &Family<ReasonLabel, Counter>, reason: &str| {
            family
                .get_or_create(&ReasonLabel {
                    reason: reason.to_string(),
                })
                .inc();
        };
        let start = |kind: &str| {
            self.starts
                .get_or_create(&KindLabel {
                    kind: kind.to_string(),
                })
                .inc();
        };
        let ran = |outcome: &str, duration_ms: f64| {
            self.task_runs
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.to_string(),
                })
                .inc();
            self.task_seconds.observe(duration_ms / 1000.0);
        };
        match event {
            Event::ProcessStarted { pid, .. } => {
                start("process");
                self.set_state(*pid, Some(WorkerState::Process));
            }
            Event::ProcessExited { pid, timed_out, .. } => {
                count(&self.ends, if *timed_out { "timed_out" } else { "exited" });
                self.set_state(*pid, None);
            }
            Event::WorkerStarted { pid, .. } => {
                start("pool");
                self.set_state(*pid, Some(WorkerState::Idle));
            }
            Event::WorkerLost { pid, reason } => {
                count(&self.ends, reason);
                self.set_state(*pid, None);
            }
            Event::WorkerRecycled { reason, .. } => {
                // It is stopped next (`worker_stopped`), which takes it off the gauge.
                count(&self.ends, &format!("recycled_{reason}"));
            }
            Event::WorkerStopped { pid } => {
                self.set_state(*pid, None);
            }
            Event::TaskStarted { worker, .. } => self.set_state(*worker, Some(WorkerState::Busy)),
            Event::TaskDone {
                worker,
                duration_ms,
                ..
            } => {
                ran("done", *duration_ms);
                self.set_state(*worker, Some(WorkerState::Idle));
            }
            Event::TaskFailed {
                worker,
                duration_ms,
                reason,
                ..
            } => {
                ran(reason, *duration_ms);
                self.set_state(*worker, Some(WorkerState::Idle));
            }
            Event::TaskRetried { reason, .. } => count(&self.retries, reason),
            Event::LimitHit { limit, .. } => {
                self.limit_hits
                    .get_or_create(&LimitLabel {
                        limit: limit.to_string(),
                    })
                    .inc();
            }
            // Queues are read at each scrape instead.
            Event::QueueClosed { .. } | Event::QueueDrained { .. } => {}
        }
    }

    /// Records what worker `pid` is doing now (`None`: it is gone) and updates the gauge.
    fn set_state(&self, pid: u32, state: Option<WorkerState>) {
        let mut live = self.live();
        match state {
            // A worker's end may come before its last task's report is counted: the
            // first end wins, a late `idle` does not bring it back.
            Some(WorkerState::Idle) if !live.contains_key(&pid) => return,
            Some(state) => {
                live.insert(pid, state);
            }
            None => {
                live.remove(&pid);
            }
        }
        for state in WorkerState::ALL {
            let n = live.values().filter(|s| **s == state).count();
            self.workers
                .get_or_create(&state.label())
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Reports `queue`'s length, puts and gets at every scrape.
    pub fn watch_queue(&self, queue: &Queue) {
        self.queues.watch(queue.clone());
    }

    /// The metrics in the OpenMetrics text format (what Prometheus scrapes).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Serves [`render`](Self::render) at `http://ADDR/metrics` on a thread of its own,
    /// until the returned handle is dropped. Port 0 picks a free port
    /// ([`MetricsServer::addr`] says which).
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub fn serve(self: &Arc<Self>, addr: SocketAddr) -> Result<MetricsServer> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        let server = Arc::new(server);
        let addr = server
            .server_addr()
            .to_ip()
            .context("the metrics server has no IP address")?;
        let metrics = self.clone();
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("wasmp-metrics".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    let response = if request.url() == "/metrics" {
                        let content_type = tiny_http::Header::from_bytes(
                            "Content-Type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .expect("a valid header");
                        tiny_http::Response::from_string(metrics.render()).with_header(content_type)
                    } else {
                        tiny_http::Response::from_string("not found: try /metrics\n")
                            .with_status_code(404)
                    };
                    if let Err(e) = request.respond(response) {
                        tracing::debug!("a metrics scrape failed: {e}");
                    }
                }
            })
            .context("failed to start the metrics thread")?;
        Ok(MetricsServer {
            server,
            addr,
            thread: Some(thread),
        })
    }
}

/// A running metrics endpoint; dropping it stops the server.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One of a queue's counters, read from its stats.
type QueueCounter = fn(&QueueStats) -> u64;

/// The watched queues, read at each scrape (their counters live in the queues).
#[derive(Debug, Default)]
struct QueueCollector {
    queues: Mutex<Vec<Queue>>,
}

impl QueueCollector {
    fn watch(&self, queue: Queue) {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(queue);
    }
}

impl Collector for QueueCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats: Vec<(QueueLabel, QueueStats)> = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|q| {
                let label = QueueLabel {
                    queue: q.name().to_string(),
                };
                (label, q.stats())
            })
            .collect();
        if stats.is_empty() {
            return Ok(());
        }
        let length = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "queue_length",
            "Messages waiting",
            None,
            length.metric_type(),
        )?;
        for (label, stats) in &stats {
            let len = i64::try_from(stats.len).unwrap_or(i64::MAX);
            ConstGauge::new(len).encode(family.encode_family(label)?)?;
        }
        let counters: [(&str, &str, QueueCounter); 2] = [
            ("queue_puts", "Messages ever put", |s| s.puts),
            ("queue_gets", "Messages ever taken", |s| s.gets),
        ];
        for (name, help, value) in counters {
            let kind = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (label, stats) in &stats {
                ConstCounter::new(value(stats)).encode(family.encode_family(label)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_and_rendered_as_openmetrics_text() {
        let metrics = Metrics::new();
        metrics.observe(&Event::WorkerStarted { slot: 0, pid: 10 });
        metrics.observe(&Event::TaskStarted {
            id: 1,
            export: "f".into(),
            worker: 10,
            attempt: 1,
        });
        let text = metrics.render();
        assert!(text.contains("wasmp_workers{state=\"busy\"} 1"), "{text}");
        metrics.observe(&Event::TaskFailed {
            id: 1,
            worker: 10,
            attempt: 1,
            duration_ms: 3.0,
            reason: "trapped",
            error: "t".into(),
        });
        metrics.observe(&Event::WorkerRecycled {
            pid: 10,
            reason: "task_failed",
        });
        metrics.observe(&Event::WorkerStopped { pid: 10 });
        metrics.observe(&Event::LimitHit {
            worker: 10,
            name: None,
            task: Some(1),
            limit: "fuel",
            detail: "the guest used all of its 5 units of fuel".into(),
        });
        let queue = Queue::new("jobs");
        queue.put(b"x").unwrap();
        metrics.watch_queue(&queue);
        let text = metrics.render();
        for line in [
            "wasmp_task_runs_total{outcome=\"trapped\"} 1",
            "wasmp_task_duration_seconds_count 1",
            "wasmp_workers{state=\"busy\"} 0",
            "wasmp_workers{state=\"idle\"} 0",
            "wasmp_worker_starts_total{kind=\"pool\"} 1",
            "wasmp_worker_ends_total{reason=\"recycled_task_failed\"} 1",
            "wasmp_limit_hits_total{limit=\"fuel\"} 1",
            "wasmp_queue_length{queue=\"jobs\"} 1",
            "wasmp_queue_puts_total{queue=\"jobs\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
