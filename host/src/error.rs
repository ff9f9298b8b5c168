//! Errors callers branch on.
//!
//! Setup and I/O paths use `anyhow` with context; these typed errors ride inside the
//! `anyhow::Error` so that a caller (the CLI choosing an exit code, a plugin host deciding
//! whether to retry) can `downcast_ref` them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What was wrong with the input a user handed to wasmp; nothing was spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    kind: InputErrorKind,
    message: String,
}

/// The class of an [`InputError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputErrorKind {
    /// A file or directory that was named does not exist or cannot be read.
    NotFound,
    /// The bytes are not valid WebAssembly.
    InvalidWasm,
    /// A core module that cannot be made into a component (wasmp adapts WASI preview-1
    /// modules; this one does not fit the adapter, and the message says why).
    NotAComponent,
    /// The component does not export what was asked for (a function, or `wasi:cli/run`).
    MissingExport,
    /// The component imports something wasmp does not provide.
    UnsatisfiedImport,
    /// Arguments of an invocation do not match the export's parameters.
    BadArguments,
    /// A configuration value (a grant, a limit, a manifest entry) is malformed.
    BadConfig,
}

impl InputError {
    pub(crate) fn new(kind: InputErrorKind, message: impl Into<String>) -> Self {
        InputError {
            kind,
            message: message.into(),
        }
    }

    /// An error of the given kind, for front ends (the CLI) that validate their own input.
    pub fn new_kind(kind: InputErrorKind, message: impl Into<String>) -> Self {
        InputError::new(kind, message)
    }

    /// A [`InputErrorKind::BadConfig`] error.
    pub fn new_config(message: impl Into<String>) -> Self {
        InputError::new(InputErrorKind::BadConfig, message)
    }

    /// The class of the problem.
    pub fn kind(&self) -> InputErrorKind {
        self.kind
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InputError {}

/// Shorthand for `Err(InputError::new(kind, message).into())`.
pub(crate) fn input_error<T>(
    kind: InputErrorKind,
    message: impl Into<String>,
) -> anyhow::Result<T> {
    Err(InputError::new(kind, message).into())
}

/// Why a queue operation did not succeed: the host's own `Queue` calls and the answers
/// to a guest's calls (it travels in the protocol as it is, and becomes WIT's `queue-error`
/// inside the worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue is closed (for getters: closed and drained).
    Closed,
    /// The deadline passed first.
    Timeout,
    /// The queue is full and the call may not wait.
    Full,
    /// The message is larger than the queue's limit (given, in bytes).
    TooLarge(u64),
    /// No queue of this name was granted.
    Unknown(String),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Closed => f.write_str("queue is closed"),
            QueueError::Timeout => f.write_str("queue operation timed out"),
            QueueError::Full => f.write_str("queue is full"),
            QueueError::TooLarge(limit) => write!(f, "message is larger than {limit} bytes"),
            QueueError::Unknown(name) => write!(f, "no queue named {name:?} was granted"),
        }
    }
}

impl std::error::Error for QueueError {}
