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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;
    use crate::queue::Queue;

    const WORKERS: usize = 3;

    /// What a worker does next, as its host's end of the socket sees it.
    #[derive(Debug, Clone)]
    enum Op {
        /// A non-blocking put of the next sequence number.
        Put(usize),
        /// A non-blocking get.
        Get(usize),
        /// A get of up to `max` messages that does not wait.
        GetMany(usize, u32),
        /// Another frame (any call): the worker read its last reply.
        Ack(usize),
        /// The worker died with its last reply unread (SIGKILL, `ECONNRESET`).
        Kill(usize),
        Close(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let worker = 0..WORKERS;
        prop_oneof![
            4 => worker.clone().prop_map(Op::Put),
            3 => worker.clone().prop_map(Op::Get),
            2 => (worker.clone(), 1..4u32).prop_map(|(w, max)| Op::GetMany(w, max)),
            2 => worker.clone().prop_map(Op::Ack),
            2 => worker.clone().prop_map(Op::Kill),
            1 => worker.prop_map(Op::Close),
        ]
    }

    /// The reference: a FIFO, what each worker holds unread, what was delivered.
    #[derive(Default)]
    struct Model {
        items: VecDeque<u64>,
        capacity: Option<usize>,
        closed: bool,
        unread: [Vec<u64>; WORKERS],
        delivered: Vec<u64>,
        put: Vec<u64>,
    }

    impl Model {
        fn ack(&mut self, w: usize) {
            self.delivered.append(&mut self.unread[w]);
        }

        fn take(&mut self, w: usize, max: usize) -> Vec<u64> {
            let n = max.min(self.items.len());
            let taken: Vec<u64> = self.items.drain(..n).collect();
            self.unread[w] = taken.clone();
            taken
        }
    }

    fn decode(message: &[u8]) -> u64 {
        u64::from_le_bytes(message.try_into().expect("an 8-byte sequence number"))
    }

    fn run(capacity: Option<usize>, ops: &[Op]) -> Result<(), TestCaseError> {
        let mut builder = Queue::builder("jobs");
        if let Some(capacity) = capacity {
            builder = builder.capacity(capacity);
        }
        let queue = builder.build();
        let mut grants = QueueGrants::default();
        grants.grant(&queue).expect("one queue");
        let mut servers: Vec<QueueServer> = (0..WORKERS)
            .map(|w| QueueServer::new(format!("w{w}"), grants.clone()))
            .collect();
        let mut model = Model {
            capacity,
            ..Model::default()
        };
        let never = || false;
        let mut next = 0u64;
        for op in ops {
            let (w, call) = match *op {
                Op::Ack(w) => {
                    servers[w].acknowledged();
                    model.ack(w);
                    continue;
                }
                Op::Kill(w) => {
                    servers[w].worker_lost();
                    for seq in std::mem::take(&mut model.unread[w]).into_iter().rev() {
                        model.items.push_front(seq);
                    }
                    continue;
                }
                Op::Put(w) => {
                    next += 1;
                    let call = QueueCall::Put {
                        queue: "jobs".into(),
                        message: next.to_le_bytes().to_vec(),
                        block: false,
                    };
                    (w, call)
                }
                Op::Get(w) => (
                    w,
                    QueueCall::Get {
                        queue: "jobs".into(),
                        timeout_ms: None,
                        block: false,
                    },
                ),
                Op::GetMany(w, max) => (
                    w,
                    QueueCall::GetMany {
                        queue: "jobs".into(),
                        max,
                        timeout_ms: Some(0),
                    },
                ),
                Op::Close(w) => (
                    w,
                    QueueCall::Close {
                        queue: "jobs".into(),
                    },
                ),
            };
            // A frame arrived: the worker read its last reply (as `conn` does).
            servers[w].acknowledged();
            model.ack(w);
            let expected = match &call {
                QueueCall::Put { .. } => {
                    let full = model.capacity.is_some_and(|c| model.items.len() >= c);
                    if model.closed {
                        QueueReply::Error(QueueError::Closed)
                    } else if full {
                        QueueReply::Error(QueueError::Full)
                    } else {
                        model.items.push_back(next);
                        model.put.push(next);
                        QueueReply::Done
                    }
                }
                QueueCall::Get { .. } if !model.items.is_empty() => {
                    let seq = model.take(w, 1)[0];
                    QueueReply::Message(Some(seq.to_le_bytes().to_vec()))
                }
                QueueCall::Get { .. } if model.closed => QueueReply::Error(QueueError::Closed),
                QueueCall::Get { .. } => QueueReply::Message(None),
                QueueCall::GetMany { max, .. } if !model.items.is_empty() => {
                    let taken = model.take(w, *max as usize);
                    QueueReply::Messages(taken.iter().map(|s| s.to_le_bytes().to_vec()).collect())
                }
                QueueCall::GetMany { .. } if model.closed => QueueReply::Error(QueueError::Closed),
                QueueCall::GetMany { .. } => QueueReply::Error(QueueError::Timeout),
                QueueCall::Close { .. } => {
                    model.closed = true;
                    QueueReply::Done
                }
                _ => unreachable!("not generated"),
            };
            let reply = servers[w].serve(call, &never);
            prop_assert_eq!(&reply, &expected, "after {:?}", op);
            servers[w].sent(reply);
        }
        // Every worker ends cleanly (reads its last reply); a fresh consumer drains the rest.
        for (w, server) in servers.iter_mut().enumerate() {
            server.acknowledged();
            model.ack(w);
        }
        queue.close();
        let mut drain = QueueServer::new("drain".into(), grants);
        loop {
            let reply = drain.serve(
                QueueCall::Get {
                    queue: "jobs".into(),
                    timeout_ms: None,
                    block: false,
                },
                &never,
            );
            match reply {
                QueueReply::Message(Some(message)) => model.delivered.push(decode(&message)),
                QueueReply::Error(QueueError::Closed) => break,
                other => prop_assert!(false, "draining a closed queue: {other:?}"),
            }
        }
        let mut delivered = model.delivered.clone();
        delivered.sort_unstable();
        prop_assert_eq!(
            delivered,
            model.put.clone(),
            "every put that returned Ok, exactly once"
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random puts, gets, acknowledgements, consumer deaths and a close against a
        /// reference model: each reply is the model's, and every put that returned is
        /// delivered exactly once, a dead consumer's unread messages back at the front.
        #[test]
        fn queue_calls_match_the_reference_model(
            capacity in prop::option::of(1..5usize),
            ops in prop::collection::vec(op(), 0..80),
        ) {
            run(capacity, &ops)?;
        }
    }
}
