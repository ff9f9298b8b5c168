//! The tutorial's three programs, checked the same way whatever language the guest is
//! written in (Rust for wasip2 or wasip1, Python): the tests of each language call these.

use wasmp::{Component, ExitStatus, Output, Pool, Process, Queue};

use crate::{join, stdout_of};

/// What the tutorial's reader prints for the writer's four messages.
pub(crate) const READ: &str =
    "read start...\nread value A\nread value B\nread value C\nread value D\nread end...\n";

/// Section 1: `func1` and `func2` in two processes, each printing its arguments, its own
/// pid and the host's pid three times.
pub(crate) fn processes(tutorial: &Component) {
    let mut p1 = Process::new(tutorial)
        .invoke("func1", ["func1...arg1", "func1...agr2"])
        .stdout(Output::Capture);
    let mut p2 = Process::new(tutorial)
        .invoke("func2", ["func2...arg1...", "func1...agr2..."])
        .stdout(Output::Capture);
    p1.start().unwrap();
    p2.start().unwrap();
    assert_eq!(join(&mut p1), ExitStatus::Exited(0));
    assert_eq!(join(&mut p2), ExitStatus::Exited(0));

    let host = std::process::id();
    let (pid1, pid2) = (p1.pid().unwrap(), p2.pid().unwrap());
    assert_ne!(pid1, pid2, "each worker is its own OS process");
    for (process, func, args, pid) in [
        (&p1, "func1", "func1...arg1, func1...agr2", pid1),
        (&p2, "func2", "func2...arg1..., func1...agr2...", pid2),
    ] {
        let out = stdout_of(process);
        let expected = format!("this is {func} with args: {args}---{pid}---{host}");
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.lines().all(|line| line == expected), "{out}");
        assert_ne!(pid, host);
    }
}

/// Section 2: the same functions as `apply_async` tasks on `pool`, then `close` and `join`.
pub(crate) fn pool_tasks(pool: &Pool, tutorial: &Component) {
    let r1 = pool
        .apply_async(tutorial, "func1", ["func1...arg1", "func1...agr2"])
        .unwrap();
    let r2 = pool
        .apply_async(tutorial, "func2", ["func2...arg1...", "func1...agr2..."])
        .unwrap();
    pool.close();
    pool.join().unwrap();
    assert_eq!(r1.successful(), Some(true));
    assert_eq!(r1.get(), Ok(vec![]));
    assert_eq!(r2.get(), Ok(vec![]));
}

/// Section 3: `writer` puts A..D on a queue `reader` drains; the host closes the queue
/// once the writer has joined, and the reader ends on its own.
pub(crate) fn writer_and_reader(writer: &Component, reader: &Component) {
    let q = Queue::new("q");
    let mut pw = Process::new(writer)
        .invoke("writer", ["q"])
        .queue(&q)
        .stdout(Output::Capture);
    let mut pr = Process::new(reader)
        .invoke("reader", ["q"])
        .queue(&q)
        .stdout(Output::Capture);
    pw.start().unwrap();
    pr.start().unwrap();
    assert_eq!(join(&mut pw), ExitStatus::Exited(0));
    q.close(); // instead of Python's busy `while not q.empty()` + terminate()
    assert_eq!(join(&mut pr), ExitStatus::Exited(0));
    assert_eq!(stdout_of(&pw), "write start...\nwrite end...\n");
    assert_eq!(stdout_of(&pr), READ);
    assert_eq!(q.stats().gets, 4);
}
