//! Every stream, subject, consumer and bucket name of one namespace, in one place.
//!
//! Stream names and subject tokens forbid `.`, `*`, `>`, `/` and spaces, so every name
//! that goes into one is checked here (`[A-Za-z0-9_-]{1,32}`) and refused clearly rather
//! than by the server.

use crate::cluster::ClusterError;

/// The longest namespace, queue or client name.
const MAX_NAME: usize = 32;

/// Checks a name that becomes a subject token and part of a stream name.
pub(crate) fn check(kind: &str, name: &str) -> Result<(), ClusterError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ClusterError::BadName(format!(
            "invalid {kind} name {name:?}: a cluster {kind} name is 1 to {MAX_NAME} of \
             A-Z a-z 0-9 _ -"
        )))
    }
}

/// The names of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    namespace: String,
}

impl Names {
    pub(crate) fn new(namespace: &str) -> Result<Names, ClusterError> {
        check("namespace", namespace)?;
        Ok(Names {
            namespace: namespace.to_string(),
        })
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The work queue of every pool's tasks (one stream, a subject per submitting pool).
    pub(crate) fn task_stream(&self) -> String {
        format!("WASMP_{}_TASKS", self.namespace)
    }

    /// Where one pool client submits its tasks; purged when it terminates.
    pub(crate) fn task_subject(&self, client: &str) -> String {
        format!("wasmp.{}.task.{client}", self.namespace)
    }

    /// Every pool's tasks: what hosts pull from.
    pub(crate) fn task_subjects(&self) -> String {
        format!("wasmp.{}.task.>", self.namespace)
    }

    /// The one durable consumer every host shares (so each task goes to one host).
    pub(crate) fn task_consumer(&self) -> String {
        "hosts".to_string()
    }

    /// Results, deduplicated by task id.
    pub(crate) fn result_stream(&self) -> String {
        format!("WASMP_{}_RESULTS", self.namespace)
    }

    /// Where one pool client reads its results.
    pub(crate) fn result_subject(&self, client: &str) -> String {
        format!("wasmp.{}.result.{client}", self.namespace)
    }

    pub(crate) fn result_subjects(&self) -> String {
        format!("wasmp.{}.result.>", self.namespace)
    }

    /// Tasks that could not complete, with their reason.
    pub(crate) fn dead_stream(&self) -> String {
        format!("WASMP_{}_DEAD", self.namespace)
    }

    pub(crate) fn dead_subject(&self) -> String {
        format!("wasmp.{}.dead", self.namespace)
    }

    /// Component bytes by content hash.
    pub(crate) fn component_bucket(&self) -> String {
        format!("wasmp_{}_components", self.namespace)
    }

    /// The stream of cluster queue `name`.
    pub(crate) fn queue_stream(&self, name: &str) -> String {
        format!("WASMP_{}_Q_{name}", self.namespace)
    }

    /// The subject of cluster queue `name`.
    pub(crate) fn queue_subject(&self, name: &str) -> String {
        format!("wasmp.{}.queue.{name}", self.namespace)
    }

    /// Host heartbeats, the last one per host.
    pub(crate) fn host_stream(&self) -> String {
        format!("WASMP_{}_HOSTS", self.namespace)
    }

    /// Where host `id` (or `*`: every host) reports.
    pub(crate) fn host_subject(&self, id: &str) -> String {
        format!("wasmp.{}.host.{id}", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_nats_cannot_carry_are_refused() {
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b", &"x".repeat(33)] {
            assert!(check("queue", bad).is_err(), "{bad:?}");
        }
        for good in ["a", "A-b_9", &"x".repeat(32)] {
            check("queue", good).unwrap();
        }
        let names = Names::new("t1").unwrap();
        assert_eq!(names.task_stream(), "WASMP_t1_TASKS");
        assert_eq!(names.task_subject("c"), "wasmp.t1.task.c");
        assert!(Names::new("a.b").is_err());
    }
}
