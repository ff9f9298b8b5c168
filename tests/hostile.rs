//! Hostile guests (docs/reliability.md's M-cases, and some H-cases): each misbehaviour
//! costs only the guest that commits it, with a clear status, while other workers keep
//! working.

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use wasmp::{DirGrant, ExitStatus, Limits, Output, Process, Val};
use wasmp_artifacts::{BIG_MEMORY, CLI_PROBE, EXPORTS, HOSTILE, NOOP};

use crate::{DEADLINE, WASMP, cache_dir, eventually, guest, is_running, join, scratch, stdout_of};

fn hostile(args: &[&str]) -> Process {
    Process::new(&guest(HOSTILE))
        .args(args.iter().copied())
        .stdout(Output::Capture)
        .stderr(Output::Capture)
}

fn stderr_of(process: &Process) -> String {
    String::from_utf8_lossy(&process.stderr_bytes().unwrap()).into_owned()
}

/// Runs `process` beside a well-behaved one and checks the neighbour was unaffected.
#[track_caller]
fn run_beside_a_neighbour(mut process: Process) -> (ExitStatus, Process) {
    let mut neighbour = Process::new(&guest(NOOP));
    process.start().unwrap();
    neighbour.start().unwrap();
    let status = join(&mut process);
    assert_eq!(
        join(&mut neighbour),
        ExitStatus::Exited(0),
        "the neighbour was hurt"
    );
    (status, process)
}

/// docs/reliability.md, case M3: a memory bomb.
#[test]
fn m3_a_memory_bomb_stops_at_the_memory_limit() {
    let limits = Limits {
        max_memory_size: Some(64 << 20),
        ..Limits::default()
    };
    let (status, bomb) = run_beside_a_neighbour(hostile(&["memory-bomb"]).limits(limits));
    assert!(matches!(status, ExitStatus::Trapped(_)), "{status}");
    let out = stdout_of(&bomb);
    let held: usize = out
        .lines()
        .last()
        .and_then(|l| {
            l.strip_prefix("holding ")?
                .strip_suffix(" MiB")?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        (8..=64).contains(&held),
        "it held {held} MiB under a 64 MiB limit"
    );
    assert!(
        stderr_of(&bomb).contains("memory allocation"),
        "{}",
        stderr_of(&bomb)
    );
}

/// docs/reliability.md, case M3: an initial memory over the limit.
#[test]
fn m3_an_initial_memory_over_the_limit_fails_at_instantiation() {
    let limits = Limits {
        max_memory_size: Some(64 << 20),
        ..Limits::default()
    };
    let mut p = Process::new(&guest(BIG_MEMORY)).limits(limits);
    p.start().unwrap();
    match join(&mut p) {
        ExitStatus::Failed(message) => {
            assert!(message.contains("instantiate"), "{message}");
            assert!(message.contains("memory"), "{message}");
        }
        other => panic!("expected a failure to instantiate, got {other}"),
    }
    // Without the limit it runs.
    let mut p = Process::new(&guest(BIG_MEMORY)).stdout(Output::Null);
    p.start().unwrap();
    assert_eq!(join(&mut p), ExitStatus::Exited(0));
}

/// docs/reliability.md, case M5: unbounded recursion traps cleanly.
#[test]
fn m5_unbounded_recursion_traps_with_call_stack_exhausted() {
    for stack in [None, Some(64 << 10)] {
        let limits = Limits {
            max_wasm_stack: stack,
            ..Limits::default()
        };
        let (status, _) = run_beside_a_neighbour(hostile(&["recurse"]).limits(limits));
        match status {
            ExitStatus::Trapped(message) => {
                assert!(message.contains("call stack exhausted"), "{message}")
            }
            other => panic!("expected a stack-exhaustion trap, got {other}"),
        }
    }
}

#[test]
fn fuel_stops_a_spinning_guest_deterministically() {
    let limits = Limits {
        fuel: Some(5_000_000),
        ..Limits::default()
    };
    let mut p = Process::new(&guest(EXPORTS))
        .invoke("spin", Vec::<Val>::new())
        .limits(limits);
    p.start().unwrap();
    match join(&mut p) {
        ExitStatus::Trapped(message) => assert!(message.contains("fuel"), "{message}"),
        other => panic!("expected running out of fuel, got {other}"),
    }
    // Enough fuel for a real task.
    let mut p = Process::new(&guest(EXPORTS))
        .invoke("add", [1u32, 2])
        .limits(limits);
    p.start().unwrap();
    assert_eq!(join(&mut p), ExitStatus::Exited(0));
}

/// docs/reliability.md, case M8: file escapes out of a granted directory.
#[test]
fn m8_file_escapes_are_denied_and_the_canary_is_untouched() {
    let root = scratch("escapes");
    let granted = root.join("granted");
    std::fs::create_dir(&granted).unwrap();
    let canary = root.join("canary.txt");
    std::fs::write(&canary, "secret").unwrap();
    std::os::unix::fs::symlink(&canary, granted.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink(&root, granted.join("link-to-dir")).unwrap();
    let read = |path: &str| {
        let mut p = Process::new(&guest(CLI_PROBE))
            .args(["read", path])
            .dir(DirGrant::new(&granted, "/data"))
            .stdout(Output::Capture);
        p.start().unwrap();
        assert!(join(&mut p).success());
        stdout_of(&p)
    };
    for path in [
        "/data/../canary.txt",
        "/data/../../etc/passwd",
        "/etc/passwd",
        "/data/link-to-file",
        "/data/link-to-dir/canary.txt",
    ] {
        let out = read(path);
        assert!(out.starts_with("denied:"), "{path}: {out}");
        assert!(!out.contains("secret"));
    }
    let mut write = Process::new(&guest(CLI_PROBE))
        .args(["write", "/data/link-to-file", "overwritten"])
        .dir(DirGrant::new(&granted, "/data"))
        .stdout(Output::Capture);
    write.start().unwrap();
    assert!(join(&mut write).success());
    assert!(
        stdout_of(&write).starts_with("denied:"),
        "{}",
        stdout_of(&write)
    );
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "secret");
}

/// docs/reliability.md, case M9: sockets and DNS.
#[test]
fn m9_sockets_and_name_lookups_are_denied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    for args in [["connect", address.as_str()], ["resolve", "localhost"]] {
        let mut p = hostile(&args);
        p.start().unwrap();
        assert_eq!(join(&mut p), ExitStatus::Exited(0));
        let out = stdout_of(&p);
        assert!(out.starts_with("denied:"), "{args:?}: {out}");
    }
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing connected");
}

/// Set in the environment of the test binary m10 re-executes to play the leaking host.
const LEAKING_HOST: &str = "WASMP_TEST_LEAKING_HOST";
/// What the leaking host prints once it has checked its worker's fds.
const FDS_CHECKED: &str = "leaking host: worker fds checked";

/// docs/reliability.md, case M10: fd inheritance from the host.
#[test]
fn m10_a_worker_inherits_no_file_descriptor_from_the_host() {
    if std::env::var_os(LEAKING_HOST).is_some() {
        check_the_worker_of_a_leaking_host();
        return;
    }
    // The leaking host is this test binary again, running this test alone: an fd without
    // close-on-exec here, in the process every test shares, would leak into whatever
    // another test spawned meanwhile.
    let stdout = crate::run_test_alone(
        "hostile::m10_a_worker_inherits_no_file_descriptor_from_the_host",
        LEAKING_HOST,
    );
    assert!(
        stdout.contains(FDS_CHECKED),
        "the leaking host ran no check:\n{stdout}"
    );
}

/// m10's leaking host, in a process of its own: holds a file without close-on-exec, starts
/// a worker, and checks the worker holds nothing it should not.
fn check_the_worker_of_a_leaking_host() {
    // A host fd without close-on-exec, as a careless library might leave one.
    let secret = scratch("fds").join("host-secret.txt");
    std::fs::write(&secret, "host only").unwrap();
    let leaked = std::fs::File::open(&secret).unwrap();
    rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).unwrap();
    let mut p = Process::new(&guest(CLI_PROBE)).args(["sleep", "60000"]);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    // The worker sheds inherited fds before saying hello, so before it maps the compiled
    // guest it is then sent.
    let loaded = eventually(DEADLINE, || {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .is_ok_and(|maps| maps.contains(".cwasm"))
    });
    let targets: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                target.display().to_string(),
            ))
        })
        .collect();
    // It may have died already; joining reaps it either way.
    let _ = kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL);
    join(&mut p);
    assert!(loaded, "the worker never loaded its guest");
    for (fd, target) in &targets {
        let allowed = match fd.as_str() {
            "0" => target == "/dev/null",
            "1" | "2" => true, // the host's own stdout and stderr, inherited on purpose
            _ => {
                target.starts_with("socket:")
                    || target.starts_with("anon_inode:")
                    || target.ends_with(".cwasm")
            }
        };
        assert!(
            allowed,
            "fd {fd} -> {target} in the worker (host leaked fd {})",
            leaked.as_raw_fd()
        );
    }
    assert!(targets.iter().all(|(_, t)| !t.contains("host-secret")));
    println!("{FDS_CHECKED}: {targets:?}");
}

/// docs/reliability.md, case M13: ANSI escapes and output floods.
#[test]
fn m13_control_sequences_are_neutralised_in_tagged_output_and_floods_are_capped() {
    let file = crate::scratch_file(
        "ansi",
        "ansi.toml",
        format!(
            "[[process]]\nname = \"a\"\ncomponent = \"{HOSTILE}\"\nargs = [\"ansi\"]\n\n\
             [[process]]\nname = \"b\"\ncomponent = \"{NOOP}\"\n"
        ),
    );
    let out = crate::wasmp(&["up", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        !out.stdout.contains(&0x1b),
        "an escape byte reached the terminal"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r"\x1b[31mred\x1b[0m plain"), "{text}");

    let (status, flood) = run_beside_a_neighbour(hostile(&["flood", "20"]));
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(flood.stdout_bytes().unwrap().len(), wasmp::MAX_CAPTURE);
}

/// docs/reliability.md, case H2: a SIGSTOPped (hung) worker.
#[test]
fn h2_a_stopped_worker_is_killed_at_its_deadline() {
    let mut p = Process::new(&guest(CLI_PROBE))
        .args(["sleep", "60000"])
        .timeout(Duration::from_millis(500));
    p.start().unwrap();
    let pid = p.pid().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::STOP).unwrap();
    let started = Instant::now();
    assert_eq!(join(&mut p), ExitStatus::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!is_running(pid));
}

/// docs/reliability.md, case H4: SIGINT / SIGTERM to the host.
#[test]
fn h4_sigint_and_sigterm_stop_the_workers_and_exit_130_or_143() {
    let file = crate::scratch_file(
        "host-signals",
        "spin.toml",
        format!("[[process]]\nname = \"s\"\ncomponent = \"{CLI_PROBE}\"\nargs = [\"spin\"]\n"),
    );
    // The last case closes the host's stderr first: the host must stop its workers even
    // when it cannot say so.
    for (signal, code, closed_stderr) in [
        (Signal::INT, 130, false),
        (Signal::TERM, 143, false),
        (Signal::TERM, 143, true),
    ] {
        let mut host = Command::new(WASMP)
            .args(["up", file.to_str().unwrap()])
            .env("WASMP_CACHE_DIR", cache_dir())
            .stdout(Stdio::piped())
            .stderr(if closed_stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        drop(host.stderr.take());
        let host_pid = Pid::from_raw(host.id() as i32).unwrap();
        // The worker prints "spinning" once it runs.
        let mut stdout = host.stdout.take().unwrap();
        let mut first = [0u8; 8];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        let workers = crate::orphans::children(host.id());
        assert_eq!(workers.len(), 1, "{workers:?}");
        kill_process(host_pid, signal).unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = host.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the host did not exit"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(code));
        assert!(eventually(Duration::from_secs(5), || !is_running(
            workers[0]
        )));
    }
}

/// Runs `wasmp run cli_probe args` with a fault injected into the worker (debug builds).
fn run_with_fault(fault: &str) -> std::process::Output {
    wasmp_with_fault(fault, &["run", CLI_PROBE, "args"], None)
}

fn wasmp_with_fault(fault: &str, args: &[&str], input: Option<&[u8]>) -> std::process::Output {
    let mut command = Command::new(WASMP);
    command
        .args(args)
        .env("WASMP_CACHE_DIR", cache_dir())
        .env("WASMP_LOG", "wasmp=debug")
        .env("WASMP_FAULT", fault);
    crate::run_with_deadline(command, input)
}

/// docs/reliability.md, case H6: a corrupt IPC frame.
#[test]
fn h6_a_corrupt_frame_kills_that_worker_and_the_host_carries_on() {
    let out = run_with_fault("bad-frame");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(stderr.contains("broke the protocol"), "{stderr}");
    assert!(
        stderr.contains("exceeds"),
        "refused by its length prefix: {stderr}"
    );
}

/// docs/reliability.md, case M11: a start-up crash loop and a huge worker count.
#[test]
fn m11_a_pool_whose_workers_crash_at_start_up_backs_off_and_fails_clearly() {
    let started = Instant::now();
    let out = wasmp_with_fault(
        "crash-at-start",
        &["pool", "-j", "2", crate::pool_probe(), "--invoke", "square"],
        Some(b"[1]\n[2]\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.contains("failed to start 5 times in a row"),
        "{stdout}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let out = crate::wasmp(&[
        "pool",
        "-j",
        "100000",
        crate::pool_probe(),
        "--invoke",
        "square",
    ]);
    assert_eq!(out.status.code(), Some(2), "worker count is capped");
}

/// docs/reliability.md, case M15: a system call outside the seccomp allow-list.
#[test]
fn m15_a_system_call_outside_the_allow_list_kills_the_worker_and_says_why() {
    let out = run_with_fault("forbidden-syscall");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 31), "{stderr}");
    assert!(stderr.contains("seccomp allow-list"), "{stderr}");
}

#[test]
fn landlock_confines_the_worker_to_its_grants_when_the_kernel_supports_it() {
    let out = run_with_fault("read-outside");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    if stderr.contains("landlock not supported") {
        eprintln!("this kernel has no landlock; the filesystem wall is WASI's alone here");
    } else {
        assert!(stderr.contains("/etc/passwd refused"), "{stderr}");
    }
}

/// A preview-1 command that grows a table by `step` elements until `table.grow` fails, then
/// exits with the table's final size in units of `step`.
fn table_bomb_path(step: u32) -> std::path::PathBuf {
    let wat = format!(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (table $t 0 funcref)
             (func (export "_start")
               (loop $grow
                 (br_if $grow
                   (i32.ne (table.grow $t (ref.null func) (i32.const {step})) (i32.const -1))))
               (call $exit (i32.div_u (table.size $t) (i32.const {step})))))"#
    );
    crate::scratch_file(
        &format!("table-bomb-{step}"),
        "table_bomb.wasm",
        wat::parse_str(wat).unwrap(),
    )
}

fn table_bomb(step: u32) -> wasmp::Component {
    crate::runtime().load(table_bomb_path(step)).unwrap()
}

/// docs/reliability.md, case M4: a table bomb.
#[test]
fn m4_a_table_bomb_stops_at_the_table_limit_and_by_default() {
    // An explicit limit: 5 steps of 100 000 elements fit, the sixth is refused.
    let limits = Limits {
        max_table_elements: Some(500_000),
        ..Limits::default()
    };
    let bomb = Process::new(&table_bomb(100_000)).limits(limits);
    let (status, _) = run_beside_a_neighbour(bomb);
    assert_eq!(status, ExitStatus::Exited(5));
    // The same from the command line, with wasmtime's -W key.
    let out = crate::wasmp(&[
        "run",
        "-W",
        "max-table-elements=300_000",
        table_bomb_path(100_000).to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));

    // No limit given: wasmp's default stops it long before it costs the host its memory.
    let bomb = Process::new(&table_bomb(1_000_000));
    let (status, _) = run_beside_a_neighbour(bomb);
    let ExitStatus::Exited(millions) = status else {
        panic!("expected the bomb to be refused and exit, got {status}");
    };
    let default = Limits::DEFAULT_MAX_TABLE_ELEMENTS;
    assert_eq!(millions as usize, default / 1_000_000, "{status}");
}

/// docs/reliability.md, case M4: the instance limit.
#[test]
fn m4_an_instance_limit_refuses_a_component_needing_more() {
    // A component is several core instances (the module, the adapter, shims): a limit of
    // one refuses it at instantiation; the default runs it.
    let limits = Limits {
        max_instances: Some(1),
        ..Limits::default()
    };
    let mut p = Process::new(&guest(NOOP)).limits(limits);
    p.start().unwrap();
    match join(&mut p) {
        ExitStatus::Failed(message) => assert!(message.contains("instance"), "{message}"),
        other => panic!("expected a failure to instantiate, got {other}"),
    }
}
