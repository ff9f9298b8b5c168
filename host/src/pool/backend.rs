//! The seam between a [`Pool`](crate::Pool) handle and whatever runs its tasks.
//!
//! `Pool` turns Python's calls (`apply_async`, `map`, `imap`, …) into [`Call`]s — the
//! arguments already checked against the export's signature — and hands them to a
//! [`PoolBackend`]. The local backend (`local::LocalPool`: worker processes of this host,
//! fed by the [`Scheduler`](super::scheduler::Scheduler)) is the first; a backend that runs
//! tasks on other hosts is a sibling module implementing the same trait.

use std::time::Duration;

use anyhow::Result;

use crate::pool::PoolStats;
use crate::pool::task::AsyncResult;
use crate::runtime::component::Component;

/// One task to run: an export of a component with its arguments (WAVE, type-checked).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) component: Component,
    pub(crate) export: String,
    pub(crate) args: Vec<String>,
    /// This task's time limit, instead of the pool's (a cluster host sets it from the
    /// task's message).
    pub(crate) timeout: Option<Duration>,
}

/// Runs a pool's tasks. Every submitted task's [`AsyncResult`] resolves exactly once,
/// whatever happens to the workers, and `terminate` resolves the rest.
pub(crate) trait PoolBackend: Send + Sync {
    /// Queues the calls in order, all or nothing; `chunked` calls travel and run together.
    fn submit(&self, calls: Vec<Call>, chunked: bool) -> Result<Vec<AsyncResult>>;

    /// No more submissions; the queued tasks still run, then the workers exit.
    fn close(&self);

    /// Whether `close` or `terminate` was called.
    fn is_closed(&self) -> bool;

    /// Waits for the workers to exit (after `close` or `terminate`).
    fn join(&self);

    /// Stops at once: queued and running tasks fail with `Terminated`; the workers are
    /// killed and reaped.
    fn terminate(&self);

    /// Waits until no task is outstanding, at most `timeout`; whether none is.
    fn wait_idle(&self, timeout: Option<Duration>) -> bool;

    /// The pool's counters.
    fn stats(&self) -> PoolStats;
}
