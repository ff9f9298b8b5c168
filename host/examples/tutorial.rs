//! The Python multiprocessing tutorial's programs, run as wasm workers in sandboxed OS
//! processes. README's first command:
//!
//! ```text
//! cargo run --release --example tutorial
//! ```
//!
//! This program is also its own worker program (the default): worker processes re-execute
//! it, and `run_worker_if_requested` turns those into workers before `main` goes further.

use anyhow::Result;
use wasmp::{Output, Process, Runtime};

fn main() -> Result<()> {
    wasmp::run_worker_if_requested();
    let runtime = Runtime::new()?;

    println!("== 1. Process(target=func, args=(...)).start() / join()");
    println!("host pid {}", std::process::id());
    let tutorial = runtime.load(wasmp_artifacts::TUTORIAL_PROCESS)?;
    let mut p1 = Process::new(&tutorial)
        .name("p1")
        .invoke("func1", ["func1...arg1", "func1...agr2"])
        .stdout(Output::Tagged);
    let mut p2 = Process::new(&tutorial)
        .name("p2")
        .invoke("func2", ["func2...arg1...", "func1...agr2..."])
        .stdout(Output::Tagged);
    p1.start()?; // must start
    p2.start()?;
    let s1 = p1.join()?; // the host waits for p1
    let s2 = p2.join()?;
    println!("p1 (pid {}) {s1}", p1.pid().unwrap_or(0));
    println!("p2 (pid {}) {s2}", p2.pid().unwrap_or(0));
    Ok(())
}
