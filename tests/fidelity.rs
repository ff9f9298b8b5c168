//! WASI fidelity: for a plain WASI program (`guests/programs/src/bin/wasi_fidelity.rs`, built
//! as a preview-1 core module and as a preview-2 component) and the same flags, `wasmp run`
//! gives the same stdout and stderr bytes and the same exit code as `wasmtime run`.
//!
//! The reference is `tests/fidelity/wasmtime-48.txt`, recorded from `wasmtime run` 48.0.8
//! (wasmp's wasmtime). With `WASMP_WASMTIME=/path/to/wasmtime` the test also runs that
//! binary live; `WASMP_RECORD_FIDELITY=1` with it rewrites the reference.
//!
//! Outside these cases wasmp differs on purpose, and says so in README: a trap's message is
//! wasmp's own (the exit code, 134, is the same),
//! and a preview-1 `proc_exit` with a status over 125 is reported as a trap with wasmtime's
//! message (wasmtime exits 1).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wasmp_artifacts::{WASI_FIDELITY, WASI_FIDELITY_P1};

use crate::{WASMP, cache_dir, run_with_deadline, scratch, wasmp};

const REFERENCE: &str = "tests/fidelity/wasmtime-48.txt";

/// One run of the probe: its arguments, where the fixture directory is mapped, and what
/// its stdin holds (`None`: `/dev/null`).
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    guest_dir: &'static str,
    stdin: Option<&'static [u8]>,
}

const CASES: &[Case] = &[
    case("args", &["args", "a", "b c", "", "--flag", "ünïcode"]),
    case("env", &["env"]),
    case("files", &["files", "/d"]),
    case("files in a dir mapped to /", &["files", "/"]).mapped_to_root(),
    case("ls", &["ls", "/d", "/d/sub", "/", "/nope", "."]),
    case("ls /", &["ls", "/", "/sub"]).mapped_to_root(),
    case("clocks", &["clocks"]),
    case("random", &["random"]),
    case("stdio", &["stdio"]),
    case("stdio with input", &["stdio"]).with_stdin(b"line one\nline \xff two\n\0 no newline"),
    case("exit 0", &["exit", "0"]),
    case("exit 3", &["exit", "3"]),
    case("exit 125", &["exit", "125"]),
    case("panic", &["panic"]),
    case("unknown action", &["frobnicate"]),
];

/// A case with the fixture at `/d` and an empty stdin.
const fn case(name: &'static str, args: &'static [&'static str]) -> Case {
    Case {
        name,
        args,
        guest_dir: "/d",
        stdin: None,
    }
}

impl Case {
    /// The fixture directory mapped to `/` instead.
    const fn mapped_to_root(self) -> Case {
        Case {
            guest_dir: "/",
            ..self
        }
    }

    const fn with_stdin(self, stdin: &'static [u8]) -> Case {
        Case {
            stdin: Some(stdin),
            ..self
        }
    }
}

/// Environment given to every case, in `--env` form (both tools spell it the same).
const ENV: &[&str] = &["A=1", "B=two words", "EMPTY="];

/// The two builds of the probe, labelled as in the reference file.
fn targets() -> [(&'static str, &'static str); 2] {
    [("p1", WASI_FIDELITY_P1), ("p2", WASI_FIDELITY)]
}

/// A fresh copy of the fixture directory: a file and an empty subdirectory.
fn fixture(label: &str) -> PathBuf {
    let dir = scratch(label);
    std::fs::write(dir.join("f"), "hi\n").unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    dir
}

/// The flags both tools take, before the program.
fn flags(host_dir: &Path, guest_dir: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for env in ENV {
        flags.push("--env".to_string());
        flags.push((*env).to_string());
    }
    flags.push("--dir".to_string());
    flags.push(format!("{}::{guest_dir}", host_dir.display()));
    flags
}

/// One case's result as a section of the reference file. A trap's report after the
/// guest's own output is each tool's own and is cut.
fn render(target: &str, case: &Case, out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let guest_stderr = match stderr
        .find("\nError: failed to run main module")
        .map(|newline| newline + 1)
        .or_else(|| stderr.find("error: wasi_fidelity: trapped"))
    {
        Some(end) => &out.stderr[..end],
        None => &out.stderr[..],
    };
    let mut section = String::new();
    writeln!(section, "== {target} {}", case.name).unwrap();
    writeln!(section, "exit {:?}", out.status.code()).unwrap();
    writeln!(section, "stdout {}", out.stdout.escape_ascii()).unwrap();
    writeln!(section, "stderr {}", guest_stderr.escape_ascii()).unwrap();
    section
}

fn run_wasmp(target: &str, wasm: &str, case: &Case) -> String {
    let dir = fixture(&format!("fidelity-wasmp-{target}"));
    let mut command = Command::new(WASMP);
    command
        .arg("run")
        .args(flags(&dir, case.guest_dir))
        .arg(wasm)
        .args(case.args)
        .env("WASMP_CACHE_DIR", cache_dir())
        // Only the guest's bytes on stderr, not wasmp's logging.
        .env_remove("WASMP_LOG");
    render(target, case, &run_with_deadline(command, case.stdin))
}

fn run_wasmtime(wasmtime: &Path, target: &str, wasm: &str, case: &Case) -> String {
    let dir = fixture(&format!("fidelity-wasmtime-{target}"));
    let mut command = Command::new(wasmtime);
    command
        .arg("run")
        .args(flags(&dir, case.guest_dir))
        .arg(wasm)
        .args(case.args)
        .env("RUST_BACKTRACE", "0");
    render(target, case, &run_with_deadline(command, case.stdin))
}

fn sections(text: &str) -> Vec<String> {
    let mut sections: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("== ") || sections.is_empty() {
            sections.push(String::new());
        }
        let current = sections.last_mut().unwrap();
        current.push_str(line);
        current.push('\n');
    }
    sections
}

#[test]
fn plain_wasi_programs_behave_as_under_wasmtime_run() {
    let reference_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(REFERENCE);
    let wasmtime = std::env::var_os("WASMP_WASMTIME").map(PathBuf::from);
    let record = std::env::var_os("WASMP_RECORD_FIDELITY").is_some_and(|v| v == "1");

    let mut live = String::new();
    if let Some(wasmtime) = &wasmtime {
        for (target, wasm) in targets() {
            for case in CASES {
                live.push_str(&run_wasmtime(wasmtime, target, wasm, case));
            }
        }
        if record {
            std::fs::write(&reference_path, &live).unwrap();
        }
    } else {
        assert!(!record, "WASMP_RECORD_FIDELITY=1 needs WASMP_WASMTIME");
    }
    let reference = std::fs::read_to_string(&reference_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", reference_path.display()));
    if wasmtime.is_some() {
        assert_eq!(
            live, reference,
            "the live wasmtime differs from {REFERENCE}"
        );
    }

    let reference = sections(&reference);
    let mut index = 0;
    for (target, wasm) in targets() {
        for case in CASES {
            let ours = run_wasmp(target, wasm, case);
            let expected = reference.get(index).map_or("(missing)", String::as_str);
            assert_eq!(
                ours, expected,
                "wasmp run differs from wasmtime run ({REFERENCE}) for {target} {:?}",
                case.name
            );
            index += 1;
        }
    }
    assert_eq!(index, reference.len(), "{REFERENCE} has extra sections");
}

#[test]
fn a_preview1_exit_status_over_125_is_refused_like_wasmtime_does() {
    let out = wasmp(&["run", WASI_FIDELITY_P1, "exit", "300"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(134), "{stderr}");
    assert!(
        stderr.contains("exit with invalid exit status outside of [0..126)"),
        "{stderr}"
    );
}
