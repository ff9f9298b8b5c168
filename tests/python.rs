//! Python workers: modules compiled into components by componentize-py against worlds that
//! include `wasmp:worker/worker`, run as `Process`es and as `Pool` tasks — the tutorial's
//! three programs in Python (`guests/examples/python`) and a probe
//! (`guests/programs/python/py_probe.py`).

use wasmp::{ExitStatus, Output, Pool, Process, Queue, TaskError, Val};
use wasmp_artifacts::{PY_PROBE, PY_TUTORIAL_PROCESS, PY_TUTORIAL_QUEUE, TUTORIAL_QUEUE, optional};

use crate::{guest, join, runtime, stdout_of};

fn python(guest: wasmp_artifacts::Optional, what: &str) -> Option<wasmp::Component> {
    optional(guest, what).map(crate::guest)
}

#[test]
fn tutorial_one_python_processes_print_their_pid_and_the_hosts() {
    let Some(tutorial) = python(PY_TUTORIAL_PROCESS, "the Python tutorial, section 1") else {
        return;
    };
    let mut p1 = Process::new(&tutorial)
        .invoke("func1", ["func1...arg1", "func1...agr2"])
        .stdout(Output::Capture);
    let mut p2 = Process::new(&tutorial)
        .invoke("func2", ["func2...arg1...", "func1...agr2..."])
        .stdout(Output::Capture);
    p1.start().unwrap();
    p2.start().unwrap();
    let (pid1, pid2) = (p1.pid().unwrap(), p2.pid().unwrap());
    assert_eq!(join(&mut p1), ExitStatus::Exited(0));
    assert_eq!(join(&mut p2), ExitStatus::Exited(0));
    let host = std::process::id();
    let line1 = format!("this is func1 with args: func1...arg1, func1...agr2---{pid1}---{host}\n");
    let line2 =
        format!("this is func2 with args: func2...arg1..., func1...agr2...---{pid2}---{host}\n");
    assert_eq!(stdout_of(&p1), line1.repeat(3));
    assert_eq!(stdout_of(&p2), line2.repeat(3));
}

#[test]
fn tutorial_two_python_functions_as_pool_tasks_then_close_and_join() {
    let Some(tutorial) = python(PY_TUTORIAL_PROCESS, "the Python tutorial, section 2") else {
        return;
    };
    let pool = Pool::builder(runtime()).processes(2).build().unwrap();
    let r1 = pool
        .apply_async(&tutorial, "func1", ["func1...arg1", "func1...agr2"])
        .unwrap();
    let r2 = pool
        .apply_async(&tutorial, "func2", ["func2...arg1...", "func1...agr2..."])
        .unwrap();
    pool.close();
    pool.join().unwrap();
    assert_eq!(r1.get(), Ok(vec![]));
    assert_eq!(r2.get(), Ok(vec![]));
}

#[test]
fn tutorial_three_python_writer_and_reader_and_a_rust_reader_share_queues() {
    let Some(tutorial) = python(PY_TUTORIAL_QUEUE, "the Python tutorial, section 3") else {
        return;
    };
    let expected =
        "read start...\nread value A\nread value B\nread value C\nread value D\nread end...\n";
    // Python writer → Python reader, then Python writer → Rust reader.
    for reader_guest in [tutorial.clone(), guest(TUTORIAL_QUEUE)] {
        let q = Queue::new("q");
        let mut writer = Process::new(&tutorial)
            .invoke("writer", ["q"])
            .queue(&q)
            .stdout(Output::Capture);
        let mut reader = Process::new(&reader_guest)
            .invoke("reader", ["q"])
            .queue(&q)
            .stdout(Output::Capture);
        writer.start().unwrap();
        reader.start().unwrap();
        assert_eq!(join(&mut writer), ExitStatus::Exited(0));
        q.close();
        assert_eq!(join(&mut reader), ExitStatus::Exited(0));
        assert_eq!(stdout_of(&writer), "write start...\nwrite end...\n");
        assert_eq!(stdout_of(&reader), expected);
    }
}

#[test]
fn python_pool_tasks_return_values_and_know_their_worker() {
    let Some(probe) = python(PY_PROBE, "the Python pool test") else {
        return;
    };
    let pool = Pool::builder(runtime()).processes(2).build().unwrap();
    let squares: Vec<Val> = pool
        .map(&probe, "square", 0..40u64, None)
        .unwrap()
        .into_iter()
        .map(|mut r| r.remove(0))
        .collect();
    assert_eq!(
        squares,
        (0..40u64).map(|x| Val::U64(x * x)).collect::<Vec<_>>()
    );

    let identity = match pool
        .apply(&probe, "identity", Vec::<Val>::new())
        .unwrap()
        .remove(0)
    {
        Val::String(s) => s,
        other => panic!("identity returned {other:?}"),
    };
    let fields: Vec<&str> = identity.split(' ').collect();
    assert_eq!(fields.len(), 3, "{identity}");
    assert_ne!(
        fields[1],
        std::process::id().to_string(),
        "runs in its own process"
    );
    assert_eq!(
        fields[2],
        std::process::id().to_string(),
        "its parent is the host"
    );
}

#[test]
fn a_python_exception_fails_its_task_and_the_pool_goes_on() {
    let Some(probe) = python(PY_PROBE, "the Python exception test") else {
        return;
    };
    let pool = Pool::builder(runtime())
        .processes(1)
        .output(Output::Null)
        .build()
        .unwrap();
    let failed = pool.apply(&probe, "fail", ["boom"]).unwrap_err();
    assert!(
        matches!(failed.downcast_ref(), Some(TaskError::Trapped(_))),
        "{failed:?}"
    );
    assert_eq!(
        pool.apply(&probe, "square", [7u64]).unwrap(),
        vec![Val::U64(49)]
    );
}

#[test]
fn a_python_worker_relays_a_queue_and_keeps_state_only_when_instances_are_reused() {
    let Some(probe) = python(PY_PROBE, "the Python queue and state test") else {
        return;
    };
    let (source, sink) = (Queue::new("source"), Queue::new("sink"));
    for word in ["ab", "cd", "ef"] {
        source.put(word).unwrap();
    }
    source.close();
    let mut relay = Process::new(&probe)
        .invoke("relay", ["source", "sink"])
        .queue(&source)
        .queue(&sink);
    relay.start().unwrap();
    assert_eq!(join(&mut relay), ExitStatus::Exited(0));
    assert_eq!(relay.results().unwrap(), Some(vec![Val::U32(3)]));
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| sink.try_get().unwrap()).collect();
    assert_eq!(got, [b"AB".to_vec(), b"CD".to_vec(), b"EF".to_vec()]);

    for (reuse, expected) in [(false, [1, 1, 1]), (true, [1, 2, 3])] {
        let pool = Pool::builder(runtime())
            .processes(1)
            .reuse_instances(reuse)
            .build()
            .unwrap();
        let calls: Vec<Val> = (0..3)
            .map(|_| {
                pool.apply(&probe, "calls", Vec::<Val>::new())
                    .unwrap()
                    .remove(0)
            })
            .collect();
        assert_eq!(calls, expected.map(Val::U32), "reuse_instances({reuse})");
    }
}
