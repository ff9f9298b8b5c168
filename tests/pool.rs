//! `Pool`: Python's Pool semantics on warm sandboxed worker processes, and its faults.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use wasmp::{Pool, Queue, TaskError, Val};
use wasmp_artifacts::{POOL_PROBE, TUTORIAL_PROCESS};

use crate::{DEADLINE, guest, is_running, runtime};

fn pool(processes: usize) -> wasmp::PoolBuilder {
    Pool::builder(runtime()).processes(processes)
}

fn none() -> Vec<Val> {
    Vec::new()
}

#[test]
fn tutorial_second_program_apply_async_close_join() {
    let pool = Pool::new(runtime()).unwrap();
    assert_eq!(
        pool.size(),
        std::thread::available_parallelism().unwrap().get()
    );
    crate::tutorial::pool_tasks(&pool, &guest(TUTORIAL_PROCESS));
    assert_eq!(pool.stats().succeeded, 2);
}

#[test]
fn join_before_close_is_an_error_and_close_refuses_new_tasks() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).build().unwrap();
    assert!(pool.join().is_err());
    pool.close();
    assert!(pool.apply_async(&probe, "noop", none()).is_err());
    pool.join().unwrap();
}

#[test]
fn apply_map_starmap_imap_and_unordered_return_every_result() {
    let probe = guest(POOL_PROBE);
    let pool = pool(2).build().unwrap();
    assert_eq!(
        pool.apply(&probe, "square", [7u64]).unwrap(),
        vec![Val::U64(49)]
    );
    let squares: Vec<Val> = (0..100u64).map(|x| Val::U64(x * x)).collect();
    let mapped: Vec<Val> = pool
        .map(&probe, "square", 0..100u64, Some(7))
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(mapped, squares);
    let starmapped: Vec<Val> = pool
        .starmap(&probe, "square", (0..100u64).map(|x| [x]), None)
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(starmapped, squares);
    let imapped: Vec<Val> = pool
        .imap(&probe, "square", 0..100u64, None)
        .unwrap()
        .map(|r| r.unwrap().remove(0))
        .collect();
    assert_eq!(imapped, squares);
    let mut unordered: Vec<(usize, Val)> = pool
        .imap_unordered(&probe, "square", 0..100u64, Some(3))
        .unwrap()
        .map(|(i, r)| (i, r.unwrap().remove(0)))
        .collect();
    unordered.sort_by_key(|(i, _)| *i);
    assert_eq!(
        unordered.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        squares
    );
}

#[test]
fn bad_arguments_are_refused_at_submission() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).build().unwrap();
    assert!(pool.apply_async(&probe, "square", ["x"]).is_err());
    assert!(pool.apply_async(&probe, "nope", none()).is_err());
    assert!(pool.map(&probe, "square", [1i64, -1], None).is_err());
    assert_eq!(pool.stats().outstanding, 0);
}

#[test]
fn every_task_gets_a_fresh_instance_in_a_warm_process() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).build().unwrap();
    for _ in 0..20 {
        assert_eq!(
            pool.apply(&probe, "counter", none()).unwrap(),
            vec![Val::U32(1)]
        );
    }
    let pids: HashSet<String> = (0..10)
        .map(|_| format!("{:?}", pool.apply(&probe, "pid", none()).unwrap()))
        .collect();
    assert_eq!(pids.len(), 1, "one warm process served them all");
    assert_eq!(pool.stats().workers_started, 1);
}

#[test]
fn callbacks_fire_once_with_the_result_or_the_error() {
    let probe = guest(POOL_PROBE);
    let pool = pool(2).build().unwrap();
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (o, f) = (ok.clone(), failed.clone());
    let good = pool.apply_async(&probe, "square", [3u64]).unwrap();
    good.on_success(move |values| {
        assert_eq!(values, [Val::U64(9)]);
        o.fetch_add(1, Ordering::SeqCst);
    })
    .on_error(|e| panic!("unexpected error {e}"));
    let bad = pool.apply_async(&probe, "trap", none()).unwrap();
    bad.on_error(move |e| {
        assert!(matches!(e, TaskError::Trapped(_)));
        f.fetch_add(1, Ordering::SeqCst);
    });
    assert!(good.wait(Some(DEADLINE)) && bad.wait(Some(DEADLINE)));
    assert_eq!(bad.successful(), Some(false));
    assert!(crate::eventually(Duration::from_secs(5), || {
        ok.load(Ordering::SeqCst) == 1 && failed.load(Ordering::SeqCst) == 1
    }));
}

#[test]
fn a_trap_fails_its_task_recycles_the_worker_and_the_pool_goes_on() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).build().unwrap();
    let before = pool.apply(&probe, "pid", none()).unwrap();
    match pool.apply_async(&probe, "trap", none()).unwrap().get() {
        Err(TaskError::Trapped(message)) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    let after = pool.apply(&probe, "pid", none()).unwrap();
    assert_ne!(before, after, "a worker that trapped is replaced");
    assert_eq!(pool.stats().workers_started, 2);
}

fn worker_pid_of_running_task(pool: &Pool, q: &Queue, ms: u64) -> (wasmp::AsyncResult, u32) {
    let probe = guest(POOL_PROBE);
    let result = pool
        .apply_async(
            &probe,
            "report-and-sleep",
            [Val::String(q.name().into()), Val::U64(ms)],
        )
        .unwrap();
    let pid = q.get_timeout(DEADLINE).expect("the task reports its pid");
    (result, u32::from_le_bytes(pid.try_into().unwrap()))
}

#[test]
fn a_worker_killed_mid_task_fails_that_task_quickly_and_is_replaced() {
    let probe = guest(POOL_PROBE);
    let q = Queue::new("pids");
    let pool = pool(2).queue(&q).build().unwrap();
    let others: Vec<_> = (0..20u64)
        .map(|x| pool.apply_async(&probe, "square", [x]).unwrap())
        .collect();
    let (victim, pid) = worker_pid_of_running_task(&pool, &q, 30_000);
    let killed = Instant::now();
    kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
    assert_eq!(
        victim.get_timeout(DEADLINE),
        Err(TaskError::WorkerLost { attempts: 1 })
    );
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "{:?}",
        killed.elapsed()
    );
    for (x, r) in others.iter().enumerate() {
        assert_eq!(r.get_timeout(DEADLINE), Ok(vec![Val::U64((x * x) as u64)]));
    }
    assert_eq!(
        pool.apply(&probe, "square", [5u64]).unwrap(),
        vec![Val::U64(25)]
    );
    assert!(
        crate::eventually(Duration::from_secs(10), || pool.stats().workers_started
            >= 3),
        "a replacement started"
    );
    assert!(!is_running(pid));
}

#[test]
fn a_task_is_retried_when_asked_and_its_result_is_delivered_once() {
    let q = Queue::new("pids");
    let pool = pool(1).retries(1).queue(&q).build().unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    let (result, pid) = worker_pid_of_running_task(&pool, &q, 1_000);
    let d = delivered.clone();
    result.on_success(move |_| {
        d.fetch_add(1, Ordering::SeqCst);
    });
    kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
    // The retry runs in a new worker, which reports its own pid.
    let second = q.get_timeout(DEADLINE).unwrap();
    assert_ne!(u32::from_le_bytes(second.try_into().unwrap()), pid);
    let values = result.get_timeout(DEADLINE).unwrap();
    assert_ne!(values, vec![Val::U32(pid)]);
    assert_eq!(pool.stats().retried, 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        delivered.load(Ordering::SeqCst),
        1,
        "delivered exactly once"
    );
}

#[test]
fn a_task_over_its_timeout_is_stopped_spinning_or_blocked() {
    let probe = guest(POOL_PROBE);
    let q = Queue::new("never");
    let pool = pool(1)
        .timeout(Duration::from_millis(300))
        .queue(&q)
        .build()
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        pool.apply_async(&probe, "spin", none())
            .unwrap()
            .get_timeout(DEADLINE),
        Err(TaskError::TimedOut)
    );
    assert_eq!(
        pool.apply_async(&probe, "block-on", ["never"])
            .unwrap()
            .get_timeout(DEADLINE),
        Err(TaskError::TimedOut)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        pool.apply(&probe, "square", [4u64]).unwrap(),
        vec![Val::U64(16)]
    );
}

#[test]
fn workers_are_recycled_after_max_tasks_and_above_the_memory_threshold() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).max_tasks_per_worker(3).build().unwrap();
    let pids: Vec<Val> = (0..9)
        .map(|_| pool.apply(&probe, "pid", none()).unwrap().remove(0))
        .collect();
    let distinct: HashSet<String> = pids.iter().map(|v| format!("{v:?}")).collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");

    let pool = Pool::builder(runtime())
        .processes(1)
        .max_worker_memory(64 * 1024 * 1024)
        .build()
        .unwrap();
    let first = pool.apply(&probe, "pid", none()).unwrap();
    assert_eq!(
        pool.apply(&probe, "grow", [128u32]).unwrap(),
        vec![Val::U32(128)]
    );
    let after = pool.apply(&probe, "pid", none()).unwrap();
    assert_ne!(first, after, "a worker above the threshold is replaced");
}

#[test]
fn an_initializer_runs_once_per_worker_and_a_failing_one_breaks_the_pool_clearly() {
    let probe = guest(POOL_PROBE);
    let pool = pool(2)
        .initializer(&probe, "setup", [false])
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        pool.apply(&probe, "square", [2u64]).unwrap(),
        vec![Val::U64(4)]
    );

    let started = Instant::now();
    let broken = pool_builder_failing();
    let result = broken.apply_async(&probe, "square", [2u64]);
    let error = match result {
        Ok(r) => r.get_timeout(DEADLINE).unwrap_err(),
        Err(e) => TaskError::Failed(format!("{e:#}")),
    };
    match &error {
        TaskError::Failed(message) => {
            assert!(message.contains("failed to start"), "{message}");
            assert!(message.contains("setup"), "{message}");
        }
        other => panic!("expected a start failure, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        broken.stats().workers_started <= 10,
        "it backs off and gives up"
    );
}

fn pool_builder_failing() -> Pool {
    Pool::builder(runtime())
        .processes(2)
        .initializer(&guest(POOL_PROBE), "setup", [true])
        .unwrap()
        .build()
        .unwrap()
}

#[test]
fn terminate_fails_what_is_left_and_reaps_every_worker() {
    let probe = guest(POOL_PROBE);
    let q = Queue::new("pids");
    let pool = pool(1).queue(&q).build().unwrap();
    let (running, pid) = worker_pid_of_running_task(&pool, &q, 30_000);
    let queued = pool.apply_async(&probe, "square", [1u64]).unwrap();
    pool.terminate();
    assert_eq!(running.get_timeout(DEADLINE), Err(TaskError::Terminated));
    assert_eq!(queued.get_timeout(DEADLINE), Err(TaskError::Terminated));
    assert!(!is_running(pid));
}

#[test]
fn dropping_a_pool_reaps_its_workers() {
    let q = Queue::new("pids");
    let pool = pool(1).queue(&q).build().unwrap();
    let (_running, pid) = worker_pid_of_running_task(&pool, &q, 30_000);
    drop(pool);
    assert!(!is_running(pid));
}

#[test]
fn get_timeout_says_not_ready_while_the_task_runs() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).build().unwrap();
    let slow = pool.apply_async(&probe, "sleep-ms", [300u64]).unwrap();
    assert_eq!(
        slow.get_timeout(Duration::from_millis(10)),
        Err(TaskError::NotReady)
    );
    assert!(!slow.ready());
    assert_eq!(slow.successful(), None);
    assert_eq!(slow.get_timeout(DEADLINE), Ok(vec![]));
}

#[test]
fn a_quick_result_is_not_held_back_by_a_slow_task_behind_it() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).build().unwrap();
    pool.apply(&probe, "noop", none()).unwrap();
    // Submitted together, they travel to the one worker in one job.
    let quick = pool.apply_async(&probe, "sleep-ms", [1u64]).unwrap();
    let slow = pool.apply_async(&probe, "sleep-ms", [30_000u64]).unwrap();
    assert_eq!(quick.get_timeout(Duration::from_secs(5)), Ok(vec![]));
    assert!(!slow.ready());
    pool.terminate();
    assert_eq!(slow.get_timeout(DEADLINE), Err(TaskError::Terminated));
}

#[test]
fn reused_instances_keep_guest_state_until_a_trap() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).reuse_instances(true).build().unwrap();
    let counts: Vec<Val> = (0..5)
        .map(|_| pool.apply(&probe, "counter", none()).unwrap().remove(0))
        .collect();
    assert_eq!(counts, (1..=5).map(Val::U32).collect::<Vec<_>>());
    assert!(pool.apply(&probe, "trap", none()).is_err());
    assert_eq!(
        pool.apply(&probe, "counter", none()).unwrap(),
        vec![Val::U32(1)]
    );
}

#[test]
fn results_convert_into_rust_types_and_a_mismatch_is_a_clear_error() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).build().unwrap();
    let result = pool.apply_async(&probe, "square", [12u64]).unwrap();
    assert_eq!(result.get_as::<u64>(), Ok(144));
    let error = result.get_as::<String>().unwrap_err();
    assert!(matches!(error, wasmp::GetAsError::Type(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the task's result: expected String, found u64"
    );
    let unit = pool.apply_async(&probe, "noop", none()).unwrap();
    assert_eq!(unit.get_as::<()>(), Ok(()));
    let trapped = pool.apply_async(&probe, "trap", none()).unwrap();
    assert!(matches!(
        trapped.get_as::<()>(),
        Err(wasmp::GetAsError::Task(TaskError::Trapped(_)))
    ));
    pool.close();
    pool.join().unwrap();
}

#[test]
fn retry_errors_runs_a_trapping_task_again_in_a_fresh_instance_until_it_succeeds() {
    let probe = guest(POOL_PROBE);
    let failures = Queue::new("failures");
    // The task traps while this queue holds a message, taking one each time.
    failures.put(b"1").unwrap();
    failures.put(b"2").unwrap();
    let retrying = pool(1).queue(&failures).retry_errors(3).build().unwrap();
    let result = retrying
        .apply_async(&probe, "trap-while-queued", ["failures"])
        .unwrap();
    assert!(result.wait(Some(DEADLINE)), "no result in time");
    assert_eq!(result.get_as::<u32>(), Ok(7));
    assert_eq!(result.attempts(), 3);
    assert_eq!(retrying.stats().retried, 2);

    // Without error retries a trap is final, after one attempt.
    failures.put(b"3").unwrap();
    let plain = pool(1).queue(&failures).build().unwrap();
    let result = plain
        .apply_async(&probe, "trap-while-queued", ["failures"])
        .unwrap();
    assert!(matches!(result.get(), Err(TaskError::Trapped(_))));
    assert_eq!(result.attempts(), 1);
    for pool in [retrying, plain] {
        pool.close();
        pool.join().unwrap();
    }
}

#[test]
fn a_map_chunk_runs_in_one_instance_and_the_next_chunk_in_a_fresh_one() {
    let probe = guest(POOL_PROBE);
    let pool = pool(1).build().unwrap();
    // `counter` counts calls in a guest global: it says which instance ran what.
    let counts: Vec<Val> = pool
        .starmap(&probe, "counter", (0..8).map(|_| none()), Some(4))
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    let expected: Vec<Val> = [1, 2, 3, 4, 1, 2, 3, 4].map(Val::U32).to_vec();
    assert_eq!(counts, expected);
    // Single tasks keep a fresh instance each.
    for _ in 0..3 {
        assert_eq!(
            pool.apply(&probe, "counter", none()).unwrap(),
            [Val::U32(1)]
        );
    }
    pool.close();
    pool.join().unwrap();
}
