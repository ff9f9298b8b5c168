//! `wasmtime run`'s flags in front of `wasmp run`: the ones that work do what they do under
//! wasmtime (environment, network), the others exit 2 saying why. Every key of wasmtime's
//! option groups is checked against the recorded list in the binary's unit tests.

use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use wasmp_artifacts::{CLI_PROBE, HOSTILE, NOOP};

use crate::{DEADLINE, WASMP, cache_dir, run_with_deadline, text, wasmp};

/// A loopback server that counts the connections it accepted within the test's deadline.
struct Server {
    listener: TcpListener,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Server { listener }
    }

    fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    /// Connections accepted so far (waiting up to `wait` for the first).
    fn accepted(&self, wait: Duration) -> usize {
        let until = Instant::now() + wait.min(DEADLINE);
        let mut count = 0;
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    count += 1;
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                    let _ = stream.read(&mut [0; 1]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if count > 0 || Instant::now() >= until {
                        return count;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

#[test]
fn inherit_network_grants_that_worker_a_loopback_connection() {
    let server = Server::start();
    let addr = server.addr();
    let out = wasmp(&["run", "-S", "inherit-network", HOSTILE, "connect", &addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("connected to {addr}"));
    assert_eq!(server.accepted(Duration::from_secs(5)), 1);
}

#[test]
fn without_the_grant_or_with_tcp_off_a_connection_is_denied() {
    let server = Server::start();
    let addr = server.addr();
    for args in [
        vec!["run", HOSTILE, "connect", &addr],
        vec![
            "run",
            "-S",
            "inherit-network,tcp=n",
            HOSTILE,
            "connect",
            &addr,
        ],
        // Name lookups alone open no TCP.
        vec![
            "run",
            "-S",
            "allow-ip-name-lookup",
            HOSTILE,
            "connect",
            &addr,
        ],
    ] {
        let out = wasmp(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with("denied: "),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    assert_eq!(server.accepted(Duration::from_millis(200)), 0);
}

#[test]
fn allow_ip_name_lookup_resolves_through_the_hosts_resolver() {
    let out = wasmp(&[
        "run",
        "-S",
        "allow-ip-name-lookup",
        HOSTILE,
        "resolve",
        "localhost",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("resolved localhost to"), "{stdout}");
    assert!(
        stdout.contains("127.0.0.1") || stdout.contains("::1"),
        "{stdout}"
    );
    // Not granted: denied by WASI, and the worker survives.
    let out = wasmp(&["run", HOSTILE, "resolve", "localhost"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("denied: "),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn inherit_env_passes_the_hosts_environment_and_env_overrides_it() {
    let mut command = Command::new(WASMP);
    command
        .args([
            "run",
            "-S",
            "inherit-env",
            "--env",
            "WASMP_TEST_B=from-flag",
            CLI_PROBE,
            "env",
            "WASMP_TEST_A",
            "WASMP_TEST_B",
        ])
        .env("WASMP_CACHE_DIR", cache_dir())
        .env("WASMP_TEST_A", "from-host")
        .env("WASMP_TEST_B", "from-host");
    let out = run_with_deadline(command, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("env WASMP_TEST_A=from-host\n"), "{stdout}");
    assert!(stdout.contains("env WASMP_TEST_B=from-flag\n"), "{stdout}");
    // Without it, nothing of the host's environment.
    let out = wasmp(&["run", CLI_PROBE, "env", "WASMP_CACHE_DIR"]);
    assert!(text(&out.stdout).contains("env WASMP_CACHE_DIR unset"));
}

#[test]
fn settings_wasmp_does_what_wasmtime_does_are_accepted() {
    for args in [
        vec!["-S", "cli-exit-with-code"],
        vec!["-S", "cli,preview2"],
        vec!["-O", "opt-level=2"],
        vec!["-C", "cache", "--wasm", "timeout=30s"],
    ] {
        let mut all = vec!["run"];
        all.extend(&args);
        all.push(NOOP);
        let out = wasmp(&all);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let out = wasmp(&["run", "-S", "inherit-stdout=n", CLI_PROBE, "env"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn wasmtime_flags_without_a_wasmp_meaning_exit_2_saying_why() {
    for (args, says) in [
        (vec!["-C", "cache=n"], "wasmp does not apply -C cache=n: "),
        (
            vec!["-O", "opt-level=0"],
            "wasmp does not apply -O opt-level=0: ",
        ),
        (vec!["-W", "threads"], "wasmp does not apply -W threads: "),
        (vec!["-S", "http"], "wasmp does not apply -S http: "),
        (
            vec!["-D", "debug-info"],
            "wasmp does not apply -D debug-info: ",
        ),
        (
            vec!["--preload", "m=m.wasm"],
            "wasmp does not support --preload: ",
        ),
        (
            vec!["--allow-precompiled"],
            "wasmp does not support --allow-precompiled: ",
        ),
        // What wasmtime itself does not know gets wasmtime's message.
        (
            vec!["-S", "no-such-key"],
            "unknown -S / --wasi option: no-such-key",
        ),
    ] {
        let mut all = vec!["run"];
        all.extend(&args);
        all.push(NOOP);
        let out = wasmp(&all);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn dash_s_help_lists_wasmtimes_wasi_options() {
    let out = wasmp(&["run", "-S", "help", NOOP]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for key in [
        "inherit-network",
        "allow-ip-name-lookup",
        "inherit-env",
        "tcp",
    ] {
        assert!(stdout.contains(key), "{key}: {stdout}");
    }
}
