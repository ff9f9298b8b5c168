//! The worker's one helper thread, for two deadlines the guest's thread cannot watch while
//! a guest runs:
//!
//! - the time limit: an epoch bump at the deadline makes a guest past its limit trap
//!   (`Trap::Interrupt`) at its next loop back-edge;
//! - buffered task results: a pool worker sends the results of quick tasks together, and
//!   this thread sends any that waited [`FLUSH_AFTER`] while a slow task runs.
//!
//! The thread starts with the first deadline. Arming a later deadline, or disarming, does
//! not wake it; it re-reads the deadlines when it wakes.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Engine;

use super::channel::Channel;

/// How long a finished task's result may wait in the buffer for its neighbours.
pub(crate) const FLUSH_AFTER: Duration = Duration::from_micros(200);

#[derive(Default)]
struct Deadlines {
    epoch: Option<Instant>,
    flush: Option<Instant>,
    /// The channel whose buffer `flush` is about.
    channel: Option<Channel>,
}

type Shared = Arc<(Mutex<Deadlines>, Condvar)>;

/// Arms and disarms the deadlines of the guest that runs now.
pub(crate) struct EpochTimer {
    engine: Engine,
    shared: Option<Shared>,
}

impl EpochTimer {
    pub(crate) fn new(engine: &Engine) -> EpochTimer {
        EpochTimer {
            engine: engine.clone(),
            shared: None,
        }
    }

    /// Interrupts the running guest at `deadline` (or never, with `None`).
    pub(crate) fn arm(&mut self, deadline: Option<Instant>) {
        self.update(deadline.is_some(), |d| {
            let sooner = earlier(deadline, d.epoch);
            d.epoch = deadline;
            sooner
        });
    }

    /// Sends `channel`'s buffered frames in [`FLUSH_AFTER`] unless they are sent before.
    pub(crate) fn flush_soon(&mut self, channel: &Channel) {
        let at = Instant::now() + FLUSH_AFTER;
        self.update(true, |d| {
            if d.channel.is_none() {
                d.channel = Some(channel.clone());
            }
            if d.flush.is_some() {
                return false;
            }
            d.flush = Some(at);
            earlier(Some(at), d.epoch)
        });
    }

    /// The buffered frames were sent.
    pub(crate) fn flushed(&mut self) {
        self.update(false, |d| {
            d.flush = None;
            false
        });
    }

    fn update(&mut self, start: bool, change: impl FnOnce(&mut Deadlines) -> bool) {
        let shared = match &self.shared {
            Some(shared) => shared.clone(),
            None if start => self.start(),
            None => return,
        };
        let (deadlines, wake) = &*shared;
        let mut deadlines = deadlines.lock().unwrap_or_else(|e| e.into_inner());
        if change(&mut deadlines) {
            wake.notify_one();
        }
    }

    fn start(&mut self) -> Shared {
        let shared: Shared = Arc::default();
        let state = shared.clone();
        let engine = self.engine.clone();
        std::thread::Builder::new()
            .name("wasmp-deadlines".into())
            .spawn(move || watch(&state, &engine))
            .expect("failed to spawn the deadline thread");
        self.shared = Some(shared.clone());
        shared
    }
}

fn watch(shared: &Shared, engine: &Engine) {
    let (deadlines, wake) = &**shared;
    let mut d = deadlines.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        if d.epoch.is_some_and(|at| at <= now) {
            engine.increment_epoch();
            d.epoch = None;
        }
        if d.flush.is_some_and(|at| at <= now) {
            d.flush = None;
            if let Some(channel) = &d.channel {
                // Never waits: if the guest's thread holds the channel it is sending.
                channel.try_flush();
            }
        }
        d = match [d.epoch, d.flush].into_iter().flatten().min() {
            None => wake.wait(d).unwrap_or_else(|e| e.into_inner()),
            Some(at) => {
                wake.wait_timeout(d, at.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

fn earlier(new: Option<Instant>, old: Option<Instant>) -> bool {
    match (new, old) {
        (Some(new), Some(old)) => new < old,
        (Some(_), None) => true,
        (None, _) => false,
    }
}
