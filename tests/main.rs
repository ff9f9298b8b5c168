//! wasmp's integration tests: one binary (wasmtime, ripgrep and just do the same), a module
//! per area. Guests are real components built from source by `wasmp-artifacts`; workers are
//! real OS processes running the real `wasmp` binary.

mod bad_input;
mod cli;
mod cluster;
mod core_modules;
mod fidelity;
mod hostfn;
mod hostile;
mod new;
mod observe;
mod orphans;
mod pool;
mod process;
mod python;
mod queue;
mod streaming;
mod tutorial;
mod wasmtime_flags;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmp::{Component, ExitStatus, Process, Runtime};

/// The `wasmp` binary cargo built for this test run.
pub(crate) const WASMP: &str = env!("CARGO_BIN_EXE_wasmp");

/// Every wait in these tests ends by then.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// One compile cache for the whole test binary: each guest is compiled once per run.
pub(crate) fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasmp-test-cache")
}

/// The runtime every library test shares, running the real `wasmp` binary as workers.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::builder()
            .cache_dir(cache_dir())
            .worker_program(WASMP)
            .build()
            .expect("failed to build the test runtime")
    })
}

/// Loads a guest once per test binary. Different guests load concurrently (a Python
/// component takes seconds to compile in a debug build).
pub(crate) fn guest(path: &str) -> Component {
    type Slot = Arc<OnceLock<Component>>;
    static LOADED: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    let slot = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(path.to_string())
        .or_default()
        .clone();
    slot.get_or_init(|| runtime().load(path).unwrap_or_else(|e| panic!("{e:#}")))
        .clone()
}

/// Joins with the test deadline: a hung worker fails the test instead of hanging CI.
#[track_caller]
pub(crate) fn join(process: &mut Process) -> ExitStatus {
    match process.join_timeout(DEADLINE).expect("process was started") {
        Some(status) => status,
        None => {
            let _ = process.kill();
            panic!("{} did not finish within {DEADLINE:?}", process.get_name());
        }
    }
}

/// Captured stdout as text.
pub(crate) fn stdout_of(process: &Process) -> String {
    String::from_utf8(process.stdout_bytes().expect("stdout was captured")).unwrap()
}

/// Output bytes as text (lossy: a test shows what it got, whatever it is).
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the `wasmp` CLI with a deadline and returns its output.
#[track_caller]
pub(crate) fn wasmp(args: &[&str]) -> Output {
    wasmp_with_stdin(args, None)
}

/// Runs the `wasmp` CLI with `input` on its stdin.
#[track_caller]
pub(crate) fn wasmp_with_stdin(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut command = Command::new(WASMP);
    command
        .args(args)
        .env("WASMP_CACHE_DIR", cache_dir())
        .env("WASMP_LOG", "wasmp=debug");
    run_with_deadline(command, input)
}

/// Runs the test `name` of this binary alone, in a process of its own with `env` set (the
/// test then does its part), and returns its stdout once it passed: for a test that must
/// not share its process with the others (leaked fds, memory measured).
#[track_caller]
pub(crate) fn run_test_alone(name: &str, env: &str) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, "1");
    let out = run_with_deadline(command, None);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    stdout
}

/// Runs a command, killing it if it outlives [`DEADLINE`].
#[track_caller]
pub(crate) fn run_with_deadline(command: Command, input: Option<&[u8]>) -> Output {
    run_within(command, input, DEADLINE)
}

/// Runs a command, killing it if it outlives `limit`.
#[track_caller]
pub(crate) fn run_within(mut command: Command, input: Option<&[u8]>, limit: Duration) -> Output {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("failed to spawn");
    if let Some(input) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            // A command in its own process group (a shell running a build) takes its
            // children with it; for any other there is no such group and this does nothing.
            let group = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Polls `condition` until it holds or `limit` passes.
pub(crate) fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// Whether a process with this pid exists (and is not a zombie).
pub(crate) fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// A fresh scratch directory for one test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file `name` holding `contents` in a fresh scratch directory for `label`; its path.
pub(crate) fn scratch_file(label: &str, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = scratch(label).join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The lines `wasmp up` tagged `[name PID] `, without the tag.
pub(crate) fn tagged_lines(stdout: &str, name: &str) -> Vec<String> {
    let tag = format!("[{name} ");
    stdout
        .lines()
        .filter(|line| line.starts_with(&tag))
        .map(|line| line.split_once("] ").unwrap().1.to_string())
        .collect()
}

/// The pool-probe guest's path (for tests outside `pool`).
pub(crate) fn pool_probe() -> &'static str {
    wasmp_artifacts::POOL_PROBE
}
