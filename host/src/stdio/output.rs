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
                // `Stdout::write_all` holds the stream's lock for the whole call, so each
                // tagged line (one call) never interleaves with another thread's.
                None => match stream {
                    Stream::Stdout => tag_lines(pipe, &mut std::io::stdout(), &tag),
                    Stream::Stderr => tag_lines(pipe, &mut std::io::stderr(), &tag),
                },
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

/// Lines longer than this are cut into several tagged lines, so that a guest writing
/// without newlines cannot make the host buffer without bound.
const MAX_TAGGED_LINE: usize = 64 * 1024;

fn tag_lines(pipe: impl Read, out: &mut impl Write, tag: &str) {
    let mut reader = BufReader::with_capacity(MAX_TAGGED_LINE, pipe);
    let mut line = Vec::new();
    loop {
        let (done, used) = match reader.fill_buf() {
            Ok([]) | Err(_) => (true, 0),
            Ok(buf) => {
                let room = MAX_TAGGED_LINE - line.len();
                match buf[..buf.len().min(room)].iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        line.extend_from_slice(&buf[..end]);
                        (false, end + 1)
                    }
                    None => {
                        let take = buf.len().min(room);
                        line.extend_from_slice(&buf[..take]);
                        reader.consume(take);
                        if line.len() < MAX_TAGGED_LINE {
                            continue;
                        }
                        (false, 0)
                    }
                }
            }
        };
        reader.consume(used);
        if done && line.is_empty() {
            return;
        }
        write_tagged(out, tag, &line);
        line.clear();
        if done {
            return;
        }
    }
}

/// Writes one tagged line with the guest's control characters made visible (`\x1b`…):
/// the output of several untrusted workers shares the host's terminal, and an escape
/// sequence could clear it, retitle it or hide lines.
fn write_tagged(out: &mut impl Write, tag: &str, line: &[u8]) {
    let mut tagged = Vec::with_capacity(tag.len() + line.len() + 2);
    tagged.extend_from_slice(tag.as_bytes());
    tagged.push(b' ');
    for &byte in line.strip_suffix(b"\r").unwrap_or(line) {
        if (byte < 0x20 && byte != b'\t') || byte == 0x7f {
            tagged.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        } else {
            tagged.push(byte);
        }
    }
    tagged.push(b'\n');
    // One write per line: lines never interleave.
    let _ = out.write_all(&tagged);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `tag_lines` writes for `input` under the tag `[w 7]`.
    fn tagged(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        tag_lines(input, &mut out, "[w 7]");
        out
    }

    #[test]
    fn each_line_gets_the_tag_and_a_space() {
        assert_eq!(tagged(b"one\ntwo\n"), b"[w 7] one\n[w 7] two\n");
    }

    #[test]
    fn a_last_line_without_a_newline_is_still_written_with_one() {
        assert_eq!(tagged(b"one\npartial"), b"[w 7] one\n[w 7] partial\n");
    }

    #[test]
    fn empty_input_writes_nothing_and_an_empty_line_writes_just_the_tag() {
        assert_eq!(tagged(b""), b"");
        assert_eq!(tagged(b"\n\n"), b"[w 7] \n[w 7] \n");
    }

    #[test]
    fn crlf_loses_its_cr_and_a_lone_cr_is_made_visible() {
        assert_eq!(tagged(b"dos\r\n"), b"[w 7] dos\n");
        assert_eq!(
            tagged(b"50%\r100%\r\n"),
            b"[w 7] 50%\\x0d100%\n",
            "a carriage return inside a line could overwrite the tag"
        );
    }

    #[test]
    fn control_characters_are_escaped_but_tabs_are_kept() {
        assert_eq!(
            tagged(b"\x1b[31mred\x1b[0m\tend\x07\x7f\0\n"),
            b"[w 7] \\x1b[31mred\\x1b[0m\tend\\x07\\x7f\\x00\n"
        );
    }

    #[test]
    fn invalid_utf8_bytes_pass_through_unchanged() {
        assert_eq!(
            tagged(b"caf\xc3\xa9 \xff\xfe\n"),
            b"[w 7] caf\xc3\xa9 \xff\xfe\n"
        );
    }

    #[test]
    fn a_line_longer_than_the_cap_is_cut_into_tagged_pieces() {
        let long = vec![b'x'; MAX_TAGGED_LINE * 2 + 10];
        let mut input = long.clone();
        input.extend_from_slice(b"\nafter\n");
        let out = tagged(&input);
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 5, "three pieces, one more line, and the end");
        for (line, len) in lines.iter().zip([MAX_TAGGED_LINE, MAX_TAGGED_LINE, 10]) {
            let piece = line.strip_prefix(b"[w 7] ").expect("every piece is tagged");
            assert_eq!(piece, &long[..len]);
        }
        assert_eq!(lines[3], b"[w 7] after");
        assert_eq!(lines[4], b"");
    }
}
