//! Python's `multiprocessing`, rebuilt for WebAssembly.
//!
//! Workers are WASI components (or WASI preview-1 core modules, adapted once); each runs in its own OS child process, sandboxed by
//! wasmtime inside and by the OS outside (no inherited fds, no environment, killed with the
//! host). The names follow Python's: a [`Process`] is started and joined; it gets a pid and
//! its parent's pid.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! // Worker processes re-execute this program: let it become one when asked.
//! wasmp::run_worker_if_requested();
//!
//! let runtime = wasmp::Runtime::new()?;
//! let component = runtime.load("tutorial_process.wasm")?;
//! let mut p = wasmp::Process::new(&component).invoke("func1", ["a", "b"]);
//! p.start()?;
//! println!("{}", p.join()?);
//! # Ok(()) }
//! ```
//!
//! # Worker processes
//!
//! The host spawns its worker program (by default the current executable; the `wasmp` CLI,
//! or a program of yours that calls [`run_worker_if_requested`] first thing in `main`) with
//! `posix_spawn`, hands it a socket, and sends it the compiled component's path. The
//! component is compiled once per content hash into a private cache directory.

#![deny(missing_docs)]

#[cfg(feature = "cluster")]
mod cluster;
mod engine;
mod error;
mod events;
mod exit;
mod grants;
mod hostfn;
#[cfg(test)]
mod layering;
mod link;
mod metrics;
mod pool;
mod process;
mod protocol;
mod queue;
mod runtime;
#[cfg(feature = "cluster")]
mod serve;
mod stdio;
mod sync;
mod value;
mod version;
mod worker;

#[cfg(feature = "cluster")]
pub use cluster::dead::DeadLetter;
#[cfg(feature = "cluster")]
pub use cluster::hosts::{ClusterStatus, HostStatus, QueueStatus};
#[cfg(feature = "cluster")]
pub use cluster::{Cluster, ClusterBuilder, ClusterError, DEFAULT_NAMESPACE, NATS_URL_ENV};
pub use error::{InputError, InputErrorKind, QueueError};
pub use events::{Event, EventRecord};
pub use exit::ExitStatus;
pub use grants::Grants;
pub use grants::dir::{DirGrant, parse_env};
pub use grants::limits::{LIMIT_KEYS, LimitKey, LimitKind, LimitSettings, Limits, parse_duration};
pub use grants::network::Network;
pub use hostfn::{HostCall, HostInterface};
pub use link::spawn::shutdown_workers;
pub use metrics::{Metrics, MetricsServer};
pub use pool::task::{AsyncResult, GetAsError, TaskError, TaskResult};
pub use pool::{Pool, PoolBuilder, PoolStats};
pub use process::{Process, TERMINATE_GRACE};
pub use queue::DEFAULT_MAX_MESSAGE_SIZE;
pub use queue::backend::QueueStats;
pub use queue::{Queue, QueueBuilder};
pub use runtime::component::{Component, MAX_COMPONENT_SIZE};
pub use runtime::{Runtime, RuntimeBuilder};
#[cfg(feature = "cluster")]
pub use serve::{ClusterHost, ClusterHostBuilder, ClusterHostHandle, DEFAULT_ACK_WAIT, HostReport};
pub use stdio::input::Input;
pub use stdio::output::{MAX_CAPTURE, Output};
pub use value::IntoVal;
pub use value::from::{FromVal, TypeMismatch};
pub use value::json::val_to_json;
pub use version::{VERSION, WASMTIME_VERSION, WIT_PACKAGE, WIT_VERSION};
pub use wasmtime::component::Val;

/// Turns this program into a wasmp worker if the host started it as one, and never returns
/// in that case; otherwise returns at once.
///
/// Call it first thing in `main` of any program used as a worker program (the default
/// worker program is the current executable). It must run before anything else opens
/// files or starts threads: the worker closes every inherited file descriptor.
pub fn run_worker_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|arg| arg == protocol::WORKER_MARKER)
    {
        let parent = args
            .next()
            .and_then(|pid| pid.to_str()?.parse().ok())
            .unwrap_or(0);
        let standby = args
            .next()
            .is_some_and(|arg| arg == protocol::STANDBY_MARKER);
        worker::worker_main(parent, standby);
    }
}
