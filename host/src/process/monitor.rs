//! The host's side of one `Process`'s life, on a thread of its own: hand over the start
//! message, answer the guest's queue calls and host-function calls, collect the outcome, stop it at its deadline,
//! drain its output, reap it, and report the [`ExitStatus`] to every handle waiting for it.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{debug, warn};

use crate::events::{self, Events, millis};
use crate::exit::ExitStatus;
use crate::link::conn::Event;
use crate::link::host::HostCalls;
use crate::link::live::{LiveWorker, TIMEOUT_GRACE};
use crate::link::spawn::Spawned;
use crate::process::{Finished, Shared};
use crate::protocol::{Outcome, StartSpec, ToWorker};
use crate::queue::QueueGrants;
use crate::stdio::output::Output;

/// Per-process settings the monitor needs.
pub(crate) struct WorkerLink {
    pub(crate) name: String,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
    pub(crate) deadline: Option<Instant>,
    pub(crate) queues: QueueGrants,
    pub(crate) events: Events,
    /// Answers the component's host-function calls, if it imports any.
    pub(crate) host: Option<Arc<dyn HostCalls>>,
}

pub(crate) struct Monitor {
    deadline: Option<Instant>,
    /// The guest's time limit, for the `limit_hit` event.
    timeout: Option<Duration>,
    worker: LiveWorker,
    shared: Arc<Shared>,
    events: Events,
    started: Instant,
}

impl Monitor {
    /// Sends the start message and starts the monitor thread.
    pub(crate) fn start(
        spawned: Spawned,
        mut spec: StartSpec,
        link: WorkerLink,
        shared: Arc<Shared>,
    ) -> Result<JoinHandle<()>> {
        let pid = spawned.pid;
        let timeout = spec.timeout_ms.map(Duration::from_millis);
        let mut worker =
            LiveWorker::attach(spawned, link.name, link.stdout, link.stderr, link.queues)?;
        worker.conn.serve_host_calls(link.host, None);
        // The socket buffers this until the worker reads it: no round trip before `start`
        // returns. If the worker is already dead the monitor finds out below.
        // A host started with fd 0 closed has no stdin to share: the guest reads nothing.
        spec.stdin &= rustix::io::fcntl_getfd(rustix::stdio::stdin()).is_ok();
        let _ = if spec.stdin {
            worker
                .conn
                .send_with_fd(&ToWorker::Start(Box::new(spec)), rustix::stdio::stdin())
        } else {
            worker.conn.send(&ToWorker::Start(Box::new(spec)))
        };
        let monitor = Monitor {
            deadline: link.deadline,
            timeout,
            worker,
            shared,
            events: link.events,
            started: Instant::now(),
        };
        std::thread::Builder::new()
            .name(format!("wasmp-monitor-{pid}"))
            .spawn(move || monitor.run())
            .context("failed to spawn a monitor thread")
    }

    fn run(mut self) {
        let mut timed_out = false;
        let (outcome, failure) = match self.converse(&mut timed_out) {
            Ok(outcome) => (outcome, None),
            Err(e) => {
                // A worker that breaks the protocol is not trusted to finish: kill it.
                warn!(name = %self.worker.name(), pid = self.worker.pid(), "{e:#}");
                self.worker.kill();
                (None, Some(format!("{e:#}")))
            }
        };
        let (name, pid) = (self.worker.name().to_string(), self.worker.pid());
        if let Some(hit) = self.worker.conn.take_limit_hit() {
            self.events.emit(|| events::Event::LimitHit {
                worker: pid,
                name: Some(name.clone()),
                task: None,
                limit: hit.limit.key(),
                detail: hit.detail,
            });
        }
        if timed_out || outcome == Some(Outcome::TimedOut) {
            let timeout = self.timeout;
            self.events
                .emit(|| events::Event::timeout_hit(pid, Some(name.clone()), None, timeout));
        }
        let mut reaped = self.worker.reap(outcome.as_ref(), failure);
        if timed_out {
            reaped.status = ExitStatus::TimedOut;
        }
        debug!(name = %name, pid, status = %reaped.status, "worker reaped");
        self.events.emit(|| events::Event::ProcessExited {
            name,
            pid,
            status: reaped.status.to_string(),
            code: reaped.status.code(),
            duration_ms: millis(self.started.elapsed()),
            timed_out,
            peak_memory_kb: reaped.peak_memory_kb,
        });
        let results = match outcome {
            Some(Outcome::Returned(results)) => Some(results),
            _ => None,
        };
        self.shared.finish(Finished {
            status: Some(reaped.status),
            results,
            stdout: reaped.stdout,
            stderr: reaped.stderr,
        });
    }

    /// Talks with the worker until it closes the channel; returns its outcome, if it
    /// reported one. Kills it when it outlives its deadline.
    fn converse(&mut self, timed_out: &mut bool) -> Result<Option<Outcome>> {
        let conn = &mut self.worker.conn;
        if !conn.await_hello()? {
            return Ok(None);
        }
        let kill_at = self.deadline.map(|d| d + TIMEOUT_GRACE);
        let mut outcome = None;
        loop {
            match conn.next_event(kill_at)? {
                Event::Finished(done) => outcome = Some(done),
                Event::Closed => return Ok(outcome),
                Event::Deadline => {
                    *timed_out = true;
                    self.worker.kill();
                    return Ok(outcome);
                }
                Event::TaskDone { .. } | Event::Ready => {
                    anyhow::bail!("a process worker answered like a pool worker")
                }
            }
        }
    }
}
