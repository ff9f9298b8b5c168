//! `Process`: one guest in its own OS process, with Python's names and meanings.
//!
//! The handle, and the monitor thread that drives the worker through its one life (start
//! message, queue calls, outcome, deadline, reap) over a `link::live::LiveWorker`. May not
//! see `pool`; what a worker may reach comes from `grants`, how it ended from `exit`.

pub(crate) mod monitor;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::Signal;
use tracing::{debug, warn};
use wasmtime::component::Val;

use crate::events::Event;
use crate::exit::ExitStatus;
use crate::grants::Grants;
use crate::grants::dir::DirGrant;
use crate::grants::limits::Limits;
use crate::link::spawn::{self, Signaller, SpawnRequest};
use crate::process::monitor::{Monitor, WorkerLink};
use crate::protocol::{self, Entry, Grants as WireGrants, StartSpec};
use crate::queue::Queue;
use crate::runtime::component::Component;
use crate::stdio::input::Input;
use crate::stdio::output::Output;
use crate::value::IntoVal;

/// How long [`Process::terminate`] waits after SIGTERM before it sends SIGKILL.
pub const TERMINATE_GRACE: Duration = Duration::from_millis(500);

/// A guest running in its own OS process: Python's `multiprocessing.Process`.
///
/// Configure it with the builder methods, then [`start`](Process::start) it and
/// [`join`](Process::join) it. A process either runs the component's `main`
/// ([`args`](Process::args)) or calls one of its exported functions
/// ([`invoke`](Process::invoke)).
///
/// # Examples
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// use wasmp::{Process, Runtime};
///
/// let runtime = Runtime::new()?;
/// let tutorial = runtime.load("tutorial_process.wasm")?;
/// let mut p1 = Process::new(&tutorial).invoke("func1", ["func1...arg1", "func1...agr2"]);
/// let mut p2 = Process::new(&tutorial).invoke("func2", ["func2...arg1...", "func1...agr2..."]);
/// p1.start()?;
/// p2.start()?;
/// assert!(p1.join()?.success());
/// assert!(p2.join()?.success());
/// # Ok(()) }
/// ```
///
/// # Caveats
///
/// Dropping a `Process` that is still running terminates it (SIGTERM, then SIGKILL after
/// [`TERMINATE_GRACE`]) and reaps it: a worker never outlives its handle, and never outlives
/// the host either (it is killed by `PR_SET_PDEATHSIG` if the host dies).
pub struct Process {
    component: Component,
    name: String,
    entry: EntryConfig,
    /// `argv[0]` of a command when not the name.
    argv0: Option<String>,
    args: Vec<String>,
    /// What it may reach; a malformed grant is reported by `start`.
    grants: Grants,
    stdin: Input,
    stdout: Output,
    stderr: Output,
    running: Option<Running>,
}

enum EntryConfig {
    Main,
    Invoke { export: String, args: Vec<Val> },
    InvokeWave(String),
}

struct Running {
    pid: u32,
    signaller: Arc<Signaller>,
    shared: Arc<Shared>,
    monitor: Option<JoinHandle<()>>,
    export: Option<String>,
}

/// What the monitor thread reports to the handle.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<Finished>,
    done: Condvar,
}

/// Filled in once by the monitor thread when the worker has been reaped.
#[derive(Default)]
pub(crate) struct Finished {
    pub(crate) status: Option<ExitStatus>,
    pub(crate) results: Option<Vec<String>>,
    pub(crate) stdout: Option<Vec<u8>>,
    pub(crate) stderr: Option<Vec<u8>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Finished> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn finish(&self, finished: Finished) {
        *self.lock() = finished;
        self.done.notify_all();
    }

    /// Waits for the worker to be reaped, up to `timeout` (forever when `None`).
    pub(crate) fn wait_status(&self, timeout: Option<Duration>) -> Option<ExitStatus> {
        let running = |state: &mut Finished| state.status.is_none();
        let state = self.lock();
        let state = crate::sync::wait_while(&self.done, state, timeout, running);
        state.status.clone()
    }
}

fn next_name() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(1);
    format!("Process-{}", COUNT.fetch_add(1, Ordering::Relaxed))
}

impl Process {
    /// A process that will run `component`'s `main`, named `Process-N` as in Python.
    pub fn new(component: &Component) -> Process {
        Process {
            component: component.clone(),
            name: next_name(),
            entry: EntryConfig::Main,
            argv0: None,
            args: Vec::new(),
            grants: Grants::new(),
            stdin: Input::Null,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            running: None,
        }
    }

    /// Names the process; the guest sees it through `wasmp_guest::process::name()`, and
    /// it is `argv[0]` of a command unless [`argv0`](Process::argv0) says otherwise.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets `argv[0]` of a command (`wasmtime run --argv0`); by default it is the name.
    #[must_use]
    pub fn argv0(mut self, argv0: impl Into<String>) -> Self {
        self.argv0 = Some(argv0.into());
        self
    }

    /// Calls the exported function `export` with `args` instead of running `main`:
    /// Python's `Process(target=export, args=args)`. Arguments are checked against the
    /// export's WIT signature by [`start`](Process::start); integers are converted to the
    /// parameter's integer type when they fit.
    #[must_use]
    pub fn invoke<I>(mut self, export: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: IntoVal,
    {
        self.entry = EntryConfig::Invoke {
            export: export.into(),
            args: args.into_iter().map(IntoVal::into_val).collect(),
        };
        self
    }

    /// Like [`invoke`](Process::invoke) with the call written in WAVE syntax, as
    /// `wasmtime run --invoke` takes it: `func1("a", 2)`.
    #[must_use]
    pub fn invoke_wave(mut self, call: impl Into<String>) -> Self {
        self.entry = EntryConfig::InvokeWave(call.into());
        self
    }

    /// Appends arguments for `main` (after `argv[0]`, which is the process name).
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Replaces everything granted so far with `grants` (directories, environment,
    /// queues, limits, time limit): how the CLI and a plugin host hand over one set.
    #[must_use]
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    /// Grants an environment variable ([`Grants::env`]).
    #[must_use]
    pub fn env(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.with_grants(|g| g.env(name, value))
    }

    /// Grants an environment variable in wasmtime's `NAME[=VALUE]` spelling
    /// ([`Grants::env_spec`]).
    #[must_use]
    pub fn env_spec(self, spec: &str) -> Self {
        self.with_grants(|g| g.env_spec(spec))
    }

    /// Grants a directory ([`Grants::dir`]).
    #[must_use]
    pub fn dir(self, grant: DirGrant) -> Self {
        self.with_grants(|g| g.dir(grant))
    }

    /// Grants a queue: the guest reaches it by its name through `wasmp:worker/queue`.
    /// Queues not granted answer `unknown` to the guest.
    #[must_use]
    pub fn queue(self, queue: &Queue) -> Self {
        self.with_grants(|g| g.queue(queue))
    }

    fn with_grants(mut self, grant: impl FnOnce(Grants) -> Grants) -> Self {
        self.grants = grant(std::mem::take(&mut self.grants));
        self
    }

    /// Where the guest's stdin comes from (default: [`Input::Null`]).
    #[must_use]
    pub fn stdin(mut self, input: Input) -> Self {
        self.stdin = input;
        self
    }

    /// Where the guest's stdout goes (default: [`Output::Inherit`]).
    #[must_use]
    pub fn stdout(mut self, output: Output) -> Self {
        self.stdout = output;
        self
    }

    /// Where the guest's stderr goes (default: [`Output::Inherit`]).
    #[must_use]
    pub fn stderr(mut self, output: Output) -> Self {
        self.stderr = output;
        self
    }

    /// Stops the guest once it has run this long: an epoch trap inside wasm, or a kill when
    /// it does not answer (blocked in a host call). The status is then
    /// [`ExitStatus::TimedOut`].
    #[must_use]
    pub fn timeout(self, limit: Duration) -> Self {
        self.with_grants(|g| g.timeout(limit))
    }

    /// Resource limits: memory, stack, instances and tables, fuel.
    #[must_use]
    pub fn limits(self, limits: Limits) -> Self {
        self.with_grants(|g| g.limits(limits))
    }

    /// The process's name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// The component this process runs.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// Starts the worker process: Python's `start()`.
    ///
    /// Everything that can be checked is checked first, so that bad input spawns nothing.
    ///
    /// # Errors
    ///
    /// An [`InputError`](crate::InputError) for a bad configuration (missing export, wrong
    /// arguments, a granted directory that does not exist, …); an error if the process was
    /// already started or the worker program cannot be spawned.
    pub fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            bail!("process {} was already started", self.name);
        }
        let (spec, export) = self.prepare()?;
        let runtime = self.component.runtime();
        let standby = (self.stdout == Output::Inherit && self.stderr == Output::Inherit)
            .then(|| runtime.take_standby())
            .flatten();
        let spawned = match standby {
            Some(spawned) => spawned,
            None => spawn::spawn(SpawnRequest {
                program: runtime.worker_program().to_path_buf(),
                stdout: self.stdout,
                stderr: self.stderr,
                standby: false,
            })?,
        };
        let pid = spawned.pid;
        debug!(name = %self.name, pid, "worker spawned");
        let shared = Arc::new(Shared::default());
        let signaller = spawned.signaller.clone();
        let link = WorkerLink {
            name: self.name.clone(),
            stdout: self.stdout,
            stderr: self.stderr,
            deadline: self.grants.get_timeout().map(|t| Instant::now() + t),
            queues: self.grants.queues().clone(),
            events: runtime.events().clone(),
            host: self.component.host_calls(),
        };
        link.queues.attach_events(runtime.events());
        runtime.events().emit(|| Event::ProcessStarted {
            name: self.name.clone(),
            pid,
        });
        let monitor = Monitor::start(spawned, spec, link, shared.clone())?;
        self.running = Some(Running {
            pid,
            signaller,
            shared,
            monitor: Some(monitor),
            export,
        });
        Ok(())
    }

    /// Checks the configuration as [`start`](Process::start) would, without spawning:
    /// the export and its arguments, and the granted directories.
    ///
    /// # Errors
    ///
    /// The [`InputError`](crate::InputError) `start` would return.
    pub fn check(&self) -> Result<()> {
        self.prepare().map(drop)
    }

    fn prepare(&self) -> Result<(StartSpec, Option<String>)> {
        self.grants.check()?;
        let (entry, export) = self.resolve_entry()?;
        let mut argv = Vec::with_capacity(self.args.len() + 1);
        argv.push(self.argv0.clone().unwrap_or_else(|| self.name.clone()));
        argv.extend(self.args.iter().cloned());
        let mut grants = WireGrants::new(self.name.clone(), argv, &self.grants);
        grants.host_interfaces = self.component.runtime().host_interfaces().names();
        let spec = StartSpec {
            grants,
            cwasm: self.component.cwasm_for(self.grants.get_limits())?,
            entry,
            timeout_ms: self.grants.get_timeout().map(protocol::millis),
            stdin: self.stdin == Input::Inherit,
        };
        Ok((spec, export))
    }

    fn resolve_entry(&self) -> Result<(Entry, Option<String>)> {
        let component = &self.component;
        match &self.entry {
            EntryConfig::Main => {
                component.check_command()?;
                Ok((Entry::Run, None))
            }
            EntryConfig::Invoke { export, args } => {
                let args = component.encode_args(export, args)?;
                Ok((
                    Entry::Invoke {
                        export: export.clone(),
                        args,
                    },
                    Some(export.clone()),
                ))
            }
            EntryConfig::InvokeWave(call) => {
                let (export, args) = component.parse_call(call)?;
                let args = component.encode_args(&export, &args)?;
                Ok((
                    Entry::Invoke {
                        export: export.clone(),
                        args,
                    },
                    Some(export),
                ))
            }
        }
    }

    /// The worker's OS process id, once started: what the guest sees as `pid()`.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// Whether the process was started and has not been reaped yet.
    pub fn is_alive(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.shared.lock().status.is_none())
    }

    /// How the process ended, or `None` while it runs (or before it starts).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.running.as_ref()?.shared.lock().status.clone()
    }

    /// Waits for the process to end: Python's `join()`.
    ///
    /// # Errors
    ///
    /// If the process was never started.
    pub fn join(&mut self) -> Result<ExitStatus> {
        let running = self.running_mut()?;
        let status = running
            .shared
            .wait_status(None)
            .expect("waiting without a deadline");
        if let Some(monitor) = running.monitor.take() {
            let _ = monitor.join();
        }
        Ok(status)
    }

    /// Waits at most `timeout` for the process to end: Python's `join(timeout)`. Returns
    /// `None` if it is still running (it is not stopped; see [`terminate`](Process::terminate)).
    ///
    /// # Errors
    ///
    /// If the process was never started.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let running = self.running_mut()?;
        match running.shared.wait_status(Some(timeout)) {
            Some(status) => {
                if let Some(monitor) = running.monitor.take() {
                    let _ = monitor.join();
                }
                Ok(Some(status))
            }
            None => Ok(None),
        }
    }

    /// Stops the process and reaps it: SIGTERM, then SIGKILL if it is still there after
    /// [`TERMINATE_GRACE`]. Python's `terminate()`, but it also waits, so the process is
    /// gone when it returns. Terminating a process that already ended just returns its
    /// status.
    ///
    /// # Errors
    ///
    /// If the process was never started, or signalling failed.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.stop(Signal::TERM, TERMINATE_GRACE)
    }

    /// Kills the process with SIGKILL and reaps it: Python's `kill()`.
    ///
    /// # Errors
    ///
    /// If the process was never started, or signalling failed.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.stop(Signal::KILL, Duration::ZERO)
    }

    fn stop(&mut self, first: Signal, grace: Duration) -> Result<ExitStatus> {
        let running = self.running_mut()?;
        if running.shared.lock().status.is_none() {
            running.signaller.signal(first)?;
            if running.shared.wait_status(Some(grace)).is_none() {
                running.signaller.signal(Signal::KILL)?;
            }
        }
        self.join()
    }

    /// What the invoked export returned, once the process has ended successfully.
    ///
    /// # Errors
    ///
    /// If the values cannot be decoded against the export's result types (a worker bug).
    pub fn results(&self) -> Result<Option<Vec<Val>>> {
        let Some(running) = &self.running else {
            return Ok(None);
        };
        let Some(export) = &running.export else {
            return Ok(None);
        };
        let state = running.shared.lock();
        match &state.results {
            Some(results) => Ok(Some(self.component.decode_results(export, results)?)),
            None => Ok(None),
        }
    }

    /// The results of the invoked export in WAVE syntax, as `wasmtime run --invoke` prints.
    pub fn results_wave(&self) -> Option<Vec<String>> {
        self.running.as_ref()?.shared.lock().results.clone()
    }

    /// The guest's stdout, when it was captured ([`Output::Capture`]) and the process ended.
    pub fn stdout_bytes(&self) -> Option<Vec<u8>> {
        self.running.as_ref()?.shared.lock().stdout.clone()
    }

    /// The guest's stderr, when it was captured ([`Output::Capture`]) and the process ended.
    pub fn stderr_bytes(&self) -> Option<Vec<u8>> {
        self.running.as_ref()?.shared.lock().stderr.clone()
    }

    fn running_mut(&mut self) -> Result<&mut Running> {
        let name = &self.name;
        self.running
            .as_mut()
            .with_context(|| format!("process {name} was not started"))
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("component", &self.component.name())
            .field("pid", &self.pid())
            .field("exit_status", &self.exit_status())
            .finish_non_exhaustive()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.is_alive() {
            if let Err(e) = self.terminate() {
                warn!(name = %self.name, "failed to terminate a dropped process: {e:#}");
            }
        } else if let Some(monitor) = self.running.as_mut().and_then(|r| r.monitor.take()) {
            let _ = monitor.join();
        }
    }
}
