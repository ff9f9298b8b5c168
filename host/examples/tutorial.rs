//! The Python multiprocessing tutorial's programs, run as wasm workers in sandboxed OS
//! processes. README's first command:
//!
//! ```text
//! cargo run --release --example tutorial
//! cargo run --release --example tutorial -- --python   # the same programs written in Python
//! ```
//!
//! With `--python` the workers are the Python versions in `guests/examples/python`,
//! compiled to components by componentize-py (`pip install componentize-py==0.25.1`); the
//! host side is the same, because a worker's language is invisible to it.
//!
//! This program is also its own worker program (the default): worker processes re-execute
//! it, and `run_worker_if_requested` turns those into workers before `main` goes further.

use anyhow::Result;
use wasmp::{Output, Pool, Process, Queue, Runtime};

fn main() -> Result<()> {
    wasmp::run_worker_if_requested();
    let runtime = Runtime::new()?;
    let (process_guest, queue_guest) = if std::env::args().any(|a| a == "--python") {
        let built = |guest: wasmp_artifacts::Optional| {
            guest.map_err(|why| anyhow::anyhow!("the Python guests were not built: {why}"))
        };
        (
            built(wasmp_artifacts::PY_TUTORIAL_PROCESS)?,
            built(wasmp_artifacts::PY_TUTORIAL_QUEUE)?,
        )
    } else {
        (
            wasmp_artifacts::TUTORIAL_PROCESS,
            wasmp_artifacts::TUTORIAL_QUEUE,
        )
    };

    println!("== 1. Process(target=func, args=(...)).start() / join()");
    println!("host pid {}", std::process::id());
    let tutorial = runtime.load(process_guest)?;
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

    println!();
    println!("== 2. Pool().apply_async(...) / close() / join()");
    let pool = Pool::builder(&runtime).output(Output::Tagged).build()?; // one worker per CPU
    let r1 = pool.apply_async(&tutorial, "func1", ["func1...arg1", "func1...agr2"])?;
    let r2 = pool.apply_async(&tutorial, "func2", ["func2...arg1...", "func1...agr2..."])?;
    pool.close(); // no more tasks
    pool.join()?; // join must come after close, as in Python
    println!(
        "{} worker processes; func1 {:?}, func2 {:?}",
        pool.size(),
        r1.get().map(|_| "ok"),
        r2.get().map(|_| "ok")
    );

    println!();
    println!("== 3. a writer and a reader sharing a Queue");
    let tutorial = runtime.load(queue_guest)?;
    let q = Queue::new("q"); // owned by the host, granted to both workers by name
    let mut pw = Process::new(&tutorial)
        .name("pw")
        .invoke("writer", ["q"])
        .queue(&q)
        .stdout(Output::Tagged);
    let mut pr = Process::new(&tutorial)
        .name("pr")
        .invoke("reader", ["q"])
        .queue(&q)
        .stdout(Output::Tagged);
    pw.start()?;
    pr.start()?;
    let sw = pw.join()?;
    // Python busy-waits on q.empty() and terminates the reader; closing the queue lets the
    // reader drain what is left and return on its own.
    q.close();
    let sr = pr.join()?;
    println!("pw (pid {}) {sw}", pw.pid().unwrap_or(0));
    println!("pr (pid {}) {sr}", pr.pid().unwrap_or(0));
    let stats = q.stats();
    println!(
        "queue q: {} put, {} got, {} left",
        stats.puts, stats.gets, stats.len
    );
    Ok(())
}
