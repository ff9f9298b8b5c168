//! What runs inside a worker process: the only code that touches a wasmtime `Store`.
//!
//! The host re-executes a program (the `wasmp` binary, or an embedder's own binary that calls
//! [`run_worker_if_requested`](crate::run_worker_if_requested) first thing in `main`) with the
//! arguments `__wasmp_worker <parent-pid>` and the channel socket as its stdin. The worker
//! hardens itself, greets the host, receives one [`StartSpec`], runs the guest, reports the
//! [`Outcome`] and exits (or, for a pool, serves jobs until told to shut down).
//!
//! Sees only what the child needs: the protocol, the grants it was sent, the engine
//! configuration and the exit table. Never the host's handles (`process`, `pool`, `queue`,
//! `link`, `runtime`): everything reaches it over the channel.

mod bindings;
mod channel;
mod fault;
mod harden;
mod limiter;
mod pool;
mod run;
mod sandbox;
mod state;
mod timer;

use std::os::unix::net::UnixStream;

use anyhow::Context;

use crate::exit::ExitStatus;
use crate::protocol::{PROTOCOL_VERSION, ToHost, ToWorker};

pub(crate) use state::{PROC_EXIT, PROC_EXIT_INTERFACE, link_host_imports, new_linker};

/// Exit code of a worker that could not even talk to its host: the table's "failed".
const EXIT_NO_HOST: u8 = crate::exit::code::FAILED as u8;

/// Runs the worker: never returns to the caller's `main`.
pub(crate) fn worker_main(parent_pid: u32, standby: bool) -> ! {
    let code = serve(parent_pid, standby).unwrap_or_else(|e| {
        // The host may be gone; stderr is the only place left to say why.
        eprintln!("wasmp worker {}: {e:#}", std::process::id());
        EXIT_NO_HOST
    });
    std::process::exit(i32::from(code))
}

fn serve(parent_pid: u32, standby: bool) -> anyhow::Result<u8> {
    harden::die_with_parent(parent_pid)?;
    let channel: UnixStream = harden::take_channel_from_stdin()?;
    harden::close_inherited_fds(&channel)?;
    harden::lock_down()?;
    let channel = channel::Channel::new(channel)?;
    channel.send(&ToHost::Hello {
        pid: std::process::id(),
        version: PROTOCOL_VERSION,
    })?;
    fault::inject(fault::Point::AfterHello, &channel);
    // A standby worker has time to spare: build the engine and linker now, so that a
    // start costs only loading the component.
    let warm = standby
        .then(|| {
            let _ = sandbox::prepare(false);
            run::Runner::new(&crate::grants::limits::Limits::default()).ok()
        })
        .flatten();
    match channel.recv()? {
        Some(ToWorker::Start(spec)) => {
            harden::limit_memory(&spec.grants.limits)?;
            if spec.stdin {
                let stdin = channel
                    .take_fd()
                    .context("the host's stdin did not arrive with the start message")?;
                harden::replace_stdin(&stdin)?;
            }
            let outcome = run::run_guest(&spec, &channel, warm)?;
            // The worker process's own exit code mirrors the guest's, so that even a host
            // that lost the final frame can tell success from failure.
            let code = ExitStatus::from(&outcome).exit_byte();
            channel.send(&ToHost::Finished(outcome))?;
            Ok(code)
        }
        Some(ToWorker::Serve(spec)) => {
            harden::limit_memory(&spec.grants.limits)?;
            pool::serve(&spec, &channel)
        }
        Some(other) => anyhow::bail!("expected a start message, got {other:?}"),
        None => Ok(EXIT_NO_HOST),
    }
}
