//! Dead letters: tasks that kept killing their workers (past their `retries`), or that no
//! host could run (a malformed message, a missing component). Each is the task message
//! as submitted, with its reason in a header, in the namespace's dead-letter stream, so
//! it can be read (`wasmp cluster dead list`) and submitted again
//! (`wasmp cluster dead retry`).

use anyhow::{Context, Result, bail};
use async_nats::HeaderMap;
use serde::Serialize;

use crate::cluster::wire::{REASON_HEADER, TaskMessage};
use crate::cluster::{Cluster, publish_stored, streams};

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Its sequence number in the dead-letter stream (what `retry` takes).
    pub sequence: u64,
    /// The task's id.
    pub task: String,
    /// The component's name and the export.
    pub call: String,
    /// Why it is here.
    pub reason: String,
}

/// Stores a task (its message as received, `payload`) as a dead letter.
pub(crate) async fn bury(
    cluster: &Cluster,
    task_id: &str,
    payload: &[u8],
    reason: &str,
) -> Result<()> {
    streams::dead(cluster).await?;
    let mut headers = HeaderMap::new();
    // Header values may not hold line breaks.
    headers.insert(REASON_HEADER, reason.replace(['\r', '\n'], " ").as_str());
    tracing::warn!(task = task_id, reason, "task moved to the dead letters");
    publish_stored(
        cluster,
        &cluster.names().dead_subject(),
        &format!("dead-{task_id}"),
        Some(headers),
        bytes::Bytes::copy_from_slice(payload),
    )
    .await
}

fn letter_of(message: &async_nats::jetstream::message::StreamMessage) -> DeadLetter {
    let reason = message
        .headers
        .get(REASON_HEADER)
        .map_or_else(|| "unknown".to_string(), |v| v.as_str().to_string());
    let (task, call) = match TaskMessage::from_json(&message.payload) {
        Ok(task) => (task.id, format!("{}.{}", task.name, task.export)),
        Err(e) => ("?".to_string(), e),
    };
    DeadLetter {
        sequence: message.sequence,
        task,
        call,
        reason,
    }
}

/// Every dead letter, oldest first.
pub(crate) async fn list(cluster: &Cluster) -> Result<Vec<DeadLetter>> {
    let stream = streams::dead(cluster).await?;
    let state = stream
        .get_info()
        .await
        .context("failed to read the dead letters")?
        .state;
    let mut letters = Vec::new();
    if state.messages == 0 {
        return Ok(letters);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        // Retried letters are deleted: their sequence numbers are gaps.
        if let Ok(message) = stream.get_raw_message(sequence).await {
            letters.push(letter_of(&message));
        }
    }
    Ok(letters)
}

/// Submits dead letter `sequence` again as a new task (a new id, so the earlier result's
/// deduplication does not swallow the new one) and deletes it.
pub(crate) async fn retry(cluster: &Cluster, sequence: u64) -> Result<DeadLetter> {
    let stream = streams::dead(cluster).await?;
    let Ok(message) = stream.get_raw_message(sequence).await else {
        bail!(
            "no dead letter has sequence number {sequence} (`wasmp cluster dead list` shows them)"
        );
    };
    let letter = letter_of(&message);
    let mut task = TaskMessage::from_json(&message.payload)
        .map_err(|e| anyhow::anyhow!("dead letter {sequence} cannot be retried: {e}"))?;
    task.id = format!("{}-retry{sequence}", task.id);
    streams::tasks(cluster).await?;
    publish_stored(
        cluster,
        &cluster.names().task_subject("retry"),
        &task.id,
        None,
        task.to_json().into(),
    )
    .await?;
    stream
        .delete_message(sequence)
        .await
        .with_context(|| format!("dead letter {sequence} was resubmitted but not deleted"))?;
    Ok(DeadLetter {
        task: task.id,
        ..letter
    })
}
