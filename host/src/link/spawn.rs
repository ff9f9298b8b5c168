//! Spawning and signalling worker processes. Knows nothing of WIT or wasmtime.
//!
//! Every spawn happens on one long-lived thread: `PR_SET_PDEATHSIG` fires when the *thread*
//! that forked the child exits, so spawning from a short-lived user thread would kill the
//! worker when that thread ends. Signals go through a pidfd, which cannot hit a recycled
//! pid after the child has been reaped.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::protocol::{STANDBY_MARKER, WORKER_MARKER};
use crate::stdio::output::Output;

/// Environment variables a worker program inherits; everything else is cleared.
const INHERITED_ENV: &[&str] = &[
    "WASMP_LOG",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    // Test-only fault injection; honoured by debug builds of the worker only.
    "WASMP_FAULT",
];

/// A freshly spawned worker process.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) signaller: Arc<Signaller>,
    pub(crate) channel: UnixStream,
    pub(crate) stdout: Option<ChildStdout>,
    pub(crate) stderr: Option<ChildStderr>,
}

/// What to spawn.
pub(crate) struct SpawnRequest {
    pub(crate) program: PathBuf,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
    /// Spawned ahead of need: it prepares its runtime while it waits.
    pub(crate) standby: bool,
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on the spawner thread.
fn on_spawner(job: Job) -> Result<()> {
    static SPAWNER: OnceLock<Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, queue): (Sender<Job>, Receiver<Job>) = unbounded();
        std::thread::Builder::new()
            .name("wasmp-spawner".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .expect("failed to start the wasmp spawner thread");
        jobs
    });
    spawner
        .send(job)
        .map_err(|_| anyhow!("the wasmp spawner thread is gone"))
}

/// Spawns a worker process on the spawner thread and waits for it.
pub(crate) fn spawn(request: SpawnRequest) -> Result<Spawned> {
    let (reply, answer) = bounded(1);
    on_spawner(Box::new(move || {
        let _ = reply.send(spawn_here(request));
    }))?;
    answer
        .recv()
        .map_err(|_| anyhow!("the wasmp spawner thread is gone"))?
}

/// Spawns a worker process on the spawner thread and hands it to `done`, without waiting.
pub(crate) fn spawn_detached(
    request: SpawnRequest,
    done: impl FnOnce(Result<Spawned>) + Send + 'static,
) -> Result<()> {
    on_spawner(Box::new(move || done(spawn_here(request))))
}

fn spawn_here(request: SpawnRequest) -> Result<Spawned> {
    let (host_end, worker_end) = UnixStream::pair().context("failed to create a socketpair")?;
    let mut command = Command::new(&request.program);
    command
        .arg(WORKER_MARKER)
        .arg(std::process::id().to_string())
        .args(request.standby.then_some(STANDBY_MARKER))
        // posix_spawn can only place an fd at 0-2: the channel travels as stdin, and the
        // worker moves it elsewhere first thing.
        .stdin(Stdio::from(OwnedFd::from(worker_end)))
        .stdout(request.stdout.stdio())
        .stderr(request.stderr.stdio())
        .env_clear()
        // Its own process group: a Ctrl-C at the terminal reaches the host, which then
        // stops its workers in order, instead of killing every worker mid-write.
        .process_group(0);
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut child = command.spawn().with_context(|| {
        format!(
            "failed to start worker program {}",
            request.program.display()
        )
    })?;
    let pid = child.id();
    let pidfd = pidfd_open(Pid::from_child(&child), PidfdFlags::empty())
        .context("failed to open a pidfd for the worker")?;
    let signaller = Arc::new(Signaller { pidfd });
    let mut live = live_workers();
    live.retain(|weak| weak.strong_count() > 0);
    live.push(Arc::downgrade(&signaller));
    drop(live);
    Ok(Spawned {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        pid,
        signaller,
        channel: host_end,
    })
}

/// Every worker process this program started that still has an owner.
fn live_workers() -> std::sync::MutexGuard<'static, Vec<Weak<Signaller>>> {
    static LIVE: Mutex<Vec<Weak<Signaller>>> = Mutex::new(Vec::new());
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops every worker process this program started: SIGTERM, then SIGKILL for those still
/// running after `grace`. For a host shutting down (Ctrl-C): their owners see them end
/// (`Signaled`) and reap them.
pub fn shutdown_workers(grace: Duration) {
    let workers: Vec<Arc<Signaller>> = live_workers().iter().filter_map(Weak::upgrade).collect();
    for worker in &workers {
        let _ = worker.signal(Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    for worker in &workers {
        if !worker.wait_exit(deadline) {
            let _ = worker.signal(Signal::KILL);
        }
    }
}

/// Sends signals to one worker process, safely even after it has been reaped.
#[derive(Debug)]
pub(crate) struct Signaller {
    pidfd: OwnedFd,
}

impl Signaller {
    /// Waits until the process has exited or `deadline` passes; whether it exited.
    fn wait_exit(&self, deadline: Instant) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        // A pidfd becomes readable when its process exits.
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
    }

    /// Sends `signal`; a process that is already gone is not an error.
    pub(crate) fn signal(&self, signal: Signal) -> Result<()> {
        match pidfd_send_signal(&self.pidfd, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e).context("failed to signal a worker process"),
        }
    }
}
