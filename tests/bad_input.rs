//! Bad input: one clear line, a documented exit code, and no worker spawned.

use std::process::Output;

use wasmp_artifacts::{CLI_PROBE, EXPORTS, NOOP, UNSATISFIED_IMPORT};

use crate::{WASMP, scratch, wasmp};

/// Asserts the exit code, that stderr names the problem, and that no worker was spawned
/// (the CLI runs with `WASMP_LOG=wasmp=debug`, which logs every spawn).
#[track_caller]
fn assert_refused(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(
        !stderr.contains("worker spawned"),
        "something was spawned: {stderr}"
    );
}

#[test]
fn missing_component_file_exits_66() {
    assert_refused(
        &wasmp(&["run", "/no/such/guest.wasm"]),
        66,
        "cannot read component",
    );
}

#[test]
fn invalid_wasm_exits_65() {
    let dir = scratch("invalid-wasm");
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty.wasm", b"", "the file is empty"),
        ("text.wasm", b"(module)", "not a WebAssembly file"),
        (
            "truncated.wasm",
            b"\0asm\x0d\x00\x01\x00\x07",
            "invalid component",
        ),
        (
            "garbage.wasm",
            b"\0asm\x0d\x00\x01\x00\xff\xff\xff\xff",
            "invalid component",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        assert_refused(&wasmp(&["run", path.to_str().unwrap()]), 65, needle);
    }
}

#[test]
fn a_core_module_with_imports_wasmp_cannot_provide_exits_65_naming_them() {
    // (module (type (func)) (import "env" "foo" (func (type 0))))
    let module = b"\0asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\
                   \x02\x0b\x01\x03env\x03foo\x00\x00";
    let path = crate::scratch_file("core-module", "core.wasm", module);
    let out = wasmp(&["run", path.to_str().unwrap()]);
    assert_refused(&out, 65, "this core module imports from env");
    assert_refused(&out, 65, "may import wasi_snapshot_preview1");
}

#[test]
fn a_missing_export_exits_65_and_lists_the_exports() {
    let out = wasmp(&["run", "--invoke", "nope()", EXPORTS]);
    assert_refused(&out, 65, "no exported function \"nope\"");
    assert_refused(&out, 65, "add: func(a: u32, b: u32) -> u32");
}

#[test]
fn wrong_argument_count_or_type_exits_65_with_the_signature() {
    assert_refused(
        &wasmp(&["run", "--invoke", "add(1)", EXPORTS]),
        65,
        "add is `func(a: u32, b: u32) -> u32`",
    );
    assert_refused(
        &wasmp(&["run", "--invoke", r#"add("x", 2)"#, EXPORTS]),
        65,
        "invalid value type",
    );
    assert_refused(
        &wasmp(&["run", "--invoke", "add(1, 2", EXPORTS]),
        65,
        "cannot parse --invoke",
    );
}

#[test]
fn bad_flags_exit_2_with_a_suggestion() {
    let out = wasmp(&["run", "--dri", "x", NOOP]);
    assert_refused(&out, 2, "unexpected argument '--dri'");
    assert_refused(&out, 2, "similar argument");
    assert_refused(
        &wasmp(&["run", "-W", "timeout=abc", NOOP]),
        2,
        "invalid duration",
    );
    assert_refused(
        &wasmp(&["run", "-W", "colour=1", NOOP]),
        2,
        "unknown -W key",
    );
    assert_refused(&wasmp(&["frobnicate"]), 2, "unrecognized subcommand");
    assert_refused(
        &wasmp(&["run", "--queue", "q=many", NOOP]),
        78,
        "capacity must be",
    );
}

#[test]
fn a_granted_directory_that_does_not_exist_exits_66() {
    assert_refused(
        &wasmp(&["run", "--dir", "/no/such/dir::/d", CLI_PROBE, "args"]),
        66,
        "/no/such/dir",
    );
}

#[test]
fn a_command_without_main_and_args_with_invoke_are_refused() {
    assert_refused(
        &wasmp(&["run", "--invoke", "add(1, 2)", EXPORTS, "extra"]),
        70,
        "put them in the call",
    );
}

#[test]
fn up_file_errors_exit_78_with_line_and_column() {
    let dir = scratch("up-errors");
    let cases = [
        (
            "unknown.toml",
            format!("[[process]]\nname = \"a\"\ncomponent = \"{NOOP}\"\ncolour = \"red\"\n"),
            "unknown.toml:4:1: unknown field `colour`",
        ),
        (
            "type.toml",
            format!("[[process]]\nname = \"a\"\ncomponent = \"{NOOP}\"\nargs = \"x\"\n"),
            "type.toml:4:8:",
        ),
        (
            "dup.toml",
            format!(
                "[[process]]\nname = \"a\"\ncomponent = \"{NOOP}\"\n[[process]]\nname = \"a\"\ncomponent = \"{NOOP}\"\n"
            ),
            "two processes are named \"a\"",
        ),
        ("empty.toml", String::new(), "no [[process]] entries"),
        (
            "queue.toml",
            format!("[[process]]\nname = \"a\"\ncomponent = \"{NOOP}\"\nqueues = [\"nope\"]\n"),
            "granted queue \"nope\", which no [[queue]] declares",
        ),
        (
            "close.toml",
            format!(
                "[[queue]]\nname = \"q\"\nclose-after = [\"ghost\"]\n[[process]]\nname = \"a\"\ncomponent = \"{NOOP}\"\n"
            ),
            "close-after names \"ghost\"",
        ),
    ];
    for (name, body, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        assert_refused(&wasmp(&["up", path.to_str().unwrap()]), 78, needle);
    }
}

#[test]
fn up_checks_every_process_before_starting_any() {
    let path = crate::scratch_file(
        "up-precheck",
        "late-error.toml",
        format!(
            "[[process]]\nname = \"fine\"\ncomponent = \"{CLI_PROBE}\"\nargs = [\"args\"]\n\n\
             [[process]]\nname = \"broken\"\ncomponent = \"{EXPORTS}\"\ninvoke = \"add(1)\"\n"
        ),
    );
    assert_refused(&wasmp(&["up", path.to_str().unwrap()]), 65, "broken");
}

#[test]
fn an_import_wasmp_does_not_provide_exits_65_naming_it() {
    let out = wasmp(&["run", UNSATISFIED_IMPORT]);
    assert_refused(&out, 65, "wasmp:tests/not-provided");
    assert_refused(&out, 65, "a wasmp worker may import");
    assert_refused(&wasmp(&["check", UNSATISFIED_IMPORT]), 65, "not-provided");
}

/// docs/reliability.md, case H9: a tiny RLIMIT_NOFILE and an unusable compile cache.
#[test]
fn h9_exhausted_descriptors_and_an_unusable_cache_get_a_clear_error_and_exit_code() {
    // A low descriptor limit the workers inherit: they keep it (never raise it) and run.
    let script = |limit: u32| {
        let mut command = std::process::Command::new("sh");
        command
            .args([
                "-c",
                &format!("ulimit -n {limit} && exec \"$0\" run \"$1\""),
                WASMP,
                NOOP,
            ])
            .env("WASMP_CACHE_DIR", crate::cache_dir());
        crate::run_with_deadline(command, None)
    };
    let out = script(16);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Too few to work at all: one line naming the cause, sysexits' EX_OSERR.
    let out = script(5);
    assert_refused(&out, 71, "Too many open files");

    // A compile cache that cannot be created: EX_IOERR, naming the directory.
    let file = crate::scratch_file("h9-cache", "a-file", "");
    let mut command = std::process::Command::new(WASMP);
    command
        .args(["run", NOOP])
        .env("WASMP_CACHE_DIR", file.join("cache"));
    let out = crate::run_with_deadline(command, None);
    assert_refused(&out, 74, "failed to create the compile cache");
}

#[test]
fn check_names_the_contract_version_a_component_was_built_for_and_how_to_rebuild() {
    // A guest built against a future `package wasmp:worker@0.2.0`.
    let component = wat::parse_str(
        r#"(component
             (import "wasmp:worker/process@0.2.0" (instance
               (export "pid" (func (result u32))))))"#,
    )
    .unwrap();
    let path = crate::scratch_file("other-wit-version", "newer.wasm", component);
    let out = wasmp(&["check", path.to_str().unwrap()]);
    assert_refused(
        &out,
        65,
        "built for another version of the wasmp guest contract (wasmp:worker/process@0.2.0)",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("this wasmp provides wasmp:worker@0.1.0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rebuild it against the WIT of wasmp"),
        "{stderr}"
    );
}
