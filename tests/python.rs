//! Python workers: modules compiled into components by componentize-py against worlds that
//! include `wasmp:worker/worker`, run as `Process`es and as `Pool` tasks — the tutorial's
//! three programs in Python (`guests/examples/python`) and a probe
//! (`guests/programs/python/py_probe.py`).

use wasmp::{ExitStatus, Output, Pool, Process, Queue, TaskError, Val};
use wasmp_artifacts::{PY_PROBE, PY_TUTORIAL_PROCESS, PY_TUTORIAL_QUEUE, TUTORIAL_QUEUE, optional};

use crate::{guest, join, runtime};

fn python(guest: wasmp_artifacts::Optional, what: &str) -> Option<wasmp::Component> {
    optional(guest, what).map(crate::guest)
}

#[test]
fn tutorial_one_python_processes_print_their_pid_and_the_hosts() {
    if let Some(tutorial) = python(PY_TUTORIAL_PROCESS, "the Python tutorial, section 1") {
        crate::tutorial::processes(&tutorial);
    }
}

#[test]
fn tutorial_two_python_functions_as_pool_tasks_then_close_and_join() {
    if let Some(tutorial) = python(PY_TUTORIAL_PROCESS, "the Python tutorial, section 2") {
        let pool = Pool::builder(runtime()).processes(2).build().unwrap();
        crate::tutorial::pool_tasks(&pool, &tutorial);
    }
}

#[test]
fn tutorial_three_python_writer_and_reader_and_rust_on_either_side() {
    if let Some(tutorial) = python(PY_TUTORIAL_QUEUE, "the Python tutorial, section 3") {
        let rust = guest(TUTORIAL_QUEUE);
        crate::tutorial::writer_and_reader(&tutorial, &tutorial);
        crate::tutorial::writer_and_reader(&tutorial, &rust);
        crate::tutorial::writer_and_reader(&rust, &tutorial);
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
