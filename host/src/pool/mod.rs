//! `Pool`: warm sandboxed worker processes with Python's `Pool` semantics.
//!
//! The handle turns Python's calls into checked [`backend::Call`]s for a
//! [`backend::PoolBackend`]; the local backend (`local`) runs a [`scheduler::Scheduler`]
//! (the scheduling state, and its invariants) and one `slot` thread per worker process.
//! May not see `process`.
//!
//! Each worker is a long-lived OS process that keeps compiled components loaded and runs
//! every task in a fresh instance. Unlike Python's `Pool`, a worker that dies mid-task
//! fails that task (or retries it) within milliseconds and is replaced, so `get()` never
//! hangs; unlike `ProcessPoolExecutor`, one death does not break the pool.

pub(crate) mod backend;
pub(crate) mod local;
#[cfg(feature = "cluster")]
pub(crate) mod remote;
pub(crate) mod scheduler;
pub(crate) mod slot;
pub(crate) mod task;

use std::time::Duration;

use anyhow::{Result, bail};
use wasmtime::component::Val;

use crate::grants::Grants;
use crate::grants::dir::DirGrant;
use crate::grants::limits::Limits;
use crate::pool::backend::{Call, PoolBackend};
use crate::pool::local::LocalPool;
use crate::pool::task::{AsyncResult, TaskResult};
use crate::queue::Queue;
use crate::runtime::Runtime;
use crate::runtime::component::Component;
use crate::stdio::output::Output;
use crate::value::IntoVal;

/// Settings for a [`Pool`].
#[must_use]
pub struct PoolBuilder {
    runtime: Runtime,
    processes: usize,
    config: PoolConfig,
    /// What every task may reach; a malformed grant is reported by `build`.
    grants: Grants,
    /// Run the tasks on the cluster's hosts instead of local worker processes.
    #[cfg(feature = "cluster")]
    cluster: bool,
}

/// How the pool treats its workers (what they may reach is in [`Grants`]).
#[derive(Clone, Default)]
pub(crate) struct PoolConfig {
    pub(crate) max_tasks_per_worker: Option<u64>,
    pub(crate) max_memory_kb: Option<u64>,
    pub(crate) retries: u32,
    pub(crate) retry_errors: u32,
    pub(crate) initializer: Option<(Component, String, Vec<String>)>,
    pub(crate) output: Output,
    pub(crate) reuse_instances: bool,
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

    /// Stop a task that runs longer than this ([`TaskError::TimedOut`](crate::TaskError::TimedOut)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.grants = self.grants.timeout(timeout);
        self
    }

    /// Run a task again, up to this many times, when its worker process dies under it
    /// (default 0: the task fails with [`TaskError::WorkerLost`](crate::TaskError::WorkerLost)). Traps and timeouts are
    /// not retried by this: see [`retry_errors`](Self::retry_errors).
    pub fn retries(mut self, retries: u32) -> Self {
        self.config.retries = retries;
        self
    }

    /// Also run a task again, up to this many times, when it traps or times out (default
    /// 0: such a task fails at once). Opt in for tasks whose failures can pass (a busy
    /// service, a full disk): each retry waits a jittered back-off, 50–100 ms before the
    /// first and doubling up to 30 s, in a fresh instance. A task's error retries and its
    /// [`retries`](Self::retries) for lost workers are counted separately;
    /// [`AsyncResult::attempts`](crate::AsyncResult::attempts) says how many runs it took.
    pub fn retry_errors(mut self, retries: u32) -> Self {
        self.config.retry_errors = retries;
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
        self.grants = self.grants.limits(limits);
        self
    }

    /// Replaces everything granted so far with `grants` (directories, environment,
    /// queues, limits, the per-task time limit).
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    /// Grant a queue to every task ([`Grants::queue`]).
    pub fn queue(mut self, queue: &Queue) -> Self {
        self.grants = self.grants.queue(queue);
        self
    }

    /// Grant an environment variable to every task ([`Grants::env`]).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.grants = self.grants.env(name, value);
        self
    }

    /// Grant a directory to every task ([`Grants::dir`]).
    pub fn dir(mut self, grant: DirGrant) -> Self {
        self.grants = self.grants.dir(grant);
        self
    }

    /// Where the workers' stdout and stderr go (default: the host's own).
    pub fn output(mut self, output: Output) -> Self {
        self.config.output = output;
        self
    }

    /// Run the tasks on the hosts of the runtime's cluster (`wasmp serve` processes) instead
    /// of worker processes of this one; every method behaves as locally.
    ///
    /// What a task may reach is each host's business: the pool's directories and
    /// environment variables are not sent, only their guest paths and names, and a host
    /// that does not grant them fails the task saying so. Settings of worker processes
    /// (`processes`, `max_tasks_per_worker`, `max_worker_memory`, `initializer`,
    /// `reuse_instances`, `limits`, `output`) and local queues are the hosts': `build` refuses
    /// them here. `retries` and `timeout` travel with each task. Host functions
    /// ([`RuntimeBuilder::host_interface`](crate::RuntimeBuilder::host_interface)) run only
    /// on the submitting host: `build` refuses a cluster pool of a runtime that has any.
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Starts the worker processes.
    ///
    /// # Errors
    ///
    /// A malformed grant, or a granted directory that does not exist
    /// ([`InputError`](crate::InputError)).
    pub fn build(self) -> Result<Pool> {
        #[cfg(feature = "cluster")]
        if self.cluster {
            return self.build_cluster();
        }
        self.grants.check()?;
        let backend = LocalPool::start(self.runtime, self.config, self.grants, self.processes)?;
        Ok(Pool {
            backend: Box::new(backend),
            size: self.processes,
        })
    }
}

#[cfg(feature = "cluster")]
impl PoolBuilder {
    fn build_cluster(self) -> Result<Pool> {
        let host_settings = [
            (
                "max_tasks_per_worker",
                self.config.max_tasks_per_worker.is_some(),
            ),
            ("max_worker_memory", self.config.max_memory_kb.is_some()),
            ("initializer", self.config.initializer.is_some()),
            ("reuse_instances", self.config.reuse_instances),
            ("limits", *self.grants.get_limits() != Limits::default()),
            ("queue", !self.grants.queues().is_empty()),
        ];
        if !self.runtime.host_interfaces().is_empty() {
            return Err(crate::error::InputError::new_config(format!(
                "this runtime serves host interfaces ({}), and host functions run only on the \
                 submitting host: a cluster pool runs its tasks on other hosts, where nothing \
                 provides them; use a local pool, or a runtime without host interfaces",
                self.runtime.host_interfaces().names().join(", ")
            ))
            .into());
        }
        if let Some((name, _)) = host_settings.iter().find(|(_, set)| *set) {
            return Err(crate::error::InputError::new_config(format!(
                "{name} is a setting of each host's worker processes in a cluster pool: give it \
                 to `wasmp serve` on the hosts"
            ))
            .into());
        }
        if self.config.retry_errors > 0 {
            return Err(crate::error::InputError::new_config(
                "retry_errors is not available in a cluster pool: a task that traps there is \
                 final (the server redelivers only tasks whose host died: `retries`)",
            )
            .into());
        }
        let cluster = self.runtime.cluster()?;
        // Sizes `map`'s default chunks as Python does from its worker count.
        let size = cluster
            .status()
            .map_or(0, |status| {
                status.hosts.iter().map(|h| h.slots).sum::<usize>()
            })
            .max(1);
        let backend = remote::RemotePool::start(cluster, self.config.retries, &self.grants)?;
        Ok(Pool {
            backend: Box::new(backend),
            size,
        })
    }
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
    /// Results that came for a task already resolved and were dropped (a cluster pool: a
    /// host that froze past its deadline and woke up after the task ran elsewhere).
    pub duplicates: u64,
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
/// Dropping a pool terminates it: queued tasks fail with [`TaskError::Terminated`](crate::TaskError::Terminated) and the
/// worker processes are killed and reaped.
pub struct Pool {
    backend: Box<dyn PoolBackend>,
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
            config: PoolConfig::default(),
            grants: Grants::new(),
            #[cfg(feature = "cluster")]
            cluster: false,
        }
    }

    /// How many worker processes the pool keeps.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The pool's counters.
    pub fn stats(&self) -> PoolStats {
        self.backend.stats()
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
        let call = Call {
            component: component.clone(),
            export: export.to_string(),
            args: encoded,
            timeout: None,
        };
        Ok(self
            .backend
            .submit(vec![call], false)?
            .pop()
            .expect("one task submitted"))
    }

    /// Queues one call already checked (a cluster host's task).
    #[cfg(feature = "cluster")]
    pub(crate) fn submit_call(&self, call: Call) -> Result<AsyncResult> {
        Ok(self
            .backend
            .submit(vec![call], false)?
            .pop()
            .expect("one task submitted"))
    }

    /// Runs `export(args)` and waits for it: Python's `apply`.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async), and the task's [`TaskError`](crate::TaskError).
    pub fn apply<I>(&self, component: &Component, export: &str, args: I) -> Result<Vec<Val>>
    where
        I: IntoIterator,
        I::Item: IntoVal,
    {
        Ok(self.apply_async(component, export, args)?.get()?)
    }

    /// Queues `export(*args)` for every argument list, in chunks of `chunksize` tasks per
    /// trip to a worker (`None`: Python's default, about four chunks per worker). The
    /// tasks of a chunk run one after another in one instance, as a Python chunk runs in
    /// one interpreter: an instance costs once per chunk, and guest globals persist within
    /// a chunk (never from one chunk, or one `apply_async`, to the next). A task that traps
    /// ends that instance; the chunk's next task gets a fresh one.
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
                Ok(Call {
                    component: component.clone(),
                    export: export.to_string(),
                    args: component.encode_args(export, &args)?,
                    timeout: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let chunksize = chunksize.unwrap_or_else(|| calls.len().div_ceil(self.size * 4).max(1));
        let mut results = Vec::with_capacity(calls.len());
        let mut calls = calls.into_iter().peekable();
        while calls.peek().is_some() {
            let chunk: Vec<_> = calls.by_ref().take(chunksize).collect();
            results.extend(self.backend.submit(chunk, true)?);
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
            result.cell().notify(sender.clone(), index);
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

    /// No more tasks: workers finish what is queued, then exit. Python's `close()`.
    pub fn close(&self) {
        self.backend.close();
    }

    /// Waits for the workers to exit: Python's `join()`. Call [`close`](Self::close) (or
    /// [`terminate`](Self::terminate)) first.
    ///
    /// # Errors
    ///
    /// If the pool is still open, as in Python (`join` before `close` would wait forever).
    pub fn join(&self) -> Result<()> {
        if !self.backend.is_closed() {
            bail!("join() called on a pool that is still open: call close() or terminate() first");
        }
        self.backend.join();
        Ok(())
    }

    /// Stops at once: queued and running tasks fail with [`TaskError::Terminated`](crate::TaskError::Terminated), and the
    /// worker processes are killed and reaped. Python's `terminate()`.
    pub fn terminate(&self) {
        self.backend.terminate();
    }

    /// Waits until every submitted task has finished (the pool stays open).
    pub fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        self.backend.wait_idle(timeout)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}
