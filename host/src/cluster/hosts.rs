//! Host heartbeats and the namespace's status.
//!
//! Every `wasmp serve` writes its entry (slots, running tasks) into a key-value bucket
//! every few seconds; entries expire, so a host that died drops out of `status` on its
//! own. Heartbeats are for people and for sizing (`map`'s default chunk size); delivery
//! never depends on them (the server's ack deadline does that).

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::kv;
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
}

async fn bucket(cluster: &Cluster) -> Result<kv::Store> {
    let name = cluster.names().host_bucket();
    let jetstream = cluster.jetstream();
    if let Ok(store) = jetstream.get_key_value(&name).await {
        return Ok(store);
    }
    jetstream
        .create_key_value(kv::Config {
            bucket: name.clone(),
            max_age: HOST_TTL,
            history: 1,
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .with_context(|| format!("failed to open the key-value bucket {name}"))
}

/// Writes (or refreshes) a host's entry.
pub(crate) async fn report(cluster: &Cluster, host: &HostStatus) -> Result<()> {
    let store = bucket(cluster).await?;
    let value = serde_json::to_vec(host).expect("a host status serializes");
    store
        .put(&host.id, value.into())
        .await
        .context("failed to write the host heartbeat")?;
    Ok(())
}

/// Removes a host's entry (it stopped cleanly).
pub(crate) async fn leave(cluster: &Cluster, id: &str) {
    if let Ok(store) = bucket(cluster).await {
        let _ = store.purge(id).await;
    }
}

/// The hosts that reported recently.
pub(crate) async fn hosts(cluster: &Cluster) -> Result<Vec<HostStatus>> {
    let store = bucket(cluster).await?;
    let mut keys = store.keys().await.context("failed to list the hosts")?;
    let mut hosts = Vec::new();
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if let Ok(Some(value)) = store.get(&key).await
            && let Ok(host) = serde_json::from_slice::<HostStatus>(&value)
        {
            hosts.push(host);
        }
    }
    hosts.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(hosts)
}

pub(crate) async fn status(cluster: &Cluster) -> Result<ClusterStatus> {
    let hosts = hosts(cluster).await?;
    let mut tasks = streams::tasks(cluster).await?;
    let in_stream = tasks.info().await.context("failed to read the task stream")?.state.messages;
    let running = match tasks.consumer_info(cluster.names().task_consumer()).await {
        Ok(info) => info.num_ack_pending as u64,
        Err(_) => 0,
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
        waiting: in_stream.saturating_sub(running),
        running,
        dead,
    })
}
