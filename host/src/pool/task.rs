//! A pool task's result handle: Python's `AsyncResult`.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::Sender;
use wasmtime::component::Val;

use crate::value::from::{FromVal, TypeMismatch, from_results};

/// Why a pool task produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The guest trapped; the message has the trap and the wasm backtrace.
    Trapped(String),
    /// The task ran past the pool's time limit and was stopped.
    TimedOut,
    /// The worker process died while running the task (killed, crashed), after this many
    /// attempts (retries are asked for with `PoolBuilder::retries`).
    WorkerLost {
        /// How many times the task was started.
        attempts: u32,
    },
    /// The guest called `exit` instead of returning.
    Exited(i32),
    /// The task could not run (its component failed to load in the worker, the pool's
    /// workers crash at start-up, …).
    Failed(String),
    /// The pool was terminated before the task finished.
    Terminated,
    /// [`AsyncResult::get_timeout`] gave up waiting; the task goes on.
    NotReady,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Trapped(message) => write!(f, "task trapped: {message}"),
            TaskError::TimedOut => f.write_str("task timed out"),
            TaskError::WorkerLost { attempts } => write!(
                f,
                "the worker process running the task died (attempt {attempts})"
            ),
            TaskError::Exited(code) => {
                write!(f, "task exited with code {code} instead of returning")
            }
            TaskError::Failed(message) => write!(f, "task failed: {message}"),
            TaskError::Terminated => f.write_str("the pool was terminated"),
            TaskError::NotReady => f.write_str("the task is not done yet"),
        }
    }
}

impl std::error::Error for TaskError {}

impl TaskError {
    /// A stable one-word name of the failure, for machine-readable records (`wasmp pool`'s
    /// dead letters and events): `trapped`, `timed_out`, `worker_lost`, `exited`, `failed`,
    /// `terminated` or `not_ready`.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskError::Trapped(_) => "trapped",
            TaskError::TimedOut => "timed_out",
            TaskError::WorkerLost { .. } => "worker_lost",
            TaskError::Exited(_) => "exited",
            TaskError::Failed(_) => "failed",
            TaskError::Terminated => "terminated",
            TaskError::NotReady => "not_ready",
        }
    }
}

/// Why [`AsyncResult::get_as`] gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetAsError {
    /// The task failed.
    Task(TaskError),
    /// The task succeeded, but its results are not the type asked for.
    Type(TypeMismatch),
}

impl fmt::Display for GetAsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetAsError::Task(error) => error.fmt(f),
            GetAsError::Type(mismatch) => write!(f, "the task's result: {mismatch}"),
        }
    }
}

impl std::error::Error for GetAsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetAsError::Task(error) => Some(error),
            GetAsError::Type(mismatch) => Some(mismatch),
        }
    }
}

/// What a finished task gives.
pub type TaskResult = Result<Vec<Val>, TaskError>;

type Callback = Box<dyn FnOnce(&TaskResult) + Send>;

/// Filled in exactly once, by whichever pool thread finishes the task.
pub(crate) struct ResultCell {
    state: Mutex<CellState>,
    done: Condvar,
}

#[derive(Default)]
struct CellState {
    result: Option<TaskResult>,
    /// How many times the task was started, once it is done.
    attempts: u32,
    callbacks: Vec<Callback>,
    notify: Option<(Sender<(usize, TaskResult)>, usize)>,
}

impl ResultCell {
    pub(crate) fn new() -> Arc<ResultCell> {
        Arc::new(ResultCell {
            state: Mutex::new(CellState::default()),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CellState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the result of a task started `attempts` times; a second completion is
    /// ignored (and reported), so no result is ever delivered twice.
    pub(crate) fn complete(&self, result: TaskResult, attempts: u32) {
        let mut state = self.lock();
        if state.result.is_some() {
            tracing::error!("a task was completed twice; the second result is dropped");
            return;
        }
        let callbacks = std::mem::take(&mut state.callbacks);
        let notify = state.notify.take();
        state.result = Some(result.clone());
        state.attempts = attempts;
        drop(state);
        self.done.notify_all();
        for callback in callbacks {
            callback(&result);
        }
        if let Some((sender, index)) = notify {
            let _ = sender.send((index, result));
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.lock().result.is_some()
    }

    fn attempts(&self) -> u32 {
        self.lock().attempts
    }

    /// Sends `(index, result)` on `sender` once done (at once if already done).
    pub(crate) fn notify(&self, sender: Sender<(usize, TaskResult)>, index: usize) {
        let mut state = self.lock();
        match &state.result {
            Some(result) => {
                let _ = sender.send((index, result.clone()));
            }
            None => state.notify = Some((sender, index)),
        }
    }

    fn wait(&self, timeout: Option<Duration>) -> Option<TaskResult> {
        let pending = |state: &mut CellState| state.result.is_none();
        let state = self.lock();
        let state = crate::sync::wait_while(&self.done, state, timeout, pending);
        state.result.clone()
    }

    fn add_callback(&self, callback: Callback) {
        let mut state = self.lock();
        match &state.result {
            Some(result) => {
                let result = result.clone();
                drop(state);
                callback(&result);
            }
            None => state.callbacks.push(callback),
        }
    }
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async): Python's `AsyncResult`.
#[derive(Clone)]
pub struct AsyncResult {
    cell: Arc<ResultCell>,
}

impl fmt::Debug for AsyncResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl AsyncResult {
    pub(crate) fn new(cell: Arc<ResultCell>) -> AsyncResult {
        AsyncResult { cell }
    }

    /// Waits for the task and returns what its export returned.
    ///
    /// # Errors
    ///
    /// The [`TaskError`] that ended the task.
    pub fn get(&self) -> TaskResult {
        self.cell.wait(None).expect("waiting without a deadline")
    }

    /// Waits for the task and converts what its export returned: one result as `T`, none
    /// as `()`, several as a tuple (`r.get_as::<u64>()`, `r.get_as::<(String, bool)>()`).
    ///
    /// # Errors
    ///
    /// [`GetAsError::Task`] with the [`TaskError`] that ended the task, or
    /// [`GetAsError::Type`] when the results are not a `T` (nothing is converted loosely: a
    /// `u32` result is not a `u64`).
    pub fn get_as<T: FromVal>(&self) -> Result<T, GetAsError> {
        let values = self.get().map_err(GetAsError::Task)?;
        from_results(&values).map_err(GetAsError::Type)
    }

    /// How many times the task was started: 1, more when it was retried, 0 when it never
    /// ran (the pool was terminated or broken first) or is not done yet.
    pub fn attempts(&self) -> u32 {
        self.cell.attempts()
    }

    /// Waits at most `timeout`: Python's `get(timeout)`.
    ///
    /// # Errors
    ///
    /// [`TaskError::NotReady`] if the task is still running; otherwise as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> TaskResult {
        self.cell
            .wait(Some(timeout))
            .unwrap_or(Err(TaskError::NotReady))
    }

    /// Waits until the task is done, at most `timeout` (forever when `None`); whether it is.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.cell.wait(timeout).is_some()
    }

    /// Whether the task is done.
    pub fn ready(&self) -> bool {
        self.cell.is_done()
    }

    /// Whether the task succeeded; `None` while it runs (Python raises `ValueError`).
    pub fn successful(&self) -> Option<bool> {
        self.cell.wait(Some(Duration::ZERO)).map(|r| r.is_ok())
    }

    /// Calls `callback` with the values once the task succeeds: Python's `callback=`.
    /// It runs on a pool thread (or at once if the task is already done): keep it short.
    pub fn on_success(&self, callback: impl FnOnce(&[Val]) + Send + 'static) -> &Self {
        self.cell.add_callback(Box::new(move |result| {
            if let Ok(values) = result {
                callback(values);
            }
        }));
        self
    }

    /// Calls `callback` with the error if the task fails: Python's `error_callback=`.
    pub fn on_error(&self, callback: impl FnOnce(&TaskError) + Send + 'static) -> &Self {
        self.cell.add_callback(Box::new(move |result| {
            if let Err(error) = result {
                callback(error);
            }
        }));
        self
    }

    /// Calls `callback` with the result, whatever it is, once the task is done.
    pub fn on_done(&self, callback: impl FnOnce(&TaskResult) + Send + 'static) -> &Self {
        self.cell.add_callback(Box::new(callback));
        self
    }

    pub(crate) fn cell(&self) -> &Arc<ResultCell> {
        &self.cell
    }
}
