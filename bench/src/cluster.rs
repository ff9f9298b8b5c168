//! The `cluster` rows: a pool across `wasmp serve` hosts on NATS JetStream beside Celery
//! (Redis broker and result backend) and Dask distributed, the same tasks in the same run.
//!
//! Each round starts its own `nats-server -js` (loopback, ephemeral port, store in a temp
//! dir) and adds `wasmp serve -j 1` hosts one at a time: at 1 host the CPU task; at 2
//! hosts the latency, the trivial-task throughput with the CPU time each process spent on
//! it, then the CPU task; at 4 hosts the CPU task. `cluster_bench.py` then does the same
//! with Celery and with Dask. Everything started here is killed and reaped by `Drop`
//! guards, also when a measurement fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use wasmp::{Cluster, Component, Pool, Runtime, Val};

use crate::{Line, median_f64, python, timed};

/// Trivial tasks timed one at a time, per round.
const LATENCY: usize = 200;
/// Trivial tasks submitted at once, per round.
const TRIVIAL: usize = 2_000;
/// CPU tasks per host count, per round.
const CPU_TASKS: usize = 40;
/// What one CPU task should cost, on one core.
const CPU_MS: f64 = 20.0;
/// Host (worker) counts for the CPU task; the trivial rows run at `TRIVIAL_HOSTS`.
const HOSTS: [usize; 3] = [1, 2, 4];
const TRIVIAL_HOSTS: usize = 2;
const DEADLINE: Duration = Duration::from_secs(60);
const NAMESPACE: &str = "bench";

/// Reads one measurement off a round.
type Metric = dyn Fn(&Round) -> f64;

/// One system's samples from one round.
#[derive(Default)]
struct Round {
    /// Seconds, submit → result, one task at a time.
    latency: Vec<f64>,
    /// Seconds for `TRIVIAL` tasks.
    trivial: f64,
    /// Seconds for `CPU_TASKS` CPU tasks, by host count.
    cpu: BTreeMap<usize, f64>,
    /// CPU seconds during the trivial run: server, hosts (with their workers), client.
    server_cpu: f64,
    hosts_cpu: f64,
    client_cpu: f64,
}

impl Round {
    fn from_python(json: &serde_json::Map<String, serde_json::Value>) -> Result<Round> {
        let f = |key: &str| {
            json.get(key)
                .and_then(|v| v.as_f64())
                .with_context(|| format!("cluster_bench.py printed no {key:?}"))
        };
        let mut cpu = BTreeMap::new();
        for (hosts, secs) in json
            .get("cpu")
            .and_then(|v| v.as_object())
            .context("no \"cpu\"")?
        {
            cpu.insert(hosts.parse()?, secs.as_f64().context("cpu seconds")?);
        }
        Ok(Round {
            latency: json
                .get("latency")
                .and_then(|v| v.as_array())
                .context("no \"latency\"")?
                .iter()
                .filter_map(|v| v.as_f64())
                .collect(),
            trivial: f("trivial")?,
            cpu,
            server_cpu: f("server_cpu")?,
            hosts_cpu: f("workers_cpu")?,
            client_cpu: f("client_cpu")?,
        })
    }
}

/// A Python system beside wasmp: its label, its rounds, or why it was skipped.
struct Rival {
    system: &'static str,
    label: &'static str,
    server: &'static str,
    hosts: &'static str,
    rounds: Vec<Round>,
    skipped: Option<String>,
}

pub(crate) fn cluster_rows(
    runtime: &Runtime,
    rounds: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<Line>> {
    let Some(nats_server) = nats_server() else {
        notes.push(
            "cluster: skipped: nats-server is not installed (apt-get install nats-server)".into(),
        );
        return Ok(Vec::new());
    };
    let wasmp = wasmp_binary()?;
    let (cpu_rounds, cpu_task) = calibrate(runtime)?;
    let mut ours = Vec::new();
    let mut rivals = [
        Rival {
            system: "celery",
            label: "Celery",
            server: "redis-server",
            hosts: "celery worker + prefork child",
            rounds: Vec::new(),
            skipped: None,
        },
        Rival {
            system: "dask",
            label: "Dask",
            server: "dask scheduler",
            hosts: "dask worker",
            rounds: Vec::new(),
            skipped: None,
        },
    ];
    let mut versions = Vec::new();
    let mut python_cpu = BTreeMap::new();
    let hosts_arg = HOSTS.map(|h| h.to_string()).join(",");
    for _ in 0..rounds {
        ours.push(wasmp_round(&nats_server, &wasmp, cpu_rounds)?);
        for rival in rivals.iter_mut().filter(|r| r.skipped.is_none()) {
            let json = python(
                "cluster_bench.py",
                &[
                    rival.system,
                    &LATENCY.to_string(),
                    &TRIVIAL.to_string(),
                    &CPU_TASKS.to_string(),
                    &CPU_MS.to_string(),
                    &hosts_arg,
                ],
            )?;
            if let Some(why) = json.get("skipped").and_then(|v| v.as_str()) {
                rival.skipped = Some(why.to_string());
                continue;
            }
            if rival.rounds.is_empty() {
                versions.push(
                    json.get("version")
                        .and_then(|v| v.as_str())
                        .unwrap_or(rival.label)
                        .to_string(),
                );
                python_cpu.insert(
                    rival.label,
                    (
                        json.get("cpu_rounds").and_then(|v| v.as_u64()).unwrap_or(0),
                        json.get("cpu_task")
                            .and_then(|v| v.as_f64())
                            .unwrap_or(f64::NAN),
                    ),
                );
            }
            rival.rounds.push(Round::from_python(&json)?);
        }
    }

    let mut lines = Vec::new();
    let ours_latency = pooled_latency(&ours);
    let per_task = |secs: f64| secs / TRIVIAL as f64 * 1e6;
    let m =
        |rounds: &[Round], f: &dyn Fn(&Round) -> f64| median_f64(rounds.iter().map(f).collect());
    for rival in &rivals {
        if let Some(why) = &rival.skipped {
            notes.push(format!("cluster: {} rows skipped: {why}", rival.label));
            continue;
        }
        let theirs = &rival.rounds;
        let label = rival.label;
        let latency = pooled_latency(theirs);
        for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
            lines.push(Line::time(
                format!(
                    "cluster, {TRIVIAL_HOSTS} hosts: submit → result latency {name}, \
                     trivial task one at a time"
                ),
                Duration::from_secs_f64(percentile(&ours_latency, q)),
                Duration::from_secs_f64(percentile(&latency, q)),
                label,
            ));
        }
        let rate = |rounds: &[Round]| TRIVIAL as f64 / m(rounds, &|r| r.trivial);
        lines.push(Line::rate(
            format!(
                "cluster, {TRIVIAL_HOSTS} hosts: trivial tasks, {TRIVIAL} submitted at once, \
                 all awaited"
            ),
            rate(&ours),
            rate(theirs),
            label,
            "tasks/s",
        ));
        for hosts in HOSTS {
            let rate = |rounds: &[Round]| CPU_TASKS as f64 / m(rounds, &|r| r.cpu[&hosts]);
            lines.push(Line::rate(
                format!(
                    "cluster, {hosts} host{} × 1 worker: ~{CPU_MS} ms CPU tasks ({CPU_TASKS})",
                    if hosts == 1 { "" } else { "s" }
                ),
                rate(&ours),
                rate(theirs),
                label,
                "tasks/s",
            ));
        }
        for hosts in HOSTS.into_iter().skip(1) {
            let speedup = |rounds: &[Round]| m(rounds, &|r| r.cpu[&1] / r.cpu[&hosts]);
            lines.push(Line::rate(
                format!("cluster: CPU-task speed-up, {hosts} hosts over 1"),
                speedup(&ours),
                speedup(theirs),
                label,
                "×",
            ));
        }
        let costs: [(String, &Metric); 3] = [
            (
                format!(
                    "cluster: CPU time per trivial task in the server (nats-server vs {})",
                    rival.server
                ),
                &|r| r.server_cpu,
            ),
            (
                format!(
                    "cluster: CPU time per trivial task in the hosts (wasmp serve + its \
                     worker vs {})",
                    rival.hosts
                ),
                &|r| r.hosts_cpu,
            ),
            (
                "cluster: CPU time per trivial task in the submitting client".into(),
                &|r| r.client_cpu,
            ),
        ];
        for (what, f) in costs {
            let mut line = Line::time(what, Duration::ZERO, Duration::ZERO, label);
            line.wasmp = per_task(m(&ours, f));
            line.python = per_task(m(theirs, f));
            line.unit = "µs";
            lines.push(line);
        }
    }
    for line in lines.iter_mut().filter(|l| l.unit == "ms" && l.wasmp < 1.0) {
        line.wasmp *= 1e3;
        line.python *= 1e3;
        line.unit = "µs";
    }

    notes.push(format!(
        "cluster: wasmp CPU task cpu({cpu_rounds}) = {:.1} ms on one core; {}; servers, \
         hosts and workers all on this machine's loopback; {versions}",
        cpu_task * 1e3,
        python_cpu
            .iter()
            .map(|(label, (rounds, secs))| format!(
                "{label}'s pure-Python loop of {rounds} rounds = {:.1} ms",
                secs * 1e3
            ))
            .collect::<Vec<_>>()
            .join(", "),
        versions = versions.join(", "),
    ));
    notes.extend(targets(&ours, &rivals));
    Ok(lines)
}

/// The targets, met or missed, with the figures.
fn targets(ours: &[Round], rivals: &[Rival]) -> Vec<String> {
    let m =
        |rounds: &[Round], f: &dyn Fn(&Round) -> f64| median_f64(rounds.iter().map(f).collect());
    let verdict = |met: bool| if met { "met" } else { "missed" };
    let mut out = Vec::new();
    let ours_p50 = percentile(&pooled_latency(ours), 0.5);
    for (rival, want) in rivals.iter().zip([5.0, 2.0]) {
        if rival.skipped.is_some() {
            out.push(format!(
                "target: trivial-task throughput ≥ {want}× {}: not measured ({} skipped)",
                rival.label, rival.label
            ));
            continue;
        }
        let ratio = m(&rival.rounds, &|r| r.trivial) / m(ours, &|r| r.trivial);
        out.push(format!(
            "target: trivial-task throughput ≥ {want}× {}: {} ({ratio:.2}×)",
            rival.label,
            verdict(ratio >= want)
        ));
    }
    let measured: Vec<_> = rivals.iter().filter(|r| r.skipped.is_none()).collect();
    let p50s: Vec<String> = measured
        .iter()
        .map(|r| {
            format!(
                "{} {:.2} ms",
                r.label,
                percentile(&pooled_latency(&r.rounds), 0.5) * 1e3
            )
        })
        .collect();
    let below = measured
        .iter()
        .all(|r| ours_p50 < percentile(&pooled_latency(&r.rounds), 0.5));
    out.push(format!(
        "target: p50 latency below {}: {} (wasmp {:.2} ms; {})",
        if measured.len() == rivals.len() {
            "both"
        } else {
            "those measured"
        },
        verdict(below && !measured.is_empty()),
        ours_p50 * 1e3,
        p50s.join(", ")
    ));
    let speedup = m(ours, &|r| r.cpu[&1] / r.cpu[&2]);
    out.push(format!(
        "target: CPU-task throughput with 2 hosts ≥ 1.8× one host: {} ({speedup:.2}×)",
        verdict(speedup >= 1.8)
    ));
    out
}

fn pooled_latency(rounds: &[Round]) -> Vec<f64> {
    let mut all: Vec<f64> = rounds.iter().flat_map(|r| r.latency.clone()).collect();
    all.sort_by(f64::total_cmp);
    all
}

/// The `q` quantile of sorted samples (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounds of the probe's `cpu` that take `CPU_MS` on one core, from a local one-worker
/// pool; and what one such task then takes (median of 5).
fn calibrate(runtime: &Runtime) -> Result<(u64, f64)> {
    let probe = runtime.load(wasmp_artifacts::POOL_PROBE)?;
    let pool = Pool::builder(runtime).processes(1).build()?;
    let run = |rounds: u64| {
        timed(|| {
            pool.apply(&probe, "cpu", [rounds])?;
            Ok(())
        })
    };
    run(1)?;
    let mut probe_rounds = 1_000_000;
    let took = loop {
        let took = run(probe_rounds)?;
        if took > 0.05 {
            break took;
        }
        probe_rounds *= 2;
    };
    let rounds = (probe_rounds as f64 * CPU_MS / 1e3 / took) as u64;
    let task = median_f64((0..5).map(|_| run(rounds)).collect::<Result<_>>()?);
    Ok((rounds, task))
}

/// One round of wasmp: a fresh nats-server, hosts added one by one.
fn wasmp_round(nats_server: &Path, wasmp: &Path, cpu_rounds: u64) -> Result<Round> {
    let dir = TempDir::new("cluster")?;
    let nats = Nats::start(nats_server, &dir.0)?;
    let mut hosts: Vec<Host> = Vec::new();
    let runtime = Runtime::builder()
        .cluster_with(Cluster::builder(nats.url()).namespace(NAMESPACE))
        .build()?;
    let cluster = runtime.cluster()?;
    let probe = runtime.load(wasmp_artifacts::POOL_PROBE)?;
    let pool = Pool::builder(&runtime).cluster().build()?;
    let mut round = Round::default();
    for count in HOSTS {
        while hosts.len() < count {
            let id = format!("h{}", hosts.len() + 1);
            hosts.push(Host::start(wasmp, &nats, &cluster, &dir.0, &id)?);
        }
        warm_up(&pool, &probe, count)?;
        if count == TRIVIAL_HOSTS {
            trivial(&pool, &probe, &nats, &hosts, &mut round)?;
        }
        let secs = timed(|| {
            let out = pool.map(&probe, "cpu", vec![cpu_rounds; CPU_TASKS], Some(1))?;
            ensure!(out.len() == CPU_TASKS, "lost CPU tasks");
            Ok(())
        })?;
        round.cpu.insert(count, secs);
        for host in &mut hosts {
            host.check()?;
        }
    }
    drop(pool);
    Ok(round)
}

/// Enough short tasks that every host (each pulling only for its idle worker) runs some:
/// its first task fetches and loads the component.
fn warm_up(pool: &Pool, probe: &Component, hosts: usize) -> Result<()> {
    pool.map(probe, "sleep-ms", vec![20u64; 3 * hosts], Some(1))?;
    Ok(())
}

/// Latency one at a time, then `TRIVIAL` at once with the CPU time it cost each process.
fn trivial(
    pool: &Pool,
    probe: &Component,
    nats: &Nats,
    hosts: &[Host],
    round: &mut Round,
) -> Result<()> {
    for i in 0..LATENCY as u64 {
        let started = Instant::now();
        let out = pool.apply_async(probe, "square", [i])?.get()?;
        round.latency.push(started.elapsed().as_secs_f64());
        ensure!(out == [Val::U64(i * i)], "square({i}) = {out:?}");
    }
    let host_pids: Vec<u32> = hosts.iter().map(Host::pid).collect();
    let snapshot = || {
        (
            tree_cpu(nats.child.id()),
            host_pids.iter().map(|&p| tree_cpu(p)).sum::<f64>(),
            tree_cpu_self(),
        )
    };
    let before = snapshot();
    round.trivial = timed(|| {
        let results = (0..TRIVIAL as u64)
            .map(|i| pool.apply_async(probe, "square", [i]))
            .collect::<Result<Vec<_>>>()?;
        for (i, r) in results.into_iter().enumerate() {
            let i = i as u64;
            ensure!(
                r.get()? == [Val::U64(i * i)],
                "wrong result for square({i})"
            );
        }
        Ok(())
    })?;
    let after = snapshot();
    round.server_cpu = after.0 - before.0;
    round.hosts_cpu = after.1 - before.1;
    round.client_cpu = after.2 - before.2;
    Ok(())
}

fn clock_ticks() -> f64 {
    crate::shell("getconf CLK_TCK").parse().unwrap_or(100.0)
}

/// utime, stime, cutime, cstime of a process, in seconds (the fields after `comm`).
fn own_cpu(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After `comm`: state is field 3; utime..cstime are fields 14..=17.
    let ticks: u64 = fields
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks()
}

/// CPU seconds of a process and its descendants, live or reaped.
fn tree_cpu(pid: u32) -> f64 {
    let mut total = own_cpu(&pid.to_string());
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|p| p.parse().ok()) {
            total += tree_cpu(child);
        }
    }
    total
}

/// This process's own CPU seconds (the submitting client; its local workers are idle).
fn tree_cpu_self() -> f64 {
    own_cpu("self")
}

fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WASMP_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    })
}

/// The `wasmp` binary built beside this benchmark (same profile, same tree).
fn wasmp_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let wasmp = exe.with_file_name("wasmp");
    if !wasmp.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p wasmp` (the hosts run \
             `wasmp serve`)",
            wasmp.display()
        );
    }
    Ok(wasmp)
}

/// A directory removed on drop (after the processes using it: declare it first).
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "wasmp-bench-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills and reaps a child.
fn reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let start = log.len().saturating_sub(2000);
    log[log.ceil_char_boundary(start)..].to_string()
}

/// `nats-server -js` on loopback, an ephemeral port, its store in `dir`; killed on drop.
struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    fn start(program: &Path, dir: &Path) -> Result<Nats> {
        let log = dir.join("nats-server.log");
        let child = Command::new(program)
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(dir.join("js"))
            .arg("--ports_file_dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("failed to start {}", program.display()))?;
        let mut nats = Nats {
            child,
            url: String::new(),
        };
        let ports = dir.join(format!("nats-server_{}.ports", nats.child.id()));
        let started = Instant::now();
        // The file appears before its contents: wait until it parses.
        loop {
            let url = std::fs::read_to_string(&ports)
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|json| Some(json["nats"][0].as_str()?.to_string()));
            if let Some(url) = url {
                nats.url = url;
                return Ok(nats);
            }
            if let Some(status) = nats.child.try_wait()? {
                bail!("nats-server exited ({status}): {}", log_tail(&log));
            }
            if started.elapsed() > DEADLINE {
                bail!("nats-server did not start: {}", log_tail(&log));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// One `wasmp serve -j 1` process: a machine. Killed and reaped on drop (its worker
/// process dies with it).
struct Host {
    id: String,
    child: Child,
    log: PathBuf,
}

impl Host {
    fn start(wasmp: &Path, nats: &Nats, cluster: &Cluster, dir: &Path, id: &str) -> Result<Host> {
        let log = dir.join(format!("{id}.log"));
        let child = Command::new(wasmp)
            .args(["serve", "--nats", &nats.url(), "--namespace", NAMESPACE])
            .args(["-j", "1", "--id", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("failed to start {} serve", wasmp.display()))?;
        let mut host = Host {
            id: id.to_string(),
            child,
            log,
        };
        let started = Instant::now();
        while !cluster
            .status()
            .is_ok_and(|s| s.hosts.iter().any(|h| h.id == id))
        {
            host.check()?;
            if started.elapsed() > DEADLINE {
                bail!("host {id} did not report in: {}", log_tail(&host.log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(host)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the host has exited.
    fn check(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "host {} exited ({status}): {}",
                self.id,
                log_tail(&self.log)
            );
        }
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}
