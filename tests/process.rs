//! The library's `Process`: Python's start / join / pid / terminate, on real worker processes.

use std::time::{Duration, Instant};

use wasmp::{DirGrant, ExitStatus, InputError, InputErrorKind, Output, Process, Val};
use wasmp_artifacts::{CLI_PROBE, EXPORTS, NOOP, TUTORIAL_PROCESS};

use crate::{guest, is_running, join, scratch, stdout_of};

fn probe(args: &[&str]) -> Process {
    Process::new(&guest(CLI_PROBE))
        .args(args.iter().copied())
        .stdout(Output::Capture)
        .stderr(Output::Capture)
}

#[test]
fn tutorial_first_program_runs_two_processes_with_their_own_pids() {
    crate::tutorial::processes(&guest(TUTORIAL_PROCESS));
}

#[test]
fn identity_is_the_worker_pid_the_host_pid_and_the_given_name() {
    let mut p = Process::new(&guest(EXPORTS))
        .name("worker-7")
        .invoke("identity", Vec::<Val>::new());
    p.start().unwrap();
    assert!(join(&mut p).success());
    let expected = format!(
        "name=worker-7 pid={} ppid={}",
        p.pid().unwrap(),
        std::process::id()
    );
    assert_eq!(p.results().unwrap().unwrap(), vec![Val::String(expected)]);
}

#[test]
fn invoke_returns_typed_results_and_converts_integer_arguments() {
    let mut add = Process::new(&guest(EXPORTS)).invoke("add", [40i32, 2]);
    add.start().unwrap();
    assert_eq!(join(&mut add), ExitStatus::Exited(0));
    assert_eq!(add.results().unwrap().unwrap(), vec![Val::U32(42)]);

    let mut describe =
        Process::new(&guest(EXPORTS)).invoke_wave(r#"describe(true, [1, -2, 3], some("x"))"#);
    describe.start().unwrap();
    assert!(join(&mut describe).success());
    assert_eq!(
        describe.results_wave().unwrap(),
        vec![r#""flag=true n=3 sum=2 label=Some(\"x\")""#.to_string()]
    );
}

#[test]
fn main_exit_codes_are_reported() {
    let mut ok = probe(&["args"]);
    ok.start().unwrap();
    assert_eq!(join(&mut ok), ExitStatus::Exited(0));

    let mut three = probe(&["exit", "3"]);
    three.start().unwrap();
    assert_eq!(join(&mut three), ExitStatus::Exited(3));
    assert_eq!(three.exit_status().unwrap().code(), 3);

    // Rust's std::process::exit on wasm32-wasip2 can only say "failed" (1).
    let mut std_exit = probe(&["std-exit", "3"]);
    std_exit.start().unwrap();
    assert_eq!(join(&mut std_exit), ExitStatus::Exited(1));
}

#[test]
fn traps_are_reported_with_their_message() {
    let mut trap = probe(&["trap"]);
    trap.start().unwrap();
    match join(&mut trap) {
        ExitStatus::Trapped(message) => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(
                message.contains("cli_probe"),
                "backtrace names the guest: {message}"
            );
        }
        other => panic!("expected a trap, got {other}"),
    }

    let mut panic = Process::new(&guest(EXPORTS))
        .invoke("fail", ["boom"])
        .stderr(Output::Capture);
    panic.start().unwrap();
    assert!(matches!(join(&mut panic), ExitStatus::Trapped(_)));
    let stderr = String::from_utf8(panic.stderr_bytes().unwrap()).unwrap();
    assert!(
        stderr.contains("boom"),
        "the guest's panic message reaches stderr: {stderr}"
    );
}

#[test]
fn args_reach_main_after_the_process_name() {
    let mut p = probe(&["args", "a b", "--flag"]).name("probe-args");
    p.start().unwrap();
    assert!(join(&mut p).success());
    assert_eq!(
        stdout_of(&p),
        "arg: probe-args\narg: args\narg: a b\narg: --flag\n"
    );
}

#[test]
fn only_granted_environment_variables_are_visible() {
    let mut p = probe(&["env", "GRANTED", "HOME", "PATH"]).env("GRANTED", "yes");
    p.start().unwrap();
    assert!(join(&mut p).success());
    assert_eq!(
        stdout_of(&p),
        "env GRANTED=yes\nenv HOME unset\nenv PATH unset\nenv count 1\n"
    );
}

#[test]
fn directories_are_reachable_only_when_granted_and_read_only_means_it() {
    let dir = scratch("dirs");
    std::fs::write(dir.join("in.txt"), "hello from the host\n").unwrap();
    let outside = dir.parent().unwrap().join("canary.txt");
    std::fs::write(&outside, "secret").unwrap();

    let run = |process: Process| {
        let mut process = process;
        process.start().unwrap();
        assert!(join(&mut process).success());
        stdout_of(&process)
    };
    let grant = || DirGrant::new(&dir, "/data");

    assert_eq!(
        run(probe(&["read", "/data/in.txt"]).dir(grant())),
        "read: hello from the host\n"
    );
    assert!(run(probe(&["read", "/data/in.txt"])).starts_with("denied:"));
    assert!(run(probe(&["read", "/data/../canary.txt"]).dir(grant())).starts_with("denied:"));
    assert_eq!(
        run(probe(&["write", "/data/out.txt", "written"]).dir(grant())),
        "wrote: /data/out.txt\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        "written"
    );
    assert!(
        run(probe(&["write", "/data/ro.txt", "x"]).dir(grant().read_only(true)))
            .starts_with("denied:")
    );
    assert!(!dir.join("ro.txt").exists());
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "secret");
}

#[test]
fn terminate_and_kill_stop_a_spinning_guest() {
    for kill in [false, true] {
        let mut p = Process::new(&guest(EXPORTS)).invoke("spin", Vec::<Val>::new());
        p.start().unwrap();
        let pid = p.pid().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(p.is_alive());
        let started = Instant::now();
        let status = if kill { p.kill() } else { p.terminate() }.unwrap();
        let expected = if kill { 9 } else { 15 };
        assert_eq!(status, ExitStatus::Signaled(expected));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!p.is_alive());
        assert!(!is_running(pid), "worker {pid} was reaped");
        // Terminating again just answers the status.
        assert_eq!(p.terminate().unwrap(), ExitStatus::Signaled(expected));
    }
}

#[test]
fn a_timeout_stops_a_spinning_guest_and_says_so() {
    let mut p = Process::new(&guest(EXPORTS))
        .invoke("spin", Vec::<Val>::new())
        .timeout(Duration::from_millis(300));
    p.start().unwrap();
    assert_eq!(join(&mut p), ExitStatus::TimedOut);
    assert_eq!(ExitStatus::TimedOut.code(), 124);
}

#[test]
fn a_timeout_also_stops_a_guest_blocked_in_a_host_call() {
    let mut p = probe(&["sleep", "30000"]).timeout(Duration::from_millis(300));
    p.start().unwrap();
    let started = Instant::now();
    assert_eq!(join(&mut p), ExitStatus::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn dropping_a_running_process_terminates_and_reaps_it() {
    let mut p = Process::new(&guest(EXPORTS)).invoke("spin", Vec::<Val>::new());
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert!(is_running(pid));
    drop(p);
    assert!(!is_running(pid), "worker {pid} outlived its handle");
}

#[test]
fn join_timeout_returns_none_while_running_and_is_alive_follows() {
    let mut p = probe(&["sleep", "400"]);
    assert!(!p.is_alive(), "not started yet");
    assert!(
        p.join().is_err(),
        "joining an unstarted process is an error"
    );
    p.start().unwrap();
    assert!(p.is_alive());
    assert_eq!(p.join_timeout(Duration::from_millis(10)).unwrap(), None);
    assert!(p.exit_status().is_none());
    assert_eq!(join(&mut p), ExitStatus::Exited(0));
    assert!(!p.is_alive());
    assert!(p.start().is_err(), "a process starts once");
}

#[test]
fn many_noop_processes_run_at_once() {
    let noop = guest(NOOP);
    let mut processes: Vec<Process> = (0..16).map(|_| Process::new(&noop)).collect();
    for p in &mut processes {
        p.start().unwrap();
    }
    let pids: std::collections::HashSet<u32> = processes.iter().map(|p| p.pid().unwrap()).collect();
    assert_eq!(pids.len(), 16);
    for p in &mut processes {
        assert_eq!(join(p), ExitStatus::Exited(0));
    }
}

#[test]
fn bad_configuration_is_an_input_error_and_spawns_nothing() {
    let kind = |process: Process| {
        let mut process = process;
        let error = process.start().unwrap_err();
        assert!(process.pid().is_none());
        error
            .chain()
            .find_map(|e| e.downcast_ref::<InputError>())
            .unwrap_or_else(|| panic!("not an input error: {error:#}"))
            .kind()
    };
    let exports = guest(EXPORTS);
    assert_eq!(
        kind(Process::new(&exports).invoke("missing", [1u32])),
        InputErrorKind::MissingExport
    );
    assert_eq!(
        kind(Process::new(&exports).invoke("add", [1u32])),
        InputErrorKind::BadArguments
    );
    assert_eq!(
        kind(Process::new(&exports).invoke("add", ["one", "two"])),
        InputErrorKind::BadArguments
    );
    assert_eq!(
        kind(Process::new(&exports).invoke("add", [-1i32, 2])),
        InputErrorKind::BadArguments
    );
    assert_eq!(
        kind(Process::new(&guest(TUTORIAL_PROCESS)).dir(DirGrant::new("/no/such/dir", "/d"))),
        InputErrorKind::NotFound
    );
    assert_eq!(
        kind(Process::new(&exports).env_spec("=x")),
        InputErrorKind::BadConfig
    );
}

#[test]
fn a_program_that_is_not_a_worker_fails_clearly_instead_of_hanging() {
    let runtime = wasmp::Runtime::builder()
        .cache_dir(crate::cache_dir())
        .worker_program("/bin/true")
        .build()
        .unwrap();
    let noop = runtime.load(NOOP).unwrap();
    let mut p = Process::new(&noop);
    p.start().unwrap();
    match join(&mut p) {
        ExitStatus::Failed(message) => assert!(message.contains("without reporting"), "{message}"),
        other => panic!("expected a failure, got {other}"),
    }
}

#[test]
fn standby_workers_serve_one_process_each() {
    let runtime = wasmp::Runtime::builder()
        .cache_dir(crate::cache_dir())
        .worker_program(crate::WASMP)
        .standby(2)
        .build()
        .unwrap();
    let exports = runtime.load(EXPORTS).unwrap();
    let mut pids = std::collections::HashSet::new();
    for _ in 0..5 {
        let mut p = Process::new(&exports).invoke("identity", Vec::<Val>::new());
        p.start().unwrap();
        assert!(join(&mut p).success());
        let pid = p.pid().unwrap();
        let expected = format!(
            "name={} pid={pid} ppid={}",
            p.get_name(),
            std::process::id()
        );
        assert_eq!(p.results().unwrap().unwrap(), vec![Val::String(expected)]);
        assert!(pids.insert(pid), "a standby worker served twice");
    }
}
