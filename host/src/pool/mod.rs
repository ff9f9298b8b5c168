//! `Pool`: warm sandboxed worker processes with Python's `Pool` semantics.
//!
//! Each worker is a long-lived OS process that keeps compiled components loaded and runs
//! every task in a fresh instance. Unlike Python's `Pool`, a worker that dies mid-task
//! fails that task (or retries it) within milliseconds and is replaced, so `get()` never
//! hangs; unlike `ProcessPoolExecutor`, one death does not break the pool.

pub(crate) mod slot;
pub(crate) mod task;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Result, bail};
use wasmtime::component::Val;

use crate::grants::dir::DirGrant;
use crate::grants::limits::Limits;
use crate::link::spawn::Signaller;
use crate::pool::task::{AsyncResult, Slot, TaskError, TaskResult};
use crate::protocol::Grants;
use crate::queue::{Queue, QueueGrants};
use crate::runtime::Runtime;
use crate::runtime::component::Component;
use crate::stdio::output::Output;
use crate::value::IntoVal;

/// Jobs sent to a worker hold at most this many tasks.
pub(crate) const MAX_JOB: usize = 64;

/// Settings for a [`Pool`].
#[must_use]
pub struct PoolBuilder {
    runtime: Runtime,
    processes: usize,
    pub(crate) config: PoolConfig,
    queues: QueueGrants,
    env: Vec<(String, String)>,
    dirs: Vec<DirGrant>,
}

/// What the worker threads need to know.
#[derive(Clone)]
pub(crate) struct PoolConfig {
    pub(crate) max_tasks_per_worker: Option<u64>,
    pub(crate) max_memory_kb: Option<u64>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) initializer: Option<(Component, String, Vec<String>)>,
    pub(crate) output: Output,
    pub(crate) reuse_instances: bool,
    pub(crate) limits: Limits,
}

impl PoolBuilder {
    /// How many worker processes (default: the available parallelism, as Python's
    /// `os.cpu_count()`).
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = processes.max(1);
        self
    }

    /// Replace a worker process after it has run this many tasks (Python's
    /// `maxtasksperchild`).
    pub fn max_tasks_per_worker(mut self, tasks: u64) -> Self {
        self.config.max_tasks_per_worker = Some(tasks.max(1));
        self
    }

    /// Replace a worker process whose resident memory exceeds this after a task.
    pub fn max_worker_memory(mut self, bytes: u64) -> Self {
        self.config.max_memory_kb = Some(bytes / 1024);
        self
    }

    /// Stop a task that runs longer than this ([`TaskError::TimedOut`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// Run a task again, up to this many times, when its worker process dies under it
    /// (default 0: the task fails with [`TaskError::WorkerLost`]). Traps and timeouts are
    /// never retried: they would happen again.
    pub fn retries(mut self, retries: u32) -> Self {
        self.config.retries = retries;
        self
    }

    /// Call `export(args)` of `component` once in every worker process before its first
    /// task (Python's `initializer`). A worker whose initializer fails counts as a failed
    /// start: the pool backs off, and reports an error if it keeps failing.
    pub fn initializer<I>(mut self, component: &Component, export: &str, args: I) -> Result<Self>
    where
        I: IntoIterator,
        I::Item: IntoVal,
    {
        let args: Vec<Val> = args.into_iter().map(IntoVal::into_val).collect();
        let encoded = component.encode_args(export, &args)?;
        self.config.initializer = Some((component.clone(), export.to_string(), encoded));
        Ok(self)
    }

    /// Keep each worker's instance of a component across its tasks instead of a fresh
    /// instance per task (the default). Faster for tiny tasks, and it is how a Python pool
    /// worker behaves (module globals persist); but guest state then leaks from one task to
    /// the next. An instance that trapped or timed out is never reused.
    pub fn reuse_instances(mut self, reuse: bool) -> Self {
        self.config.reuse_instances = reuse;
        self
    }

    /// Resource limits for every task: memory, stack, instances and tables, fuel.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Grant a queue to every task.
    pub fn queue(mut self, queue: &Queue) -> Result<Self> {
        self.queues
            .grant(queue)
            .map_err(|message| crate::InputError::new(crate::InputErrorKind::BadConfig, message))?;
        Ok(self)
    }

    /// Grant an environment variable to every task.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Grant a directory to every task.
    pub fn dir(mut self, grant: DirGrant) -> Self {
        self.dirs.push(grant);
        self
    }

    /// Where the workers' stdout and stderr go (default: the host's own).
    pub fn output(mut self, output: Output) -> Self {
        self.config.output = output;
        self
    }

    /// Starts the worker processes.
    ///
    /// # Errors
    ///
    /// When a granted directory does not exist.
    pub fn build(self) -> Result<Pool> {
        for dir in &self.dirs {
            dir.check()?;
        }
        let grants = Grants {
            name: "pool-worker".into(),
            args: vec!["pool-worker".into()],
            env: self.env,
            dirs: self.dirs,
            queues: self.queues.limits(),
            limits: self.config.limits,
        };
        let shared = Arc::new(PoolShared {
            runtime: self.runtime,
            config: self.config,
            grants,
            queues: self.queues,
            state: Mutex::new(PoolState::default()),
            work: Condvar::new(),
            idle: Condvar::new(),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            size: self.processes,
            live: Mutex::new(HashMap::new()),
        });
        let threads = (0..self.processes)
            .map(|index| slot::start(shared.clone(), index))
            .collect::<Result<Vec<_>>>()?;
        Ok(Pool {
            shared,
            threads: Mutex::new(threads),
            size: self.processes,
        })
    }
}

/// A queued task.
pub(crate) struct Task {
    pub(crate) id: u64,
    pub(crate) component: Component,
    /// The compiled file the worker runs (the fuel-metered variant under a fuel limit).
    pub(crate) cwasm: std::path::PathBuf,
    pub(crate) export: String,
    pub(crate) args: Vec<String>,
    pub(crate) attempts: u32,
    /// Tasks of one `map` chunk share this and travel to a worker together.
    pub(crate) chunk: Option<u64>,
    pub(crate) slot: Arc<Slot>,
}

#[derive(Default)]
pub(crate) struct PoolState {
    pub(crate) tasks: VecDeque<Task>,
    /// Tasks submitted and not finished.
    pub(crate) outstanding: usize,
    pub(crate) closed: bool,
    pub(crate) terminating: bool,
    /// Set when workers keep failing at start-up; every task then fails with it.
    pub(crate) broken: Option<String>,
}

/// Totals since the pool started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) workers_started: AtomicU64,
}

/// A snapshot of a pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Tasks that returned.
    pub succeeded: u64,
    /// Tasks that ended with an error.
    pub failed: u64,
    /// Task restarts after a worker died under them.
    pub retried: u64,
    /// Worker processes started, replacements included.
    pub workers_started: u64,
    /// Tasks submitted and not finished.
    pub outstanding: usize,
}

pub(crate) struct PoolShared {
    pub(crate) runtime: Runtime,
    pub(crate) config: PoolConfig,
    pub(crate) grants: Grants,
    pub(crate) queues: QueueGrants,
    pub(crate) state: Mutex<PoolState>,
    /// Signalled when tasks arrive or the pool closes.
    pub(crate) work: Condvar,
    /// Signalled when the last outstanding task finishes.
    pub(crate) idle: Condvar,
    next_id: AtomicU64,
    pub(crate) counters: Counters,
    /// How many worker slots the pool has.
    pub(crate) size: usize,
    /// The signallers of the live worker processes, by slot, for `terminate`.
    pub(crate) live: Mutex<HashMap<usize, Arc<Signaller>>>,
}

impl PoolShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finishes a task: records the result once and updates the counters.
    pub(crate) fn finish(&self, task: Task, result: TaskResult) {
        let counter = if result.is_ok() {
            &self.counters.succeeded
        } else {
            &self.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        task.slot.complete(result);
        let mut state = self.lock();
        state.outstanding -= 1;
        if state.outstanding == 0 {
            self.idle.notify_all();
        }
    }

    /// Puts tasks back at the front of the queue, in order (their worker died).
    pub(crate) fn requeue(&self, tasks: Vec<Task>) {
        if tasks.is_empty() {
            return;
        }
        let mut state = self.lock();
        if state.terminating || state.broken.is_some() {
            let error = match &state.broken {
                Some(reason) => TaskError::Failed(reason.clone()),
                None => TaskError::Terminated,
            };
            drop(state);
            for task in tasks {
                self.finish(task, Err(error.clone()));
            }
            return;
        }
        for task in tasks.into_iter().rev() {
            state.tasks.push_front(task);
        }
        drop(state);
        self.work.notify_all();
    }

    /// Marks the pool broken and fails everything queued with `reason`.
    pub(crate) fn break_pool(&self, reason: String) {
        let mut state = self.lock();
        state.broken = Some(reason.clone());
        let tasks: Vec<Task> = state.tasks.drain(..).collect();
        drop(state);
        self.work.notify_all();
        for task in tasks {
            self.finish(task, Err(TaskError::Failed(reason.clone())));
        }
    }
}

/// A pool of warm worker processes: Python's `multiprocessing.Pool`.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// let runtime = wasmp::Runtime::new()?;
/// let tutorial = runtime.load("tutorial_process.wasm")?;
/// let pool = wasmp::Pool::new(&runtime)?; // one worker per CPU
/// let r1 = pool.apply_async(&tutorial, "func1", ["func1...arg1", "func1...agr2"])?;
/// let r2 = pool.apply_async(&tutorial, "func2", ["func2...arg1...", "func1...agr2..."])?;
/// pool.close();
/// pool.join()?;
/// assert!(r1.successful() == Some(true) && r2.successful() == Some(true));
/// # Ok(()) }
/// ```
///
/// # Caveats
///
/// Dropping a pool terminates it: queued tasks fail with [`TaskError::Terminated`] and the
/// worker processes are killed and reaped.
pub struct Pool {
    shared: Arc<PoolShared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    size: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.size)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pool {
    /// A pool with one worker process per available CPU.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(runtime: &Runtime) -> Result<Pool> {
        Pool::builder(runtime).build()
    }

    /// Settings for a pool.
    pub fn builder(runtime: &Runtime) -> PoolBuilder {
        PoolBuilder {
            runtime: runtime.clone(),
            processes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            config: PoolConfig {
                max_tasks_per_worker: None,
                max_memory_kb: None,
                timeout: None,
                retries: 0,
                initializer: None,
                output: Output::Inherit,
                reuse_instances: false,
                limits: Limits::default(),
            },
            queues: QueueGrants::default(),
            env: Vec::new(),
            dirs: Vec::new(),
        }
    }

    /// How many worker processes the pool keeps.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The pool's counters.
    pub fn stats(&self) -> PoolStats {
        let c = &self.shared.counters;
        PoolStats {
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            workers_started: c.workers_started.load(Ordering::Relaxed),
            outstanding: self.shared.lock().outstanding,
        }
    }

    /// Queues `export(args)` of `component`: Python's `apply_async`.
    ///
    /// # Errors
    ///
    /// An [`InputError`](crate::InputError) when the export or its arguments are wrong
    /// (nothing is queued), or an error when the pool is closed.
    pub fn apply_async<I>(
        &self,
        component: &Component,
        export: &str,
        args: I,
    ) -> Result<AsyncResult>
    where
        I: IntoIterator,
        I::Item: IntoVal,
    {
        let args: Vec<Val> = args.into_iter().map(IntoVal::into_val).collect();
        let encoded = component.encode_args(export, &args)?;
        Ok(self
            .submit(
                vec![(component.clone(), export.to_string(), encoded)],
                false,
            )?
            .pop()
            .expect("one task submitted"))
    }

    /// Runs `export(args)` and waits for it: Python's `apply`.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async), and the task's [`TaskError`].
    pub fn apply<I>(&self, component: &Component, export: &str, args: I) -> Result<Vec<Val>>
    where
        I: IntoIterator,
        I::Item: IntoVal,
    {
        Ok(self.apply_async(component, export, args)?.get()?)
    }

    /// Queues `export(*args)` for every argument list, in chunks of `chunksize` tasks per
    /// trip to a worker (`None`: Python's default, about four chunks per worker).
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async), for the first bad argument list (then
    /// nothing is queued).
    pub fn starmap_async<I, A>(
        &self,
        component: &Component,
        export: &str,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<AsyncResult>>
    where
        I: IntoIterator<Item = A>,
        A: IntoIterator,
        A::Item: IntoVal,
    {
        let calls = items
            .into_iter()
            .map(|args| {
                let args: Vec<Val> = args.into_iter().map(IntoVal::into_val).collect();
                Ok((
                    component.clone(),
                    export.to_string(),
                    component.encode_args(export, &args)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let chunksize = chunksize.unwrap_or_else(|| calls.len().div_ceil(self.size * 4).max(1));
        let mut results = Vec::with_capacity(calls.len());
        let mut calls = calls.into_iter().peekable();
        while calls.peek().is_some() {
            let chunk: Vec<_> = calls.by_ref().take(chunksize).collect();
            results.extend(self.submit(chunk, true)?);
        }
        Ok(results)
    }

    /// `export(*args)` for every argument list, results in order: Python's `starmap`.
    ///
    /// # Errors
    ///
    /// As [`starmap_async`](Self::starmap_async), and the first failed task's error.
    pub fn starmap<I, A>(
        &self,
        component: &Component,
        export: &str,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<Vec<Val>>>
    where
        I: IntoIterator<Item = A>,
        A: IntoIterator,
        A::Item: IntoVal,
    {
        self.starmap_async(component, export, items, chunksize)?
            .iter()
            .map(|r| Ok(r.get()?))
            .collect()
    }

    /// `export(item)` for every item of a one-parameter export: Python's `map`.
    ///
    /// # Errors
    ///
    /// As [`starmap`](Self::starmap).
    pub fn map<I>(
        &self,
        component: &Component,
        export: &str,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<Vec<Val>>>
    where
        I: IntoIterator,
        I::Item: IntoVal,
    {
        self.starmap(
            component,
            export,
            items.into_iter().map(|item| [item]),
            chunksize,
        )
    }

    /// Like [`map`](Self::map), yielding each result as soon as it and those before it
    /// are done: Python's `imap`.
    ///
    /// # Errors
    ///
    /// As [`starmap_async`](Self::starmap_async).
    pub fn imap<I>(
        &self,
        component: &Component,
        export: &str,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<impl Iterator<Item = TaskResult> + use<I>>
    where
        I: IntoIterator,
        I::Item: IntoVal,
    {
        let results = self.map_async_one(component, export, items, chunksize)?;
        Ok(results.into_iter().map(|r| r.get()))
    }

    /// Like [`imap`](Self::imap), yielding `(index, result)` in completion order:
    /// Python's `imap_unordered`.
    ///
    /// # Errors
    ///
    /// As [`starmap_async`](Self::starmap_async).
    pub fn imap_unordered<I>(
        &self,
        component: &Component,
        export: &str,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<impl Iterator<Item = (usize, TaskResult)> + use<I>>
    where
        I: IntoIterator,
        I::Item: IntoVal,
    {
        let results = self.map_async_one(component, export, items, chunksize)?;
        let (sender, receiver) = crossbeam_channel::unbounded();
        let count = results.len();
        for (index, result) in results.iter().enumerate() {
            result.slot().notify(sender.clone(), index);
        }
        Ok(receiver.into_iter().take(count))
    }

    /// One-argument tasks for the lazy iterators, one per chunk unless told otherwise.
    fn map_async_one<I>(
        &self,
        component: &Component,
        export: &str,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<AsyncResult>>
    where
        I: IntoIterator,
        I::Item: IntoVal,
    {
        self.starmap_async(
            component,
            export,
            items.into_iter().map(|item| [item]),
            Some(chunksize.unwrap_or(1)),
        )
    }

    fn submit(
        &self,
        calls: Vec<(Component, String, Vec<String>)>,
        chunked: bool,
    ) -> Result<Vec<AsyncResult>> {
        // Resolved before taking the lock: a fuel-metered variant may need compiling, and a
        // failure must leave nothing half-queued.
        let calls = calls
            .into_iter()
            .map(|(component, export, args)| {
                let cwasm = component.cwasm_for(&self.shared.config.limits)?;
                Ok((component, cwasm, export, args))
            })
            .collect::<Result<Vec<_>>>()?;
        let chunk = chunked.then(|| self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let mut state = self.shared.lock();
        if state.closed || state.terminating {
            bail!("the pool is closed: no new tasks");
        }
        if let Some(reason) = &state.broken {
            bail!("the pool is broken: {reason}");
        }
        let mut results = Vec::with_capacity(calls.len());
        for (component, cwasm, export, args) in calls {
            let slot = Slot::new();
            results.push(AsyncResult::new(slot.clone()));
            state.tasks.push_back(Task {
                id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
                component,
                cwasm,
                export,
                args,
                attempts: 0,
                chunk,
                slot,
            });
            state.outstanding += 1;
        }
        drop(state);
        self.shared.work.notify_all();
        Ok(results)
    }

    /// No more tasks: workers finish what is queued, then exit. Python's `close()`.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }

    /// Waits for the workers to exit: Python's `join()`. Call [`close`](Self::close) (or
    /// [`terminate`](Self::terminate)) first.
    ///
    /// # Errors
    ///
    /// If the pool is still open, as in Python (`join` before `close` would wait forever).
    pub fn join(&self) -> Result<()> {
        {
            let state = self.shared.lock();
            if !state.closed && !state.terminating {
                bail!(
                    "join() called on a pool that is still open: call close() or terminate() first"
                );
            }
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        Ok(())
    }

    /// Stops at once: queued and running tasks fail with [`TaskError::Terminated`], and the
    /// worker processes are killed and reaped. Python's `terminate()`.
    pub fn terminate(&self) {
        let mut state = self.shared.lock();
        state.terminating = true;
        state.closed = true;
        let queued: Vec<Task> = state.tasks.drain(..).collect();
        drop(state);
        self.shared.work.notify_all();
        for task in queued {
            self.shared.finish(task, Err(TaskError::Terminated));
        }
        slot::kill_all(&self.shared);
        let _ = self.join();
    }

    /// Waits until every submitted task has finished (the pool stays open).
    pub fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        let busy = |state: &mut PoolState| state.outstanding > 0;
        let state = self.shared.lock();
        let state = crate::sync::wait_while(&self.shared.idle, state, timeout, busy);
        state.outstanding == 0
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}
