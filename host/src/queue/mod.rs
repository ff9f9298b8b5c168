//! `Queue`: Python's `multiprocessing.Queue`, owned by the host and granted to workers by
//! name.
//!
//! A queue lives in the host process, so it outlives any worker: a producer can exit right
//! after its last `put` and lose nothing, and a worker killed at any moment cannot wedge
//! it. Workers reach it through `wasmp:worker/queue`; each call travels to the host over
//! the worker's socket and is answered by the thread holding that worker (`serve`).
//!
//! `Queue` reaches its messages through [`backend::QueueBackend`]; the local broker is the
//! first backend. Knows nothing of processes or of the protocol: `link` carries a worker's
//! calls here and answers them.

pub(crate) mod backend;
pub(crate) mod broker;
#[cfg(feature = "cluster")]
pub(crate) mod cluster;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::QueueError;
use crate::events::Events;
use crate::queue::backend::{QueueBackend, QueueStats, Wait};
use crate::queue::broker::QueueCore;

/// Messages larger than this are refused by default (`too-large`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// No queue takes messages larger than this: the channel's frames are sized for it.
pub(crate) const MAX_MESSAGE_SIZE_LIMIT: usize = 64 * 1024 * 1024;

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
    backend: Arc<dyn QueueBackend>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.backend.name())
            .field("stats", &self.backend.stats())
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
        self.max_message_size = bytes.min(MAX_MESSAGE_SIZE_LIMIT);
        self
    }

    /// Opens (or creates) the queue `name` in `cluster` instead of this process: producers
    /// and consumers on every machine of the namespace share it, and it outlives them all
    /// (file storage). FIFO, one getter per message, bounded by the capacity it was first
    /// created with; `close` is for good (the name cannot be reused until the stream
    /// `WASMP_<ns>_Q_<name>` is deleted). Messages are at most 1 MiB (the server's limit).
    ///
    /// # Errors
    ///
    /// A name NATS cannot carry, or the server does not answer.
    #[cfg(feature = "cluster")]
    pub fn cluster(self, cluster: &crate::cluster::Cluster) -> anyhow::Result<Queue> {
        let backend =
            cluster::ClusterQueue::open(cluster, &self.name, self.capacity, self.max_message_size)?;
        Ok(Queue {
            backend: Arc::new(backend),
        })
    }

    /// Creates the queue.
    pub fn build(self) -> Queue {
        Queue {
            backend: Arc::new(QueueCore::new(
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
        self.backend.name()
    }

    /// Appends a message, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] or [`QueueError::TooLarge`].
    pub fn put(&self, message: impl Into<Vec<u8>>) -> Result<(), QueueError> {
        self.backend.put(message.into(), Wait::FOREVER)
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
        self.backend
            .put(message.into(), Wait::timeout(Some(timeout)))
    }

    /// Appends a message if there is room now.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`], and [`QueueError::Full`].
    pub fn try_put(&self, message: impl Into<Vec<u8>>) -> Result<(), QueueError> {
        self.backend.put(message.into(), Wait::now())
    }

    /// Appends messages in order, waiting for room as needed.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`]; an oversize message makes the whole batch fail before any is put.
    pub fn put_many(&self, messages: Vec<Vec<u8>>) -> Result<(), QueueError> {
        self.backend.put_many(messages, Wait::FOREVER)
    }

    /// Takes the oldest message, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed and drained.
    pub fn get(&self) -> Result<Vec<u8>, QueueError> {
        self.backend.get(Wait::FOREVER)
    }

    /// Takes the oldest message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`], and [`QueueError::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, QueueError> {
        self.backend.get(Wait::timeout(Some(timeout)))
    }

    /// Takes the oldest message if there is one.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed and drained.
    pub fn try_get(&self) -> Result<Option<Vec<u8>>, QueueError> {
        match self.backend.get(Wait::now()) {
            Ok(message) => Ok(Some(message)),
            Err(QueueError::Timeout) => Ok(None),
            Err(error) => Err(error),
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
        self.backend.get_many(max, Wait::timeout(timeout))
    }

    /// Closes the queue: no more puts; getters drain what is left, then see
    /// [`QueueError::Closed`]. This is how a reader is told to stop — no `terminate` needed.
    pub fn close(&self) {
        self.backend.close();
    }

    /// How many messages wait.
    pub fn len(&self) -> usize {
        self.backend.len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters: waiting messages and bytes, total puts and gets, capacity, closed.
    pub fn stats(&self) -> QueueStats {
        self.backend.stats()
    }

    /// Messages until the queue is closed and drained.
    pub fn iter(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        std::iter::from_fn(|| self.get().ok())
    }

    pub(crate) fn backend(&self) -> &Arc<dyn QueueBackend> {
        &self.backend
    }
}

/// The queues one worker was granted, by the name the guest uses.
#[derive(Debug, Default, Clone)]
pub(crate) struct QueueGrants {
    queues: HashMap<String, Arc<dyn QueueBackend>>,
}

impl QueueGrants {
    /// Grants `queue`; a different queue under a name already granted is an error.
    pub(crate) fn grant(&mut self, queue: &Queue) -> Result<(), String> {
        match self.queues.get(queue.name()) {
            Some(existing) if !Arc::ptr_eq(existing, queue.backend()) => Err(format!(
                "two different queues named {:?} were granted",
                queue.name()
            )),
            _ => {
                self.queues
                    .insert(queue.name().to_string(), queue.backend().clone());
                Ok(())
            }
        }
    }

    /// Reports the granted queues' closing and draining to `events`.
    pub(crate) fn attach_events(&self, events: &Events) {
        for queue in self.queues.values() {
            queue.attach_events(events);
        }
    }

    /// Whether no queue is granted.
    #[cfg(feature = "cluster")]
    pub(crate) fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The queue granted under `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn QueueBackend>> {
        self.queues.get(name).cloned()
    }

    /// Names and size limits, for the worker to refuse what the host would refuse.
    pub(crate) fn limits(&self) -> Vec<(String, u64)> {
        self.queues
            .iter()
            .map(|(name, queue)| (name.clone(), queue.max_message_size() as u64))
            .collect()
    }
}
