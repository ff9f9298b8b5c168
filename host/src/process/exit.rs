//! How a worker ended, as the host reports it.

use std::fmt;

/// The end of a worker process: Python's `Process.exitcode`, with the reason kept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitStatus {
    /// The guest finished: `main` returned (0), it called `exit(code)`, or the invoked
    /// export returned (0; see [`Process::results`](crate::Process::results)).
    Exited(i32),
    /// The guest trapped (`unreachable`, a panic, out-of-bounds access, stack exhaustion…);
    /// the message has wasmtime's explanation and the wasm backtrace.
    Trapped(String),
    /// The worker process was killed by this signal (by [`Process::terminate`], by
    /// [`Process::kill`], or from outside).
    ///
    /// [`Process::terminate`]: crate::Process::terminate
    /// [`Process::kill`]: crate::Process::kill
    Signaled(i32),
    /// The guest ran past its time limit and was stopped.
    TimedOut,
    /// The worker could not run the guest, or died without reporting how it ended.
    Failed(String),
}

impl ExitStatus {
    /// Whether the guest finished with exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }

    /// The exit code a command-line tool should end with, following `wasmtime run` and
    /// shell conventions: the guest's own code; 134 for a trap (128 + SIGABRT, as
    /// wasmtime); 128 + N for signal N; 124 for a timeout (as `timeout(1)`); 70 (EX_SOFTWARE)
    /// when the worker failed.
    pub fn code(&self) -> i32 {
        match self {
            ExitStatus::Exited(code) => *code,
            ExitStatus::Trapped(_) => 134,
            ExitStatus::Signaled(signal) => 128 + signal,
            ExitStatus::TimedOut => 124,
            ExitStatus::Failed(_) => 70,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exited with code {code}"),
            ExitStatus::Trapped(message) => write!(f, "trapped: {message}"),
            ExitStatus::Signaled(signal) => match signal_meaning(*signal) {
                Some(meaning) => write!(f, "killed by signal {signal} ({meaning})"),
                None => write!(f, "killed by signal {signal}"),
            },
            ExitStatus::TimedOut => f.write_str("timed out"),
            ExitStatus::Failed(message) => write!(f, "failed: {message}"),
        }
    }
}

/// What a signal that ends a worker usually means.
fn signal_meaning(signal: i32) -> Option<&'static str> {
    Some(match signal {
        6 => "SIGABRT: the worker aborted",
        9 => "SIGKILL",
        11 => "SIGSEGV: the worker crashed",
        15 => "SIGTERM",
        31 => "SIGSYS: a system call outside the worker's seccomp allow-list",
        _ => return None,
    })
}
