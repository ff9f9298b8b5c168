//! Workers never outlive the host: SIGKILL the host and look for survivors in /proc.

use std::process::{Command, Stdio};
use std::time::Duration;

use wasmp_artifacts::CLI_PROBE;

use crate::{WASMP, cache_dir, eventually, is_running};

/// The pids of `parent`'s children, from /proc.
pub(crate) fn children(parent: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
fn sigkill_of_the_host_leaves_no_worker_alive() {
    let file = crate::scratch_file(
        "orphans",
        "spinners.toml",
        format!(
            "[[process]]\nname = \"s1\"\ncomponent = \"{CLI_PROBE}\"\nargs = [\"spin\"]\n\n\
             [[process]]\nname = \"s2\"\ncomponent = \"{CLI_PROBE}\"\nargs = [\"spin\"]\n"
        ),
    );
    let mut host = Command::new(WASMP)
        .args(["up", file.to_str().unwrap()])
        .env("WASMP_CACHE_DIR", cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host_pid = host.id();
    let mut workers = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            workers = children(host_pid);
            workers.len() == 2
        }),
        "the host never had two workers: {workers:?}"
    );
    host.kill().unwrap();
    host.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || workers
            .iter()
            .all(|&pid| !is_running(pid))),
        "workers outlived the host: {:?}",
        workers
            .iter()
            .filter(|&&pid| is_running(pid))
            .collect::<Vec<_>>()
    );
}
