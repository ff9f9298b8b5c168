//! The seam between a [`Queue`](crate::Queue) handle and where its messages live.
//!
//! Every queue operation — the host program's own calls and the calls a worker's guest
//! makes, served in `serve` — goes through [`QueueBackend`]. The local broker
//! (`broker::QueueCore`, messages in this process) is the first implementation; a queue
//! kept elsewhere (a cluster) is a sibling module implementing the same trait, and every
//! guarantee `serve` adds (a message handed to a worker that dies unread goes back to the
//! front) comes with it for free.

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::QueueError;
use crate::events::Events;

/// Where one named queue's messages live, and how they move. Implementations block in
/// `put`/`get` as [`Wait`] says, and keep FIFO order, the capacity, and close-then-drain.
pub(crate) trait QueueBackend: Send + Sync + fmt::Debug {
    /// The name workers use for it.
    fn name(&self) -> &str;

    /// Messages larger than this are refused with [`QueueError::TooLarge`].
    fn max_message_size(&self) -> usize;

    /// Appends a message, waiting for room as `wait` allows: `Full` when it may not wait,
    /// `Timeout` when the wait ran out, `Closed` once closed.
    fn put(&self, message: Vec<u8>, wait: Wait<'_>) -> Result<(), QueueError>;

    /// Appends messages in order; an oversize message fails the whole batch before any is
    /// put.
    fn put_many(&self, messages: Vec<Vec<u8>>, wait: Wait<'_>) -> Result<(), QueueError>;

    /// Takes the oldest message; `Closed` once closed and drained.
    fn get(&self, wait: Wait<'_>) -> Result<Vec<u8>, QueueError>;

    /// Takes between one and `max` messages, waiting only for the first.
    fn get_many(&self, max: usize, wait: Wait<'_>) -> Result<Vec<Vec<u8>>, QueueError>;

    /// Puts messages taken for a consumer that died before reading them back at the front,
    /// in order, whatever the capacity.
    fn requeue_front(&self, messages: Vec<Vec<u8>>);

    /// No more puts; getters drain what is left, then see `Closed`.
    fn close(&self);

    /// Reports this queue's closing and draining to `events` (the first runtime that
    /// grants the queue); a backend without such moments ignores it.
    fn attach_events(&self, events: &Events) {
        let _ = events;
    }

    /// How many messages wait.
    fn len(&self) -> usize;

    /// Counters.
    fn stats(&self) -> QueueStats;
}

/// When a blocking call gives up.
#[derive(Clone, Copy)]
pub(crate) struct Wait<'a> {
    /// `None` waits forever; `Some(now)` does not wait at all.
    pub(crate) deadline: Option<Instant>,
    /// Checked now and then while blocked: true when nobody is waiting for the answer any
    /// more (the worker died), and the call should return without taking anything.
    pub(crate) abandoned: Option<&'a dyn Fn() -> bool>,
}

impl Wait<'_> {
    pub(crate) const FOREVER: Wait<'static> = Wait {
        deadline: None,
        abandoned: None,
    };

    pub(crate) fn now() -> Wait<'static> {
        Wait {
            deadline: Some(Instant::now()),
            abandoned: None,
        }
    }

    pub(crate) fn timeout(timeout: Option<Duration>) -> Wait<'static> {
        Wait {
            deadline: timeout.map(|t| Instant::now() + t),
            abandoned: None,
        }
    }
}

/// Counters of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages waiting.
    pub len: usize,
    /// Bytes waiting.
    pub bytes: usize,
    /// Messages ever put.
    pub puts: u64,
    /// Messages ever taken.
    pub gets: u64,
    /// The capacity in messages, if bounded.
    pub capacity: Option<usize>,
    /// Whether the queue was closed.
    pub closed: bool,
}
