//! The host's end of one worker's socket: frames out, frames in, and the worker's queue
//! calls and host-function calls answered in between. Shared by a `Process`'s monitor and a pool's worker threads.

use std::io::{BufReader, BufWriter, IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};

use crate::link::host::{Caller, HostCalls};
use crate::link::serve::QueueServer;
use crate::protocol::{
    FrameError, HostCall, LimitHit, MAX_FRAME_LEN, Outcome, PROTOCOL_VERSION, ToHost, ToWorker,
    read_frame, write_frame,
};
use crate::queue::QueueGrants;

/// A worker that has not said hello by then is not a wasmp worker (an embedder's binary
/// that forgot to call `run_worker_if_requested`, for instance).
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Characters of a worker's limit-hit detail the host keeps.
const MAX_LIMIT_DETAIL: usize = 512;

/// What the worker did next.
#[derive(Debug)]
pub(crate) enum Event {
    /// A `Process`'s guest ended.
    Finished(Outcome),
    /// A pool task ended.
    TaskDone {
        id: u64,
        outcome: Outcome,
        rss_kb: u64,
    },
    /// A pool worker finished setting up.
    Ready,
    /// The worker closed the channel (it exited or died).
    Closed,
    /// The deadline passed first.
    Deadline,
}

pub(crate) struct WorkerConn {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    /// The worker's queue calls, and the messages it has not shown it read yet.
    queues: QueueServer,
    name: String,
    pid: u32,
    /// Answers the running component's host-function calls, if it imports any.
    host: Option<Arc<dyn HostCalls>>,
    /// The pool task running, shown to host functions.
    task: Option<u64>,
    /// The limit the worker said its current run hit, until taken.
    limit_hit: Option<LimitHit>,
}

impl WorkerConn {
    pub(crate) fn new(
        name: String,
        pid: u32,
        channel: UnixStream,
        queues: QueueGrants,
    ) -> Result<Self> {
        let writer = channel.try_clone().context("failed to clone a socket")?;
        Ok(WorkerConn {
            reader: BufReader::with_capacity(64 * 1024, channel),
            writer: BufWriter::with_capacity(64 * 1024, writer),
            queues: QueueServer::new(name.clone(), queues),
            name,
            pid,
            host: None,
            task: None,
            limit_hit: None,
        })
    }

    /// What answers the worker's host-function calls from now on (the component it runs
    /// next), and the pool task they belong to.
    pub(crate) fn serve_host_calls(&mut self, host: Option<Arc<dyn HostCalls>>, task: Option<u64>) {
        self.host = host;
        self.task = task;
    }

    /// The limit the worker said its last run hit (it says so just before the run's
    /// `Finished` or `TaskDone`).
    pub(crate) fn take_limit_hit(&mut self) -> Option<LimitHit> {
        self.limit_hit.take()
    }

    /// Runs one host call on this thread (calls are synchronous round trips, so a worker
    /// has at most one outstanding and a flood of them cannot queue up in the host).
    fn answer_host_call(
        &self,
        call: HostCall,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, String> {
        let Some(host) = &self.host else {
            return Err(format!(
                "no host interface {} is provided to this worker",
                call.interface
            ));
        };
        let caller = Caller {
            name: &self.name,
            pid: self.pid,
            task: self.task,
            deadline,
        };
        let socket = self.reader.get_ref();
        let abandoned = || peer_closed(socket) || deadline.is_some_and(|d| Instant::now() >= d);
        host.call(&caller, call, &abandoned)
    }

    /// Sends one message; an error means the worker is gone.
    pub(crate) fn send(&mut self, message: &ToWorker) -> std::io::Result<()> {
        write_frame(&mut self.writer, message).and_then(|()| self.writer.flush())
    }

    /// Sends one message with a file descriptor attached to its first byte (`SCM_RIGHTS`:
    /// the worker gets its own copy of `fd`, whichever read of its buffered reader takes
    /// that byte).
    pub(crate) fn send_with_fd(
        &mut self,
        message: &ToWorker,
        fd: BorrowedFd<'_>,
    ) -> std::io::Result<()> {
        let mut frame = Vec::new();
        write_frame(&mut frame, message)?;
        self.writer.flush()?;
        let fds = [fd];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = sendmsg(
            self.writer.get_ref(),
            &[IoSlice::new(&frame[..1])],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        debug_assert_eq!(sent, 1);
        self.writer.write_all(&frame[sent..])?;
        self.writer.flush()
    }

    /// Waits for the worker's hello. `Ok(false)`: it died first (its exit status says how).
    pub(crate) fn await_hello(&mut self) -> Result<bool> {
        self.set_timeout(Some(HELLO_TIMEOUT))?;
        let hello = read_frame::<ToHost>(&mut self.reader, MAX_FRAME_LEN);
        self.set_timeout(None)?;
        match hello {
            Ok(Some(ToHost::Hello { version, .. })) if version == PROTOCOL_VERSION => Ok(true),
            Ok(Some(ToHost::Hello { version, .. })) => bail!(
                "the worker program speaks protocol version {version}, this host \
                 {PROTOCOL_VERSION}: use a worker program from the same wasmp version"
            ),
            Ok(None) | Err(FrameError::Truncated) => Ok(false),
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(false),
            Ok(Some(other)) => bail!("worker sent {other:?} before saying hello"),
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!(
                    "the worker program did not start as a wasmp worker within \
                     {HELLO_TIMEOUT:?}; if it is your own binary, call \
                     wasmp::run_worker_if_requested() first thing in main, or set \
                     Runtime::builder().worker_program to the wasmp binary"
                )
            }
            Err(e) => Err(e).context("worker broke the protocol"),
        }
    }

    fn set_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .context("failed to set a socket timeout")
    }

    /// Reads frames, answering queue calls, until the worker finishes something, closes
    /// the channel, or `deadline` passes.
    ///
    /// # Errors
    ///
    /// When the worker breaks the protocol; it should then be killed.
    pub(crate) fn next_event(&mut self, deadline: Option<Instant>) -> Result<Event> {
        loop {
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Event::Deadline);
                }
                self.set_timeout(Some(left))?;
            }
            let frame = read_frame::<ToHost>(&mut self.reader, MAX_FRAME_LEN);
            if deadline.is_some() {
                self.set_timeout(None)?;
            }
            if matches!(frame, Ok(Some(_)) | Ok(None) | Err(FrameError::Truncated)) {
                self.queues.acknowledged();
            }
            match frame {
                Ok(Some(ToHost::Call(call))) => {
                    let socket = self.reader.get_ref();
                    let abandoned =
                        || peer_closed(socket) || deadline.is_some_and(|d| Instant::now() >= d);
                    let reply = ToWorker::Reply(self.queues.serve(call, &abandoned));
                    let sent = self.send(&reply).is_ok();
                    let ToWorker::Reply(reply) = reply else {
                        unreachable!("built as a reply above")
                    };
                    self.queues.sent(reply);
                    if !sent {
                        // The worker died waiting for its answer.
                        self.queues.worker_lost();
                        return Ok(Event::Closed);
                    }
                }
                Ok(Some(ToHost::HostCall(call))) => {
                    let reply = ToWorker::HostReply(self.answer_host_call(call, deadline));
                    if self.send(&reply).is_err() {
                        // The worker died waiting for its answer.
                        self.queues.worker_lost();
                        return Ok(Event::Closed);
                    }
                }
                Ok(Some(ToHost::LimitHit(mut hit))) => {
                    // Only ever shown to people: a worker cannot make it long.
                    if let Some((cut, _)) = hit.detail.char_indices().nth(MAX_LIMIT_DETAIL) {
                        hit.detail.truncate(cut);
                    }
                    self.limit_hit = Some(hit);
                }
                Ok(Some(ToHost::Finished(outcome))) => return Ok(Event::Finished(outcome)),
                Ok(Some(ToHost::Ready)) => return Ok(Event::Ready),
                Ok(Some(ToHost::TaskDone {
                    id,
                    outcome,
                    rss_kb,
                })) => {
                    return Ok(Event::TaskDone {
                        id,
                        outcome,
                        rss_kb,
                    });
                }
                Ok(Some(ToHost::Hello { .. })) => bail!("worker said hello twice"),
                Ok(None) => return Ok(Event::Closed),
                // A worker killed in the middle of writing a frame: the partial frame is
                // dropped, and nothing of it reached a queue.
                Err(FrameError::Truncated) => return Ok(Event::Closed),
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    self.queues.worker_lost();
                    return Ok(Event::Closed);
                }
                Err(FrameError::Io(e))
                    if deadline.is_some()
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                {
                    return Ok(Event::Deadline);
                }
                Err(e) => {
                    self.queues.worker_lost();
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
        Ok(0) | Err(_) => false,
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
    }
}
