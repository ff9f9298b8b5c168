//! Embedder-defined host interfaces: plugins calling closures of the host process across
//! the process boundary (`app:host/*`, `guests/programs/wit/app-host.wit`), and every way
//! such a call can go wrong.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmp::{
    Component, ExitStatus, HostInterface, InputError, InputErrorKind, Output, Pool, Process,
    Runtime, TaskError, Val,
};
use wasmp_artifacts::{HOST_INVALID, HOST_PLUGIN, HOST_RESOURCE};

use crate::{DEADLINE, WASMP, cache_dir, join, wasmp};

/// One host call as the test host saw it.
#[derive(Debug, Clone)]
struct Seen {
    worker: String,
    pid: u32,
    task: Option<u64>,
    what: String,
}

/// The test host: its runtime, and what its closures saw and keep.
struct Host {
    runtime: Runtime,
    seen: Arc<Mutex<Vec<Seen>>>,
    store: Arc<Mutex<HashMap<String, String>>>,
    /// Calls of `kv.get` served.
    calls: Arc<AtomicU64>,
}

impl Host {
    fn seen(&self, needle: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.what.contains(needle))
            .cloned()
            .collect()
    }

    fn load(&self, path: &str) -> Component {
        self.runtime.load(path).unwrap_or_else(|e| panic!("{e:#}"))
    }
}

fn builder() -> wasmp::RuntimeBuilder {
    Runtime::builder()
        .cache_dir(cache_dir())
        .worker_program(WASMP)
}

/// `app:host/log`: records each line with who sent it.
fn log_interface(seen: Arc<Mutex<Vec<Seen>>>) -> HostInterface {
    HostInterface::new("app:host/log").func("log", move |call, args| {
        let (Val::Enum(level), Val::String(message)) = (&args[0], &args[1]) else {
            anyhow::bail!("unexpected arguments {args:?}");
        };
        seen.lock().unwrap().push(Seen {
            worker: call.worker_name().to_string(),
            pid: call.pid(),
            task: call.task_id(),
            what: format!("log {level}: {message}"),
        });
        Ok(vec![])
    })
}

/// `app:host/kv`: a shared map (typed form), with keys that misbehave on purpose.
fn kv_interface(
    store: Arc<Mutex<HashMap<String, String>>>,
    calls: Arc<AtomicU64>,
    with_incr: bool,
) -> HostInterface {
    let get_store = store.clone();
    let set_store = store.clone();
    let kv = HostInterface::new("app:host/kv")
        .func("get", move |call, args| {
            let Val::String(key) = &args[0] else {
                anyhow::bail!("unexpected arguments {args:?}");
            };
            calls.fetch_add(1, Ordering::Relaxed);
            match key.as_str() {
                "fail" => anyhow::bail!("no such luck"),
                "wrong-type" => Ok(vec![Val::U32(1)]),
                "panic" => panic!("the embedder's bug"),
                "slow" => {
                    // Waits until nobody waits for the answer any more.
                    let started = Instant::now();
                    while !call.is_abandoned() && started.elapsed() < DEADLINE {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok(vec![Val::Option(None)])
                }
                key => {
                    let value = get_store.lock().unwrap().get(key).cloned();
                    Ok(vec![Val::Option(value.map(|v| Box::new(Val::String(v))))])
                }
            }
        })
        .typed_func("set", move |_call, (key, value): (String, String)| {
            set_store.lock().unwrap().insert(key, value);
            Ok(())
        });
    if !with_incr {
        return kv;
    }
    kv.typed_func("incr", move |_call, (key, delta): (String, i64)| {
        let mut store = store.lock().unwrap();
        let entry = store.entry(key).or_insert_with(|| "0".into());
        let Ok(now) = entry.parse::<i64>() else {
            return Ok(Err(format!("{entry:?} is not a number")));
        };
        *entry = (now + delta).to_string();
        Ok(Ok::<i64, String>(now + delta))
    })
}

/// `app:host/values`: echoes what it gets.
fn values_interface(seen: Arc<Mutex<Vec<Seen>>>) -> HostInterface {
    HostInterface::new("app:host/values@0.1.0").func("echo", move |call, args| {
        seen.lock().unwrap().push(Seen {
            worker: call.worker_name().to_string(),
            pid: call.pid(),
            task: call.task_id(),
            what: format!("echo {args:?}"),
        });
        Ok(args.to_vec())
    })
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::new(Mutex::new(HashMap::new()));
        let calls = Arc::new(AtomicU64::new(0));
        let runtime = builder()
            .host_interface(log_interface(seen.clone()))
            .host_interface(kv_interface(store.clone(), calls.clone(), true))
            .host_interface(values_interface(seen.clone()))
            .build()
            .expect("failed to build the host-function runtime");
        Host {
            runtime,
            seen,
            store,
            calls,
        }
    })
}

/// Runs `call` (WAVE) of `component` in a process; its status and results.
fn invoke(component: &Component, call: &str, timeout: Option<Duration>) -> (Process, ExitStatus) {
    let mut process = Process::new(component)
        .invoke_wave(call)
        .stdout(Output::Capture)
        .stderr(Output::Capture);
    if let Some(timeout) = timeout {
        process = process.timeout(timeout);
    }
    process.start().unwrap_or_else(|e| panic!("{e:#}"));
    let status = join(&mut process);
    (process, status)
}

#[track_caller]
fn assert_trapped(status: &ExitStatus, needles: &[&str]) {
    let ExitStatus::Trapped(message) = status else {
        panic!("expected a trap, got {status:?}");
    };
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
}

#[track_caller]
fn input_error_of(result: anyhow::Result<Component>) -> InputError {
    let error = result.expect_err("the component should be refused");
    error
        .downcast_ref::<InputError>()
        .unwrap_or_else(|| panic!("not an input error: {error:#}"))
        .clone()
}

#[test]
fn a_plugin_calls_the_host_log_and_kv_and_the_host_sees_who_called() {
    let host = host();
    host.store
        .lock()
        .unwrap()
        .insert("greeting".into(), "hi".into());
    let plugin = host.load(HOST_PLUGIN);

    let (process, status) = invoke(&plugin, r#"run("alpha")"#, None);
    assert_eq!(status, ExitStatus::Exited(0), "{status}");
    let result = process.results_wave().unwrap().join("");
    assert!(result.starts_with("\"hi from alpha (run "), "{result}");
    let logged = host.seen("log info: alpha starting");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].worker, process.get_name());
    assert_eq!(Some(logged[0].pid), process.pid());
    assert_eq!(logged[0].task, None);
    assert!(!host.seen("log debug: alpha done").is_empty());

    let pool = Pool::builder(&host.runtime).processes(1).build().unwrap();
    let result = pool
        .apply_async(&plugin, "run", ["beta"])
        .unwrap()
        .get_timeout(DEADLINE)
        .unwrap();
    let Val::String(text) = &result[0] else {
        panic!("{result:?}");
    };
    assert!(text.starts_with("hi from beta (run "), "{text}");
    let logged = host.seen("log info: beta starting");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].worker, "pool-worker-0");
    assert!(logged[0].task.is_some(), "{logged:?}");
    assert!(host.store.lock().unwrap().contains_key("last-run-by-beta"));
}

#[test]
fn every_kind_of_wit_value_crosses_to_the_host_and_back_unchanged() {
    let host = host();
    let plugin = host.load(HOST_PLUGIN);
    let (process, status) = invoke(&plugin, "roundtrip()", None);
    assert_eq!(status, ExitStatus::Exited(0), "{status}");
    assert_eq!(process.results_wave().unwrap(), ["\"ok\""]);
    let echoed = host.seen("echo ");
    let pid = process.pid().unwrap();
    let seen = echoed
        .iter()
        .find(|s| s.pid == pid)
        .expect("the host saw it");
    for piece in ["(\"f\", Flags(", "Enum(\"green\")", "Char('🦀')"] {
        assert!(seen.what.contains(piece), "{piece} not in {}", seen.what);
    }
}

#[test]
fn the_typed_form_converts_every_kind_of_value_through_serde() {
    // Through JSON and back: records, variants, enums, flags, bytes, tuples, results, options.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let runtime = builder()
        .host_interface(log_interface(seen))
        .host_interface(kv_interface(Arc::default(), Arc::default(), true))
        .host_interface(
            HostInterface::new("app:host/values")
                .typed_func("echo", |_call, (v,): (serde_json::Value,)| Ok(v)),
        )
        .build()
        .unwrap();
    let plugin = runtime.load(HOST_PLUGIN).unwrap();
    let (process, status) = invoke(&plugin, "roundtrip()", None);
    assert_eq!(status, ExitStatus::Exited(0), "{status}");
    assert_eq!(process.results_wave().unwrap(), ["\"ok\""]);
}

#[test]
fn a_failing_host_function_traps_the_guest_with_its_message_and_the_host_carries_on() {
    let host = host();
    let plugin = host.load(HOST_PLUGIN);
    let (_, status) = invoke(&plugin, r#"lookup("fail")"#, None);
    assert_trapped(
        &status,
        &["host function app:host/kv@0.1.0.get failed", "no such luck"],
    );

    // The embedder's closure returned a value of the wrong type, or panicked.
    let (_, status) = invoke(&plugin, r#"lookup("wrong-type")"#, None);
    assert_trapped(
        &status,
        &["returned U32(1), but its result type is option<string>"],
    );
    let (_, status) = invoke(&plugin, r#"lookup("panic")"#, None);
    assert_trapped(
        &status,
        &["app:host/kv@0.1.0.get panicked: the embedder's bug"],
    );

    let pool = Pool::builder(&host.runtime).processes(1).build().unwrap();
    let failed = pool
        .apply_async(&plugin, "lookup", ["fail"])
        .unwrap()
        .get_timeout(DEADLINE);
    assert!(
        matches!(&failed, Err(TaskError::Trapped(m)) if m.contains("no such luck")),
        "{failed:?}"
    );
    host.store
        .lock()
        .unwrap()
        .insert("after-failure".into(), "fine".into());
    let result = pool
        .apply_async(&plugin, "lookup", ["after-failure"])
        .unwrap()
        .get_timeout(DEADLINE)
        .unwrap();
    assert_eq!(
        result,
        [Val::Option(Some(Box::new(Val::String("fine".into()))))]
    );
}

#[test]
fn an_import_nobody_provides_is_refused_before_anything_spawns_naming_it() {
    // The CLI serves no host interfaces: exit 65, naming what is missing.
    let out = wasmp(&["run", "--invoke", r#"run("x")"#, HOST_PLUGIN]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("app:host/"), "{stderr}");
    assert!(
        stderr.contains("RuntimeBuilder::host_interface"),
        "{stderr}"
    );

    // A runtime that provides some of the interfaces, but not kv.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let partial = builder()
        .host_interface(log_interface(seen.clone()))
        .host_interface(values_interface(seen))
        .build()
        .unwrap();
    let error = input_error_of(partial.load(HOST_PLUGIN));
    assert_eq!(error.kind(), InputErrorKind::UnsatisfiedImport);
    assert!(error.to_string().contains("app:host/kv@0.1.0"), "{error}");
    // What the runtime does provide is not listed as missing.
    assert!(
        error
            .to_string()
            .ends_with("no host interface of this runtime provides app:host/kv@0.1.0"),
        "{error}"
    );
}

#[test]
fn a_function_the_host_interface_does_not_implement_is_refused_at_load() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let runtime = builder()
        .host_interface(log_interface(seen.clone()))
        .host_interface(kv_interface(Arc::default(), Arc::default(), false))
        .host_interface(values_interface(seen))
        .build()
        .unwrap();
    let error = input_error_of(runtime.load(HOST_PLUGIN));
    assert_eq!(error.kind(), InputErrorKind::UnsatisfiedImport);
    assert!(
        error
            .to_string()
            .contains("imports app:host/kv@0.1.0.incr, which the host interface app:host/kv does not implement"),
        "{error}"
    );
}

#[test]
fn a_resource_in_a_host_interface_is_refused_at_load() {
    let runtime = builder()
        .host_interface(HostInterface::new("app:host/handles").func("open", |_, _| Ok(vec![])))
        .build()
        .unwrap();
    let error = input_error_of(runtime.load(HOST_RESOURCE));
    assert_eq!(error.kind(), InputErrorKind::UnsatisfiedImport);
    let message = error.to_string();
    assert!(message.contains("resource `conn`"), "{message}");
    assert!(
        message.contains("cannot cross to the host process"),
        "{message}"
    );
}

#[test]
fn host_interface_names_are_checked_when_the_runtime_is_built() {
    for (name, needle) in [
        ("kv", "must be namespace:package/interface"),
        ("wasi:cli/stdout", "wasmp's own"),
    ] {
        let error = builder()
            .host_interface(HostInterface::new(name))
            .build()
            .expect_err(name);
        assert!(format!("{error:#}").contains(needle), "{error:#}");
    }
    let twice = builder()
        .host_interface(HostInterface::new("app:host/kv"))
        .host_interface(HostInterface::new("app:host/kv"))
        .build()
        .expect_err("registered twice");
    assert!(
        format!("{twice:#}").contains("registered twice"),
        "{twice:#}"
    );
}

#[test]
fn a_host_call_counts_against_the_time_limit_and_a_worker_blocked_in_one_stays_killable() {
    let host = host();
    let plugin = host.load(HOST_PLUGIN);

    // The closure waits until the host gives up on the worker (its deadline).
    let started = Instant::now();
    let (_, status) = invoke(
        &plugin,
        r#"lookup("slow")"#,
        Some(Duration::from_millis(300)),
    );
    assert_eq!(status, ExitStatus::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // terminate() while the guest waits for the host.
    let mut process = Process::new(&plugin).invoke_wave(r#"lookup("slow")"#);
    process.start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let status = process.terminate().unwrap();
    assert!(matches!(status, ExitStatus::Signaled(_)), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A pool task: timed out, and the pool goes on.
    let pool = Pool::builder(&host.runtime)
        .processes(1)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let slow = pool
        .apply_async(&plugin, "lookup", ["slow"])
        .unwrap()
        .get_timeout(DEADLINE);
    assert_eq!(slow, Err(TaskError::TimedOut));
    let after = pool
        .apply_async(&plugin, "lookup", ["nothing-here"])
        .unwrap()
        .get_timeout(DEADLINE);
    assert_eq!(after, Ok(vec![Val::Option(None)]));

    // Pool::terminate while a task waits for the host.
    let pool = Pool::builder(&host.runtime).processes(1).build().unwrap();
    let blocked = pool.apply_async(&plugin, "lookup", ["slow"]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    pool.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(blocked.get_timeout(DEADLINE), Err(TaskError::Terminated));
}

/// This process's resident memory, in KiB.
fn resident_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Set in the child process the flood test runs itself in.
const FLOOD_CHILD: &str = "WASMP_TEST_FLOOD_CHILD";

/// The flood runs in a process of its own (this test binary again, this test alone), so that
/// the memory measured is the flood's, not that of tests running beside it.
#[test]
fn a_plugin_flooding_the_host_with_calls_keeps_host_memory_bounded_and_the_host_responsive() {
    if std::env::var_os(FLOOD_CHILD).is_some() {
        return flood_in_this_process();
    }
    let stdout = crate::run_test_alone(
        "hostfn::a_plugin_flooding_the_host_with_calls_keeps_host_memory_bounded_and_the_host_responsive",
        FLOOD_CHILD,
    );
    let report = stdout
        .lines()
        .find_map(|line| Some(line.split_once("flood report: ")?.1))
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    let numbers: Vec<u64> = report
        .split(' ')
        .map(|field| field.split('=').nth(1).unwrap().parse().unwrap())
        .collect();
    let [grown_kb, slowest_ms, calls] = numbers[..] else {
        panic!("{report}");
    };
    // 1 GiB of arguments went through the host: a leak of even a fraction would show.
    assert!(calls > 20_000, "{report}");
    assert!(
        grown_kb < 96 * 1024,
        "the host grew while serving the flood: {report}"
    );
    assert!(
        slowest_ms < 5_000,
        "another plugin waited during the flood: {report}"
    );
}

fn flood_in_this_process() {
    let host = host();
    let plugin = host.load(HOST_PLUGIN);
    let pool = Pool::builder(&host.runtime).processes(2).build().unwrap();
    // Warm both workers, and the allocator, so that neither is counted.
    let warm = pool
        .starmap(
            &plugin,
            "flood",
            [[64u32, 256 * 1024], [64, 256 * 1024]],
            Some(1),
        )
        .unwrap();
    assert_eq!(warm.len(), 2);

    let calls_before = host.calls.load(Ordering::Relaxed);
    let before = resident_kb();
    // Many small calls, and 4096 of 256 KiB (1 GiB through the host).
    let small = pool.apply_async(&plugin, "flood", [20_000u32, 16]).unwrap();
    let large = pool
        .apply_async(&plugin, "flood", [4096u32, 256 * 1024])
        .unwrap();
    // Meanwhile the host answers another plugin's calls promptly.
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    while !(small.ready() && large.ready()) {
        let call = Instant::now();
        let (_, status) = invoke(&plugin, r#"lookup("greeting")"#, None);
        assert_eq!(status, ExitStatus::Exited(0));
        slowest = slowest.max(call.elapsed());
        assert!(started.elapsed() < DEADLINE, "the flood never ended");
    }
    assert_eq!(small.get_timeout(DEADLINE), Ok(vec![Val::U64(0)]));
    assert_eq!(large.get_timeout(DEADLINE), Ok(vec![Val::U64(0)]));
    let grown_kb = resident_kb().saturating_sub(before);
    let calls = host.calls.load(Ordering::Relaxed) - calls_before;
    println!(
        "flood report: grown_kb={grown_kb} slowest_ms={} calls={calls}",
        slowest.as_millis()
    );
}

#[test]
fn invalid_values_from_a_plugin_trap_it_with_a_clear_error_and_reach_no_host_function() {
    let host = host();
    let invalid = host.load(HOST_INVALID);
    for (how, needle) in [
        ("bounds", "out of bounds"),
        ("utf8", "utf-8"),
        ("enum", "discriminant"),
    ] {
        let (_, status) = invoke(&invalid, &format!("send-invalid({how:?})"), None);
        let ExitStatus::Trapped(message) = &status else {
            panic!("{how}: expected a trap, got {status:?}");
        };
        assert!(
            message.to_lowercase().contains(needle),
            "{how}: {needle:?} not in {message}"
        );
    }
    assert!(host.seen("log ").iter().all(|s| !s.what.contains(": key")));
    assert!(!host.store.lock().unwrap().contains_key("key"));
    // The same imports work with valid values.
    let (_, status) = invoke(&invalid, r#"send-invalid("valid")"#, None);
    assert_eq!(status, ExitStatus::Exited(0), "{status}");
    assert_eq!(
        host.store.lock().unwrap().get("key").map(String::as_str),
        Some("value")
    );
}

#[test]
fn arguments_over_the_host_call_limit_are_refused_in_the_worker() {
    let host = host();
    let plugin = host.load(HOST_PLUGIN);
    let (_, status) = invoke(&plugin, "store-big(17000000)", None);
    assert_trapped(
        &status,
        &["the arguments of app:host/kv@0.1.0.set are over 16777216 bytes"],
    );
    assert!(!host.store.lock().unwrap().contains_key("big"));
}

#[cfg(feature = "cluster")]
#[test]
fn a_cluster_pool_of_a_runtime_with_host_interfaces_is_refused() {
    let error = Pool::builder(&host().runtime)
        .cluster()
        .build()
        .expect_err("host functions cannot run on other hosts");
    let message = format!("{error:#}");
    assert!(
        message.contains("host functions run only on the submitting host"),
        "{message}"
    );
}
