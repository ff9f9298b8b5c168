//! Standby worker processes: spawned ahead of need, so that `Process::start` costs a
//! message instead of an exec. Each standby worker still runs exactly one `Process`; a
//! replacement is spawned in the background as soon as one is taken.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustix::process::Signal;
use tracing::debug;

use crate::link::spawn::{self, SpawnRequest, Spawned};
use crate::stdio::output::Output;

/// A set of idle, pre-spawned worker processes.
pub(crate) struct Standby {
    target: usize,
    program: PathBuf,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    ready: Vec<Spawned>,
    /// Spawns asked for and not yet done.
    pending: usize,
    closed: bool,
}

impl Standby {
    /// Keeps `target` idle workers of `program` ready (none when `target` is 0).
    pub(crate) fn new(target: usize, program: PathBuf) -> Standby {
        let standby = Standby {
            target,
            program,
            state: Arc::default(),
        };
        standby.replenish();
        standby
    }

    /// An idle worker, if one is ready; a replacement is started in the background.
    pub(crate) fn take(&self) -> Option<Spawned> {
        if self.target == 0 {
            return None;
        }
        let taken = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ready
            .pop();
        self.replenish();
        taken
    }

    fn replenish(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !state.closed && state.ready.len() + state.pending < self.target {
            state.pending += 1;
            let shared = self.state.clone();
            let request = SpawnRequest {
                program: self.program.clone(),
                stdout: Output::Inherit,
                stderr: Output::Inherit,
                standby: true,
            };
            let spawned = spawn::spawn_detached(request, move |spawned| {
                let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                state.pending -= 1;
                match spawned {
                    Ok(spawned) if !state.closed => state.ready.push(spawned),
                    Ok(spawned) => reap(spawned),
                    Err(e) => debug!("failed to spawn a standby worker: {e:#}"),
                }
            });
            if spawned.is_err() {
                state.pending -= 1;
                return;
            }
        }
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        for spawned in state.ready.drain(..) {
            reap(spawned);
        }
    }
}

/// Kills an unused standby worker and waits for it: no zombie, no orphan.
fn reap(mut spawned: Spawned) {
    let _ = spawned.signaller.signal(Signal::KILL);
    let _ = spawned.child.wait();
}
