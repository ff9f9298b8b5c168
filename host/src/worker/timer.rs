//! One thread per worker that turns a wall-clock deadline into an epoch bump, so that a
//! guest past its time limit traps (`Trap::Interrupt`) at its next loop back-edge.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use wasmtime::Engine;

/// Arms and disarms the deadline of the task that runs now.
pub(crate) struct EpochTimer {
    shared: Arc<(Mutex<Option<Instant>>, Condvar)>,
}

impl EpochTimer {
    pub(crate) fn start(engine: &Engine) -> EpochTimer {
        let shared: Arc<(Mutex<Option<Instant>>, Condvar)> = Arc::default();
        let engine = engine.clone();
        let state = shared.clone();
        std::thread::Builder::new()
            .name("wasmp-epoch".into())
            .spawn(move || {
                let (deadline, wake) = &*state;
                let mut armed = deadline.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    match *armed {
                        None => armed = wake.wait(armed).unwrap_or_else(|e| e.into_inner()),
                        Some(at) => {
                            let now = Instant::now();
                            if now >= at {
                                engine.increment_epoch();
                                *armed = None;
                            } else {
                                armed = wake
                                    .wait_timeout(armed, at - now)
                                    .unwrap_or_else(|e| e.into_inner())
                                    .0;
                            }
                        }
                    }
                }
            })
            .expect("failed to spawn the epoch timer thread");
        EpochTimer { shared }
    }

    /// Interrupts the running guest at `deadline` (or never, with `None`).
    pub(crate) fn arm(&self, deadline: Option<Instant>) {
        let (armed, wake) = &*self.shared;
        *armed.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
        wake.notify_one();
    }
}
