//! What the host and a worker process say to each other over their socket, and how a
//! worker program is started (its argv markers).
//!
//! Knows nothing of wasmtime or of how queues are stored: frames are length-prefixed
//! postcard messages, and every message type is plain data (grants and limits travel as
//! they are). That keeps the codec testable (and fuzzable) without spawning anything.

mod frame;
mod message;

pub(crate) use frame::{FrameError, MAX_FRAME_LEN, read_frame, write_frame};
pub(crate) use message::{
    Entry, Grants, GuestLimit, HostCall, LimitHit, MAX_HOST_CALL_LEN, Outcome, PROTOCOL_VERSION,
    QueueCall, QueueReply, ServeSpec, StartSpec, TaskSpec, ToHost, ToWorker,
};

/// The argv[1] that turns a program into a wasmp worker.
pub(crate) const WORKER_MARKER: &str = "__wasmp_worker";

/// The argv[3] of a standby worker: spawned ahead of need, it prepares its runtime while
/// it waits for a start message.
pub(crate) const STANDBY_MARKER: &str = "standby";

/// Whether the host interface registered as `registered` (`app:host/kv`, perhaps with a
/// version) serves the import `import` (`app:host/kv@0.1.0`): the same name, or the same
/// name but for the version when the registered one has none. The host (checking a
/// component) and the worker (linking it) must agree, so the rule lives here.
pub(crate) fn host_interface_serves(registered: &str, import: &str) -> bool {
    import == registered
        || (!registered.contains('@')
            && import
                .split_once('@')
                .is_some_and(|(bare, _)| bare == registered))
}

/// A duration in whole milliseconds, saturating: how time limits travel.
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
