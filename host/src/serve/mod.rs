//! A cluster host (`wasmp serve`): pulls tasks from the namespace's work queue, only as
//! many as it has idle worker processes, and runs them in an ordinary local [`Pool`]
//! (every limit, recycling and timeout as locally).
//!
//! For one task the order is: run → publish the result → wait until the server stored it
//! → acknowledge the task. A host that dies anywhere in between leaves the task
//! unacknowledged, and the server gives it to another host after the ack deadline; a
//! duplicate result that this may cause is dropped by the server (message id) or by the
//! submitter (task id). While a task runs, the host tells the server it is still working
//! on it every quarter of the ack deadline, so long tasks are not taken away.
//!
//! Attempts are counted by the server (the delivery count of each message) and checked
//! here against the task's `retries`: a task whose worker died is handed back (a negative
//! acknowledgement) while it has attempts left, and ends as `WorkerLost` plus a dead
//! letter when it has none. May see `cluster`, `pool`, `runtime`, `grants`, `value`.

mod components;
mod running;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;

use crate::cluster::hosts::{self, HostStatus};
use crate::cluster::wire::{self, Outcome, ResultMessage, TaskMessage};
use crate::cluster::{Cluster, dead, publish_stored, streams};
use crate::grants::Grants;
use crate::pool::backend::Call;
use crate::pool::remote::outcome_of;
use crate::pool::task::{TaskError, TaskResult};
use crate::pool::{Pool, PoolBuilder};
use crate::runtime::Runtime;
use crate::serve::components::Components;
use crate::serve::running::{Running, RunningTask};

/// The ack deadline hosts agree on unless told otherwise.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// How long a long poll for new tasks waits before looking at the stop flag again.
const POLL: Duration = Duration::from_millis(500);

/// Settings for a [`ClusterHost`].
#[must_use]
pub struct ClusterHostBuilder {
    runtime: Runtime,
    cluster: Cluster,
    slots: usize,
    grants: Grants,
    ack_wait: Duration,
    max_tasks_per_worker: Option<u64>,
    id: String,
}

impl ClusterHostBuilder {
    /// How many worker processes, hence tasks at once (default: the available parallelism).
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots.max(1);
        self
    }

    /// What this host grants its tasks (directories, environment, limits, a time limit
    /// that caps each task's own). A task that needs a directory or variable not granted
    /// here fails with a message that says which.
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    /// How long the server waits for word from a host about a task before giving it to
    /// another (default 30 s). The first host to start sets it for the namespace.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait.max(Duration::from_millis(100));
        self
    }

    /// Replace a worker process after this many tasks.
    pub fn max_tasks_per_worker(mut self, tasks: u64) -> Self {
        self.max_tasks_per_worker = Some(tasks);
        self
    }

    /// The host's id in `wasmp cluster status` (default `<hostname>-<pid>`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Opens the task queue and starts the worker processes.
    ///
    /// # Errors
    ///
    /// A malformed grant, or the server does not answer.
    pub fn build(self) -> Result<ClusterHost> {
        let mut pool = Pool::builder(&self.runtime)
            .processes(self.slots)
            .grants(self.grants.clone());
        if let Some(tasks) = self.max_tasks_per_worker {
            pool = pool.max_tasks_per_worker(tasks);
        }
        let consumer = self
            .cluster
            .block_on(streams::task_consumer(&self.cluster, self.ack_wait))?;
        Ok(ClusterHost {
            inner: Arc::new(Inner {
                pool: PoolBuilder::build(pool)?,
                components: Components::new(self.runtime.clone(), self.cluster.clone()),
                cluster: self.cluster,
                grants: self.grants,
                slots: self.slots,
                ack_wait: self.ack_wait,
                id: self.id,
                consumer: Mutex::new(consumer),
                running: Running::default(),
                free: Mutex::new(self.slots),
                freed: Condvar::new(),
                stopping: AtomicBool::new(false),
            }),
        })
    }
}

/// A host of the cluster: runs the namespace's tasks in local worker processes until
/// [`stop`](ClusterHostHandle::stop)ped.
pub struct ClusterHost {
    inner: Arc<Inner>,
}

/// Stops a running [`ClusterHost`] from another thread (a signal handler).
#[derive(Clone)]
pub struct ClusterHostHandle {
    inner: Arc<Inner>,
}

impl ClusterHostHandle {
    /// Stop taking tasks; [`ClusterHost::run`] then finishes or hands back what runs.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.freed.notify_all();
    }
}

/// What a host did, when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostReport {
    /// Tasks whose result this host stored.
    pub done: u64,
    /// Tasks handed back to the queue (their worker died with attempts left, or the host
    /// stopped while they ran).
    pub handed_back: u64,
    /// Tasks moved to the dead letters.
    pub dead: u64,
}

struct Inner {
    cluster: Cluster,
    pool: Pool,
    components: Components,
    grants: Grants,
    slots: usize,
    ack_wait: Duration,
    id: String,
    /// Re-opened after a failed fetch: a handle from before a server restart can stop
    /// being answered.
    consumer: Mutex<jetstream::consumer::PullConsumer>,
    running: Running,
    /// Idle worker slots: the fetcher takes no more tasks than this.
    free: Mutex<usize>,
    freed: Condvar,
    stopping: AtomicBool,
}

impl ClusterHost {
    /// Settings for a host of `cluster` running tasks on `runtime`'s worker processes.
    pub fn builder(runtime: &Runtime, cluster: &Cluster) -> ClusterHostBuilder {
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        ClusterHostBuilder {
            runtime: runtime.clone(),
            cluster: cluster.clone(),
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            grants: Grants::new(),
            ack_wait: DEFAULT_ACK_WAIT,
            max_tasks_per_worker: None,
            id: format!("{hostname}-{}", std::process::id()),
        }
    }

    /// A handle that stops the host.
    pub fn handle(&self) -> ClusterHostHandle {
        ClusterHostHandle {
            inner: self.inner.clone(),
        }
    }

    /// Takes and runs tasks until stopped; then waits up to `drain` for the running
    /// tasks, hands back the rest (another host runs them at once), and returns.
    ///
    /// # Errors
    ///
    /// When a thread cannot be started. A server that goes away mid-run is waited for
    /// (the client reconnects); it is not an error.
    pub fn run(&self, drain: Duration) -> Result<HostReport> {
        let inner = &self.inner;
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<(u64, TaskResult)>();
        let finisher = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("wasmp-serve-results".into())
                .spawn(move || {
                    let mut report = HostReport::default();
                    for (id, result) in done_rx {
                        inner.finish(id, result, &mut report);
                    }
                    report
                })
                .context("failed to start the result thread")?
        };
        let heartbeat = inner.cluster.spawn(heartbeat(inner.clone()));
        tracing::info!(host = %inner.id, slots = inner.slots, "serving");
        inner.fetch_loop(&done_tx);

        // Stopping: let what runs finish for a while, then hand it back.
        let deadline = Instant::now() + drain;
        while !inner.running.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        inner.pool.terminate();
        let handed = Instant::now() + Duration::from_secs(5);
        while !inner.running.is_empty() && Instant::now() < handed {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(done_tx);
        let report = finisher.join().unwrap_or_default();
        heartbeat.abort();
        inner
            .cluster
            .block_on(hosts::leave(&inner.cluster, &inner.id));
        tracing::info!(host = %inner.id, ?report, "stopped");
        Ok(report)
    }
}

impl Inner {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Waits for idle slots, takes that many tasks (at most), starts them.
    fn fetch_loop(&self, done: &crossbeam_channel::Sender<(u64, TaskResult)>) {
        let mut backoff = Duration::from_millis(50);
        while !self.stopping() {
            let free = {
                let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
                let free = self
                    .freed
                    .wait_while(free, |free| *free == 0 && !self.stopping())
                    .unwrap_or_else(|e| e.into_inner());
                *free
            };
            if self.stopping() {
                break;
            }
            // A pull request lost with the connection is never answered: bound the wait.
            let take = async {
                tokio::time::timeout(POLL * 4, self.take(free))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer to a fetch")))
            };
            match self.cluster.block_on(take) {
                Ok(messages) => {
                    backoff = Duration::from_millis(50);
                    for message in messages {
                        self.start(message, done);
                    }
                }
                Err(e) => {
                    // The server is away: the client reconnects; try again later.
                    tracing::warn!(error = %format!("{e:#}"), "cannot take tasks");
                    std::thread::sleep(backoff);
                    let reopened = self
                        .cluster
                        .block_on(streams::task_consumer(&self.cluster, self.ack_wait));
                    if let Ok(consumer) = reopened {
                        *self.consumer.lock().unwrap_or_else(|e| e.into_inner()) = consumer;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Up to `max` tasks: those waiting now, else the first to arrive within [`POLL`].
    async fn take(&self, max: usize) -> Result<Vec<jetstream::Message>> {
        let mut messages = Vec::new();
        let consumer = self
            .consumer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .context("fetch")?;
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        if messages.is_empty() {
            let mut batch = consumer
                .batch()
                .max_messages(1)
                .expires(POLL)
                .messages()
                .await
                .context("fetch")?;
            while let Some(message) = batch.next().await {
                messages.push(message.map_err(|e| anyhow::anyhow!("{e}"))?);
            }
        }
        Ok(messages)
    }

    fn take_slot(&self) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        *free = free.saturating_sub(1);
    }

    fn give_slot(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_all();
    }

    /// Checks a task and hands it to the local pool; a task that cannot run here ends at
    /// once (a result, or a dead letter when it has nowhere to send one).
    fn start(
        &self,
        message: jetstream::Message,
        done: &crossbeam_channel::Sender<(u64, TaskResult)>,
    ) {
        let delivered = message
            .info()
            .map_or(1, |info| info.delivered.max(1) as u32);
        let task = match TaskMessage::from_json(&message.payload) {
            Ok(task) => task,
            Err(reason) => {
                let id = format!(
                    "malformed-{}",
                    message.info().map_or(0, |i| i.stream_sequence)
                );
                self.cluster.block_on(async {
                    if let Err(e) = dead::bury(&self.cluster, &id, &message.payload, &reason).await
                    {
                        tracing::error!(error = %format!("{e:#}"), "cannot store a dead letter");
                        return;
                    }
                    let _ = message.ack_with(AckKind::Term).await;
                });
                return;
            }
        };
        // Delivered again after a host died (or froze) on its last allowed attempt.
        let exhausted = delivered > task.retries + 1;
        self.take_slot();
        let id = self.running.insert(RunningTask {
            message: Arc::new(message),
            attempt: if exhausted { delivered - 1 } else { delivered },
            task,
        });
        let task = self.running.task(id).expect("just inserted");
        if exhausted {
            let _ = done.send((
                id,
                Err(TaskError::WorkerLost {
                    attempts: delivered - 1,
                }),
            ));
            return;
        }
        match self.call_for(&task) {
            Ok(call) => match self.pool.submit_call(call) {
                Ok(result) => {
                    let done = done.clone();
                    result.on_done(move |result| {
                        let _ = done.send((id, result.clone()));
                    });
                }
                Err(e) => {
                    let _ = done.send((id, Err(TaskError::Failed(format!("{e:#}")))));
                }
            },
            Err(e) => {
                let _ = done.send((id, Err(TaskError::Failed(format!("{e:#}")))));
            }
        }
    }

    /// The local call for a task: its component (fetched and compiled once), its
    /// arguments checked again against the export, and this host's grants checked
    /// against what the task needs.
    fn call_for(&self, task: &TaskMessage) -> Result<Call> {
        for dir in &task.needs.dirs {
            if !self.grants.dirs().iter().any(|grant| grant.guest() == dir) {
                anyhow::bail!(
                    "host {} does not grant directory {dir} (start it with --dir HOST::{dir})",
                    self.id
                );
            }
        }
        for name in &task.needs.env {
            if !self
                .grants
                .get_env()
                .iter()
                .any(|(granted, _)| granted == name)
            {
                anyhow::bail!(
                    "host {} does not grant environment variable {name} (start it with --env {name})",
                    self.id
                );
            }
        }
        let component = self.components.get(&task.component, &task.name)?;
        let (export, args) =
            component.parse_call(&format!("{}({})", task.export, task.args.join(", ")))?;
        let host_limit = self.grants.get_timeout();
        let task_limit = task.timeout_ms.map(Duration::from_millis);
        let timeout = match (task_limit, host_limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Call {
            args: component.encode_args(&export, &args)?,
            component,
            export,
            timeout,
        })
    }

    /// Reports how a task ended (or hands it back), and frees its slot.
    fn finish(&self, id: u64, result: TaskResult, report: &mut HostReport) {
        let Some(running) = self.running.remove(id) else {
            return;
        };
        let RunningTask {
            message,
            task,
            attempt,
        } = running;
        let cluster = &self.cluster;
        cluster.block_on(async {
            match &result {
                // Not this task's fault: another host (or this one) runs it at once.
                Err(TaskError::Terminated) => {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    report.handed_back += 1;
                }
                Err(TaskError::WorkerLost { .. }) if attempt <= task.retries => {
                    tracing::info!(task = %task.id, attempt, "worker died; handing the task back");
                    let _ = message.ack_with(AckKind::Nak(Some(Duration::from_millis(100)))).await;
                    report.handed_back += 1;
                }
                _ => {
                    let outcome = match &result {
                        Err(TaskError::WorkerLost { .. }) => Outcome::WorkerLost { attempts: attempt },
                        other => outcome_of(other),
                    };
                    // A lost task is a dead letter before its result says so: whoever
                    // sees `WorkerLost` finds it in `wasmp cluster dead list`.
                    let lost = matches!(outcome, Outcome::WorkerLost { .. });
                    if lost {
                        let reason =
                            format!("the worker process died on each of {attempt} attempt(s)");
                        if dead::bury(cluster, &task.id, &message.payload, &reason).await.is_ok() {
                            report.dead += 1;
                        }
                    }
                    if self.publish_result(&task, attempt, outcome).await {
                        if lost {
                            let _ = message.ack_with(AckKind::Term).await;
                        } else if let Err(e) = message.double_ack().await {
                            // The server gave it to another host meanwhile (or restarted):
                            // it may run again; its second result is dropped as a duplicate.
                            tracing::warn!(task = %task.id, error = %e, "task acknowledgement failed");
                        }
                        report.done += 1;
                    }
                }
            }
        });
        self.give_slot();
    }

    /// Stores a task's result on its reply subject; whether it was stored.
    async fn publish_result(&self, task: &TaskMessage, attempt: u32, outcome: Outcome) -> bool {
        let result = ResultMessage {
            v: wire::VERSION,
            id: task.id.clone(),
            host: self.id.clone(),
            attempt,
            outcome,
        };
        match publish_stored(
            &self.cluster,
            &task.reply,
            &task.id,
            None,
            result.to_json().into(),
        )
        .await
        {
            Ok(()) => true,
            Err(e) => {
                // Unacknowledged, the task comes back after the ack deadline.
                tracing::error!(task = %task.id, error = %format!("{e:#}"), "cannot store a result");
                false
            }
        }
    }

    fn status(&self) -> HostStatus {
        let stats = self.pool.stats();
        HostStatus {
            id: self.id.clone(),
            slots: self.slots,
            running: self.running.len(),
            done: stats.succeeded + stats.failed,
        }
    }
}

/// Every quarter of the ack deadline: "still working" for each running task; every few
/// seconds: this host's entry in the status bucket.
async fn heartbeat(inner: Arc<Inner>) {
    let every = inner.ack_wait / 4;
    let mut ticker = tokio::time::interval(every);
    let mut last_report: Option<tokio::time::Instant> = None;
    loop {
        ticker.tick().await;
        for message in inner.running.messages() {
            let _ = message.ack_with(AckKind::Progress).await;
        }
        if last_report.is_none_or(|at| at.elapsed() >= hosts::HEARTBEAT_EVERY) {
            last_report = Some(tokio::time::Instant::now());
            if let Err(e) = hosts::report(&inner.cluster, &inner.status()).await {
                tracing::debug!(error = %format!("{e:#}"), "host heartbeat");
            }
        }
    }
}
