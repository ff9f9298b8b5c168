//! Host heartbeats and the namespace's status.
//!
//! Every `wasmp serve` writes its entry (slots, running tasks) on its own subject of a
//! heartbeat stream every few seconds (the stream keeps the last per host); entries expire, so a host that died drops out of `status` on its
//! own. Heartbeats are for people and for sizing (`map`'s default chunk size); delivery
//! never depends on them (the server's ack deadline does that).

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, streams};

/// How often a host refreshes its entry.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How long an entry outlives its last refresh.
const HOST_TTL: Duration = Duration::from_secs(15);

/// One host, as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Its id (`hostname-pid` unless set).
    pub id: String,
    /// Worker processes it keeps.
    pub slots: usize,
    /// Tasks it runs now.
    pub running: usize,
    /// Tasks it has finished.
    pub done: u64,
}

/// What `wasmp cluster status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The namespace.
    pub namespace: String,
    /// Hosts that reported in the last 15 s.
    pub hosts: Vec<HostStatus>,
    /// Tasks waiting for a host.
    pub waiting: u64,
    /// Tasks a host has taken and not finished.
    pub running: u64,
    /// Dead letters.
    pub dead: u64,
    /// The namespace's cluster queues.
    pub queues: Vec<QueueStatus>,
}

/// One cluster queue, in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    /// Its name.
    pub name: String,
    /// Messages stored and not yet taken.
    pub messages: u64,
    /// Whether it was closed.
    pub closed: bool,
}

/// The namespace's cluster queues (streams `WASMP_<ns>_Q_<name>`).
async fn queues(cluster: &Cluster) -> Result<Vec<QueueStatus>> {
    let prefix = cluster.names().queue_stream("");
    let mut names = cluster.jetstream().stream_names();
    let mut queues = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.context("failed to list the queues")?;
        let Some(queue) = name.strip_prefix(&prefix) else {
            continue;
        };
        if let Ok(mut stream) = cluster.jetstream().get_stream(&name).await
            && let Ok(info) = stream.info().await
        {
            queues.push(QueueStatus {
                name: queue.to_string(),
                messages: info.state.messages,
                closed: info.config.sealed,
            });
        }
    }
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(queues)
}

/// The stream of heartbeats: the last one per host, each expiring. (A plain stream, not a
/// key-value bucket: async-nats 0.51 cannot read 2.9's answer to creating one.)
async fn stream(cluster: &Cluster) -> Result<stream::Stream> {
    let names = cluster.names();
    streams::ensure(
        cluster,
        stream::Config {
            name: names.host_stream(),
            subjects: vec![names.host_subject("*")],
            max_messages_per_subject: 1,
            max_age: HOST_TTL,
            storage: stream::StorageType::Memory,
            ..Default::default()
        },
    )
    .await
}

/// Writes (or refreshes) a host's entry.
pub(crate) async fn report(cluster: &Cluster, host: &HostStatus) -> Result<()> {
    stream(cluster).await?;
    let value = serde_json::to_vec(host).expect("a host status serializes");
    cluster
        .jetstream()
        .publish(cluster.names().host_subject(&host.id), value.into())
        .await
        .context("failed to write the host heartbeat")?
        .await
        .context("failed to write the host heartbeat")?;
    Ok(())
}

/// Removes a host's entry (it stopped cleanly).
pub(crate) async fn leave(cluster: &Cluster, id: &str) {
    if let Ok(stream) = stream(cluster).await {
        let _ = stream
            .purge()
            .filter(cluster.names().host_subject(id))
            .await;
    }
}

/// The hosts that reported recently.
pub(crate) async fn hosts(cluster: &Cluster) -> Result<Vec<HostStatus>> {
    let stream = stream(cluster).await?;
    let state = stream
        .get_info()
        .await
        .context("failed to list the hosts")?
        .state;
    let mut hosts = Vec::new();
    if state.messages > 0 {
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.get_raw_message(sequence).await
                && let Ok(host) = serde_json::from_slice::<HostStatus>(&message.payload)
            {
                hosts.push(host);
            }
        }
    }
    hosts.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(hosts)
}

pub(crate) async fn status(cluster: &Cluster) -> Result<ClusterStatus> {
    let hosts = hosts(cluster).await?;
    let mut tasks = streams::tasks(cluster).await?;
    // From the hosts' consumer, not the stream: after a restart, 2.9 can keep messages
    // in a work-queue stream that its consumer has already had acknowledged.
    let (waiting, running) = match tasks.consumer_info(cluster.names().task_consumer()).await {
        Ok(info) => (info.num_pending, info.num_ack_pending as u64),
        // No host has started yet: every task waits.
        Err(_) => (
            tasks
                .info()
                .await
                .context("failed to read the task stream")?
                .state
                .messages,
            0,
        ),
    };
    let dead = streams::dead(cluster)
        .await?
        .get_info()
        .await
        .context("failed to read the dead letters")?
        .state
        .messages;
    Ok(ClusterStatus {
        namespace: cluster.namespace().to_string(),
        hosts,
        waiting,
        running,
        dead,
        queues: queues(cluster).await?,
    })
}
