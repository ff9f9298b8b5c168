//! The `wasmp` binary: `run`, `up` and `check` as a user types them.

use wasmp_artifacts::{
    CLI_PROBE, EXPORTS, POOL_PROBE, QUEUE_PROBE, TUTORIAL_PROCESS, TUTORIAL_QUEUE, WASI_FIDELITY,
};

use crate::{scratch, text, wasmp, wasmp_with_stdin};

#[test]
fn run_invoke_prints_the_tutorial_lines_with_pid_and_ppid() {
    let out = wasmp(&[
        "run",
        "--invoke",
        r#"func1("func1...arg1", "func1...agr2")"#,
        TUTORIAL_PROCESS,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in lines {
        let parts: Vec<&str> = line.split("---").collect();
        assert_eq!(
            parts[0],
            "this is func1 with args: func1...arg1, func1...agr2"
        );
        let (pid, ppid): (u32, u32) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
        assert_ne!(pid, ppid);
    }
}

#[test]
fn run_exit_code_is_the_guests() {
    let out = wasmp(&["run", CLI_PROBE, "exit", "7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = wasmp(&["run", CLI_PROBE, "args"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn run_trap_exits_134_with_the_trap_message() {
    let out = wasmp(&["run", CLI_PROBE, "trap"]);
    assert_eq!(out.status.code(), Some(134));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("trapped"), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[test]
fn run_invoke_prints_results_in_wave() {
    let out = wasmp(&["run", "--invoke", r#"greet("wasm")"#, EXPORTS]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "greeting wasm\n\"hello, wasm\"\n");
}

#[test]
fn run_grants_env_and_dirs_with_wasmtime_spellings() {
    let dir = scratch("cli-dirs");
    std::fs::write(dir.join("f.txt"), "from host").unwrap();
    let grant = format!("{}::/d", dir.display());
    let out = wasmp(&[
        "run", "--env", "A=1", "--dir", &grant, CLI_PROBE, "read", "/d/f.txt",
    ]);
    assert_eq!(
        text(&out.stdout),
        "read: from host\n",
        "{}",
        text(&out.stderr)
    );
    let out = wasmp(&["run", "--env", "A=1", CLI_PROBE, "env", "A"]);
    assert_eq!(text(&out.stdout), "env A=1\nenv count 1\n");
    let out = wasmp(&[
        "run", "--dir-ro", &grant, CLI_PROBE, "write", "/d/g.txt", "x",
    ]);
    assert!(text(&out.stdout).starts_with("denied:"));
    assert!(!dir.join("g.txt").exists());
}

#[test]
fn run_timeout_exits_124() {
    let out = wasmp(&["run", "-W", "timeout=300ms", CLI_PROBE, "spin"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("timed out"));
}

#[test]
fn up_runs_every_process_concurrently_with_tagged_output() {
    let file = crate::scratch_file(
        "up",
        "tutorial.toml",
        format!(
            r#"
[[process]]
name = "p1"
component = "{TUTORIAL_PROCESS}"
invoke = 'func1("func1...arg1", "func1...agr2")'

[[process]]
name = "p2"
component = "{TUTORIAL_PROCESS}"
invoke = 'func2("func2...arg1...", "func1...agr2...")'
"#
        ),
    );
    let out = wasmp(&["up", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(crate::tagged_lines(&stdout, "p1").len(), 3, "{stdout}");
    assert_eq!(crate::tagged_lines(&stdout, "p2").len(), 3, "{stdout}");
    assert!(stdout.contains("this is func2 with args: func2...arg1..., func1...agr2..."));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("p1") && stderr.contains("exited with code 0"),
        "{stderr}"
    );
}

#[test]
fn up_fails_when_any_process_fails() {
    let file = crate::scratch_file(
        "up-fail",
        "mixed.toml",
        format!(
            "[[process]]\nname = \"ok\"\ncomponent = \"{CLI_PROBE}\"\nargs = [\"args\"]\n\n\
             [[process]]\nname = \"bad\"\ncomponent = \"{CLI_PROBE}\"\nargs = [\"exit\", \"5\"]\n"
        ),
    );
    let out = wasmp(&["up", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("[ok "),
        "the other process still ran"
    );
}

#[test]
fn check_lists_main_and_exports() {
    let out = wasmp(&["check", EXPORTS]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("main (wasi:cli/run)"), "{stdout}");
    assert!(
        stdout.contains("add: func(a: u32, b: u32) -> u32"),
        "{stdout}"
    );
    let out = wasmp(&["check", "--invoke", "add(1, 2)", EXPORTS]);
    assert!(out.status.success());
}

#[test]
fn help_shows_an_example_for_each_subcommand() {
    for sub in ["run", "up", "check", "pool", "new"] {
        let out = wasmp(&[sub, "--help"]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(
            help.contains("Example"),
            "{sub} --help has no example:\n{help}"
        );
        assert!(help.contains(&format!("wasmp {sub}")), "{help}");
    }
}

#[test]
fn w_help_version_and_completion_scripts() {
    // `-W help` lists every key and exits 0 even without a component, as wasmtime's does.
    for sub in ["run", "pool"] {
        let out = wasmp(&[sub, "-W", "help"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let help = text(&out.stdout);
        for key in [
            "timeout=",
            "max-memory-size=",
            "max-wasm-stack=",
            "fuel=",
            "max-instances=",
            "max-tables=",
            "max-table-elements=",
        ] {
            assert!(help.contains(key), "{sub} -W help lacks {key}:\n{help}");
        }
    }
    // The version names what decides which components run: wasmtime and the WIT package.
    let out = wasmp(&["--version"]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "wasmp {} (wasmtime {}, WIT wasmp:worker@{})\n",
            env!("CARGO_PKG_VERSION"),
            wasmp::WASMTIME_VERSION,
            wasmp::WIT_VERSION
        )
    );

    // Completion scripts for each shell; bash's must parse.
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = wasmp(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("pool"), "{shell}");
    }
    let script = crate::scratch_file(
        "completion",
        "wasmp.bash",
        wasmp(&["completion", "bash"]).stdout,
    );
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success(), "bash -n rejected the completion script");
}

#[test]
fn up_runs_the_tutorial_writer_and_reader_over_a_declared_queue() {
    let file = crate::scratch_file(
        "up-queue",
        "queue.toml",
        format!(
            r#"
[[queue]]
name = "q"
capacity = 2
close-after = ["pw"]

[[process]]
name = "pw"
component = "{TUTORIAL_QUEUE}"
invoke = 'writer("q")'
queues = ["q"]

[[process]]
name = "pr"
component = "{TUTORIAL_QUEUE}"
invoke = 'reader("q")'
queues = ["q"]
"#
        ),
    );
    let out = wasmp(&["up", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = crate::tagged_lines(&text(&out.stdout), "pr");
    assert_eq!(
        read,
        [
            "read start...",
            "read value A",
            "read value B",
            "read value C",
            "read value D",
            "read end..."
        ]
    );
}

#[test]
fn stdin_feeds_a_queue_and_another_drains_to_stdout() {
    let input = (0..1000).map(|i| format!("line {i}\n")).collect::<String>();
    let out = wasmp_with_stdin(
        &[
            "run",
            "--stdin-to-queue",
            "jobs",
            "--queue",
            "results=8",
            "--queue-to-stdout",
            "results",
            QUEUE_PROBE,
            "pong",
            "jobs",
            "results",
        ],
        Some(input.as_bytes()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), input);
}

#[test]
fn run_grants_named_queues() {
    let out = wasmp(&["run", "--queue", "q", QUEUE_PROBE, "len", "q"]);
    assert_eq!(text(&out.stdout), "len 0\n");
    let out = wasmp(&["run", QUEUE_PROBE, "len", "q"]);
    assert_eq!(
        text(&out.stdout),
        "error: no queue named \"q\" was granted\n"
    );
}

#[test]
fn pool_runs_one_task_per_line_and_writes_json_in_input_order() {
    let input: String = (0..200)
        .map(|i| {
            if i % 2 == 0 {
                format!("[{i}]\n")
            } else {
                format!("{i}\n")
            }
        })
        .collect();
    let out = wasmp_with_stdin(
        &["pool", "-j", "2", POOL_PROBE, "--invoke", "square"],
        Some(input.as_bytes()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected: String = (0..200u64)
        .map(|i| format!("{{\"result\":{}}}\n", i * i))
        .collect();
    assert_eq!(text(&out.stdout), expected);
    assert!(
        text(&out.stderr).contains("200 done, 0 failed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pool_unordered_reports_indexes_and_failures_exit_1() {
    let out = wasmp_with_stdin(
        &[
            "pool",
            "--unordered",
            "--timeout",
            "300ms",
            POOL_PROBE,
            "--invoke",
            "sleep-ms",
        ],
        Some(b"[1]\n[60000]\n[2]\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let mut lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by_key(|l| l["index"].as_u64());
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["result"], serde_json::Value::Null);
    assert_eq!(lines[1]["error"], "task timed out");
    assert_eq!(lines[2]["index"], 2);
    assert!(text(&out.stderr).contains("2 done, 1 failed"));
}

#[test]
fn pool_refuses_zero_workers_with_exit_2() {
    // A bad first line is `streaming::a_bad_first_line_starts_no_worker_and_exits_65`.
    let out = wasmp(&["pool", "-j", "0", POOL_PROBE, "--invoke", "square"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pool_refuses_two_task_time_limits_with_exit_2() {
    let out = wasmp_with_stdin(
        &[
            "pool",
            "--timeout",
            "1s",
            "-W",
            "timeout=2s",
            POOL_PROBE,
            "--invoke",
            "square",
        ],
        Some(b"[1]\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--timeout and -W timeout=") && !stderr.contains("pool worker ready"),
        "{stderr}"
    );
    // Either one alone is the per-task limit.
    for limit in [&["--timeout", "5s"][..], &["-W", "timeout=5s"][..]] {
        let mut args = vec!["pool"];
        args.extend_from_slice(limit);
        args.extend([POOL_PROBE, "--invoke", "square"]);
        let out = wasmp_with_stdin(&args, Some(b"[3]\n"));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), r#"{"result":9}"#);
    }
}

#[test]
fn run_shares_its_stdin_with_the_guest_and_copes_without_one() {
    let out = wasmp_with_stdin(&["run", WASI_FIDELITY, "stdio"], Some(b"abc"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("stdin had 3 bytes:\nabc\n"));

    // With fd 0 closed there is nothing to share: the guest reads nothing, nothing hangs.
    let mut command = std::process::Command::new("sh");
    command
        .args([
            "-c",
            "exec \"$0\" run \"$1\" stdio 0<&-",
            crate::WASMP,
            WASI_FIDELITY,
        ])
        .env("WASMP_CACHE_DIR", crate::cache_dir());
    let out = crate::run_with_deadline(command, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("stdin had 0 bytes:\n"));
}

#[test]
fn pool_stops_quietly_when_its_reader_goes_away() {
    let input = crate::scratch_file(
        "broken-pipe",
        "tasks.jsonl",
        (0..5000).map(|i| format!("[{i}]\n")).collect::<String>(),
    );
    let mut pool = std::process::Command::new(crate::WASMP)
        .args(["pool", POOL_PROBE, "--invoke", "square", "--input"])
        .arg(&input)
        .env("WASMP_CACHE_DIR", crate::cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one result, then stop reading, as `| head -1` does.
    let mut stdout = pool.stdout.take().unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = pool.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > crate::DEADLINE {
            let _ = pool.kill();
            let _ = pool.wait();
            panic!("wasmp pool did not stop");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut pool.stderr.take().unwrap(), &mut errors).unwrap();
    assert!(status.success(), "{status}: {errors}");
    assert!(!errors.contains("error"), "{errors}");
}
