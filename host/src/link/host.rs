//! The seam between a worker's socket and the embedder's host functions: `conn` reads a
//! [`HostCall`] frame and hands it to whatever [`HostCalls`] the driving handle bound (the
//! component's host interfaces, typed by the component's own imports), then writes the
//! answer. Knows nothing of wasmtime: arguments and results travel encoded, as bytes.

use std::time::Instant;

use crate::protocol::HostCall;

/// Who is calling: shown to the embedder's closure.
#[derive(Debug, Clone)]
pub(crate) struct Caller<'a> {
    /// The worker's name (`Process-1`, `pool-worker-0`).
    pub(crate) name: &'a str,
    pub(crate) pid: u32,
    /// The pool task running, if the worker is a pool worker.
    pub(crate) task: Option<u64>,
    /// When the host gives up on the worker (its time limit and grace).
    pub(crate) deadline: Option<Instant>,
}

/// Answers host calls for the component a worker is running.
pub(crate) trait HostCalls: Send + Sync {
    /// Runs `call` and returns its encoded results, or why it failed (the guest traps with
    /// that message). `abandoned` says the worker is gone or past its deadline.
    fn call(
        &self,
        caller: &Caller<'_>,
        call: HostCall,
        abandoned: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, String>;
}
