//! Components by content hash, in the namespace's JetStream object store: a submitter
//! uploads a component once, and each host downloads it once, checks the digest, and
//! compiles it once (its compile cache is keyed by the same hash).

use anyhow::{Context, Result, bail};
use async_nats::jetstream::object_store::{self, ObjectStore};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::cluster::Cluster;

/// The object name of these bytes: `sha256-<hex>`.
pub(crate) fn key_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256-{hex}")
}

async fn bucket(cluster: &Cluster) -> Result<ObjectStore> {
    let name = cluster.names().component_bucket();
    let jetstream = cluster.jetstream();
    if let Ok(store) = jetstream.get_object_store(&name).await {
        return Ok(store);
    }
    jetstream
        .create_object_store(object_store::Config {
            bucket: name.clone(),
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| format!("failed to open the object store {name}"))
}

/// Uploads `bytes` unless they are there already; their key.
pub(crate) async fn upload(cluster: &Cluster, bytes: &[u8]) -> Result<String> {
    let key = key_of(bytes);
    let store = bucket(cluster).await?;
    if store.info(&key).await.is_ok() {
        return Ok(key);
    }
    let mut reader = bytes;
    store
        .put(key.as_str(), &mut reader)
        .await
        .with_context(|| format!("failed to upload component {key}"))?;
    tracing::debug!(%key, size = bytes.len(), "component uploaded");
    Ok(key)
}

/// Downloads the component `key` and checks that its bytes hash to it.
pub(crate) async fn download(cluster: &Cluster, key: &str) -> Result<Vec<u8>> {
    let store = bucket(cluster).await?;
    let mut object = store
        .get(key)
        .await
        .with_context(|| format!("component {key} is not in the cluster's object store"))?;
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .with_context(|| format!("failed to download component {key}"))?;
    if key_of(&bytes) != key {
        bail!("component {key} downloaded with another digest: refusing to run it");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_sha256_hex() {
        assert_eq!(
            super::key_of(b""),
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
