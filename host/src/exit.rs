//! How a worker ended: the one table from what a worker reports ([`Outcome`]) and what the
//! OS says, to the [`ExitStatus`] users see, to the exit code a command-line tool ends with.
//!
//! The worker process uses the same table for its own exit code, so that a host that lost
//! the final frame can still tell success from failure. Plain data: no wasmtime, no process.

use std::fmt;

use crate::protocol::Outcome;

/// The exit codes that are not the guest's own, following `wasmtime run` and shell
/// conventions.
pub(crate) mod code {
    /// A trap: 128 + SIGABRT, as `wasmtime run`.
    pub(crate) const TRAPPED: i32 = 134;
    /// A timeout, as `timeout(1)`.
    pub(crate) const TIMED_OUT: i32 = 124;
    /// The worker could not run the guest: EX_SOFTWARE.
    pub(crate) const FAILED: i32 = 70;
    /// Killed by signal N: 128 + N, as shells report it.
    pub(crate) const SIGNALED_BASE: i32 = 128;
}

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
            ExitStatus::Trapped(_) => code::TRAPPED,
            ExitStatus::Signaled(signal) => code::SIGNALED_BASE + signal,
            ExitStatus::TimedOut => code::TIMED_OUT,
            ExitStatus::Failed(_) => code::FAILED,
        }
    }

    /// [`code`](Self::code) as a process exit status (0–255).
    pub(crate) fn exit_byte(&self) -> u8 {
        self.code().clamp(0, 255) as u8
    }

    /// How a worker ended: what it reported if it did, else `failure` (the host gave up on
    /// it, e.g. it broke the protocol), else what the OS says of the reaped process.
    pub(crate) fn of_worker(
        outcome: Option<&Outcome>,
        failure: Option<String>,
        os_status: std::io::Result<std::process::ExitStatus>,
    ) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        if let Some(outcome) = outcome {
            return ExitStatus::from(outcome);
        }
        if let Some(failure) = failure {
            return ExitStatus::Failed(failure);
        }
        match os_status {
            Ok(status) => match status.signal() {
                Some(signal) => ExitStatus::Signaled(signal),
                None => ExitStatus::Failed(format!(
                    "the worker process exited with code {} without reporting how the guest ended \
                     (did it crash, or is the worker program not a wasmp worker?)",
                    status.code().unwrap_or(-1)
                )),
            },
            Err(e) => ExitStatus::Failed(format!("failed to reap the worker process: {e}")),
        }
    }
}

impl From<&Outcome> for ExitStatus {
    fn from(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Exited(code) => ExitStatus::Exited(*code),
            Outcome::Returned(_) => ExitStatus::Exited(0),
            Outcome::Trapped(message) => ExitStatus::Trapped(message.clone()),
            Outcome::TimedOut => ExitStatus::TimedOut,
            Outcome::Failed(message) => ExitStatus::Failed(message.clone()),
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

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// The whole table, row by row: what the worker reports (or the OS says), the status
    /// users see, and the exit code.
    #[test]
    fn every_outcome_maps_to_one_status_and_one_exit_code() {
        let exited = |raw| Ok(std::process::ExitStatus::from_raw(raw));
        let rows: Vec<(ExitStatus, ExitStatus, i32)> = vec![
            (
                ExitStatus::of_worker(Some(&Outcome::Exited(3)), None, exited(0)),
                ExitStatus::Exited(3),
                3,
            ),
            (
                ExitStatus::of_worker(Some(&Outcome::Returned(vec!["1".into()])), None, exited(0)),
                ExitStatus::Exited(0),
                0,
            ),
            (
                ExitStatus::of_worker(Some(&Outcome::Trapped("t".into())), None, exited(0)),
                ExitStatus::Trapped("t".into()),
                134,
            ),
            (
                ExitStatus::of_worker(Some(&Outcome::TimedOut), None, exited(0)),
                ExitStatus::TimedOut,
                124,
            ),
            (
                ExitStatus::of_worker(Some(&Outcome::Failed("f".into())), None, exited(0)),
                ExitStatus::Failed("f".into()),
                70,
            ),
            // Reported outcomes win over a host-side failure and over the OS.
            (
                ExitStatus::of_worker(Some(&Outcome::Exited(0)), Some("late".into()), exited(9)),
                ExitStatus::Exited(0),
                0,
            ),
            (
                ExitStatus::of_worker(None, Some("broke the protocol".into()), exited(9)),
                ExitStatus::Failed("broke the protocol".into()),
                70,
            ),
            // SIGKILL (raw wait status 9) and SIGTERM (15).
            (
                ExitStatus::of_worker(None, None, exited(9)),
                ExitStatus::Signaled(9),
                137,
            ),
            (
                ExitStatus::of_worker(None, None, exited(15)),
                ExitStatus::Signaled(15),
                143,
            ),
        ];
        for (got, want, code) in rows {
            assert_eq!(got, want);
            assert_eq!(got.code(), code, "{got}");
        }
        // A worker that exited without reporting: a failure naming its code.
        let silent = ExitStatus::of_worker(None, None, exited(3 << 8));
        assert!(
            matches!(&silent, ExitStatus::Failed(m) if m.contains("exited with code 3")),
            "{silent}"
        );
        assert_eq!(silent.code(), 70);
        let unreaped = ExitStatus::of_worker(None, None, Err(std::io::Error::other("gone")));
        assert!(matches!(unreaped, ExitStatus::Failed(m) if m.contains("failed to reap")));
    }

    #[test]
    fn exit_bytes_are_clamped_to_what_a_process_can_return() {
        assert_eq!(ExitStatus::Exited(300).exit_byte(), 255);
        assert_eq!(ExitStatus::Exited(-1).exit_byte(), 0);
        assert_eq!(ExitStatus::Signaled(9).exit_byte(), 137);
    }
}
