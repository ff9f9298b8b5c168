//! Host-owned named queues: Python's `multiprocessing.Queue` for wasm workers.
//!
//! The queue lives in the host, not in the guest, so it outlives any worker and is shared by
//! workers in different OS processes. A worker reaches only the queues it was granted.

use std::fmt;
use std::time::Duration;

use crate::bindings::wasmp::worker::queue as raw;

/// Why a queue call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is closed (for getters: closed and drained).
    Closed,
    /// The deadline passed first.
    Timeout,
    /// The queue is full and the call may not wait.
    Full,
    /// The message exceeds the host's limit (given in bytes).
    TooLarge(u64),
    /// This worker was not granted a queue of that name.
    Unknown(String),
}

impl From<raw::QueueError> for QueueError {
    fn from(e: raw::QueueError) -> Self {
        match e {
            raw::QueueError::Closed => QueueError::Closed,
            raw::QueueError::Timeout => QueueError::Timeout,
            raw::QueueError::Full => QueueError::Full,
            raw::QueueError::TooLarge(limit) => QueueError::TooLarge(limit),
            raw::QueueError::Unknown(name) => QueueError::Unknown(name),
        }
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Closed => f.write_str("queue is closed"),
            QueueError::Timeout => f.write_str("queue call timed out"),
            QueueError::Full => f.write_str("queue is full"),
            QueueError::TooLarge(limit) => write!(f, "message is larger than {limit} bytes"),
            QueueError::Unknown(name) => write!(f, "no queue named {name:?} was granted"),
        }
    }
}

impl std::error::Error for QueueError {}

/// A named queue in the host. Cheap to create: it is only the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    name: String,
}

impl Queue {
    /// Refers to the queue `name`; whether it was granted is checked on first use.
    pub fn new(name: impl Into<String>) -> Self {
        Queue { name: name.into() }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends a message, blocking while the queue is full.
    pub fn put(&self, message: impl AsRef<[u8]>) -> Result<(), QueueError> {
        Ok(raw::put(&self.name, message.as_ref())?)
    }

    /// Appends a message, or answers [`QueueError::Full`] at once.
    pub fn try_put(&self, message: impl AsRef<[u8]>) -> Result<(), QueueError> {
        Ok(raw::try_put(&self.name, message.as_ref())?)
    }

    /// Appends several messages in order with one host call.
    pub fn put_many(&self, messages: &[Vec<u8>]) -> Result<(), QueueError> {
        Ok(raw::put_many(&self.name, messages)?)
    }

    /// Takes the oldest message, waiting as long as it takes.
    ///
    /// Answers [`QueueError::Closed`] once the queue is closed and drained.
    pub fn get(&self) -> Result<Vec<u8>, QueueError> {
        Ok(raw::get(&self.name, None)?)
    }

    /// Takes the oldest message, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, QueueError> {
        Ok(raw::get(&self.name, Some(millis(timeout)))?)
    }

    /// Takes the oldest message if there is one, without waiting.
    pub fn try_get(&self) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(raw::try_get(&self.name)?)
    }

    /// Takes up to `max` messages with one host call, waiting (up to `timeout`, or without
    /// limit when `None`) only for the first.
    pub fn get_many(
        &self,
        max: u32,
        timeout: Option<Duration>,
    ) -> Result<Vec<Vec<u8>>, QueueError> {
        Ok(raw::get_many(&self.name, max, timeout.map(millis))?)
    }

    /// Closes the queue: no more puts; getters drain what is left, then see `Closed`.
    pub fn close(&self) -> Result<(), QueueError> {
        Ok(raw::close(&self.name)?)
    }

    /// How many messages wait in the queue.
    pub fn len(&self) -> Result<u64, QueueError> {
        Ok(raw::len(&self.name)?)
    }

    /// Whether no message waits in the queue.
    pub fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len()? == 0)
    }

    /// Iterates over messages until the queue is closed and drained.
    ///
    /// Any other error (an ungranted queue, for instance) ends the iteration too; use
    /// [`Queue::get`] to see it.
    pub fn iter(&self) -> Iter<'_> {
        Iter { queue: self }
    }
}

impl<'a> IntoIterator for &'a Queue {
    type Item = Vec<u8>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Messages of a [`Queue`] until it is closed and drained; see [`Queue::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    queue: &'a Queue,
}

impl Iterator for Iter<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        self.queue.get().ok()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
