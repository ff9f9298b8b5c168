//! The messages that travel through the server, as JSON so that any NATS client can read
//! or submit one (`nats pub wasmp.default.task.me '{"v":1,…}'`).
//!
//! A task names its component by content hash (the bytes are in the object store), its
//! export, and its arguments in WAVE, already type-checked by the submitter and checked
//! again by the host. Grants never travel: a task says which guest directories and
//! environment variables it needs, and a host that does not grant them refuses it.

use serde::{Deserialize, Serialize};

/// The version of these messages; a host refuses a task of another.
pub(crate) const VERSION: u32 = 1;

/// The header that carries a dead letter's reason.
pub(crate) const REASON_HEADER: &str = "Wasmp-Reason";

/// One task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskMessage {
    pub(crate) v: u32,
    /// Unique in the namespace: `<client>-<n>`; results are deduplicated by it.
    pub(crate) id: String,
    /// The subject its result is published on.
    pub(crate) reply: String,
    /// `sha256-<hex>` of the component's bytes.
    pub(crate) component: String,
    /// The component's name, for messages.
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) export: String,
    /// The arguments, in WAVE.
    pub(crate) args: Vec<String>,
    /// The task's time limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_ms: Option<u64>,
    /// How many times it may run again after its worker died (it runs at most
    /// `retries + 1` times).
    #[serde(default)]
    pub(crate) retries: u32,
    /// What the host must grant.
    #[serde(default)]
    pub(crate) needs: Needs,
}

/// What a task needs a host to grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Needs {
    /// Guest paths of directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) dirs: Vec<String>,
    /// Names of environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) env: Vec<String>,
}

/// How one task ended, as a host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResultMessage {
    pub(crate) v: u32,
    pub(crate) id: String,
    /// The host that ran it.
    pub(crate) host: String,
    /// Which delivery of the task this was (1 for the first run).
    pub(crate) attempt: u32,
    pub(crate) outcome: Outcome,
}

/// A task's outcome: `pool::task::TaskError` without the variants that never travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub(crate) enum Outcome {
    /// The export returned these values (WAVE).
    Returned {
        values: Vec<String>,
    },
    Trapped {
        message: String,
    },
    TimedOut,
    WorkerLost {
        attempts: u32,
    },
    Exited {
        code: i32,
    },
    Failed {
        message: String,
    },
}

impl TaskMessage {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a task message always serializes")
    }

    /// Parses a task, refusing another version by name rather than by a missing field.
    pub(crate) fn from_json(bytes: &[u8]) -> Result<TaskMessage, String> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        match serde_json::from_slice::<Version>(bytes) {
            Ok(Version { v: VERSION }) => {}
            Ok(Version { v }) => {
                return Err(format!(
                    "task message version {v}; this host speaks version {VERSION}"
                ));
            }
            Err(e) => return Err(format!("not a wasmp task message: {e}")),
        }
        serde_json::from_slice(bytes).map_err(|e| format!("malformed task message: {e}"))
    }
}

impl ResultMessage {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a result message always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_messages_round_trip_and_other_versions_are_named() {
        let task = TaskMessage {
            v: VERSION,
            id: "c-1".into(),
            reply: "wasmp.default.result.c".into(),
            component: "sha256-00".into(),
            name: "w".into(),
            export: "square".into(),
            args: vec!["3".into()],
            timeout_ms: Some(5),
            retries: 2,
            needs: Needs {
                dirs: vec!["/data".into()],
                env: vec![],
            },
        };
        assert_eq!(TaskMessage::from_json(&task.to_json()).unwrap(), task);
        let other = br#"{"v":2,"id":"x"}"#;
        assert!(
            TaskMessage::from_json(other)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(TaskMessage::from_json(b"[]").is_err());
        let result = ResultMessage {
            v: VERSION,
            id: "c-1".into(),
            host: "h".into(),
            attempt: 1,
            outcome: Outcome::WorkerLost { attempts: 1 },
        };
        let json = String::from_utf8(result.to_json()).unwrap();
        assert!(json.contains(r#""status":"worker-lost""#), "{json}");
    }
}
