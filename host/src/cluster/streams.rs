//! The streams and the consumer a namespace uses, created on first use by whichever side
//! comes first (a host or a submitting pool), with the same settings.
//!
//! Every stream is file-stored, so a NATS server killed and restarted loses nothing it
//! acknowledged. The task stream is a work queue: a task leaves it only when a host acks
//! it (after its result is stored) or terminates it (dead letter).

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::{self, AckPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};

use crate::cluster::Cluster;

/// How long the server remembers a message id to drop a re-sent duplicate.
pub(crate) const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long results wait for a submitter that went away.
const RESULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Tasks taken by hosts and not yet acknowledged, at most (so one stuck host cannot hold
/// the whole queue).
const MAX_ACK_PENDING: i64 = 10_000;

/// Opens the stream `config` names, creating it with `config` the first time.
pub(crate) async fn ensure(cluster: &Cluster, config: stream::Config) -> Result<stream::Stream> {
    let name = config.name.clone();
    cluster
        .jetstream()
        .get_or_create_stream(config)
        .await
        .with_context(|| format!("failed to open the JetStream stream {name}"))
}

/// The work queue of tasks.
pub(crate) async fn tasks(cluster: &Cluster) -> Result<stream::Stream> {
    let names = cluster.names();
    ensure(
        cluster,
        stream::Config {
            name: names.task_stream(),
            subjects: vec![names.task_subjects()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            discard: DiscardPolicy::New,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        },
    )
    .await
}

/// The results of every pool of the namespace.
pub(crate) async fn results(cluster: &Cluster) -> Result<stream::Stream> {
    let names = cluster.names();
    ensure(
        cluster,
        stream::Config {
            name: names.result_stream(),
            subjects: vec![names.result_subjects()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_age: RESULT_MAX_AGE,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        },
    )
    .await
}

/// The dead letters, kept until retried or purged.
pub(crate) async fn dead(cluster: &Cluster) -> Result<stream::Stream> {
    let names = cluster.names();
    ensure(
        cluster,
        stream::Config {
            name: names.dead_stream(),
            subjects: vec![names.dead_subject()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        },
    )
    .await
}

/// The consumer every host pulls tasks from. `ack_wait` is how long a host may stay
/// silent about a task before the server gives it to another (hosts send in-progress
/// acks every quarter of it while a task runs). Delivery counts are checked by the host
/// against each task's own `retries`, so the consumer itself never stops redelivering.
pub(crate) async fn task_consumer(
    cluster: &Cluster,
    ack_wait: Duration,
) -> Result<consumer::PullConsumer> {
    let stream = tasks(cluster).await?;
    let name = cluster.names().task_consumer();
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                max_deliver: -1,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("failed to open the task consumer {name}"))?;
    let mut consumer = consumer;
    let info = consumer
        .info()
        .await
        .context("failed to read the task consumer")?;
    if info.config.ack_wait != ack_wait {
        tracing::warn!(
            wanted = ?ack_wait,
            actual = ?info.config.ack_wait,
            "the task consumer exists with another ack wait (the first host set it); using it"
        );
    }
    Ok(consumer)
}
