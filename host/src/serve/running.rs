//! The tasks a host runs now, by local id: what the heartbeat keeps alive and what
//! `finish` acknowledges.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_nats::jetstream;

use crate::cluster::wire::TaskMessage;

/// One task taken from the queue and not yet acknowledged.
pub(super) struct RunningTask {
    /// The message, shared with the heartbeat.
    pub(super) message: Arc<jetstream::Message>,
    pub(super) task: TaskMessage,
    /// Which delivery this is (the server's count).
    pub(super) attempt: u32,
}

#[derive(Default)]
pub(super) struct Running {
    state: Mutex<(u64, HashMap<u64, RunningTask>)>,
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, (u64, HashMap<u64, RunningTask>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a task; its local id.
    pub(super) fn insert(&self, task: RunningTask) -> u64 {
        let mut state = self.lock();
        state.0 += 1;
        let id = state.0;
        state.1.insert(id, task);
        id
    }

    pub(super) fn task(&self, id: u64) -> Option<TaskMessage> {
        self.lock().1.get(&id).map(|running| running.task.clone())
    }

    pub(super) fn remove(&self, id: u64) -> Option<RunningTask> {
        self.lock().1.remove(&id)
    }

    pub(super) fn len(&self) -> usize {
        self.lock().1.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The messages of every running task, for in-progress acknowledgements.
    pub(super) fn messages(&self) -> Vec<Arc<jetstream::Message>> {
        self.lock()
            .1
            .values()
            .map(|running| running.message.clone())
            .collect()
    }
}
