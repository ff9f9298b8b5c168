//! The local pool backend: worker processes of this host, one [`slot`](super::slot) thread
//! each, fed by one [`Scheduler`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;

use crate::grants::Grants;
use crate::link::spawn::Signaller;
use crate::pool::backend::{Call, PoolBackend};
use crate::pool::scheduler::{self, Scheduler};
use crate::pool::task::AsyncResult;
use crate::pool::{PoolConfig, PoolStats, slot};
use crate::protocol;
use crate::runtime::Runtime;

/// A task as the local slots run it: the call, and the compiled file the worker loads
/// (the fuel-metered variant under a fuel limit).
pub(crate) struct LocalTask {
    pub(crate) call: Call,
    pub(crate) cwasm: PathBuf,
}

/// What every slot of one pool shares.
pub(crate) struct Shared {
    pub(crate) runtime: Runtime,
    pub(crate) config: PoolConfig,
    pub(crate) grants: Grants,
    /// The grants as every worker process is told them.
    pub(crate) wire_grants: protocol::Grants,
    pub(crate) scheduler: Scheduler<LocalTask>,
    /// The signallers of the live worker processes, by slot, for `terminate`.
    live: Mutex<HashMap<usize, Arc<Signaller>>>,
}

impl Shared {
    fn live(&self) -> MutexGuard<'_, HashMap<usize, Arc<Signaller>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Slot `index` has a live worker process now.
    pub(crate) fn worker_up(&self, index: usize, signaller: Arc<Signaller>) {
        self.live().insert(index, signaller);
    }

    /// Slot `index`'s worker process was reaped.
    pub(crate) fn worker_down(&self, index: usize) {
        self.live().remove(&index);
    }

    /// SIGKILLs every live worker process (their slots then reap them).
    fn kill_all(&self) {
        for signaller in self.live().values() {
            let _ = signaller.signal(rustix::process::Signal::KILL);
        }
    }
}

pub(crate) struct LocalPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl LocalPool {
    /// Starts `processes` slots, each keeping one worker process alive.
    pub(crate) fn start(
        runtime: Runtime,
        config: PoolConfig,
        grants: Grants,
        processes: usize,
    ) -> Result<LocalPool> {
        let mut wire_grants =
            protocol::Grants::new("pool-worker".into(), vec!["pool-worker".into()], &grants);
        grants.queues().attach_events(runtime.events());
        wire_grants.host_interfaces = runtime.host_interfaces().names();
        let shared = Arc::new(Shared {
            scheduler: Scheduler::new(processes, config.retries)
                .with_error_retries(config.retry_errors, scheduler::ERROR_BACK_OFF)
                .with_events(runtime.events().clone()),
            runtime,
            config,
            grants,
            wire_grants,
            live: Mutex::new(HashMap::new()),
        });
        let threads = (0..processes)
            .map(|index| slot::start(shared.clone(), index))
            .collect::<Result<Vec<_>>>()?;
        Ok(LocalPool {
            shared,
            threads: Mutex::new(threads),
        })
    }
}

impl PoolBackend for LocalPool {
    fn submit(&self, calls: Vec<Call>, chunked: bool) -> Result<Vec<AsyncResult>> {
        // Resolved before anything is queued: a fuel-metered variant may need compiling,
        // and a failure must leave nothing half-queued.
        let limits = self.shared.grants.get_limits();
        let tasks = calls
            .into_iter()
            .map(|call| {
                let cwasm = call.component.cwasm_for(limits)?;
                Ok(LocalTask { call, cwasm })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.shared.scheduler.submit(tasks, chunked)?)
    }

    fn close(&self) {
        self.shared.scheduler.close();
    }

    fn is_closed(&self) -> bool {
        self.shared.scheduler.is_closed()
    }

    fn join(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }

    fn terminate(&self) {
        self.shared.scheduler.terminate();
        self.shared.kill_all();
        self.join();
    }

    fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        self.shared.scheduler.wait_idle(timeout)
    }

    fn stats(&self) -> PoolStats {
        self.shared.scheduler.stats()
    }
}
