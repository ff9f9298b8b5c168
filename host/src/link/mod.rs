//! The host's live link to a worker process: spawning and signalling it (`spawn`), its
//! socket (`conn`), the embedder's host functions it calls (`host`), the queue calls it makes and the messages it has not read yet (`serve`),
//! the one live-worker type both `Process` and `Pool` drive (`live`), and pre-spawned
//! standby processes (`standby`).
//!
//! Knows nothing of WIT or wasmtime, nor of `Process` or `Pool`: it carries frames.

pub(crate) mod conn;
pub(crate) mod host;
pub(crate) mod live;
pub(crate) mod serve;
pub(crate) mod spawn;
pub(crate) mod standby;
