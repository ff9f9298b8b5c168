//! Who this worker is: Python's `os.getpid()`, `os.getppid()` and
//! `multiprocessing.current_process().name`.
//!
//! A guest cannot ask the OS (WASI has no process ids), so the host answers: every worker
//! runs in its own OS child process of the host.

use crate::bindings::wasmp::worker::process as raw;

/// This worker's OS process id.
pub fn pid() -> u32 {
    raw::pid()
}

/// The OS process id of the host that started this worker.
pub fn ppid() -> u32 {
    raw::ppid()
}

/// The name the host gave this worker (`Process::name`, or `wasmp run --name`).
pub fn name() -> String {
    raw::name()
}

/// Ends the worker with `code` as its exit code, which the host reports as the process's
/// exit status (`wasmp run` exits with it).
///
/// Prefer this to `std::process::exit`: on `wasm32-wasip2`, Rust's `exit(n)` reports every
/// non-zero `n` as 1.
pub fn exit(code: u8) -> ! {
    crate::bindings::wasi::cli::exit::exit_with_code(code);
    unreachable!("exit-with-code returned")
}
