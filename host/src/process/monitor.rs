//! The host's side of one `Process`'s life, on a thread of its own: hand over the start
//! message, answer the guest's queue calls, collect the outcome, stop it at its deadline,
//! drain its output, reap it, and report the [`ExitStatus`] to every handle waiting for it.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::Signal;
use tracing::{debug, warn};

use crate::link::conn::{Event, WorkerConn};
use crate::link::spawn::{Signaller, Spawned};
use crate::process::exit::ExitStatus;
use crate::process::{Finished, Shared};
use crate::protocol::{Outcome, StartSpec, ToWorker};
use crate::queue::QueueGrants;
use crate::stdio::output::{Drain, Output, Stream};

/// How long a worker past its deadline gets to trap on its own before it is killed: the
/// epoch trap cannot reach a guest blocked in a host call.
pub(crate) const TIMEOUT_GRACE: Duration = Duration::from_millis(250);

/// Per-process settings the monitor needs.
pub(crate) struct WorkerLink {
    pub(crate) name: String,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
    pub(crate) deadline: Option<Instant>,
    pub(crate) queues: QueueGrants,
}

pub(crate) struct Monitor {
    name: String,
    deadline: Option<Instant>,
    pid: u32,
    child: std::process::Child,
    signaller: Arc<Signaller>,
    conn: WorkerConn,
    drains: [Option<Drain>; 2],
    shared: Arc<Shared>,
}

impl Monitor {
    /// Sends the start message and starts the monitor thread.
    pub(crate) fn start(
        spawned: Spawned,
        mut spec: StartSpec,
        link: WorkerLink,
        shared: Arc<Shared>,
    ) -> Result<JoinHandle<()>> {
        let Spawned {
            child,
            pid,
            signaller,
            channel,
            stdout,
            stderr,
        } = spawned;
        let drains = start_drains(&link.name, pid, link.stdout, link.stderr, stdout, stderr);
        let mut conn = WorkerConn::new(link.name.clone(), channel, link.queues)?;
        // The socket buffers this until the worker reads it: no round trip before `start`
        // returns. If the worker is already dead the monitor finds out below.
        // A host started with fd 0 closed has no stdin to share: the guest reads nothing.
        spec.stdin &= rustix::io::fcntl_getfd(rustix::stdio::stdin()).is_ok();
        let _ = if spec.stdin {
            conn.send_with_fd(&ToWorker::Start(Box::new(spec)), rustix::stdio::stdin())
        } else {
            conn.send(&ToWorker::Start(Box::new(spec)))
        };
        let monitor = Monitor {
            name: link.name,
            deadline: link.deadline,
            pid,
            child,
            signaller,
            conn,
            drains,
            shared,
        };
        std::thread::Builder::new()
            .name(format!("wasmp-monitor-{pid}"))
            .spawn(move || monitor.run())
            .context("failed to spawn a monitor thread")
    }

    fn run(mut self) {
        let mut timed_out = false;
        let (outcome, failure) = match self.converse(&mut timed_out) {
            Ok(outcome) => (outcome, None),
            Err(e) => {
                // A worker that breaks the protocol is not trusted to finish: kill it.
                warn!(name = %self.name, pid = self.pid, "{e:#}");
                let _ = self.signaller.signal(Signal::KILL);
                (None, Some(format!("{e:#}")))
            }
        };
        let [stdout, stderr] = std::mem::take(&mut self.drains);
        let stdout = stdout.and_then(Drain::finish);
        let stderr = stderr.and_then(Drain::finish);
        let os_status = self.child.wait();
        let status = if timed_out {
            ExitStatus::TimedOut
        } else {
            exit_status(outcome.as_ref(), failure, os_status)
        };
        debug!(name = %self.name, pid = self.pid, %status, "worker reaped");
        let results = match outcome {
            Some(Outcome::Returned(results)) => Some(results),
            _ => None,
        };
        self.shared.finish(Finished {
            status: Some(status),
            results,
            stdout,
            stderr,
        });
    }

    /// Talks with the worker until it closes the channel; returns its outcome, if it
    /// reported one. Kills it when it outlives its deadline.
    fn converse(&mut self, timed_out: &mut bool) -> Result<Option<Outcome>> {
        if !self.conn.await_hello()? {
            return Ok(None);
        }
        let kill_at = self.deadline.map(|d| d + TIMEOUT_GRACE);
        let mut outcome = None;
        loop {
            match self.conn.next_event(kill_at)? {
                Event::Finished(done) => outcome = Some(done),
                Event::Closed => return Ok(outcome),
                Event::Deadline => {
                    *timed_out = true;
                    self.signaller.signal(Signal::KILL)?;
                    return Ok(outcome);
                }
                Event::TaskDone { .. } | Event::Ready => {
                    anyhow::bail!("a process worker answered like a pool worker")
                }
            }
        }
    }
}

/// Starts the threads that drain a worker's piped stdout and stderr.
pub(crate) fn start_drains(
    name: &str,
    pid: u32,
    stdout_mode: Output,
    stderr_mode: Output,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
) -> [Option<Drain>; 2] {
    let tag = format!("[{name} {pid}]");
    [
        stdout.map(|pipe| Drain::start(stdout_mode, pipe, Stream::Stdout, tag.clone())),
        stderr.map(|pipe| Drain::start(stderr_mode, pipe, Stream::Stderr, tag)),
    ]
}

/// How a worker ended: what it reported if it did, else what the OS says.
pub(crate) fn exit_status(
    outcome: Option<&Outcome>,
    failure: Option<String>,
    os_status: std::io::Result<std::process::ExitStatus>,
) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match outcome {
        Some(Outcome::Exited(code)) => return ExitStatus::Exited(*code),
        Some(Outcome::Returned(_)) => return ExitStatus::Exited(0),
        Some(Outcome::Trapped(message)) => return ExitStatus::Trapped(message.clone()),
        Some(Outcome::TimedOut) => return ExitStatus::TimedOut,
        Some(Outcome::Failed(message)) => return ExitStatus::Failed(message.clone()),
        None => {}
    }
    if let Some(failure) = failure {
        return ExitStatus::Failed(failure);
    }
    match os_status {
        Ok(status) => match status.signal() {
            Some(signal) => ExitStatus::Signaled(signal),
            None => ExitStatus::Failed(format!(
                "the worker process exited with code {} without reporting how the guest ended \
                 (did it crash, or is the worker program not a wasmp worker?)",
                status.code().unwrap_or(-1)
            )),
        },
        Err(e) => ExitStatus::Failed(format!("failed to reap the worker process: {e}")),
    }
}
