//! What the host and a worker process say to each other over their socket.
//!
//! Knows nothing of wasmtime or of how queues are stored: frames are length-prefixed
//! postcard messages, and every message type is plain data. That keeps the codec testable
//! (and fuzzable) without spawning anything.

mod frame;
mod message;

pub(crate) use frame::{FrameError, MAX_FRAME_LEN, read_frame, write_frame};
pub(crate) use message::{
    Entry, Grants, Outcome, PROTOCOL_VERSION, QueueCall, QueueFault, QueueReply, ServeSpec,
    StartSpec, TaskSpec, ToHost, ToWorker,
};
