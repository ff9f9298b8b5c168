//! The worker's end of the socket to the host.

use std::io::{BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result};

use crate::protocol::{MAX_FRAME_LEN, ToHost, ToWorker, read_frame, write_frame};

/// Frames to and from the host, buffered in both directions.
pub(crate) struct Channel {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
}

impl Channel {
    pub(crate) fn new(stream: UnixStream) -> Self {
        let writer = stream
            .try_clone()
            .expect("failed to clone the channel socket");
        Channel {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer: BufWriter::with_capacity(64 * 1024, writer),
        }
    }

    pub(crate) fn send(&mut self, message: &ToHost) -> Result<()> {
        write_frame(&mut self.writer, message)
            .and_then(|()| self.writer.flush())
            .context("failed to write to the host")
    }

    /// The next frame from the host; `None` once the host closed the channel.
    pub(crate) fn recv(&mut self) -> Result<Option<ToWorker>> {
        read_frame(&mut self.reader, MAX_FRAME_LEN).context("failed to read from the host")
    }
}
