//! A queue kept in the cluster (feature `cluster`): a file-stored JetStream work-queue
//! stream per queue name, so producers and consumers on different machines share it.
//!
//! The stream's `max_msgs` with `discard: new` is the capacity (a put beyond it is refused
//! by the server at once, and waits here as a local put would); `close` seals the stream
//! (puts are refused, getters drain what is left, then see `Closed`); every put carries a
//! message id, so a put retried after a lost acknowledgement is stored once. Getters share
//! one durable consumer, so each message goes to one getter, oldest first; a message is
//! acknowledged before `get` returns it. Unlike the local broker, a message taken for a
//! worker that died before reading it goes back at the *end* of the queue (a stream has no
//! front to put it at).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::{self, AckPolicy, PullConsumer};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use futures_util::StreamExt;

use crate::cluster::Cluster;
use crate::cluster::{names, streams};
use crate::error::QueueError;
use crate::queue::backend::{QueueBackend, QueueStats, Wait};

/// The server's default `max_payload` is 1 MiB; leave room for headers.
const MAX_CLUSTER_MESSAGE: usize = 1024 * 1024 - 4096;

/// How long one long poll for a message lasts before the deadline and `abandoned` are
/// looked at again.
const POLL: Duration = Duration::from_millis(250);

/// How long a getter may hold a message it took before the server gives it to another
/// (it acknowledges at once, so this only matters when it dies in between).
const ACK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Put {
    Stored,
    Full,
    Closed,
}

pub(crate) struct ClusterQueue {
    cluster: Cluster,
    name: String,
    stream: String,
    subject: String,
    capacity: Option<usize>,
    max_message_size: usize,
    consumer: PullConsumer,
    puts: AtomicU64,
    gets: AtomicU64,
}

impl std::fmt::Debug for ClusterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterQueue")
            .field("name", &self.name)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl ClusterQueue {
    /// Opens (or creates) the cluster queue `name`. A queue that exists keeps the
    /// capacity it was created with.
    pub(crate) fn open(
        cluster: &Cluster,
        name: &str,
        capacity: Option<usize>,
        max_message_size: usize,
    ) -> Result<ClusterQueue> {
        names::check("queue", name)?;
        let stream_name = cluster.names().queue_stream(name);
        let subject = cluster.names().queue_subject(name);
        let consumer = cluster.block_on(async {
            let stream = streams::ensure(
                cluster,
                stream::Config {
                    name: stream_name.clone(),
                    subjects: vec![subject.clone()],
                    retention: RetentionPolicy::WorkQueue,
                    storage: StorageType::File,
                    discard: DiscardPolicy::New,
                    max_messages: capacity.map_or(-1, |c| c as i64),
                    duplicate_window: streams::DUPLICATE_WINDOW,
                    ..Default::default()
                },
            )
            .await?;
            let consumer: PullConsumer = stream
                .get_or_create_consumer(
                    "getters",
                    consumer::pull::Config {
                        durable_name: Some("getters".into()),
                        ack_policy: AckPolicy::Explicit,
                        ack_wait: ACK_WAIT,
                        max_deliver: -1,
                        ..Default::default()
                    },
                )
                .await
                .with_context(|| format!("failed to open the cluster queue {name}"))?;
            anyhow::Ok(consumer)
        })?;
        Ok(ClusterQueue {
            cluster: cluster.clone(),
            name: name.to_string(),
            stream: stream_name,
            subject,
            capacity,
            max_message_size: max_message_size.min(MAX_CLUSTER_MESSAGE),
            consumer,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
        })
    }

    /// One publish, retried through reconnects with the same id until `deadline`.
    fn publish(&self, message: &[u8], id: &str) -> Put {
        let payload = bytes::Bytes::copy_from_slice(message);
        let started = Instant::now();
        loop {
            let outcome = self.cluster.block_on(async {
                self.cluster
                    .jetstream()
                    .send_publish(
                        self.subject.clone(),
                        PublishMessage::build()
                            .payload(payload.clone())
                            .message_id(id),
                    )
                    .await?
                    .await
            });
            match outcome {
                Ok(_) => return Put::Stored,
                Err(e) => {
                    let text = format!("{e:?} {e}");
                    if text.contains("10077") || text.contains("maximum messages") {
                        return Put::Full;
                    }
                    if text.contains("10109") || text.contains("sealed") {
                        return Put::Closed;
                    }
                    if started.elapsed() > crate::cluster::PUBLISH_DEADLINE {
                        tracing::error!(queue = %self.name, error = %e, "put failed");
                        return Put::Closed;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn is_sealed(&self) -> bool {
        self.cluster.block_on(async {
            match self.cluster.jetstream().get_stream(&self.stream).await {
                Ok(mut stream) => stream.info().await.is_ok_and(|info| info.config.sealed),
                Err(_) => false,
            }
        })
    }

    /// Takes up to `max` messages, waiting at most `wait` for the first.
    fn take(&self, max: usize, wait: Wait<'_>) -> Result<Vec<Vec<u8>>, QueueError> {
        loop {
            if wait.abandoned.is_some_and(|abandoned| abandoned()) {
                return Err(QueueError::Timeout);
            }
            let remaining = wait
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            let poll = remaining.map_or(POLL, |r| r.min(POLL));
            let taken = self.cluster.block_on(async {
                let mut messages = Vec::new();
                let batch = if poll.is_zero() {
                    self.consumer.fetch().max_messages(max).messages().await
                } else {
                    self.consumer
                        .batch()
                        .max_messages(max)
                        .expires(poll.max(Duration::from_millis(10)))
                        .messages()
                        .await
                };
                let Ok(mut batch) = batch else {
                    return messages;
                };
                let bounded = tokio::time::timeout(poll + Duration::from_secs(2), async {
                    while let Some(Ok(message)) = batch.next().await {
                        // Acknowledged before it is handed out: once to one getter.
                        if message.double_ack().await.is_ok() {
                            messages.push(message.payload.to_vec());
                        }
                        if messages.len() >= max {
                            break;
                        }
                    }
                });
                let _ = bounded.await;
                messages
            });
            if !taken.is_empty() {
                self.gets.fetch_add(taken.len() as u64, Ordering::Relaxed);
                return Ok(taken);
            }
            if self.len() == 0 && self.is_sealed() {
                return Err(QueueError::Closed);
            }
            if wait.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(QueueError::Timeout);
            }
        }
    }
}

impl QueueBackend for ClusterQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn put(&self, message: Vec<u8>, wait: Wait<'_>) -> Result<(), QueueError> {
        self.put_many(vec![message], wait)
    }

    fn put_many(&self, messages: Vec<Vec<u8>>, wait: Wait<'_>) -> Result<(), QueueError> {
        if messages.iter().any(|m| m.len() > self.max_message_size) {
            return Err(QueueError::TooLarge(self.max_message_size as u64));
        }
        for message in messages {
            let id = nuid::next().to_string();
            loop {
                match self.publish(&message, &id) {
                    Put::Stored => break,
                    Put::Closed => return Err(QueueError::Closed),
                    Put::Full => {
                        if wait.deadline.is_some_and(|d| Instant::now() >= d) {
                            return Err(if wait.deadline.is_some() {
                                QueueError::Full
                            } else {
                                QueueError::Timeout
                            });
                        }
                        if wait.abandoned.is_some_and(|abandoned| abandoned()) {
                            return Err(QueueError::Timeout);
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            self.puts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn get(&self, wait: Wait<'_>) -> Result<Vec<u8>, QueueError> {
        Ok(self.take(1, wait)?.remove(0))
    }

    fn get_many(&self, max: usize, wait: Wait<'_>) -> Result<Vec<Vec<u8>>, QueueError> {
        self.take(max.max(1), wait)
    }

    fn requeue_front(&self, messages: Vec<Vec<u8>>) {
        // At the back: a stream has no front (see the module comment).
        for message in messages {
            let id = nuid::next().to_string();
            if !matches!(self.publish(&message, &id), Put::Stored) {
                tracing::error!(queue = %self.name, "a message given back could not be stored");
            }
        }
    }

    fn close(&self) {
        let sealed = self.cluster.block_on(async {
            let mut stream = self.cluster.jetstream().get_stream(&self.stream).await?;
            let mut config = stream.info().await?.config.clone();
            config.sealed = true;
            self.cluster.jetstream().update_stream(config).await?;
            anyhow::Ok(())
        });
        if let Err(e) = sealed {
            tracing::error!(queue = %self.name, error = %format!("{e:#}"), "cannot close the cluster queue");
        }
    }

    fn len(&self) -> usize {
        self.cluster.block_on(async {
            let mut consumer = self.consumer.clone();
            consumer
                .info()
                .await
                .map_or(0, |info| info.num_pending as usize)
        })
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            len: self.len(),
            bytes: 0,
            puts: self.puts.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            capacity: self.capacity,
            closed: self.is_sealed(),
        }
    }
}
