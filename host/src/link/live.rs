//! One live worker process as the host holds it, whichever handle drives it (a `Process`'s
//! monitor or a pool slot): its pid, the child to reap, the pidfd signaller, the socket, and
//! the threads draining its piped output. One way to kill it, one way to reap it.

use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rustix::process::Signal;

use crate::exit::ExitStatus;
use crate::link::conn::WorkerConn;
use crate::link::spawn::{Signaller, Spawned};
use crate::protocol::Outcome;
use crate::queue::QueueGrants;
use crate::stdio::output::{Drain, Output, Stream};

/// How long a worker past its deadline gets to trap on its own before it is killed: the
/// epoch trap cannot reach a guest blocked in a host call.
pub(crate) const TIMEOUT_GRACE: Duration = Duration::from_millis(250);

/// A worker process with its channel, from spawn to reap. Dropping it without
/// [`reap`](LiveWorker::reap) leaves a zombie until the host exits: every path reaps.
pub(crate) struct LiveWorker {
    name: String,
    pid: u32,
    child: Child,
    signaller: Arc<Signaller>,
    pub(crate) conn: WorkerConn,
    drains: [Option<Drain>; 2],
}

/// What is left of a worker once reaped.
pub(crate) struct Reaped {
    pub(crate) status: ExitStatus,
    /// The process's peak resident memory, from the kernel's accounting of it.
    pub(crate) peak_memory_kb: Option<u64>,
    /// Captured output ([`Output::Capture`]).
    pub(crate) stdout: Option<Vec<u8>>,
    pub(crate) stderr: Option<Vec<u8>>,
}

impl LiveWorker {
    /// Takes over a spawned process: starts draining its piped output (tagged with
    /// `[name pid]`) and opens its channel, answering queue calls from `queues`.
    ///
    /// # Errors
    ///
    /// When the socket cannot be set up; the process is then killed and reaped.
    pub(crate) fn attach(
        spawned: Spawned,
        name: String,
        stdout: Output,
        stderr: Output,
        queues: QueueGrants,
    ) -> Result<LiveWorker> {
        let Spawned {
            mut child,
            pid,
            signaller,
            channel,
            stdout: stdout_pipe,
            stderr: stderr_pipe,
        } = spawned;
        let tag = format!("[{name} {pid}]");
        let drains = [
            stdout_pipe.map(|pipe| Drain::start(stdout, pipe, Stream::Stdout, tag.clone())),
            stderr_pipe.map(|pipe| Drain::start(stderr, pipe, Stream::Stderr, tag)),
        ];
        let conn = match WorkerConn::new(name.clone(), pid, channel, queues) {
            Ok(conn) => conn,
            Err(e) => {
                let _ = signaller.signal(Signal::KILL);
                let _ = child.wait();
                for drain in drains.into_iter().flatten() {
                    drain.finish();
                }
                return Err(e);
            }
        };
        Ok(LiveWorker {
            name,
            pid,
            child,
            signaller,
            conn,
            drains,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The worker's signaller, for handles that stop it from another thread.
    pub(crate) fn signaller(&self) -> &Arc<Signaller> {
        &self.signaller
    }

    /// SIGKILL; a worker already gone is not an error, and a failure to signal is left
    /// for the reap to show (the process then exits on its own or with the host).
    pub(crate) fn kill(&self) {
        let _ = self.signaller.signal(Signal::KILL);
    }

    /// Waits for the process to end (it exited, or was killed), finishes draining its
    /// output and says how it ended: what it `reported` if anything, else `failure` (why
    /// the host gave up on it), else what the OS says.
    pub(crate) fn reap(mut self, reported: Option<&Outcome>, failure: Option<String>) -> Reaped {
        let [stdout, stderr] = std::mem::take(&mut self.drains);
        let stdout = stdout.and_then(Drain::finish);
        let stderr = stderr.and_then(Drain::finish);
        let (os_status, peak_memory_kb) = wait_with_usage(&mut self.child);
        let status = ExitStatus::of_worker(reported, failure, os_status);
        Reaped {
            status,
            peak_memory_kb,
            stdout,
            stderr,
        }
    }
}

/// Waits for `child` and reads its peak resident memory (`ru_maxrss`), which the kernel
/// reports per child only to `wait4`; falls back to a plain wait without it.
fn wait_with_usage(child: &mut Child) -> (std::io::Result<std::process::ExitStatus>, Option<u64>) {
    use std::os::unix::process::ExitStatusExt;
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return (child.wait(), None);
    };
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    loop {
        #[expect(
            unsafe_code,
            reason = "wait4 is the only per-child source of ru_maxrss"
        )]
        // SAFETY: `pid` is our unreaped child (so it names no other process), and both
        // pointers are to live, writable values of the types wait4 expects.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
        if reaped == pid {
            // SAFETY: wait4 filled `usage` when it returned the pid.
            #[expect(unsafe_code, reason = "reading what wait4 wrote")]
            let usage = unsafe { usage.assume_init() };
            let peak = u64::try_from(usage.ru_maxrss).ok();
            return (Ok(std::process::ExitStatus::from_raw(status)), peak);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return (child.wait(), None);
        }
    }
}
