//! Where a worker's stdout and stderr go.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Captured output is kept up to this many bytes per stream; the rest is counted, not kept.
pub const MAX_CAPTURE: usize = 16 * 1024 * 1024;

/// What happens to a guest's stdout or stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Output {
    /// Written straight to the host's own stream (the bytes the guest wrote, unchanged).
    #[default]
    Inherit,
    /// Copied line by line to the host's stream, each line prefixed with `[name pid] `,
    /// so that the output of several workers can be told apart.
    Tagged,
    /// Kept in memory (up to [`MAX_CAPTURE`] bytes) for [`Process::stdout`] and
    /// [`Process::stderr`].
    ///
    /// [`Process::stdout`]: crate::Process::stdout
    /// [`Process::stderr`]: crate::Process::stderr
    Capture,
    /// Discarded.
    Null,
}

impl Output {
    pub(crate) fn stdio(self) -> Stdio {
        match self {
            Output::Inherit => Stdio::inherit(),
            Output::Tagged | Output::Capture => Stdio::piped(),
            Output::Null => Stdio::null(),
        }
    }
}

/// Which host stream tagged lines go to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// A thread draining one piped stream; joined before the process counts as finished so
/// that every byte is delivered by the time `join` returns.
pub(crate) struct Drain {
    thread: JoinHandle<()>,
    captured: Option<Arc<Mutex<Vec<u8>>>>,
}

impl Drain {
    pub(crate) fn start(
        mode: Output,
        pipe: impl Read + Send + 'static,
        stream: Stream,
        tag: String,
    ) -> Drain {
        let captured = (mode == Output::Capture).then(|| Arc::new(Mutex::new(Vec::new())));
        let sink = captured.clone();
        let thread = std::thread::Builder::new()
            .name("wasmp-output".into())
            .spawn(move || match sink {
                Some(sink) => capture(pipe, &sink),
                None => tag_lines(pipe, stream, &tag),
            })
            .expect("failed to spawn an output thread");
        Drain { thread, captured }
    }

    /// Waits for the stream to close; returns what was captured, if capturing.
    pub(crate) fn finish(self) -> Option<Vec<u8>> {
        let _ = self.thread.join();
        self.captured
            .map(|buf| std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner())))
    }
}

fn capture(mut pipe: impl Read, sink: &Mutex<Vec<u8>>) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut buf = sink.lock().unwrap_or_else(|e| e.into_inner());
                let room = MAX_CAPTURE.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

fn tag_lines(pipe: impl Read, stream: Stream, tag: &str) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let mut tagged = Vec::with_capacity(tag.len() + line.len() + 1);
                tagged.extend_from_slice(tag.as_bytes());
                tagged.push(b' ');
                tagged.extend_from_slice(&line);
                // One write per line under the stream's lock: lines never interleave.
                let _ = match stream {
                    Stream::Stdout => std::io::stdout().lock().write_all(&tagged),
                    Stream::Stderr => std::io::stderr().lock().write_all(&tagged),
                };
            }
        }
    }
}
