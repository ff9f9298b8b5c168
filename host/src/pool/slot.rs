//! One pool worker slot, on a thread of its own: keep a worker process alive, feed it jobs
//! from the pool's queue, turn what comes back into task results, and replace the process
//! when it dies, traps, grows too large or has run its share of tasks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::Signal;
use tracing::{debug, warn};

use crate::link::conn::{Event, HELLO_TIMEOUT, WorkerConn};
use crate::link::spawn::{self, Signaller, SpawnRequest};
use crate::pool::task::{TaskError, TaskResult};
use crate::pool::{MAX_JOB, PoolShared, Task};
use crate::process::monitor::{TIMEOUT_GRACE, exit_status, start_drains};
use crate::protocol::{Outcome, ServeSpec, TaskSpec, ToWorker};
use crate::stdio::output::{Drain, Output};

/// After this many consecutive failed starts the pool gives up and reports why.
const MAX_START_FAILURES: u32 = 5;

/// The first back-off after a failed start; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long a worker told to shut down gets before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Starts the thread of worker slot `index`.
pub(crate) fn start(shared: Arc<PoolShared>, index: usize) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("wasmp-pool-{index}"))
        .spawn(move || run_slot(&shared, index))
        .context("failed to spawn a pool thread")
}

/// SIGKILLs every live worker process of the pool (their threads then reap them).
pub(crate) fn kill_all(shared: &PoolShared) {
    let live = shared.live.lock().unwrap_or_else(|e| e.into_inner());
    for signaller in live.values() {
        let _ = signaller.signal(Signal::KILL);
    }
}

fn run_slot(shared: &PoolShared, index: usize) {
    let mut failed_starts = 0u32;
    loop {
        if finished(shared) {
            return;
        }
        let mut worker = match WorkerProcess::spawn(shared, index) {
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
                    shared.break_pool(format!(
                        "pool workers failed to start {failed_starts} times in a row; last: {reason}"
                    ));
                    return;
                }
                back_off(shared, failed_starts);
                continue;
            }
        };
        loop {
            let Some(job) = take_job(shared) else {
                worker.shut_down(shared);
                return;
            };
            match worker.run_job(shared, job) {
                JobEnd::Continue => {}
                JobEnd::Recycle => {
                    worker.shut_down(shared);
                    break;
                }
                JobEnd::Died => break,
            }
        }
    }
}

/// Whether this slot has nothing left to do.
fn finished(shared: &PoolShared) -> bool {
    let state = shared.lock();
    state.terminating || state.broken.is_some() || (state.closed && state.tasks.is_empty())
}

/// Sleeps before the next start attempt; a terminating pool wakes it at once.
fn back_off(shared: &PoolShared, failed_starts: u32) {
    let backoff = (FIRST_BACKOFF * 2u32.saturating_pow(failed_starts - 1)).min(MAX_BACKOFF);
    let state = shared.lock();
    if !state.terminating {
        let _ = shared.work.wait_timeout(state, backoff);
    }
}

/// The next tasks for a worker: a whole `map` chunk, or a share of the queued single tasks
/// (so that a burst of `apply_async` travels in few frames without starving other
/// workers). `None` when the pool is done.
fn take_job(shared: &PoolShared) -> Option<Vec<Task>> {
    let mut state = shared.lock();
    loop {
        if state.terminating || state.broken.is_some() {
            return None;
        }
        if let Some(first) = state.tasks.pop_front() {
            let mut job = vec![first];
            match job[0].chunk {
                Some(chunk) => {
                    while state.tasks.front().is_some_and(|t| t.chunk == Some(chunk)) {
                        job.extend(state.tasks.pop_front());
                    }
                }
                None => {
                    let share = (state.tasks.len() / shared.size).min(MAX_JOB - 1);
                    while job.len() <= share
                        && state.tasks.front().is_some_and(|t| t.chunk.is_none())
                    {
                        job.extend(state.tasks.pop_front());
                    }
                }
            }
            return Some(job);
        }
        if state.closed {
            return None;
        }
        state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
    }
}

enum JobEnd {
    Continue,
    Recycle,
    Died,
}

struct WorkerProcess {
    index: usize,
    pid: u32,
    child: std::process::Child,
    signaller: Arc<Signaller>,
    conn: WorkerConn,
    drains: [Option<Drain>; 2],
    tasks_run: u64,
}

impl WorkerProcess {
    /// Spawns a worker, waits for its hello and runs the initializer. `Err` says why the
    /// start failed (the process is reaped).
    fn spawn(shared: &PoolShared, index: usize) -> Result<WorkerProcess, String> {
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
        shared
            .counters
            .workers_started
            .fetch_add(1, Ordering::Relaxed);
        let name = format!("pool-worker-{index}");
        let drains = start_drains(
            &name,
            spawned.pid,
            output,
            output,
            spawned.stdout,
            spawned.stderr,
        );
        let conn = WorkerConn::new(name, spawned.channel, shared.queues.clone());
        let mut worker = match conn {
            Ok(conn) => WorkerProcess {
                index,
                pid: spawned.pid,
                child: spawned.child,
                signaller: spawned.signaller,
                conn,
                drains,
                tasks_run: 0,
            },
            Err(e) => return Err(format!("{e:#}")),
        };
        shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(index, worker.signaller.clone());
        match worker.start(shared) {
            Ok(()) => {
                debug!(slot = index, pid = worker.pid, "pool worker ready");
                Ok(worker)
            }
            Err(reason) => {
                let _ = worker.signaller.signal(Signal::KILL);
                let status = worker.reap(shared);
                Err(format!("{reason} ({status})"))
            }
        }
    }

    fn start(&mut self, shared: &PoolShared) -> Result<(), String> {
        let _ = self.conn.send(&ToWorker::Serve(Box::new(ServeSpec {
            grants: shared.grants.clone(),
            reuse_instances: shared.config.reuse_instances,
            track_memory: shared.config.max_memory_kb.is_some(),
            cache_dir: shared.runtime.cache().dir().to_path_buf(),
        })));
        match self.conn.await_hello() {
            Ok(true) => {}
            Ok(false) => return Err("the worker process died at start-up".into()),
            Err(e) => return Err(format!("{e:#}")),
        }
        match self.conn.next_event(Some(Instant::now() + HELLO_TIMEOUT)) {
            Ok(Event::Ready) => {}
            Ok(Event::Closed) => return Err("the worker process died setting up".into()),
            Ok(other) => return Err(format!("the worker did not get ready: {other:?}")),
            Err(e) => return Err(format!("{e:#}")),
        }
        let Some((component, export, args)) = &shared.config.initializer else {
            return Ok(());
        };
        let job = ToWorker::Job(vec![TaskSpec {
            id: 0,
            cwasm: component
                .cwasm_for(&shared.config.limits)
                .map_err(|e| format!("{e:#}"))?,
            export: export.clone(),
            args: args.clone(),
            timeout_ms: shared.config.timeout.map(crate::process::millis),
        }]);
        self.conn
            .send(&job)
            .map_err(|e| format!("the worker died before its initializer: {e}"))?;
        let deadline = shared
            .config
            .timeout
            .map(|t| Instant::now() + t + TIMEOUT_GRACE);
        match self.conn.next_event(deadline) {
            Ok(Event::TaskDone {
                outcome: Outcome::Returned(_),
                ..
            }) => Ok(()),
            Ok(Event::TaskDone { outcome, .. }) => {
                Err(format!("the initializer {export} failed: {outcome:?}"))
            }
            Ok(other) => Err(format!(
                "the initializer {export} did not finish: {other:?}"
            )),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    fn run_job(&mut self, shared: &PoolShared, tasks: Vec<Task>) -> JobEnd {
        let specs = tasks
            .iter()
            .map(|task| TaskSpec {
                id: task.id,
                cwasm: task.cwasm.clone(),
                export: task.export.clone(),
                args: task.args.clone(),
                timeout_ms: shared.config.timeout.map(crate::process::millis),
            })
            .collect();
        let mut pending: VecDeque<Task> = tasks.into();
        if self.conn.send(&ToWorker::Job(specs)).is_err() {
            // Died before reading the job: nothing was started.
            self.reap(shared);
            shared.requeue(pending.into());
            return JobEnd::Died;
        }
        let mut recycle = false;
        let mut started = Instant::now();
        if let Some(first) = pending.front_mut() {
            first.attempts += 1;
        }
        while !pending.is_empty() {
            let deadline = shared.config.timeout.map(|t| started + t + TIMEOUT_GRACE);
            match self.conn.next_event(deadline) {
                Ok(Event::TaskDone {
                    id,
                    outcome,
                    rss_kb,
                }) => {
                    let task = pending.pop_front().expect("a task is pending");
                    debug_assert_eq!(task.id, id, "workers answer tasks in order");
                    self.tasks_run += 1;
                    recycle |= matches!(outcome, Outcome::Trapped(_) | Outcome::TimedOut);
                    recycle |= shared.config.max_memory_kb.is_some_and(|max| rss_kb > max);
                    let result = to_result(&task, outcome);
                    shared.finish(task, result);
                    started = Instant::now();
                    if let Some(next) = pending.front_mut() {
                        next.attempts += 1;
                    }
                }
                Ok(Event::Deadline) => {
                    // Blocked in a host call, or not answering: the epoch trap could not
                    // stop it. Kill it; the task timed out.
                    let _ = self.signaller.signal(Signal::KILL);
                    self.reap(shared);
                    let task = pending.pop_front().expect("a task is pending");
                    shared.finish(task, Err(TaskError::TimedOut));
                    // Sent but never started: no attempt is counted for them.
                    shared.requeue(pending.into());
                    return JobEnd::Died;
                }
                other => {
                    if let Err(e) = &other {
                        warn!(pid = self.pid, "{e:#}");
                    }
                    let _ = self.signaller.signal(Signal::KILL);
                    let status = self.reap(shared);
                    let task = pending.pop_front().expect("a task is pending");
                    debug!(pid = self.pid, %status, task = task.id, "pool worker died mid-task");
                    self.lose(shared, task);
                    // Sent but never started: no attempt is counted for them.
                    shared.requeue(pending.into());
                    return JobEnd::Died;
                }
            }
        }
        if shared
            .config
            .max_tasks_per_worker
            .is_some_and(|max| self.tasks_run >= max)
        {
            recycle = true;
        }
        if recycle {
            JobEnd::Recycle
        } else {
            JobEnd::Continue
        }
    }

    /// The task's worker died under it: retry it if allowed, else fail it.
    fn lose(&self, shared: &PoolShared, mut task: Task) {
        let terminating = shared.lock().terminating;
        if terminating {
            shared.finish(task, Err(TaskError::Terminated));
        } else if task.attempts <= shared.config.retries {
            shared.counters.retried.fetch_add(1, Ordering::Relaxed);
            task.chunk = None;
            shared.requeue(vec![task]);
        } else {
            let attempts = task.attempts;
            shared.finish(task, Err(TaskError::WorkerLost { attempts }));
        }
    }

    /// Asks the worker to exit, kills it if it does not, and reaps it.
    fn shut_down(mut self, shared: &PoolShared) {
        if self.conn.send(&ToWorker::Shutdown).is_ok() {
            let _ = self.conn.next_event(Some(Instant::now() + SHUTDOWN_GRACE));
        }
        let _ = self.signaller.signal(Signal::KILL);
        self.reap(shared);
    }

    /// Waits for the process (after it exited or was killed) and forgets it.
    fn reap(&mut self, shared: &PoolShared) -> crate::ExitStatus {
        shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.index);
        for drain in std::mem::take(&mut self.drains).into_iter().flatten() {
            drain.finish();
        }
        exit_status(None, None, self.child.wait())
    }
}

fn to_result(task: &Task, outcome: Outcome) -> TaskResult {
    match outcome {
        Outcome::Returned(values) => task
            .component
            .decode_results(&task.export, &values)
            .map_err(|e| TaskError::Failed(format!("{e:#}"))),
        Outcome::Exited(code) => Err(TaskError::Exited(code)),
        Outcome::Trapped(message) => Err(TaskError::Trapped(message)),
        Outcome::TimedOut => Err(TaskError::TimedOut),
        Outcome::Failed(message) => Err(TaskError::Failed(message)),
    }
}
