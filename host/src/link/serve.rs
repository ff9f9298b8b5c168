//! Answering one worker's queue calls, and the delivery guarantee that goes with it.
//!
//! The guarantee, kept here and nowhere else: a message taken from a queue for a worker
//! stays the host's until the worker shows it read the reply carrying it (its next frame, or
//! a clean EOF). A worker that dies with the reply unread — Linux reports the unread data
//! as `ECONNRESET` to the host's end — gets nothing: the messages go back to the front of
//! their queue, in order. A call blocked on behalf of a worker gives up as soon as the worker
//! is gone, so it takes nothing for nobody.
//!
//! Knows nothing of sockets: `conn` reads the frames and tells the [`QueueServer`] what
//! happened to the worker. The queues are reached through their backend, so the guarantee
//! holds for every kind of queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::error::QueueError;
use crate::protocol::{QueueCall, QueueReply};
use crate::queue::QueueGrants;
use crate::queue::backend::{QueueBackend, Wait};

/// Messages handed to a worker in a reply it may not have read yet.
struct InFlight {
    queue: Arc<dyn QueueBackend>,
    messages: Vec<Vec<u8>>,
}

/// Serves one worker's queue calls and keeps what it has not read yet.
pub(crate) struct QueueServer {
    name: String,
    grants: QueueGrants,
    /// The queue the last served reply took its messages from, until it is sent.
    source: Option<Arc<dyn QueueBackend>>,
    in_flight: Option<InFlight>,
}

impl QueueServer {
    /// Serves the worker called `name` (for logs) with the queues it was granted.
    pub(crate) fn new(name: String, grants: QueueGrants) -> QueueServer {
        QueueServer {
            name,
            grants,
            source: None,
            in_flight: None,
        }
    }

    /// Answers one call. A blocking call waits until its own timeout, or until
    /// `abandoned` says nobody waits for the answer any more (the worker is gone or past
    /// its deadline). Hand the reply back with [`sent`](Self::sent) once it is written.
    pub(crate) fn serve(&mut self, call: QueueCall, abandoned: &dyn Fn() -> bool) -> QueueReply {
        let blocking = |timeout_ms: Option<u64>| Wait {
            deadline: timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
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
        let Some(queue) = self.grants.get(name) else {
            return QueueReply::Error(QueueError::Unknown(name.clone()));
        };
        let (reply, took) = match call {
            QueueCall::Put { message, block, .. } => {
                let wait = if block { blocking(None) } else { Wait::now() };
                (done(queue.put(message, wait)), false)
            }
            QueueCall::PutMany { messages, .. } => {
                (done(queue.put_many(messages, blocking(None))), false)
            }
            QueueCall::Get { block: false, .. } => match queue.get(Wait::now()) {
                Ok(message) => (QueueReply::Message(Some(message)), true),
                Err(QueueError::Timeout) => (QueueReply::Message(None), false),
                Err(error) => (QueueReply::Error(error), false),
            },
            QueueCall::Get { timeout_ms, .. } => match queue.get(blocking(timeout_ms)) {
                Ok(message) => (QueueReply::Message(Some(message)), true),
                Err(error) => (QueueReply::Error(error), false),
            },
            QueueCall::GetMany {
                max, timeout_ms, ..
            } => match queue.get_many(max as usize, blocking(timeout_ms)) {
                Ok(messages) => (QueueReply::Messages(messages), true),
                Err(error) => (QueueReply::Error(error), false),
            },
            QueueCall::Close { .. } => {
                queue.close();
                (QueueReply::Done, false)
            }
            QueueCall::Len { .. } => (QueueReply::Len(queue.len() as u64), false),
        };
        self.source = took.then_some(queue);
        reply
    }

    /// The reply [`serve`](Self::serve) gave was written (or failed to be): keeps the
    /// messages it carries (no copy) until the worker shows it read them.
    pub(crate) fn sent(&mut self, reply: QueueReply) {
        let Some(queue) = self.source.take() else {
            return;
        };
        let messages = match reply {
            QueueReply::Message(Some(message)) => vec![message],
            QueueReply::Messages(messages) => messages,
            _ => return,
        };
        self.in_flight = Some(InFlight { queue, messages });
    }

    /// The worker sent another frame or closed its end cleanly: it read the last reply.
    pub(crate) fn acknowledged(&mut self) {
        self.in_flight = None;
    }

    /// The worker is gone without reading the last reply: its messages go back to the
    /// front of their queue, in order.
    pub(crate) fn worker_lost(&mut self) {
        if let Some(unread) = self.in_flight.take() {
            debug!(
                name = %self.name,
                count = unread.messages.len(),
                "worker died before reading its messages; requeued"
            );
            unread.queue.requeue_front(unread.messages);
        }
    }
}

fn done(result: Result<(), QueueError>) -> QueueReply {
    match result {
        Ok(()) => QueueReply::Done,
        Err(error) => QueueReply::Error(error),
    }
}
