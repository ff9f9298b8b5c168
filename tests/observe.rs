//! `--events` (JSON lines of what happened) and `--metrics` (Prometheus text, scraped
//! while the run goes on).

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;
use wasmp::{Event, Metrics, Pool, Runtime};
use wasmp_artifacts::{POOL_PROBE, TUTORIAL_PROCESS};

use crate::streaming::{Feeding, json_lines};
use crate::{DEADLINE, text, wasmp, wasmp_with_stdin};

fn events_named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

#[test]
fn pool_events_tell_each_worker_and_task_from_start_to_end() {
    let dir = crate::scratch("pool-events");
    let file = dir.join("events.jsonl");
    let out = wasmp_with_stdin(
        &[
            "pool",
            "-j",
            "1",
            "--events",
            file.to_str().unwrap(),
            POOL_PROBE,
            "--invoke",
            "square",
        ],
        Some(b"[2]\n[3]\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events = json_lines(&std::fs::read(&file).unwrap());
    assert!(
        events.iter().all(|e| e["time"].as_f64().is_some()),
        "{events:?}"
    );
    let started = events_named(&events, "worker_started");
    assert_eq!(started.len(), 1, "{events:?}");
    let pid = &started[0]["pid"];
    let tasks = events_named(&events, "task_started");
    assert_eq!(tasks.len(), 2, "{events:?}");
    assert!(
        tasks
            .iter()
            .all(|t| t["export"] == "square" && &t["worker"] == pid)
    );
    assert!(tasks.iter().all(|t| t["attempt"] == 1));
    let done = events_named(&events, "task_done");
    assert_eq!(done.len(), 2, "{events:?}");
    assert!(done.iter().all(|d| d["duration_ms"].as_f64().is_some()));
    let stopped = events_named(&events, "worker_stopped");
    assert_eq!(stopped.len(), 1, "{events:?}");
    assert_eq!(&stopped[0]["pid"], pid);
}

#[test]
fn failed_and_retried_tasks_and_recycled_workers_are_events() {
    let dir = crate::scratch("failure-events");
    let file = dir.join("events.jsonl");
    let out = wasmp(&[
        "pool",
        "--retry-errors",
        "1",
        "--events",
        file.to_str().unwrap(),
        "--input",
        crate::scratch_file("failure-events-input", "in.jsonl", "[]\n")
            .to_str()
            .unwrap(),
        POOL_PROBE,
        "--invoke",
        "trap",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let events = json_lines(&std::fs::read(&file).unwrap());
    let failed = events_named(&events, "task_failed");
    assert_eq!(failed.len(), 2, "{events:?}");
    assert!(failed.iter().all(|f| f["reason"] == "trapped"));
    assert_eq!(failed[1]["attempt"], 2);
    let retried = events_named(&events, "task_retried");
    assert_eq!(retried.len(), 1, "{events:?}");
    assert!(retried[0]["delay_ms"].as_f64().unwrap() >= 50.0);
    // A worker whose task trapped is not trusted with another.
    let recycled = events_named(&events, "worker_recycled");
    assert!(
        recycled.iter().all(|r| r["reason"] == "task_failed") && !recycled.is_empty(),
        "{events:?}"
    );
}

#[test]
fn run_events_to_stdout_tell_the_process_start_and_exit() {
    let out = wasmp(&["run", "--events", "-", TUTORIAL_PROCESS]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect();
    let started = events_named(&events, "process_started");
    let exited = events_named(&events, "process_exited");
    assert_eq!((started.len(), exited.len()), (1, 1), "{events:?}");
    assert_eq!(started[0]["pid"], exited[0]["pid"]);
    assert_eq!(exited[0]["code"], 0);
    assert_eq!(exited[0]["timed_out"], false);
    // A worker process holds at least the wasmtime runtime: megabytes, not zero.
    let peak = exited[0]["peak_memory_kb"].as_u64().unwrap_or(0);
    assert!(peak > 1024, "{events:?}");
}

/// `GET path` from `addr`; the whole response.
fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn metrics_are_scraped_while_the_pool_runs() {
    let mut pool = Feeding::start(&[
        "pool",
        "-j",
        "1",
        "--queue",
        "side",
        "--metrics",
        "127.0.0.1:0",
        POOL_PROBE,
        "--invoke",
        "square",
    ]);
    let line = pool.stderr_line_with("metrics at http://");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    pool.write("[5]");
    assert_eq!(pool.next_line(), r#"{"result":25}"#);
    // The run goes on (stdin is open) while it is scraped.
    let response = http_get(&addr, "/metrics");
    assert!(
        response
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with(" 200 OK"),
        "{response}"
    );
    assert!(
        response.contains("application/openmetrics-text"),
        "{response}"
    );
    for line in [
        "wasmp_task_runs_total{outcome=\"done\"} 1",
        "wasmp_task_duration_seconds_count 1",
        "wasmp_workers{state=\"idle\"} 1",
        "wasmp_worker_starts_total{kind=\"pool\"} 1",
        "wasmp_queue_length{queue=\"side\"} 0",
        "# EOF",
    ] {
        assert!(response.contains(line), "{line} missing from\n{response}");
    }
    let missing = http_get(&addr, "/other");
    assert!(
        missing.lines().next().unwrap_or_default().contains(" 404 "),
        "{missing}"
    );
    assert_eq!(pool.finish(), Some(0));
}

/// A runtime whose events go to a channel and to metrics.
fn observed_runtime() -> (
    Runtime,
    std::sync::Arc<Metrics>,
    crossbeam_channel::Receiver<Event>,
) {
    let metrics = std::sync::Arc::new(Metrics::new());
    let (sender, events) = crossbeam_channel::unbounded();
    let observer = metrics.clone();
    let runtime = Runtime::builder()
        .cache_dir(crate::cache_dir())
        .worker_program(crate::WASMP)
        .on_event(move |event| {
            observer.observe(event);
            let _ = sender.send(event.clone());
        })
        .build()
        .unwrap();
    (runtime, metrics, events)
}

#[test]
fn the_library_subscribes_to_the_same_events_and_renders_the_same_metrics() {
    let (runtime, metrics, events) = observed_runtime();
    let probe = runtime.load(POOL_PROBE).unwrap();
    let pool = Pool::builder(&runtime).processes(1).build().unwrap();
    assert_eq!(pool.apply(&probe, "square", [4u64]).unwrap().len(), 1);
    pool.close();
    pool.join().unwrap();
    let seen: Vec<Event> = events.try_iter().collect();
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::TaskDone { attempt: 1, .. })),
        "{seen:?}"
    );
    assert!(
        metrics
            .render()
            .contains("wasmp_task_runs_total{outcome=\"done\"} 1")
    );
}

#[test]
fn a_granted_queue_reports_when_it_is_closed_and_when_it_is_drained() {
    let (sender, events) = crossbeam_channel::unbounded();
    let runtime = Runtime::builder()
        .cache_dir(crate::cache_dir())
        .worker_program(crate::WASMP)
        .on_event(move |event| {
            let _ = sender.send(event.clone());
        })
        .build()
        .unwrap();
    let queue = wasmp::Queue::new("reported");
    let pool = Pool::builder(&runtime)
        .processes(1)
        .queue(&queue)
        .build()
        .unwrap();
    queue.put(b"a").unwrap();
    queue.put(b"b").unwrap();
    queue.close();
    assert_eq!(queue.get().unwrap(), b"a");
    let queue_events = |events: &crossbeam_channel::Receiver<Event>| -> Vec<Event> {
        events
            .try_iter()
            .filter(|e| matches!(e, Event::QueueClosed { .. } | Event::QueueDrained { .. }))
            .collect()
    };
    assert_eq!(
        queue_events(&events),
        [Event::QueueClosed {
            queue: "reported".into(),
            waiting: 2
        }]
    );
    assert_eq!(queue.get().unwrap(), b"b");
    assert!(queue.get().is_err());
    assert_eq!(
        queue_events(&events),
        [Event::QueueDrained {
            queue: "reported".into()
        }]
    );
    pool.close();
    pool.join().unwrap();
}

/// The `limit_hit` events of `events`, each checked to come before the event that ends its
/// run (`ends`, matched on the worker's pid under `pid_key`).
fn limit_hits_before<'a>(events: &'a [Value], ends: &str, pid_key: &str) -> Vec<&'a Value> {
    let hits: Vec<&Value> = events_named(events, "limit_hit");
    for hit in &hits {
        let at = |e: &Value| events.iter().position(|x| std::ptr::eq(x, e));
        let end = events
            .iter()
            .find(|e| e["event"] == ends && e[pid_key] == hit["worker"])
            .unwrap_or_else(|| panic!("no {ends} for {hit}: {events:?}"));
        assert!(at(hit) < at(end), "{hit} after {end}");
    }
    hits
}

#[test]
fn a_process_over_its_memory_limit_is_a_limit_hit_event() {
    let out = wasmp(&[
        "run",
        "--events",
        "-",
        "-W",
        "max-memory-size=64MiB",
        wasmp_artifacts::HOSTILE,
        "memory-bomb",
    ]);
    assert_eq!(out.status.code(), Some(134), "{}", text(&out.stderr));
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect();
    let hits = limit_hits_before(&events, "process_exited", "pid");
    assert_eq!(hits.len(), 1, "{events:?}");
    assert_eq!(hits[0]["limit"], "max-memory-size");
    assert_eq!(hits[0]["name"], "hostile");
    assert!(hits[0]["task"].is_null());
    let detail = hits[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&(64u64 << 20).to_string()), "{detail}");
}

#[test]
fn pool_tasks_out_of_fuel_or_time_are_limit_hit_events_naming_the_task() {
    for (limit, key) in [("fuel=5000000", "fuel"), ("timeout=300ms", "timeout")] {
        let dir = crate::scratch(&format!("limit-events-{key}"));
        let file = dir.join("events.jsonl");
        let out = wasmp_with_stdin(
            &[
                "pool",
                "-j",
                "1",
                "-W",
                limit,
                "--events",
                file.to_str().unwrap(),
                wasmp_artifacts::EXPORTS,
                "--invoke",
                "spin",
            ],
            Some(b"[]\n"),
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let events = json_lines(&std::fs::read(&file).unwrap());
        let hits = limit_hits_before(&events, "task_failed", "worker");
        assert_eq!(hits.len(), 1, "{key}: {events:?}");
        assert_eq!(hits[0]["limit"], key);
        let failed = events_named(&events, "task_failed");
        assert_eq!(hits[0]["task"], failed[0]["id"], "{events:?}");
        assert!(hits[0]["name"].is_null());
    }
}

#[test]
fn the_library_sees_stack_and_timeout_limit_hits_and_counts_them() {
    let (runtime, metrics, events) = observed_runtime();
    let hostile = runtime.load(wasmp_artifacts::HOSTILE).unwrap();
    let mut recurse = wasmp::Process::new(&hostile)
        .args(["recurse"])
        .stderr(wasmp::Output::Null)
        .limits(wasmp::Limits {
            max_wasm_stack: Some(64 << 10),
            ..Default::default()
        });
    recurse.start().unwrap();
    assert!(matches!(
        crate::join(&mut recurse),
        wasmp::ExitStatus::Trapped(_)
    ));
    let exports = runtime.load(wasmp_artifacts::EXPORTS).unwrap();
    let mut spin = wasmp::Process::new(&exports)
        .invoke("spin", Vec::<wasmp::Val>::new())
        .timeout(std::time::Duration::from_millis(200));
    spin.start().unwrap();
    assert_eq!(crate::join(&mut spin), wasmp::ExitStatus::TimedOut);
    let hits: Vec<(&'static str, String)> = events
        .try_iter()
        .filter_map(|e| match e {
            Event::LimitHit { limit, detail, .. } => Some((limit, detail)),
            _ => None,
        })
        .collect();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].0, "max-wasm-stack");
    assert!(hits[0].1.contains("65536"), "{hits:?}");
    assert_eq!(hits[1].0, "timeout");
    assert!(hits[1].1.contains("200ms"), "{hits:?}");
    let text = metrics.render();
    for line in [
        "wasmp_limit_hits_total{limit=\"max-wasm-stack\"} 1",
        "wasmp_limit_hits_total{limit=\"timeout\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

/// Regression: the streaming pool held stdout locked for its whole run, so the first event
/// a pool thread wrote to `--events -` waited forever.
#[test]
fn pool_events_and_results_share_stdout_line_by_line() {
    let input: String = (0..20).map(|i| format!("[{i}]\n")).collect();
    let out = wasmp_with_stdin(
        &[
            "pool", "-j", "2", "--events", "-", POOL_PROBE, "--invoke", "square",
        ],
        Some(input.as_bytes()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let (events, results): (Vec<&Value>, Vec<&Value>) =
        lines.iter().partition(|v| v.get("event").is_some());
    assert_eq!(results.len(), 20, "{lines:?}");
    assert_eq!(
        events.iter().filter(|e| e["event"] == "task_done").count(),
        20
    );
}
