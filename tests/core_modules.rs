//! WASI preview-1 core modules — Rust built for `wasm32-wasip1`, C built with clang and
//! wasi-libc — accepted everywhere a component is: the library's `Process` and `Pool`, and
//! `wasmp run`, `up` and `pool`. Adapted once, then served from the compile cache.

use wasmp::{ExitStatus, Output, Pool, Process, Queue, Val};
use wasmp_artifacts::{
    C_TUTORIAL_QUEUE, CLI_PROBE_P1, EXPORTS_P1, QUEUE_PROBE, QUEUE_PROBE_P1, TUTORIAL_PROCESS_P1,
    TUTORIAL_QUEUE, TUTORIAL_QUEUE_P1, optional,
};

use crate::{WASMP, guest, join, run_with_deadline, runtime, scratch, stdout_of, text, wasmp};

#[test]
fn a_wasip1_rust_guest_reaches_the_sdk_process_identity() {
    crate::tutorial::processes(&guest(TUTORIAL_PROCESS_P1));
}

#[test]
fn the_wasip1_tutorial_writer_feeds_the_wasip2_reader_through_one_queue() {
    crate::tutorial::writer_and_reader(&guest(TUTORIAL_QUEUE_P1), &guest(TUTORIAL_QUEUE));
    crate::tutorial::writer_and_reader(&guest(TUTORIAL_QUEUE), &guest(TUTORIAL_QUEUE_P1));
}

/// The queue calls of `tests/queue.rs` made by `probe`, one process per call, on one
/// bounded queue; the answers in order.
fn queue_calls(probe: &str) -> Vec<String> {
    let q = Queue::bounded("q", 1);
    let calls: [&[&str]; 8] = [
        &["get-timeout", "q", "50"],
        &["try-get", "q"],
        &["try-put", "q"],
        &["try-put", "q"],
        &["len", "q"],
        &["close", "q"],
        &["try-get", "q"],
        &["get", "q"],
    ];
    calls
        .iter()
        .map(|args| {
            let mut p = Process::new(&guest(probe))
                .args(args.iter().copied())
                .queue(&q)
                .stdout(Output::Capture);
            p.start().unwrap();
            assert!(join(&mut p).success());
            stdout_of(&p)
        })
        .collect()
}

#[test]
fn a_wasip1_guest_makes_every_queue_call_as_the_wasip2_build_does() {
    let expected = [
        "error: queue call timed out\n",
        "empty\n",
        "try-put ok\n",
        "error: queue is full\n",
        "len 1\n",
        "closed\n",
        "got x\n",
        "error: queue is closed\n",
    ];
    assert_eq!(queue_calls(QUEUE_PROBE_P1), expected);
    assert_eq!(queue_calls(QUEUE_PROBE), expected);
}

#[test]
fn wasip1_exit_codes_are_kept_even_from_rust_std_exit() {
    for (args, code) in [
        (&["exit", "7"][..], 7),
        (&["std-exit", "9"][..], 9),
        (&["args"][..], 0),
    ] {
        let mut cli = vec!["run", CLI_PROBE_P1];
        cli.extend_from_slice(args);
        let out = wasmp(&cli);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    }
}

#[test]
fn wasip1_exports_run_as_pool_tasks_from_the_library_and_the_cli() {
    let exports = guest(EXPORTS_P1);
    let pool = Pool::builder(runtime()).processes(2).build().unwrap();
    let results: Vec<_> = (0..20u32)
        .map(|i| pool.apply_async(&exports, "add", [i, 1]).unwrap())
        .collect();
    for (i, result) in (0..20u32).zip(results) {
        assert_eq!(result.get().unwrap(), vec![Val::U32(i + 1)]);
    }
    pool.close();
    pool.join().unwrap();

    let mut command = std::process::Command::new(WASMP);
    command
        .args(["pool", "-j", "2", EXPORTS_P1, "--invoke", "add"])
        .env("WASMP_CACHE_DIR", crate::cache_dir());
    let out = run_with_deadline(command, Some(b"[1, 2]\n[40, 2]\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "{\"result\":3}\n{\"result\":42}\n");
}

#[test]
fn a_core_module_is_adapted_once_then_served_from_the_cache() {
    let cache = scratch("adapt-cache");
    let run = || {
        let mut command = std::process::Command::new(WASMP);
        command
            .args(["run", CLI_PROBE_P1, "args"])
            .env("WASMP_CACHE_DIR", &cache)
            .env("WASMP_LOG", "wasmp=debug");
        run_with_deadline(command, None)
    };
    let first = run();
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stderr).contains("adapted a preview-1 core module"));
    let second = run();
    assert!(second.status.success());
    assert!(!text(&second.stderr).contains("adapted a preview-1 core module"));
    assert!(text(&second.stderr).contains("compiled_now=false"));
    assert_eq!(first.stdout, second.stdout);

    let out = wasmp(&["check", EXPORTS_P1]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(": ok (a WASI preview-1 core module, adapted into a component)\n  main (wasi:cli/run)\n  add: func(a: u32, b: u32) -> u32\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn the_c_tutorial_writer_and_reader_share_a_queue() {
    let Some(c) = optional(C_TUTORIAL_QUEUE, "the C guest test") else {
        return;
    };
    let c = guest(c);
    let q = Queue::new("q");
    let mut writer = Process::new(&c)
        .args(["writer", "q"])
        .queue(&q)
        .stdout(Output::Capture);
    let mut reader = Process::new(&c)
        .name("c-reader")
        .args(["reader", "q"])
        .queue(&q)
        .stdout(Output::Capture);
    writer.start().unwrap();
    reader.start().unwrap();
    let writer_pid = writer.pid().unwrap();
    assert_eq!(join(&mut writer), ExitStatus::Exited(0));
    q.close();
    assert_eq!(join(&mut reader), ExitStatus::Exited(0));
    assert_eq!(
        stdout_of(&writer),
        format!(
            "write start... (pid {writer_pid}, host {})\nwrite end...\n",
            std::process::id()
        )
    );
    assert_eq!(
        stdout_of(&reader),
        crate::tutorial::READ.replace("read start...", "read start... (c-reader)")
    );
}

#[test]
fn c_guests_run_from_the_cli_with_up_and_report_queue_errors() {
    let Some(c) = optional(C_TUTORIAL_QUEUE, "the C guest CLI test") else {
        return;
    };
    // `run`: the writer's messages drained to stdout.
    let out = wasmp(&[
        "run",
        "--queue",
        "q",
        "--queue-to-stdout",
        "q",
        c,
        "writer",
        "q",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let messages: Vec<&str> = stdout.lines().filter(|l| l.len() == 1).collect();
    assert_eq!(messages, ["A", "B", "C", "D"], "{stdout}");

    // A queue it was not granted: the C wrapper's error, exit 1.
    let out = wasmp(&["run", c, "reader", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("get from nope: unknown queue"));

    // `up`: a C writer and a wasip1 Rust reader.
    let file = crate::scratch_file(
        "up-core-modules",
        "mixed.toml",
        format!(
            r#"
[[queue]]
name = "q"
close-after = ["writer"]

[[process]]
name = "writer"
component = "{c}"
args = ["writer", "q"]
queues = ["q"]

[[process]]
name = "reader"
component = "{TUTORIAL_QUEUE_P1}"
invoke = 'reader("q")'
queues = ["q"]
"#
        ),
    );
    let out = wasmp(&["up", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = crate::tagged_lines(&text(&out.stdout), "reader");
    assert_eq!(read.join("\n") + "\n", crate::tutorial::READ);
}

#[test]
fn a_module_without_start_gets_the_reactor_adapter_and_says_it_has_no_main() {
    // A preview-1 "reactor": WASI imports, no `_start`.
    let module = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_write"
               (func (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "_initialize")))"#,
    )
    .unwrap();
    let path = crate::scratch_file("reactor", "reactor.wasm", module);
    let path = path.to_str().unwrap();
    let out = wasmp(&["check", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("main (wasi:cli/run)"),
        "{}",
        text(&out.stdout)
    );
    let out = wasmp(&["run", path]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        text(&out.stderr).contains("has no `main`"),
        "{}",
        text(&out.stderr)
    );
}
