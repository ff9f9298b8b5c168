//! The worker's end of the socket to the host.

use std::io::{BufReader, BufWriter, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};

use crate::protocol::{MAX_FRAME_LEN, ToHost, ToWorker, read_frame, write_frame};

/// Frames to and from the host, buffered in both directions. Clones share the socket: the
/// serving loop and the store's queue imports take turns (the guest runs on the same
/// thread), so the lock is never contended.
#[derive(Clone)]
pub(crate) struct Channel {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    reader: BufReader<FdReader>,
    writer: BufWriter<UnixStream>,
}

/// Reads the socket with `recvmsg`, keeping the file descriptors the host attaches to a
/// frame (`SCM_RIGHTS`): a plain `read` would close them unseen, and the buffered reader
/// may take the byte that carries them in any read.
struct FdReader {
    stream: UnixStream,
    fds: Vec<OwnedFd>,
}

impl Read for FdReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = loop {
            match recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other?,
            }
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                self.fds.extend(fds);
            }
        }
        Ok(received.bytes)
    }
}

impl Channel {
    pub(crate) fn new(stream: UnixStream) -> Result<Self> {
        let writer = stream
            .try_clone()
            .context("failed to clone the channel socket")?;
        let reader = FdReader {
            stream,
            fds: Vec::new(),
        };
        Ok(Channel {
            inner: Arc::new(Mutex::new(Inner {
                reader: BufReader::with_capacity(64 * 1024, reader),
                writer: BufWriter::with_capacity(64 * 1024, writer),
            })),
        })
    }

    /// The oldest file descriptor the host sent along with a frame already read.
    pub(crate) fn take_fd(&self) -> Option<OwnedFd> {
        let mut inner = self.lock();
        let fds = &mut inner.reader.get_mut().fds;
        (!fds.is_empty()).then(|| fds.remove(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn send(&self, message: &ToHost) -> Result<()> {
        let mut inner = self.lock();
        write_frame(&mut inner.writer, message)
            .and_then(|()| inner.writer.flush())
            .context("failed to write to the host")
    }

    /// Queues a frame without sending it yet; [`Channel::flush`] or the next
    /// [`Channel::send`] sends it.
    pub(crate) fn send_buffered(&self, message: &ToHost) -> Result<()> {
        write_frame(&mut self.lock().writer, message).context("failed to write to the host")
    }

    /// Sends what is buffered unless another thread is using the channel.
    pub(crate) fn try_flush(&self) {
        if let Ok(mut inner) = self.inner.try_lock() {
            let _ = inner.writer.flush();
        }
    }

    /// Writes bytes that are not a frame (fault injection only).
    pub(crate) fn write_raw(&self, bytes: &[u8]) {
        let mut inner = self.lock();
        let _ = inner
            .writer
            .write_all(bytes)
            .and_then(|()| inner.writer.flush());
    }

    /// The next frame from the host; `None` once the host closed the channel.
    pub(crate) fn recv(&self) -> Result<Option<ToWorker>> {
        read_frame(&mut self.lock().reader, MAX_FRAME_LEN).context("failed to read from the host")
    }

    /// A call and its answer, under one lock.
    pub(crate) fn call(&self, message: &ToHost) -> Result<Option<ToWorker>> {
        let mut inner = self.lock();
        write_frame(&mut inner.writer, message)
            .and_then(|()| inner.writer.flush())
            .context("failed to write to the host")?;
        read_frame(&mut inner.reader, MAX_FRAME_LEN).context("failed to read from the host")
    }
}
