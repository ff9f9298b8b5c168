//! `wasmp pool` as a stream: results before the input ends, bad lines in place, retries of
//! failed tasks, dead letters that go back in, `--fail-fast`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::Value;
use wasmp_artifacts::POOL_PROBE;

use crate::{DEADLINE, text, wasmp, wasmp_with_stdin};

/// A `wasmp` child fed line by line, its stdout and stderr read line by line; killed and
/// reaped however the test ends.
pub(crate) struct Feeding {
    child: Child,
    lines: Receiver<String>,
    errors: Receiver<String>,
}

/// Sends each line `from` yields, on a thread of its own.
fn lines_of(from: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, lines) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    lines
}

impl Feeding {
    pub(crate) fn start(args: &[&str]) -> Feeding {
        let mut child = Command::new(crate::WASMP)
            .args(args)
            .env("WASMP_CACHE_DIR", crate::cache_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let errors = lines_of(child.stderr.take().unwrap());
        Feeding {
            child,
            lines,
            errors,
        }
    }

    /// The first stderr line that holds `needle`.
    pub(crate) fn stderr_line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.errors.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {needle:?} within the deadline"),
            }
        }
    }

    pub(crate) fn write(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub(crate) fn next_line(&self) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .expect("no result line within the deadline")
    }

    /// Closes stdin and waits for the exit code.
    pub(crate) fn finish(mut self) -> Option<i32> {
        drop(self.child.stdin.take());
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("wasmp pool did not exit after its input ended");
    }
}

impl Drop for Feeding {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn json_lines(stdout: &[u8]) -> Vec<Value> {
    text(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `wasmp pool` of `sleep-ms` tasks on 2 workers with a 300 ms time limit, plus `flags`.
fn sleep_tasks(flags: &[&str], input: &[u8]) -> std::process::Output {
    let mut args = vec!["pool", "-j", "2", "--timeout", "300ms"];
    args.extend_from_slice(flags);
    args.extend([POOL_PROBE, "--invoke", "sleep-ms"]);
    wasmp_with_stdin(&args, Some(input))
}

#[test]
fn each_result_is_written_before_the_next_line_arrives() {
    let mut pool = Feeding::start(&["pool", "-j", "1", POOL_PROBE, "--invoke", "square"]);
    pool.write("[3]");
    // `(echo '[3]'; sleep …; echo '[4]') | wasmp pool …` answers the first line at once.
    assert_eq!(pool.next_line(), r#"{"result":9}"#);
    pool.write("4");
    assert_eq!(pool.next_line(), r#"{"result":16}"#);
    assert_eq!(pool.finish(), Some(0));
}

#[test]
fn a_bad_line_after_the_first_is_an_error_line_in_its_place_and_exit_1() {
    let out = wasmp_with_stdin(
        &["pool", "-j", "2", POOL_PROBE, "--invoke", "square"],
        Some(b"[1]\n\n[\"x\"]\n[3]\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["result"], 1);
    // Line numbers count blank lines, as an editor does.
    assert_eq!(lines[1]["line"], 3);
    let error = lines[1]["error"].as_str().unwrap();
    assert!(
        error.starts_with("stdin:3: argument 1 of square (x): expected u64"),
        "{error}"
    );
    assert_eq!(lines[2]["result"], 9);
    assert!(text(&out.stderr).contains("2 done, 1 failed"));
}

#[test]
fn a_bad_first_line_starts_no_worker_and_exits_65() {
    let out = wasmp_with_stdin(
        &["pool", POOL_PROBE, "--invoke", "square"],
        Some(b"[\"x\"]\n[1]\n"),
    );
    assert_eq!(out.status.code(), Some(65));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("stdin:1: argument 1 of square (x): expected u64"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("worker spawned") && !stderr.contains("pool worker ready"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn failed_tasks_are_retried_then_dead_lettered_and_the_letters_run_again() {
    let dir = crate::scratch("dead-letters");
    let letters = dir.join("dead.jsonl");
    let letters_arg = letters.to_str().unwrap();
    let out = sleep_tasks(
        &["--retry-errors", "1", "--dead-letter", letters_arg],
        b"[1500]\n[1]\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines[0]["error"], "task timed out");
    assert_eq!(lines[1]["result"], Value::Null);
    assert!(
        text(&out.stderr).contains("1 done, 1 failed, 1 retried"),
        "{}",
        text(&out.stderr)
    );
    let dead = json_lines(&std::fs::read(&letters).unwrap());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["args"], serde_json::json!([1500]));
    assert_eq!(dead[0]["reason"], "timed_out");
    assert_eq!(dead[0]["attempts"], 2);
    assert_eq!(dead[0]["line"], 1);
    assert_eq!(dead[0]["error"], "task timed out");

    // The dead-letter file is input: without the time limit the task now succeeds.
    let out = wasmp(&[
        "pool",
        "--input",
        letters_arg,
        POOL_PROBE,
        "--invoke",
        "sleep-ms",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#"{"result":null}"#);
}

#[test]
fn fail_fast_stops_at_the_first_failure_without_waiting_for_the_rest() {
    let mut input = String::from("[1]\n[60000]\n");
    input.extend((0..200).map(|_| "[60000]\n"));
    let out = sleep_tasks(&["--fail-fast"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["error"], "task timed out");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("1 done, 1 failed") && stderr.contains("--fail-fast"),
        "{stderr}"
    );
}
