//! Cross-process queues: the tutorial's writer → reader, and each delivery guarantee.

use std::collections::HashMap;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use wasmp::{ExitStatus, Output, Process, Queue, QueueError};
use wasmp_artifacts::{QUEUE_PROBE, TUTORIAL_QUEUE};

use crate::{eventually, guest, join, stdout_of};

fn probe(args: &[&str], queues: &[&Queue]) -> Process {
    let mut process = Process::new(&guest(QUEUE_PROBE))
        .args(args.iter().copied())
        .stdout(Output::Capture)
        .stderr(Output::Capture);
    for queue in queues {
        process = process.queue(queue);
    }
    process
}

fn signal(process: &Process, signal: Signal) {
    let pid = Pid::from_raw(process.pid().unwrap() as i32).unwrap();
    kill_process(pid, signal).unwrap();
}

fn got_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|line| line.strip_prefix("got "))
        .map(str::to_string)
        .collect()
}

#[test]
fn tutorial_writer_and_reader_end_cleanly_once_the_queue_is_closed() {
    let tutorial = guest(TUTORIAL_QUEUE);
    crate::tutorial::writer_and_reader(&tutorial, &tutorial);
}

#[test]
fn every_message_is_delivered_exactly_once_across_producers_and_consumers() {
    let q = Queue::bounded("work", 64);
    let producers: Vec<Process> = (0..3)
        .map(|_| probe(&["put", "work", "400"], &[&q]))
        .collect();
    let consumers: Vec<Process> = [
        probe(&["drain", "work"], &[&q]),
        probe(&["drain-many", "work", "16"], &[&q]),
    ]
    .into();
    let mut all: Vec<Process> = producers.into_iter().chain(consumers).collect();
    for p in &mut all {
        p.start().unwrap();
    }
    for p in &mut all[..3] {
        assert_eq!(join(p), ExitStatus::Exited(0));
    }
    q.close();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in &mut all[3..] {
        assert_eq!(join(p), ExitStatus::Exited(0));
        for message in got_lines(&stdout_of(p)) {
            *counts.entry(message).or_default() += 1;
        }
    }
    // Each of 0..400 was put three times (once per producer) and got exactly three times.
    assert_eq!(counts.len(), 400);
    assert!(counts.values().all(|&n| n == 3), "{counts:?}");
    assert_eq!(q.stats().puts, 1200);
    assert_eq!(q.stats().gets, 1200);
}

#[test]
fn a_producer_that_exits_right_after_putting_loses_nothing_and_joins_at_once() {
    let q = Queue::new("out");
    let mut producer = probe(&["put-many", "out", "5000"], &[&q]);
    producer.start().unwrap();
    assert_eq!(join(&mut producer), ExitStatus::Exited(0));
    assert_eq!(q.len(), 5000);
    q.close();
    let got: Vec<String> = q.iter().map(|m| String::from_utf8(m).unwrap()).collect();
    let expected: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
    assert_eq!(got, expected, "in order, complete");
}

#[test]
fn a_producer_killed_mid_put_never_wedges_the_queue() {
    const SIZE: usize = 4 * 1024 * 1024;
    let q = Queue::builder("big").max_message_size(SIZE).build();
    for round in 0..3 {
        let mut flood = probe(
            &["produce", "big", "1000000", &SIZE.to_string(), "1"],
            &[&q],
        );
        flood.start().unwrap();
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        flood.kill().unwrap();
    }
    // Whatever arrived is whole; a partial frame never became a message.
    let arrived = q.len();
    for message in std::iter::from_fn(|| q.try_get().unwrap()) {
        assert_eq!(message.len(), SIZE);
        assert!(message.iter().all(|&b| b == 0xa5));
    }
    // The queue still flows for everyone else.
    let mut producer = probe(&["put", "big", "50"], &[&q]);
    producer.start().unwrap();
    assert_eq!(join(&mut producer), ExitStatus::Exited(0));
    assert_eq!(q.len(), 50, "{arrived} flood messages arrived before");
}

#[test]
fn a_consumer_killed_while_blocked_in_get_takes_nothing_with_it() {
    let q = Queue::new("jobs");
    let mut consumer = probe(&["get", "jobs"], &[&q]);
    consumer.start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(consumer.is_alive());
    consumer.kill().unwrap();
    q.put("after").unwrap();
    assert_eq!(q.try_get().unwrap().as_deref(), Some(&b"after"[..]));
}

#[test]
fn a_message_sent_to_a_consumer_that_dies_before_reading_it_is_requeued() {
    let q = Queue::new("jobs");
    let mut consumer = probe(&["get", "jobs"], &[&q]);
    consumer.start().unwrap();
    // Wait until it is blocked in `get`, freeze it, hand it a message, then kill it: the
    // reply sits unread in its socket.
    assert!(eventually(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(50));
        consumer.is_alive()
    }));
    std::thread::sleep(Duration::from_millis(200));
    signal(&consumer, Signal::STOP);
    q.put("precious").unwrap();
    assert!(eventually(Duration::from_secs(5), || q.stats().gets == 1));
    consumer.kill().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || q.len() == 1),
        "the unread message came back"
    );
    assert_eq!(q.get().unwrap(), b"precious");
}

#[test]
fn a_bounded_queue_pushes_back_instead_of_growing() {
    let q = Queue::bounded("small", 4);
    let mut producer = probe(&["put", "small", "100"], &[&q]);
    producer.start().unwrap();
    assert!(eventually(Duration::from_secs(10), || q.len() == 4));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(q.len(), 4, "the producer waits for room");
    assert!(producer.is_alive());
    let got: Vec<Vec<u8>> = (0..100).map(|_| q.get().unwrap()).collect();
    assert_eq!(join(&mut producer), ExitStatus::Exited(0));
    assert_eq!(got[99], b"99");
    assert!(q.is_empty());
}

#[test]
fn a_worker_reaches_only_the_queues_it_was_granted() {
    let granted = Queue::new("mine");
    let other = Queue::new("theirs");
    other.put("secret").unwrap();
    let mut p = probe(&["get", "theirs"], &[&granted]);
    p.start().unwrap();
    assert!(join(&mut p).success());
    assert_eq!(
        stdout_of(&p),
        "error: no queue named \"theirs\" was granted\n"
    );
    assert_eq!(other.len(), 1);
}

#[test]
fn oversize_messages_are_refused_as_too_large() {
    let q = Queue::builder("capped").max_message_size(1024).build();
    let mut p = probe(&["put-size", "capped", "2000"], &[&q]);
    p.start().unwrap();
    assert!(join(&mut p).success());
    assert_eq!(stdout_of(&p), "error: message is larger than 1024 bytes\n");
    assert_eq!(q.put(vec![0; 2000]), Err(QueueError::TooLarge(1024)));
    assert!(q.is_empty());
}

#[test]
fn get_timeout_try_get_try_put_len_and_close_from_a_guest() {
    let q = Queue::bounded("q", 1);
    let run = |args: &[&str]| {
        let mut p = probe(args, &[&q]);
        p.start().unwrap();
        assert!(join(&mut p).success());
        stdout_of(&p)
    };
    assert_eq!(
        run(&["get-timeout", "q", "50"]),
        "error: queue call timed out\n"
    );
    assert_eq!(run(&["try-get", "q"]), "empty\n");
    assert_eq!(run(&["try-put", "q"]), "try-put ok\n");
    assert_eq!(run(&["try-put", "q"]), "error: queue is full\n");
    assert_eq!(run(&["len", "q"]), "len 1\n");
    assert_eq!(run(&["close", "q"]), "closed\n");
    assert_eq!(run(&["try-get", "q"]), "got x\n");
    assert_eq!(run(&["get", "q"]), "error: queue is closed\n");
}

#[test]
fn two_different_queues_with_one_name_are_refused() {
    let mut p = probe(&["len", "q"], &[&Queue::new("q"), &Queue::new("q")]);
    assert!(p.start().is_err());
}
