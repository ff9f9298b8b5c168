//! A wasmp worker: a WASI command that takes every message of the queue `jobs` and puts
//! an answer on `results`. The host owns both queues and grants them by name; the loop
//! ends when the host closes `jobs` and it is drained (`--stdin-to-queue` closes it at the
//! end of its input).

wit_bindgen::generate!({
    // wit/world.wit: this worker's world, which includes wasmp:worker/worker@0.1.0
    // (vendored in wit/deps/wasmp-worker).
    path: "wit",
    generate_all,
});

use wasmp::worker::process;
use wasmp::worker::queue::{self, QueueError};

fn main() {
    eprintln!(
        "{} started (pid {}, host pid {})",
        process::name(),
        process::pid(),
        process::ppid()
    );
    let mut done = 0;
    loop {
        match queue::get("jobs", None) {
            Ok(job) => {
                let answer = String::from_utf8_lossy(&job).to_uppercase();
                queue::put("results", answer.as_bytes()).expect("put on results");
                done += 1;
            }
            // Closed and drained: every job was taken.
            Err(QueueError::Closed) => break,
            Err(e) => {
                eprintln!("get from jobs: {e:?}");
                std::process::exit(1);
            }
        }
    }
    eprintln!("{} done: {done} jobs", process::name());
}
