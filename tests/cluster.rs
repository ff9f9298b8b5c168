//! Pools across machines: a real `nats-server -js` per test (ephemeral port, store in a
//! temp dir, loopback only) and real `wasmp serve` processes as the machines, killed,
//! frozen and cut off for real. The server is Debian's `nats-server` (or
//! `$WASMP_NATS_SERVER`); without one these tests say `skipping …`, unless
//! `WASMP_REQUIRE_ALL_GUESTS=1` (CI), where its absence fails them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use wasmp::{Cluster, Component, Pool, Runtime, TaskError, Val};

use crate::{DEADLINE, WASMP, cache_dir, eventually, is_running, pool_probe, scratch, wasmp};

/// The ack deadline every test host uses: long enough for a loaded 2-core VM to send
/// its in-progress acks, short enough that a lost host's tasks come back quickly.
const ACK_WAIT: &str = "1s";

fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WASMP_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("WASMP_REQUIRE_ALL_GUESTS").is_none(),
            "nats-server is required (WASMP_REQUIRE_ALL_GUESTS is set): apt-get install nats-server"
        );
        eprintln!("skipping: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

/// One `nats-server -js` with its own store, killed and reaped on drop.
struct Nats {
    program: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Nats {
    fn start(label: &str) -> Option<Nats> {
        let program = nats_server()?;
        let dir = scratch(&format!("nats-{label}"));
        let child = Nats::spawn(&program, &dir, None);
        let ports = dir.join(format!("nats-server_{}.ports", child.id()));
        // The file appears before its contents: wait until it parses.
        let read = || -> Option<String> {
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&ports).ok()?).ok()?;
            Some(json["nats"][0].as_str()?.to_string())
        };
        assert!(
            eventually(DEADLINE, || read().is_some()),
            "nats-server did not start"
        );
        let url = read().unwrap();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Some(Nats {
            program,
            dir,
            port,
            child,
        })
    }

    fn spawn(program: &Path, dir: &Path, port: Option<u16>) -> Child {
        let port = port.map_or_else(|| "-1".to_string(), |p| p.to_string());
        Command::new(program)
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
            .arg(dir.join("js"))
            .arg("--ports_file_dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .expect("failed to start nats-server")
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then a new server on the same port and store.
    fn restart(&mut self, down_for: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down_for);
        self.child = Nats::spawn(&self.program, &self.dir, Some(self.port));
        let url = self.url();
        assert!(
            eventually(DEADLINE, || std::net::TcpStream::connect(
                url.trim_start_matches("nats://")
            )
            .is_ok()),
            "nats-server did not come back"
        );
    }

    fn cluster(&self, namespace: &str) -> Cluster {
        Cluster::builder(self.url())
            .namespace(namespace)
            .ping_interval(Duration::from_secs(1))
            .connect()
            .unwrap()
    }

    /// A runtime whose cluster pools submit to this server in `namespace`.
    fn runtime(&self, namespace: &str) -> Runtime {
        Runtime::builder()
            .cache_dir(cache_dir())
            .worker_program(WASMP)
            .cluster_with(
                Cluster::builder(self.url())
                    .namespace(namespace)
                    .ping_interval(Duration::from_secs(1)),
            )
            .build()
            .unwrap()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `wasmp serve` process: a machine. Killed and reaped on drop.
struct Host {
    id: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Host {
    fn start(nats: &Nats, namespace: &str, id: &str, extra: &[&str]) -> Host {
        let log = nats.dir.join(format!("{id}.log"));
        let child = Command::new(WASMP)
            .args(["serve", "--nats", &nats.url(), "--namespace", namespace])
            .args(["--id", id, "-j", "1", "--ack-wait", ACK_WAIT])
            .args(extra)
            .env("WASMP_CACHE_DIR", cache_dir())
            .env("WASMP_NATS_PING_INTERVAL", "1s")
            .env("WASMP_LOG", "wasmp=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("failed to start wasmp serve");
        let host = Host {
            id: id.to_string(),
            child: Some(child),
            log,
        };
        let cluster = nats.cluster(namespace);
        assert!(
            eventually(DEADLINE, || cluster
                .status()
                .is_ok_and(|s| s.hosts.iter().any(|h| h.id == id))),
            "host {id} did not report in: {}",
            host.log()
        );
        host
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn signal(&self, signal: Signal) {
        kill_process(Pid::from_raw(self.pid() as i32).unwrap(), signal).unwrap();
    }

    /// The worker processes this host runs now.
    fn workers(&self) -> Vec<u32> {
        workers_of(self.pid())
    }

    /// Waits for the host to exit (after a signal); its exit code.
    fn wait(&mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("host {} did not exit: {}", self.id, self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the host and checks that its worker processes die with it.
    fn kill(&mut self) {
        let workers = self.workers();
        self.signal(Signal::KILL);
        self.wait();
        for pid in workers {
            assert!(
                eventually(DEADLINE, || !is_running(pid)),
                "worker {pid} outlived its SIGKILLed host"
            );
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn probe(runtime: &Runtime) -> Component {
    runtime.load(pool_probe()).unwrap()
}

/// A runtime submitting to `nats` in `namespace`, the pool-probe guest, and a cluster pool
/// with `retries`.
fn cluster_pool(nats: &Nats, namespace: &str, retries: u32) -> (Runtime, Component, Pool) {
    let runtime = nats.runtime(namespace);
    let probe = probe(&runtime);
    let pool = Pool::builder(&runtime)
        .cluster()
        .retries(retries)
        .build()
        .unwrap();
    (runtime, probe, pool)
}

fn wait_running(cluster: &Cluster, host: &str) {
    assert!(
        eventually(DEADLINE, || cluster.status().is_ok_and(
            |s| s.running > 0 && s.hosts.iter().any(|h| h.id == host)
        )),
        "no task started"
    );
}

#[test]
fn tasks_spread_over_hosts_and_sigterm_exits_143() {
    let Some(nats) = Nats::start("spread") else {
        return;
    };
    let mut a = Host::start(&nats, "spread", "a", &[]);
    let mut b = Host::start(&nats, "spread", "b", &[]);
    let input: String = (0..12).map(|_| "[60]\n").collect();
    let out = crate::wasmp_with_stdin(
        &[
            "pool",
            "--nats",
            &nats.url(),
            "--namespace",
            "spread",
            pool_probe(),
            "--invoke",
            "sleep-ms",
        ],
        Some(input.as_bytes()),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(lines.iter().all(|l| l == r#"{"result":null}"#), "{lines:?}");

    // Each host ran some, and SIGTERM stops each in order: exit 143 with a report.
    for host in [&mut a, &mut b] {
        host.signal(Signal::TERM);
        assert_eq!(host.wait(), Some(143), "{}", host.log());
        let log = host.log();
        let report = log
            .lines()
            .find(|l| l.contains(" done, "))
            .unwrap_or_else(|| panic!("{log}"));
        let done: u32 = report.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(done > 0, "host {} ran nothing: {report}", host.id);
    }
}

#[test]
fn library_pool_methods_behave_as_locally() {
    let Some(nats) = Nats::start("methods") else {
        return;
    };
    let _a = Host::start(&nats, "methods", "a", &[]);
    let (_runtime, probe, pool) = cluster_pool(&nats, "methods", 0);
    assert_eq!(
        pool.map(&probe, "square", [2u64, 3, 4], None).unwrap(),
        vec![vec![Val::U64(4)], vec![Val::U64(9)], vec![Val::U64(16)]]
    );
    let unordered: Vec<_> = pool
        .imap_unordered(&probe, "square", [5u64, 6], None)
        .unwrap()
        .collect();
    assert_eq!(unordered.len(), 2);
    let trapped = pool.apply_async(&probe, "trap", Vec::<Val>::new()).unwrap();
    assert!(matches!(
        trapped.get_timeout(DEADLINE),
        Err(TaskError::Trapped(_))
    ));
    let (sender, receiver) = crossbeam_channel::bounded(1);
    pool.apply_async(&probe, "square", [7u64])
        .unwrap()
        .on_success(move |values| {
            let _ = sender.send(values.to_vec());
        });
    assert_eq!(receiver.recv_timeout(DEADLINE).unwrap(), vec![Val::U64(49)]);
    // Wrong arguments are refused before anything is sent.
    assert!(pool.apply_async(&probe, "square", ["x"]).is_err());
    assert!(pool.wait_idle(Some(DEADLINE)));
    pool.close();
    pool.join().unwrap();
    let stats = pool.stats();
    assert_eq!(
        (stats.succeeded, stats.failed, stats.outstanding),
        (6, 1, 0)
    );
}

#[test]
fn a_sigkilled_hosts_task_runs_elsewhere_and_leaves_no_orphan() {
    let Some(nats) = Nats::start("kill") else {
        return;
    };
    let mut a = Host::start(&nats, "kill", "a", &[]);
    let (_runtime, probe, pool) = cluster_pool(&nats, "kill", 1);
    let result = pool.apply_async(&probe, "sleep-ms", [1500u64]).unwrap();
    wait_running(&nats.cluster("kill"), "a");
    let _b = Host::start(&nats, "kill", "b", &[]);
    a.kill();
    assert_eq!(result.get_timeout(DEADLINE), Ok(vec![]));
    assert_eq!(pool.stats().retried, 1);
}

#[test]
fn retries_zero_and_a_lost_host_is_worker_lost_after_one_attempt() {
    let Some(nats) = Nats::start("lost") else {
        return;
    };
    let mut a = Host::start(&nats, "lost", "a", &[]);
    let (_runtime, probe, pool) = cluster_pool(&nats, "lost", 0);
    let result = pool.apply_async(&probe, "sleep-ms", [3000u64]).unwrap();
    let cluster = nats.cluster("lost");
    wait_running(&cluster, "a");
    a.kill();
    let _b = Host::start(&nats, "lost", "b", &[]);
    assert_eq!(
        result.get_timeout(DEADLINE),
        Err(TaskError::WorkerLost { attempts: 1 })
    );
    let dead = cluster.dead_letters().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].call, "pool_probe.sleep-ms");
}

#[test]
fn a_frozen_host_loses_its_task_and_its_late_result_is_dropped() {
    let Some(nats) = Nats::start("frozen") else {
        return;
    };
    let a = Host::start(&nats, "frozen", "a", &[]);
    let (_runtime, probe, pool) = cluster_pool(&nats, "frozen", 1);
    let result = pool.apply_async(&probe, "sleep-ms", [1500u64]).unwrap();
    wait_running(&nats.cluster("frozen"), "a");
    let _b = Host::start(&nats, "frozen", "b", &[]);
    a.signal(Signal::STOP);
    // Past the ack deadline the task runs on b.
    let got = result.get_timeout(DEADLINE);
    a.signal(Signal::CONT);
    assert_eq!(got, Ok(vec![]));
    assert_eq!(pool.stats().retried, 1);
    // a wakes up, finishes, reports late: nothing changes for the pool.
    std::thread::sleep(Duration::from_secs(2));
    let stats = pool.stats();
    assert_eq!(
        (stats.succeeded, stats.failed, stats.outstanding),
        (1, 0, 0)
    );
    assert!(result.ready());
}

#[test]
fn a_task_that_keeps_killing_its_worker_is_a_dead_letter_and_can_be_retried() {
    let Some(nats) = Nats::start("poison") else {
        return;
    };
    let a = Host::start(&nats, "poison", "a", &[]);
    let (_runtime, probe, pool) = cluster_pool(&nats, "poison", 1);
    let result = pool.apply_async(&probe, "sleep-ms", [4000u64]).unwrap();
    // The "poison": every worker that runs the task dies under it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (stop, pid) = (stop.clone(), a.pid());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for worker in workers_of(pid) {
                    let _ = kill_process(Pid::from_raw(worker as i32).unwrap(), Signal::KILL);
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let got = result.get_timeout(DEADLINE);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    killer.join().unwrap();
    assert_eq!(got, Err(TaskError::WorkerLost { attempts: 2 }));

    let url = nats.url();
    let listed = wasmp(&[
        "cluster",
        "--nats",
        &url,
        "--namespace",
        "poison",
        "dead",
        "list",
    ]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let line = listed
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no dead letter: {}", a.log()));
    assert!(
        line.contains("pool_probe.sleep-ms") && line.contains("died"),
        "{line}"
    );
    let sequence = line.split('\t').next().unwrap();
    let retried = wasmp(&[
        "cluster",
        "--nats",
        &url,
        "--namespace",
        "poison",
        "dead",
        "retry",
        sequence,
    ]);
    assert_eq!(
        retried.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    let listed = wasmp(&[
        "cluster",
        "--nats",
        &url,
        "--namespace",
        "poison",
        "dead",
        "list",
    ]);
    assert!(listed.stdout.is_empty());
    // Resubmitted, it runs (nobody kills it now); its result is for a task the pool
    // already resolved, so the pool counts it as a duplicate.
    assert!(eventually(DEADLINE, || pool.stats().duplicates == 1));
}

/// The worker processes of the process `pid`.
fn workers_of(pid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                pids.extend(
                    children
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    pids
}

#[test]
fn a_nats_server_killed_and_restarted_mid_run_loses_nothing() {
    let Some(mut nats) = Nats::start("restart") else {
        return;
    };
    let _a = Host::start(&nats, "restart", "a", &[]);
    let _b = Host::start(&nats, "restart", "b", &[]);
    let (_runtime, probe, pool) = cluster_pool(&nats, "restart", 3);
    let results: Vec<_> = (0..20u64)
        .map(|i| pool.apply_async(&probe, "square", [i]).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    nats.restart(Duration::from_millis(300));
    let more: Vec<_> = (20..30u64)
        .map(|i| pool.apply_async(&probe, "square", [i]).unwrap())
        .collect();
    for (i, result) in results.iter().chain(&more).enumerate() {
        assert_eq!(
            result.get_timeout(DEADLINE),
            Ok(vec![Val::U64((i * i) as u64)]),
            "task {i}"
        );
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.succeeded, stats.failed, stats.outstanding),
        (30, 0, 0)
    );
}

#[test]
fn a_host_refuses_a_task_needing_a_directory_it_does_not_grant() {
    let Some(nats) = Nats::start("grants") else {
        return;
    };
    let _a = Host::start(&nats, "grants", "a", &[]);
    let runtime = nats.runtime("grants");
    let probe = probe(&runtime);
    let dir = scratch("cluster-grants");
    let pool = Pool::builder(&runtime)
        .cluster()
        .dir(wasmp::DirGrant::new(&dir, "/data"))
        .build()
        .unwrap();
    let result = pool.apply_async(&probe, "square", [2u64]).unwrap();
    match result.get_timeout(DEADLINE) {
        Err(TaskError::Failed(message)) => {
            assert!(
                message.contains("does not grant directory /data"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Host settings are refused on the submitting side.
    let err = Pool::builder(&runtime)
        .cluster()
        .reuse_instances(true)
        .build()
        .unwrap_err();
    assert!(format!("{err:#}").contains("reuse_instances"), "{err:#}");
}

#[test]
fn terminate_removes_queued_tasks() {
    let Some(nats) = Nats::start("terminate") else {
        return;
    };
    let (_runtime, probe, pool) = cluster_pool(&nats, "terminate", 0);
    let results: Vec<_> = (0..5u64)
        .map(|i| pool.apply_async(&probe, "square", [i]).unwrap())
        .collect();
    pool.terminate();
    for result in &results {
        assert_eq!(result.get_timeout(DEADLINE), Err(TaskError::Terminated));
    }
    assert_eq!(nats.cluster("terminate").status().unwrap().waiting, 0);
}

#[test]
fn an_unreachable_server_is_exit_69() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    for args in [
        vec!["serve", "--nats", &url],
        vec!["cluster", "--nats", &url, "status"],
        vec!["pool", "--nats", &url, pool_probe(), "--invoke", "square"],
    ] {
        let out = wasmp(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(69), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot reach the NATS server"), "{stderr}");
    }
    // Worker settings belong to the hosts: refused as a usage error.
    let out = wasmp(&[
        "pool",
        "--nats",
        &url,
        "-j",
        "2",
        pool_probe(),
        "--invoke",
        "square",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_cluster_queue_is_bounded_fifo_and_closes_then_drains() {
    let Some(nats) = Nats::start("queue") else {
        return;
    };
    let cluster = nats.cluster("queue");
    let producer = wasmp::Queue::builder("jobs")
        .capacity(2)
        .cluster(&cluster)
        .unwrap();
    // Another connection, as another machine would have.
    let consumer = wasmp::Queue::builder("jobs")
        .cluster(&nats.cluster("queue"))
        .unwrap();
    producer.put("a").unwrap();
    producer.put("b").unwrap();
    assert_eq!(producer.try_put("c"), Err(wasmp::QueueError::Full));
    assert_eq!(consumer.len(), 2);
    assert_eq!(consumer.get_timeout(DEADLINE).unwrap(), b"a");
    producer.put_timeout("c", DEADLINE).unwrap();
    producer.close();
    assert_eq!(producer.put("d"), Err(wasmp::QueueError::Closed));
    assert_eq!(consumer.get_timeout(DEADLINE).unwrap(), b"b");
    assert_eq!(consumer.get_timeout(DEADLINE).unwrap(), b"c");
    assert_eq!(
        consumer.get_timeout(DEADLINE),
        Err(wasmp::QueueError::Closed)
    );
    assert!(wasmp::Queue::builder("bad.name").cluster(&cluster).is_err());
}

#[test]
fn the_tutorial_writer_and_reader_share_a_cluster_queue_from_two_commands() {
    let Some(nats) = Nats::start("tutorial") else {
        return;
    };
    let url = nats.url();
    let tutorial = wasmp_artifacts::TUTORIAL_QUEUE;
    let reader = {
        let url = url.clone();
        std::thread::spawn(move || {
            let args = [
                "run",
                "--nats",
                &url,
                "--namespace",
                "tutorial",
                "--queue",
                "q=2",
            ];
            let mut command = Command::new(WASMP);
            command
                .args(args)
                .args(["--invoke", r#"reader("q")"#, tutorial])
                .env("WASMP_CACHE_DIR", cache_dir());
            crate::run_with_deadline(command, None)
        })
    };
    let writer = wasmp(&[
        "run",
        "--nats",
        &url,
        "--namespace",
        "tutorial",
        "--queue",
        "q=2",
        "--close-on-exit",
        "q",
        "--invoke",
        r#"writer("q")"#,
        tutorial,
    ]);
    assert_eq!(
        writer.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&writer.stderr)
    );
    let reader = reader.join().unwrap();
    assert_eq!(
        reader.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&reader.stderr)
    );
    assert_eq!(
        String::from_utf8(reader.stdout).unwrap(),
        "read start...\nread value A\nread value B\nread value C\nread value D\nread end...\n"
    );
}
