//! Length-prefixed frames: a little-endian `u32` byte count, then a postcard message.
//!
//! The length is checked against a limit before anything is allocated, so a corrupted or
//! hostile prefix (`0xFFFF_FFFF`) costs nothing but the error.

use std::fmt;
use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame either side accepts: the largest message a queue takes plus headroom
/// for the call around it.
pub(crate) const MAX_FRAME_LEN: u32 = crate::queue::MAX_MESSAGE_SIZE_LIMIT as u32 + 4096;

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The underlying read failed.
    Io(io::Error),
    /// The peer closed the stream in the middle of a frame.
    Truncated,
    /// The length prefix exceeds the limit.
    TooLarge(u32),
    /// The payload is not a valid message.
    Malformed(postcard::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "channel read failed: {e}"),
            FrameError::Truncated => f.write_str("channel closed in the middle of a frame"),
            FrameError::TooLarge(len) => {
                write!(
                    f,
                    "frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit"
                )
            }
            FrameError::Malformed(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Writes `message` as one frame with a single `write_all`.
pub(crate) fn write_frame(mut out: impl Write, message: &impl Serialize) -> io::Result<()> {
    let mut buf = vec![0u8; 4];
    postcard::to_io(message, &mut buf).map_err(io::Error::other)?;
    let len = u32::try_from(buf.len() - 4)
        .ok()
        .filter(|len| *len <= MAX_FRAME_LEN)
        .ok_or_else(|| io::Error::other(format!("message of {} bytes is too large", buf.len())))?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    out.write_all(&buf)
}

/// Reads one frame. `Ok(None)` means the peer closed the stream cleanly between frames.
pub(crate) fn read_frame<T: DeserializeOwned>(
    mut input: impl Read,
    max_len: u32,
) -> Result<Option<T>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(prefix);
    if len > max_len {
        return Err(FrameError::TooLarge(len));
    }
    let mut payload = vec![0u8; len as usize];
    input.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    postcard::from_bytes(&payload)
        .map(Some)
        .map_err(FrameError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Outcome, ToHost};

    fn encode<M: serde::Serialize>(message: &M) -> Vec<u8> {
        let mut buf = Vec::new();
        write_frame(&mut buf, message).unwrap();
        buf
    }

    #[test]
    fn round_trip() {
        let message = ToHost::Finished(Outcome::Trapped("wasm trap: unreachable".into()));
        let buf = encode(&message);
        let back: ToHost = read_frame(&buf[..], MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn clean_eof_is_none_and_partial_frames_are_truncated() {
        assert!(
            read_frame::<ToHost>(&[][..], MAX_FRAME_LEN)
                .unwrap()
                .is_none()
        );
        let buf = encode(&ToHost::Hello { pid: 7, version: 1 });
        for cut in 1..buf.len() {
            let err = read_frame::<ToHost>(&buf[..cut], MAX_FRAME_LEN).unwrap_err();
            assert!(matches!(err, FrameError::Truncated), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn huge_length_prefix_is_refused_before_allocating() {
        let buf = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = read_frame::<ToHost>(&buf[..], MAX_FRAME_LEN).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(0xffff_ffff)));
    }

    proptest::proptest! {
        /// Any bytes at all: the decoder answers a frame or an error, never panics, and
        /// never allocates more than the limit it was given.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
            let _ = read_frame::<ToHost>(&bytes[..], 1024);
            let _ = read_frame::<crate::protocol::ToWorker>(&bytes[..], 1024);
        }

        /// Queue calls survive the trip whatever their contents.
        #[test]
        fn queue_calls_round_trip(
            queue in "[a-z]{0,12}",
            message in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            block in proptest::bool::ANY,
        ) {
            let call = ToHost::Call(crate::protocol::QueueCall::Put { queue, message, block });
            let buf = encode(&call);
            let back: ToHost = read_frame(&buf[..], MAX_FRAME_LEN).unwrap().unwrap();
            proptest::prop_assert_eq!(back, call);
        }

        /// Host calls and their replies survive the trip whatever their contents.
        #[test]
        fn host_calls_round_trip(
            function in "[a-z-]{0,12}",
            args in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            failed in proptest::bool::ANY,
        ) {
            let call = ToHost::HostCall(crate::protocol::HostCall {
                interface: "app:host/kv@0.1.0".into(),
                function: function.clone(),
                args: args.clone(),
            });
            let back: ToHost = read_frame(&encode(&call)[..], MAX_FRAME_LEN).unwrap().unwrap();
            proptest::prop_assert_eq!(back, call);
            let reply = crate::protocol::ToWorker::HostReply(if failed { Err(function) } else { Ok(args) });
            let back: crate::protocol::ToWorker =
                read_frame(&encode(&reply)[..], MAX_FRAME_LEN).unwrap().unwrap();
            proptest::prop_assert_eq!(back, reply);
        }

        /// A valid frame with bits flipped decodes to something or fails cleanly.
        #[test]
        fn flipped_bits_fail_cleanly(flips in proptest::collection::vec((0usize..64, 0u8..8), 1..8)) {
            let mut buf = encode(&ToHost::Finished(Outcome::Returned(vec!["\"ok\"".into()])));
            for (at, bit) in flips {
                let at = at % buf.len();
                buf[at] ^= 1 << bit;
            }
            let _ = read_frame::<ToHost>(&buf[..], 1 << 20);
        }
    }

    #[test]
    fn garbage_payload_is_malformed_not_a_panic() {
        // Deterministic pseudo-random payloads under a valid prefix.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200u32 {
            let mut buf = len.to_le_bytes().to_vec();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.push(seed as u8);
            }
            match read_frame::<ToHost>(&buf[..], MAX_FRAME_LEN) {
                Ok(_) | Err(FrameError::Malformed(_)) => {}
                Err(other) => panic!("len {len}: unexpected {other}"),
            }
        }
    }
}
