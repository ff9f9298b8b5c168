//! The host's side of one worker's life, on a thread of its own: hand over the start
//! message, answer the guest's queue calls, collect the outcome, drain the output, reap
//! the process, and report the [`ExitStatus`] to every handle waiting for it.

use std::io::{BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::Signal;
use tracing::{debug, warn};

use crate::exit::ExitStatus;
use crate::output::{Drain, Output, Stream};
use crate::process::{Finished, Shared};
use crate::protocol::{
    FrameError, MAX_FRAME_LEN, Outcome, PROTOCOL_VERSION, StartSpec, ToHost, ToWorker, read_frame,
    write_frame,
};
use crate::queue::{InFlight, QueueGrants};
use crate::supervisor::{Signaller, Spawned};

/// A worker that has not said hello by then is not a wasmp worker (an embedder's binary
/// that forgot to call `run_worker_if_requested`, for instance).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a worker past its deadline gets to trap on its own before it is killed.
const TIMEOUT_GRACE: Duration = Duration::from_millis(250);

/// Per-process settings the monitor needs.
pub(crate) struct WorkerLink {
    pub(crate) name: String,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
    pub(crate) deadline: Option<Instant>,
    pub(crate) queues: QueueGrants,
}

pub(crate) struct Monitor {
    link: WorkerLink,
    pid: u32,
    child: std::process::Child,
    signaller: Arc<Signaller>,
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    drains: [Option<Drain>; 2],
    shared: Arc<Shared>,
    timed_out: Arc<AtomicBool>,
}

impl Monitor {
    /// Sends the start message and starts the monitor thread (and a watchdog when the
    /// process has a deadline).
    pub(crate) fn start(
        spawned: Spawned,
        spec: StartSpec,
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
        let tag = format!("[{} {pid}]", link.name);
        let drains = [
            stdout.map(|pipe| Drain::start(link.stdout, pipe, Stream::Stdout, tag.clone())),
            stderr.map(|pipe| Drain::start(link.stderr, pipe, Stream::Stderr, tag)),
        ];
        let mut writer = BufWriter::new(channel.try_clone().context("failed to clone a socket")?);
        // The socket buffers this until the worker reads it: no round trip before `start`
        // returns. If the worker is already dead the monitor finds out below.
        let _ = write_frame(&mut writer, &ToWorker::Start(Box::new(spec)))
            .and_then(|()| writer.flush());
        let timed_out = Arc::new(AtomicBool::new(false));
        if let Some(deadline) = link.deadline {
            watch_deadline(
                deadline,
                shared.clone(),
                signaller.clone(),
                timed_out.clone(),
            );
        }
        let monitor = Monitor {
            link,
            pid,
            child,
            signaller,
            reader: BufReader::with_capacity(64 * 1024, channel),
            writer,
            drains,
            shared,
            timed_out,
        };
        std::thread::Builder::new()
            .name(format!("wasmp-monitor-{pid}"))
            .spawn(move || monitor.run())
            .context("failed to spawn a monitor thread")
    }

    fn run(mut self) {
        let (outcome, failure) = match self.converse() {
            Ok(outcome) => (outcome, None),
            Err(e) => {
                // A worker that breaks the protocol is not trusted to finish: kill it.
                warn!(name = %self.link.name, pid = self.pid, "{e:#}");
                let _ = self.signaller.signal(Signal::KILL);
                (None, Some(format!("{e:#}")))
            }
        };
        let [stdout, stderr] = std::mem::take(&mut self.drains);
        let stdout = stdout.and_then(Drain::finish);
        let stderr = stderr.and_then(Drain::finish);
        let os_status = self.child.wait();
        let status = if self.timed_out.load(Ordering::SeqCst) {
            ExitStatus::TimedOut
        } else {
            exit_status(outcome.as_ref(), failure, os_status)
        };
        debug!(name = %self.link.name, pid = self.pid, %status, "worker reaped");
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
    /// reported one.
    fn converse(&mut self) -> Result<Option<Outcome>> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(HELLO_TIMEOUT))
            .context("failed to set a socket timeout")?;
        match read_frame::<ToHost>(&mut self.reader, MAX_FRAME_LEN) {
            Ok(Some(ToHost::Hello { version, .. })) if version == PROTOCOL_VERSION => {}
            Ok(Some(ToHost::Hello { version, .. })) => anyhow::bail!(
                "the worker program speaks protocol version {version}, this host {PROTOCOL_VERSION}: \
                 use a worker program from the same wasmp version"
            ),
            // Gone before saying hello: how it died (a signal, an exit code) says the rest.
            Ok(None) | Err(FrameError::Truncated) => return Ok(None),
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(None);
            }
            Ok(Some(other)) => anyhow::bail!("worker sent {other:?} before saying hello"),
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                anyhow::bail!(
                    "the worker program did not start as a wasmp worker within {HELLO_TIMEOUT:?}; \
                     if it is your own binary, call wasmp::run_worker_if_requested() first thing \
                     in main, or set Runtime::builder().worker_program to the wasmp binary"
                )
            }
            Err(e) => return Err(e).context("worker broke the protocol"),
        }
        self.reader
            .get_ref()
            .set_read_timeout(None)
            .context("failed to clear a socket timeout")?;
        let mut outcome = None;
        // Messages in the last reply, until the worker shows it read them: its next frame,
        // or a clean EOF. A worker killed with the reply unread leaves unread data in its
        // socket, which Linux reports to us as ECONNRESET: then they go back to the queue.
        let mut in_flight: Option<InFlight> = None;
        loop {
            let frame = read_frame::<ToHost>(&mut self.reader, MAX_FRAME_LEN);
            if matches!(frame, Ok(Some(_)) | Ok(None) | Err(FrameError::Truncated)) {
                in_flight = None;
            }
            match frame {
                Ok(Some(ToHost::Call(call))) => {
                    let socket = self.reader.get_ref();
                    let abandoned = || peer_closed(socket);
                    let (reply, source) = self.link.queues.serve(call, &abandoned);
                    let reply = ToWorker::Reply(reply);
                    let sent = write_frame(&mut self.writer, &reply)
                        .and_then(|()| self.writer.flush())
                        .is_ok();
                    let ToWorker::Reply(reply) = reply else {
                        unreachable!("built as a reply above")
                    };
                    in_flight = source.and_then(|queue| InFlight::from_reply(queue, reply));
                    if !sent {
                        // The worker died waiting for its answer; it is reaped below.
                        if let Some(unread) = in_flight.take() {
                            unread.requeue();
                        }
                        return Ok(outcome);
                    }
                }
                Ok(Some(ToHost::Finished(done))) => outcome = Some(done),
                Ok(Some(ToHost::Hello { .. })) => anyhow::bail!("worker said hello twice"),
                Ok(None) => return Ok(outcome),
                // A worker killed in the middle of writing a frame: the partial frame is
                // dropped, and nothing of it reached a queue.
                Err(FrameError::Truncated) => return Ok(outcome),
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    if let Some(unread) = in_flight.take() {
                        debug!(
                            name = %self.link.name,
                            count = unread.messages.len(),
                            "worker died before reading its messages; requeued"
                        );
                        unread.requeue();
                    }
                    return Ok(outcome);
                }
                Err(e) => {
                    if let Some(unread) = in_flight.take() {
                        unread.requeue();
                    }
                    return Err(e).context("worker broke the protocol");
                }
            }
        }
    }
}

/// Whether the worker closed its end of the socket (it died, or is exiting).
fn peer_closed(socket: &UnixStream) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(socket, PollFlags::RDHUP)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(0) => false,
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
        Err(_) => false,
    }
}

/// Kills the worker if it is still running `TIMEOUT_GRACE` after its deadline: the epoch
/// trap cannot reach a guest blocked in a host call.
fn watch_deadline(
    deadline: Instant,
    shared: Arc<Shared>,
    signaller: Arc<Signaller>,
    timed_out: Arc<AtomicBool>,
) {
    let _ = std::thread::Builder::new()
        .name("wasmp-watchdog".into())
        .spawn(move || {
            let left = (deadline + TIMEOUT_GRACE).saturating_duration_since(Instant::now());
            if shared.wait_status(Some(left)).is_none() {
                timed_out.store(true, Ordering::SeqCst);
                let _ = signaller.signal(Signal::KILL);
            }
        });
}

fn exit_status(
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
