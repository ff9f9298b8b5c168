//! `Queue`: Python's `multiprocessing.Queue`, owned by the host and granted to workers by
//! name.
//!
//! A queue lives in the host process, so it outlives any worker: a producer can exit right
//! after its last `put` and lose nothing, and a worker killed at any moment cannot wedge
//! it. Workers reach it through `wasmp:worker/queue`; each call travels to the host over
//! the worker's socket and is answered by the worker's monitor thread.

pub(crate) mod broker;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{MAX_FRAME_LEN, QueueCall, QueueFault, QueueReply};
use crate::queue::broker::{DEFAULT_MAX_MESSAGE_SIZE, QueueCore, QueueStats, Wait};

/// Why a queue operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl From<QueueFault> for QueueError {
    fn from(fault: QueueFault) -> Self {
        match fault {
            QueueFault::Closed => QueueError::Closed,
            QueueFault::Timeout => QueueError::Timeout,
            QueueFault::Full => QueueError::Full,
            QueueFault::TooLarge(limit) => QueueError::TooLarge(limit),
            QueueFault::Unknown(name) => QueueError::Unknown(name),
        }
    }
}

/// A named FIFO queue of byte messages, shared by the host program and the workers it is
/// granted to ([`Process::queue`](crate::Process::queue)). Cheap to clone: clones are the
/// same queue.
///
/// # Examples
///
/// ```
/// let q = wasmp::Queue::bounded("jobs", 100);
/// q.put("A").unwrap();
/// q.close();
/// assert_eq!(q.get().unwrap(), b"A");
/// assert_eq!(q.get(), Err(wasmp::QueueError::Closed));
/// ```
#[derive(Clone)]
pub struct Queue {
    core: Arc<QueueCore>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.core.name())
            .field("stats", &self.core.stats())
            .finish()
    }
}

/// Settings for a [`Queue`].
#[derive(Debug, Clone)]
#[must_use]
pub struct QueueBuilder {
    name: String,
    capacity: Option<usize>,
    max_message_size: usize,
}

impl QueueBuilder {
    /// At most this many messages wait; `put` blocks while the queue is full.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// Messages larger than this are refused with [`QueueError::TooLarge`] (default
    /// 16 MiB; at most 64 MiB, the channel's frame limit).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.min(MAX_FRAME_LEN as usize - 4096);
        self
    }

    /// Creates the queue.
    pub fn build(self) -> Queue {
        Queue {
            core: Arc::new(QueueCore::new(
                self.name,
                self.capacity,
                self.max_message_size,
            )),
        }
    }
}

impl Queue {
    /// An unbounded queue.
    pub fn new(name: impl Into<String>) -> Queue {
        Queue::builder(name).build()
    }

    /// A queue holding at most `capacity` messages: producers wait while it is full.
    pub fn bounded(name: impl Into<String>, capacity: usize) -> Queue {
        Queue::builder(name).capacity(capacity).build()
    }

    /// Settings for a queue named `name`.
    pub fn builder(name: impl Into<String>) -> QueueBuilder {
        QueueBuilder {
            name: name.into(),
            capacity: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// The name workers use for it.
    pub fn name(&self) -> &str {
        self.core.name()
    }

    /// Appends a message, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] or [`QueueError::TooLarge`].
    pub fn put(&self, message: impl Into<Vec<u8>>) -> Result<(), QueueError> {
        Ok(self.core.put(message.into(), Wait::FOREVER)?)
    }

    /// Appends a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`], and [`QueueError::Timeout`].
    pub fn put_timeout(
        &self,
        message: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        Ok(self
            .core
            .put(message.into(), Wait::timeout(Some(timeout)))?)
    }

    /// Appends a message if there is room now.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`], and [`QueueError::Full`].
    pub fn try_put(&self, message: impl Into<Vec<u8>>) -> Result<(), QueueError> {
        Ok(self.core.put(message.into(), Wait::now())?)
    }

    /// Appends messages in order, waiting for room as needed.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`]; an oversize message makes the whole batch fail before any is put.
    pub fn put_many(&self, messages: Vec<Vec<u8>>) -> Result<(), QueueError> {
        Ok(self.core.put_many(messages, Wait::FOREVER)?)
    }

    /// Takes the oldest message, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed and drained.
    pub fn get(&self) -> Result<Vec<u8>, QueueError> {
        Ok(self.core.get(Wait::FOREVER)?)
    }

    /// Takes the oldest message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`], and [`QueueError::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, QueueError> {
        Ok(self.core.get(Wait::timeout(Some(timeout)))?)
    }

    /// Takes the oldest message if there is one.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed and drained.
    pub fn try_get(&self) -> Result<Option<Vec<u8>>, QueueError> {
        match self.core.get(Wait::now()) {
            Ok(message) => Ok(Some(message)),
            Err(QueueFault::Timeout) => Ok(None),
            Err(fault) => Err(fault.into()),
        }
    }

    /// Takes up to `max` messages, waiting (up to `timeout`; forever when `None`) only for
    /// the first.
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    pub fn get_many(
        &self,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<Vec<u8>>, QueueError> {
        Ok(self.core.get_many(max, Wait::timeout(timeout))?)
    }

    /// Closes the queue: no more puts; getters drain what is left, then see
    /// [`QueueError::Closed`]. This is how a reader is told to stop — no `terminate` needed.
    pub fn close(&self) {
        self.core.close();
    }

    /// How many messages wait.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters: waiting messages and bytes, total puts and gets, capacity, closed.
    pub fn stats(&self) -> QueueStats {
        self.core.stats()
    }

    /// Messages until the queue is closed and drained.
    pub fn iter(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        std::iter::from_fn(|| self.get().ok())
    }

    pub(crate) fn core(&self) -> &Arc<QueueCore> {
        &self.core
    }
}

/// The queues one worker was granted, and how its calls are answered.
#[derive(Default, Clone)]
pub(crate) struct QueueGrants {
    queues: HashMap<String, Arc<QueueCore>>,
}

/// Messages handed to a worker in a reply it may not have read yet.
pub(crate) struct InFlight {
    pub(crate) queue: Arc<QueueCore>,
    pub(crate) messages: Vec<Vec<u8>>,
}

impl InFlight {
    /// Takes the messages back out of a sent reply (no copy), to keep until the worker
    /// shows it read them.
    pub(crate) fn from_reply(queue: Arc<QueueCore>, reply: QueueReply) -> Option<InFlight> {
        let messages = match reply {
            QueueReply::Message(Some(message)) => vec![message],
            QueueReply::Messages(messages) => messages,
            _ => return None,
        };
        Some(InFlight { queue, messages })
    }

    /// The worker died without reading the reply: the messages go back to the front.
    pub(crate) fn requeue(self) {
        self.queue.requeue_front(self.messages);
    }
}

impl QueueGrants {
    /// Grants `queue`; a different queue under a name already granted is an error.
    pub(crate) fn grant(&mut self, queue: &Queue) -> Result<(), String> {
        match self.queues.get(queue.name()) {
            Some(existing) if !Arc::ptr_eq(existing, queue.core()) => Err(format!(
                "two different queues named {:?} were granted",
                queue.name()
            )),
            _ => {
                self.queues
                    .insert(queue.name().to_string(), queue.core().clone());
                Ok(())
            }
        }
    }

    /// Names and size limits, for the worker to refuse what the host would refuse.
    pub(crate) fn limits(&self) -> Vec<(String, u64)> {
        self.queues
            .iter()
            .map(|(name, core)| (name.clone(), core.max_message_size() as u64))
            .collect()
    }

    /// Answers one call, with the queue the reply's messages (if any) were taken from.
    pub(crate) fn serve(
        &self,
        call: QueueCall,
        abandoned: &dyn Fn() -> bool,
    ) -> (QueueReply, Option<Arc<QueueCore>>) {
        let blocking = |timeout_ms: Option<u64>| Wait {
            deadline: timeout_ms.map(|ms| std::time::Instant::now() + Duration::from_millis(ms)),
            abandoned: Some(abandoned),
        };
        let name = match &call {
            QueueCall::Put { queue, .. }
            | QueueCall::PutMany { queue, .. }
            | QueueCall::Get { queue, .. }
            | QueueCall::GetMany { queue, .. }
            | QueueCall::Close { queue }
            | QueueCall::Len { queue } => queue,
        };
        let Some(core) = self.queues.get(name).cloned() else {
            return (QueueReply::Error(QueueFault::Unknown(name.clone())), None);
        };
        let source = Some(core.clone());
        match call {
            QueueCall::Put { message, block, .. } => {
                let wait = if block { blocking(None) } else { Wait::now() };
                (done(core.put(message, wait)), None)
            }
            QueueCall::PutMany { messages, .. } => {
                (done(core.put_many(messages, blocking(None))), None)
            }
            QueueCall::Get { block: false, .. } => match core.get(Wait::now()) {
                Ok(message) => (QueueReply::Message(Some(message)), source),
                Err(QueueFault::Timeout) => (QueueReply::Message(None), None),
                Err(fault) => (QueueReply::Error(fault), None),
            },
            QueueCall::Get { timeout_ms, .. } => match core.get(blocking(timeout_ms)) {
                Ok(message) => (QueueReply::Message(Some(message)), source),
                Err(fault) => (QueueReply::Error(fault), None),
            },
            QueueCall::GetMany {
                max, timeout_ms, ..
            } => match core.get_many(max as usize, blocking(timeout_ms)) {
                Ok(messages) => (QueueReply::Messages(messages), source),
                Err(fault) => (QueueReply::Error(fault), None),
            },
            QueueCall::Close { .. } => {
                core.close();
                (QueueReply::Done, None)
            }
            QueueCall::Len { .. } => (QueueReply::Len(core.len() as u64), None),
        }
    }
}

fn done(result: Result<(), QueueFault>) -> QueueReply {
    match result {
        Ok(()) => QueueReply::Done,
        Err(fault) => QueueReply::Error(fault),
    }
}
