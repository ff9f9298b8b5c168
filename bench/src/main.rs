//! wasmp beside Python's `multiprocessing`, measured in the same run, interleaved, and
//! reported as medians and ratios (absolute times on a shared VM swing 2–3×; ratios taken
//! side by side hold).
//!
//! ```text
//! cargo run --release -p wasmp-bench -- [--rounds N] [ROW ...]
//! ```
//!
//! Rows: `process` (start → join of a no-op worker vs Python fork and spawn); `queue`
//! (guest → guest through a host queue vs `mp.Queue` and `mp.Pipe`: 16 B and 64 KiB
//! messages, ping-pong); `pool` (start → first result, `apply_async` and `map` throughput,
//! CPU-bound speed-up, vs `Pool` and `ProcessPoolExecutor`, 2 workers each); `scale`
//! (terminate → reaped, private memory per idle worker, 1,000 concurrent processes);
//! `cluster` (only when named: a pool across `wasmp serve` hosts on a local `nats-server`
//! beside Celery and Dask distributed, see `cluster.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmp::{Process, Runtime};

mod cluster;

fn main() -> Result<()> {
    // This benchmark is its own worker program.
    wasmp::run_worker_if_requested();

    let mut rounds = 5;
    let mut rows = Vec::new();
    let mut json_path = None;
    let mut results_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            "--json" => json_path = Some(args.next().context("--json FILE")?),
            "--results" => results_path = Some(args.next().context("--results FILE")?),
            row => rows.push(row.to_string()),
        }
    }
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let load_before = load_average();
    if rows.is_empty() {
        rows = vec![
            "process".into(),
            "queue".into(),
            "pool".into(),
            "scale".into(),
        ];
        if wasmp_artifacts::PY_PROBE.is_ok() {
            rows.push("python-guest".into());
        }
    }
    let mut notes: Vec<String> = Vec::new();
    let runtime = Runtime::new()?;
    let mut table = Vec::new();
    for row in &rows {
        match row.as_str() {
            "process" => table.extend(process_row(&runtime, rounds)?),
            "queue" => table.extend(queue_rows(&runtime, rounds)?),
            "pool" => table.extend(pool_rows(&runtime, rounds)?),
            "scale" => table.extend(scale_rows(&runtime)?),
            "python-guest" => table.extend(python_guest_rows(&runtime, rounds, &mut notes)?),
            "cluster" => table.extend(cluster::cluster_rows(&runtime, rounds, &mut notes)?),
            other => bail!(
                "unknown row {other:?}; rows: process, queue, pool, scale, python-guest, cluster"
            ),
        }
    }
    let mut markdown = table_markdown(&table);
    for note in &notes {
        markdown.push_str(&format!("\n- {note}"));
    }
    if !notes.is_empty() {
        markdown.push('\n');
    }
    print!("{markdown}");
    if let Some(path) = json_path {
        let rows: Vec<serde_json::Value> = table
            .iter()
            .map(|l| {
                serde_json::json!({
                    "row": l.what, "wasmp": l.wasmp, "python": l.python,
                    "python_label": l.python_label, "unit": l.unit,
                    "higher_is_better": l.higher_is_better, "wasmp_advantage": l.advantage(),
                })
            })
            .collect();
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("failed to write {path}"))?;
    }
    if let Some(path) = results_path {
        let header = format!(
            "# Benchmark results\n\n\
             wasmp beside Python {python} `multiprocessing`, measured in the same run, \
             interleaved; medians of {rounds} rounds. \"wasmp advantage\" above 1 means wasmp leads.\n\n\
             - date: {date}\n- machine: {machine}\n- load average before / after: {load_before} / {load_after}\n\
             - command: `cargo run --release -p wasmp-bench -- {command}`\n\n",
            python = python_version(),
            date = shell("date -u +%Y-%m-%dT%H:%MZ"),
            machine = machine(),
            load_after = load_average(),
        );
        std::fs::write(&path, header + &markdown)
            .with_context(|| format!("failed to write {path}"))?;
    }
    Ok(())
}

fn shell(command: &str) -> String {
    Command::new("sh")
        .args(["-c", command])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = shell("grep MemTotal /proc/meminfo | awk '{printf \"%.0f GiB\", $2/1048576}'");
    format!(
        "{cores} vCPU ({}), {memory}, Linux {}",
        cpu.trim(),
        shell("uname -r")
    )
}

fn python_version() -> String {
    shell("python3 -c 'import platform; print(platform.python_version())'")
}

/// One line of the results table: medians of the same work done by both.
struct Line {
    what: String,
    wasmp: f64,
    python: f64,
    python_label: String,
    unit: &'static str,
    /// Rates (msgs/s) are better higher; times are better lower.
    higher_is_better: bool,
}

impl Line {
    fn time(what: impl Into<String>, wasmp: Duration, python: Duration, label: &str) -> Line {
        Line {
            what: what.into(),
            wasmp: wasmp.as_secs_f64() * 1e3,
            python: python.as_secs_f64() * 1e3,
            python_label: label.into(),
            unit: "ms",
            higher_is_better: false,
        }
    }

    fn rate(
        what: impl Into<String>,
        wasmp: f64,
        python: f64,
        label: &str,
        unit: &'static str,
    ) -> Line {
        Line {
            what: what.into(),
            wasmp,
            python,
            python_label: label.into(),
            unit,
            higher_is_better: true,
        }
    }

    /// How many times better wasmp is (above 1: wasmp leads).
    fn advantage(&self) -> f64 {
        if self.higher_is_better {
            self.wasmp / self.python
        } else {
            self.python / self.wasmp
        }
    }
}

fn table_markdown(lines: &[Line]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    out.push_str("| row | wasmp (median) | Python (median) | wasmp advantage |\n");
    out.push_str("|---|---:|---:|---:|\n");
    for line in lines {
        let _ = writeln!(
            out,
            "| {} | {} {} | {} {} ({}) | {:.2}× |",
            line.what,
            human(line.wasmp),
            line.unit,
            human(line.python),
            line.unit,
            line.python_label,
            line.advantage()
        );
    }
    out
}

/// Three significant digits, with thousands grouped.
fn human(value: f64) -> String {
    if value >= 1000.0 {
        let rounded = value.round() as u64;
        let digits = rounded.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn median_f64(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Runs a Python script that prints `{"label": [seconds, ...]}`.
fn python(script: &str, args: &[&str]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let out = Command::new("python3")
        .arg(python_dir().join(script))
        .args(args)
        .output()
        .context("failed to run python3")?;
    if !out.status.success() {
        bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn seconds(value: &serde_json::Value) -> Vec<Duration> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_f64())
        .map(Duration::from_secs_f64)
        .collect()
}

/// Start → join of a no-op guest `Process`, cold and from standby processes, interleaved
/// with Python's fork and spawn.
fn process_row(runtime: &Runtime, rounds: usize) -> Result<Vec<Line>> {
    const PER_ROUND: usize = 40;
    let noop = runtime.load(wasmp_artifacts::NOOP)?;
    let standby_runtime = Runtime::builder().standby(2).build()?;
    let standby_noop = standby_runtime.load(wasmp_artifacts::NOOP)?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let (mut fork, mut spawn) = (Vec::new(), Vec::new());
    let start_join = |component: &wasmp::Component| -> Result<Duration> {
        let started = Instant::now();
        let mut p = Process::new(component);
        p.start()?;
        let status = p.join()?;
        let elapsed = started.elapsed();
        anyhow::ensure!(status.success(), "no-op guest: {status}");
        Ok(elapsed)
    };
    // Warm-up: the compile cache, page cache and the spawner thread.
    start_join(&noop)?;
    start_join(&standby_noop)?;
    for _ in 0..rounds {
        for _ in 0..PER_ROUND {
            cold.push(start_join(&noop)?);
        }
        for _ in 0..PER_ROUND {
            warm.push(start_join(&standby_noop)?);
            // Let the replacement standby worker get ready, as between real starts.
            std::thread::sleep(Duration::from_millis(5));
        }
        let py = python("process.py", &[&PER_ROUND.to_string(), "fork"])?;
        fork.extend(seconds(&py["fork"]));
        let py = python("process.py", &["4", "spawn"])?;
        spawn.extend(seconds(&py["spawn"]));
    }
    let (cold, warm, fork, spawn) = (median(cold), median(warm), median(fork), median(spawn));
    let what = "Process start → join, no-op guest, cold (a new OS process each)";
    let standby = "Process start → join, no-op guest, standby(2) (pre-spawned, one use each)";
    Ok(vec![
        Line::time(what, cold, fork, "fork"),
        Line::time(what, cold, spawn, "spawn"),
        Line::time(standby, warm, fork, "fork"),
        Line::time(standby, warm, spawn, "spawn"),
    ])
}

/// A Python worker (componentize-py: CPython inside, ≈18 MB) beside the same function under
/// `multiprocessing`: a Process start → join and pool task rates; the one-time compile and
/// the cached load go to `notes` (Python has no such step to compare with).
fn python_guest_rows(
    runtime: &Runtime,
    rounds: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<Line>> {
    use wasmp::Pool;
    const PER_ROUND: usize = 10;
    const TASKS: usize = 2_000;
    let path = wasmp_artifacts::PY_PROBE
        .map_err(|why| anyhow::anyhow!("the Python guest was not built: {why}"))?;
    let size = std::fs::metadata(path)?.len();
    let cold_cache = std::env::temp_dir().join(format!("wasmp-bench-py-{}", std::process::id()));
    let load = || {
        timed(|| {
            Runtime::builder()
                .cache_dir(&cold_cache)
                .build()?
                .load(path)?;
            Ok(())
        })
    };
    // The first load compiles into the empty cache; the second finds it there.
    let (compile, cached) = (load()?, load()?);
    let _ = std::fs::remove_dir_all(&cold_cache);
    notes.push(format!(
        "Python guest ({:.1} MB component): one-time compile {:.2} s; later loads from the \
         compile cache {:.1} ms",
        size as f64 / 1e6,
        compile,
        cached * 1e3
    ));
    let probe = runtime.load(path)?;
    let start_join = || -> Result<Duration> {
        let started = Instant::now();
        let mut p = Process::new(&probe).invoke("square", [7u64]);
        p.start()?;
        let status = p.join()?;
        anyhow::ensure!(status.success(), "square(7): {status}");
        Ok(started.elapsed())
    };
    start_join()?;
    let tasks = |pool: &Pool| -> Result<f64> {
        pool.apply(&probe, "square", [7u64])?;
        timed(|| {
            let results = (0..TASKS)
                .map(|_| pool.apply_async(&probe, "square", [7u64]))
                .collect::<Result<Vec<_>>>()?;
            for r in results {
                r.get()?;
            }
            Ok(())
        })
    };
    let (mut process, mut fork, mut spawn) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fresh, mut reused, mut py_pool) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..PER_ROUND {
            process.push(start_join()?);
        }
        let py = python("process.py", &[&PER_ROUND.to_string(), "fork"])?;
        fork.extend(seconds(&py["fork"]));
        let py = python("process.py", &["4", "spawn"])?;
        spawn.extend(seconds(&py["spawn"]));
        fresh.push(tasks(&Pool::builder(runtime).processes(2).build()?)?);
        reused.push(tasks(
            &Pool::builder(runtime)
                .processes(2)
                .reuse_instances(true)
                .build()?,
        )?);
        let py = python_pool(&["apply", &TASKS.to_string(), "square"])?;
        py_pool.push(py["pool"].as_f64().unwrap_or(f64::NAN));
    }
    let what = "Python guest: Process start → join, square(7)";
    let (process, fork, spawn) = (median(process), median(fork), median(spawn));
    let rate = |secs: Vec<f64>| TASKS as f64 / median_f64(secs);
    let py_rate = rate(py_pool);
    Ok(vec![
        Line::time(what, process, fork, "fork (no-op)"),
        Line::time(what, process, spawn, "spawn (no-op)"),
        Line::rate(
            "Python guest, pool of 2: apply_async square(7), fresh instance per task",
            rate(fresh),
            py_rate,
            "Pool",
            "tasks/s",
        ),
        Line::rate(
            "Python guest, pool of 2: apply_async square(7), reuse_instances(true)",
            rate(reused),
            py_rate,
            "Pool",
            "tasks/s",
        ),
    ])
}

/// Runs a producer and a consumer guest over one queue; seconds from start to both joined.
fn queue_pair(probe: &wasmp::Component, count: u64, size: usize, batch: usize) -> Result<f64> {
    let q = wasmp::Queue::builder("bench")
        .capacity(4096)
        .max_message_size(size.max(16))
        .build();
    let started = Instant::now();
    let mut producer = Process::new(probe)
        .args([
            "produce",
            "bench",
            &count.to_string(),
            &size.to_string(),
            &batch.to_string(),
        ])
        .queue(&q);
    let mut consumer = Process::new(probe)
        .args(["consume", "bench", &batch.to_string()])
        .queue(&q)
        .stdout(wasmp::Output::Capture);
    producer.start()?;
    consumer.start()?;
    anyhow::ensure!(producer.join()?.success(), "producer failed");
    q.close();
    anyhow::ensure!(consumer.join()?.success(), "consumer failed");
    let elapsed = started.elapsed().as_secs_f64();
    let out = String::from_utf8(consumer.stdout_bytes().unwrap_or_default())?;
    anyhow::ensure!(
        out.trim() == format!("consumed {count}"),
        "lost messages: {out}"
    );
    Ok(elapsed)
}

/// Guest → guest across processes through a host queue, beside mp.Queue and mp.Pipe.
fn queue_rows(runtime: &Runtime, rounds: usize) -> Result<Vec<Line>> {
    let probe = runtime.load(wasmp_artifacts::QUEUE_PROBE)?;
    let cases: [(&str, u64, usize, usize); 3] = [
        ("16 B messages, one put/get per message", 20_000, 16, 1),
        ("16 B messages, put-many/get-many of 128", 400_000, 16, 128),
        (
            "64 KiB messages, one put/get per message",
            4_000,
            64 * 1024,
            1,
        ),
    ];
    let mut lines = Vec::new();
    for (what, count, size, batch) in cases {
        let (mut ours, mut queue, mut pipe) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            ours.push(queue_pair(&probe, count, size, batch)?);
            let py = python(
                "queue_bench.py",
                &["throughput", &count.to_string(), &size.to_string()],
            )?;
            queue.push(py["queue"].as_f64().unwrap_or(f64::NAN));
            pipe.push(py["pipe"].as_f64().unwrap_or(f64::NAN));
        }
        let rate = |secs: Vec<f64>| count as f64 / median_f64(secs);
        let (ours, queue, pipe) = (rate(ours), rate(queue), rate(pipe));
        lines.push(Line::rate(
            format!("queue: {what}"),
            ours,
            queue,
            "mp.Queue",
            "msgs/s",
        ));
        lines.push(Line::rate(
            format!("queue: {what}"),
            ours,
            pipe,
            "mp.Pipe",
            "msgs/s",
        ));
        if size >= 1024 {
            let mb = |rate: f64| rate * size as f64 / 1e6;
            lines.push(Line::rate(
                format!("queue: {what}"),
                mb(ours),
                mb(queue),
                "mp.Queue",
                "MB/s",
            ));
        }
    }

    const ROUND_TRIPS: u64 = 2_000;
    let (mut ours, mut pipe, mut queue) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (ping_q, pong_q) = (wasmp::Queue::new("ping"), wasmp::Queue::new("pong"));
        let started = Instant::now();
        let mut ping = Process::new(&probe)
            .args(["ping", "ping", "pong", &ROUND_TRIPS.to_string()])
            .queue(&ping_q)
            .queue(&pong_q);
        let mut pong = Process::new(&probe)
            .args(["pong", "ping", "pong"])
            .queue(&ping_q)
            .queue(&pong_q);
        ping.start()?;
        pong.start()?;
        anyhow::ensure!(
            ping.join()?.success() && pong.join()?.success(),
            "ping-pong failed"
        );
        ours.push(started.elapsed().as_secs_f64());
        let py = python("queue_bench.py", &["pingpong", &ROUND_TRIPS.to_string()])?;
        pipe.push(py["pipe"].as_f64().unwrap_or(f64::NAN));
        queue.push(py["queue"].as_f64().unwrap_or(f64::NAN));
    }
    let per_trip = |secs: Vec<f64>| Duration::from_secs_f64(median_f64(secs) / ROUND_TRIPS as f64);
    let what = "ping-pong round trip between two processes";
    let ours = per_trip(ours);
    lines.push(Line::time(what, ours, per_trip(pipe), "duplex mp.Pipe"));
    lines.push(Line::time(what, ours, per_trip(queue), "two mp.Queues"));
    for line in lines.iter_mut().filter(|l| l.unit == "ms") {
        line.wasmp *= 1e3;
        line.python *= 1e3;
        line.unit = "µs";
    }
    Ok(lines)
}

/// Seconds to run `work` once.
fn timed(work: impl FnOnce() -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    work()?;
    Ok(started.elapsed().as_secs_f64())
}

/// Runs the Python side of a pool row: `{"pool": s, "executor": s, …}`.
fn python_pool(args: &[&str]) -> Result<serde_json::Map<String, serde_json::Value>> {
    python("pool_bench.py", args)
}

/// Seconds for `apply` trivial `apply_async` tasks, then for a `map` of `map` items.
fn throughput(
    pool: &wasmp::Pool,
    probe: &wasmp::Component,
    apply: usize,
    map: u64,
) -> Result<(f64, f64)> {
    let none = Vec::<wasmp::Val>::new;
    let applied = timed(|| {
        let results = (0..apply)
            .map(|_| pool.apply_async(probe, "noop", none()))
            .collect::<Result<Vec<_>>>()?;
        for r in results {
            r.get()?;
        }
        Ok(())
    })?;
    let mapped = timed(|| {
        let out = pool.map(probe, "square", 0..map, None)?;
        anyhow::ensure!(out.len() as u64 == map, "map lost items");
        Ok(())
    })?;
    Ok((applied, mapped))
}

/// Pools of two workers beside `multiprocessing.Pool(2)` and `ProcessPoolExecutor(2)`.
fn pool_rows(runtime: &Runtime, rounds: usize) -> Result<Vec<Line>> {
    use wasmp::{Pool, Val};
    const WORKERS: usize = 2;
    const APPLY: usize = 20_000;
    const MAP: u64 = 100_000;
    const CPU_TASKS: u64 = 8;
    const WASM_ROUNDS: u64 = 40_000_000;
    const PY_ROUNDS: u64 = 400_000;
    let probe = runtime.load(wasmp_artifacts::POOL_PROBE)?;
    let pool2 = || Pool::builder(runtime).processes(WORKERS).build();
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let mut samples: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut push = |key: &'static str, value: f64| samples.entry(key).or_default().push(value);
    // Seconds for CPU_TASKS tasks of `rounds` xorshift rounds, one task per trip to a worker.
    let cpu = |pool: &Pool, rounds: u64| {
        timed(|| {
            pool.map(&probe, "cpu", vec![rounds; CPU_TASKS as usize], Some(1))?;
            Ok(())
        })
    };
    for _ in 0..rounds {
        push(
            "start",
            timed(|| {
                let pool = pool2()?;
                pool.apply(&probe, "square", [1u64])?;
                Ok(())
            })?,
        );
        let py = python_pool(&["start"])?;
        push("start.pool", f(&py["pool"]));
        push("start.executor", f(&py["executor"]));

        let pool = pool2()?;
        pool.apply(&probe, "noop", Vec::<Val>::new())?;
        let (apply, map) = throughput(&pool, &probe, APPLY, MAP)?;
        push("apply", apply);
        push("map", map);
        push("cpu.parallel", cpu(&pool, WASM_ROUNDS)?);
        push("cpu.small", cpu(&pool, PY_ROUNDS)?);
        drop(pool);
        let reuse = Pool::builder(runtime)
            .processes(WORKERS)
            .reuse_instances(true)
            .build()?;
        reuse.apply(&probe, "noop", Vec::<Val>::new())?;
        let (apply, map) = throughput(&reuse, &probe, APPLY, MAP)?;
        push("apply.reuse", apply);
        push("map.reuse", map);
        drop(reuse);
        let serial = Pool::builder(runtime).processes(1).build()?;
        serial.apply(&probe, "noop", Vec::<Val>::new())?;
        push("cpu.serial", cpu(&serial, WASM_ROUNDS)?);
        drop(serial);

        let py = python_pool(&["apply", &APPLY.to_string()])?;
        push("apply.pool", f(&py["pool"]));
        push("apply.executor", f(&py["executor"]));
        let py = python_pool(&["map", &MAP.to_string()])?;
        push("map.pool", f(&py["pool"]));
        push("map.executor", f(&py["executor"]));
        let py = python_pool(&["cpu", &CPU_TASKS.to_string(), &PY_ROUNDS.to_string()])?;
        push("cpu.py.serial", f(&py["serial"]));
        push("cpu.py.pool", f(&py["pool"]));
        push("cpu.py.executor", f(&py["executor"]));
    }
    let m = |key: &str| median_f64(samples[key].clone());
    let d = |secs: f64| Duration::from_secs_f64(secs);
    let mut lines = vec![
        Line::time(
            "pool of 2: start → first result",
            d(m("start")),
            d(m("start.pool")),
            "Pool",
        ),
        Line::time(
            "pool of 2: start → first result",
            d(m("start")),
            d(m("start.executor")),
            "ProcessPoolExecutor",
        ),
    ];
    // Throughput rows: (row, items per run, our sample, Python's sample, Python's label, unit).
    let apply = "pool of 2: apply_async, trivial tasks";
    let map = "pool of 2: map, default chunks";
    let apply_reuse = "pool of 2: apply_async, trivial tasks, reuse_instances(true)";
    let map_reuse = "pool of 2: map, default chunks, reuse_instances(true)";
    let executor = "ProcessPoolExecutor";
    let rates = [
        (
            apply,
            APPLY as f64,
            "apply",
            "apply.pool",
            "Pool",
            "tasks/s",
        ),
        (
            apply,
            APPLY as f64,
            "apply",
            "apply.executor",
            "ProcessPoolExecutor.submit",
            "tasks/s",
        ),
        (map, MAP as f64, "map", "map.pool", "Pool", "items/s"),
        (map, MAP as f64, "map", "map.executor", executor, "items/s"),
        (
            apply_reuse,
            APPLY as f64,
            "apply.reuse",
            "apply.pool",
            "Pool",
            "tasks/s",
        ),
        (
            map_reuse,
            MAP as f64,
            "map.reuse",
            "map.pool",
            "Pool",
            "items/s",
        ),
    ];
    for (what, items, ours, theirs, label, unit) in rates {
        lines.push(Line::rate(
            what,
            items / m(ours),
            items / m(theirs),
            label,
            unit,
        ));
    }
    let ours_speedup = m("cpu.serial") / m("cpu.parallel");
    lines.push(Line::rate(
        "CPU-bound: speed-up of 2 workers over 1",
        ours_speedup,
        m("cpu.py.serial") / m("cpu.py.pool"),
        "Pool vs serial",
        "×",
    ));
    lines.push(Line::time(
        format!("CPU-bound: wall time, {CPU_TASKS} tasks × {PY_ROUNDS} xorshift rounds"),
        d(m("cpu.small")),
        d(m("cpu.py.pool")),
        "Pool",
    ));
    Ok(lines)
}

/// Private memory (USS: private clean + private dirty) of a process, in KiB.
fn uss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The machine's available memory, in KiB.
fn available_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// This process's children that are wasmp workers.
fn worker_children() -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{me}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids.retain(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.contains("__wasmp_worker"))
    });
    pids
}

/// Terminate latency, idle-worker memory and 1,000 concurrent processes.
fn scale_rows(runtime: &Runtime) -> Result<Vec<Line>> {
    use wasmp::{Pool, Queue, Val};
    let exports = runtime.load(wasmp_artifacts::EXPORTS)?;
    let probe = runtime.load(wasmp_artifacts::QUEUE_PROBE)?;
    let pool_probe = runtime.load(wasmp_artifacts::POOL_PROBE)?;
    let mut lines = Vec::new();

    const TERMINATIONS: usize = 20;
    let mut ours = Vec::new();
    for _ in 0..TERMINATIONS {
        let mut p = Process::new(&exports).invoke("spin", Vec::<Val>::new());
        p.start()?;
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        p.terminate()?;
        ours.push(started.elapsed());
    }
    let py = python("scale.py", &["terminate", &TERMINATIONS.to_string()])?;
    lines.push(Line::time(
        "terminate → reaped, busy worker",
        median(ours),
        median(seconds(&py["terminate"])),
        "Process.terminate + join",
    ));

    const IDLE: usize = 8;
    let pool = Pool::builder(runtime).processes(IDLE).build()?;
    pool.map(&pool_probe, "square", 0..(IDLE as u64 * 4), Some(1))?;
    std::thread::sleep(Duration::from_millis(200));
    let ours: Vec<f64> = worker_children()
        .into_iter()
        .map(|pid| uss_kb(pid) as f64)
        .collect();
    drop(pool);
    let py = python("scale.py", &["uss", &IDLE.to_string()])?;
    let theirs: Vec<f64> = py["uss_kb"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_f64())
        .collect();
    let mut line = Line::time(
        "private memory (USS) per idle pool worker",
        Duration::ZERO,
        Duration::ZERO,
        "Pool worker",
    );
    line.wasmp = median_f64(ours) / 1024.0;
    line.python = median_f64(theirs) / 1024.0;
    line.unit = "MiB";
    lines.push(line);

    const SCALE: usize = 1000;
    let (ready, go) = (Queue::new("ready"), Queue::new("go"));
    let before = available_kb();
    let started = Instant::now();
    let mut processes = Vec::with_capacity(SCALE);
    for _ in 0..SCALE {
        let mut p = Process::new(&probe)
            .args(["ping", "ready", "go", "1"])
            .queue(&ready)
            .queue(&go)
            .stdout(wasmp::Output::Null);
        p.start()?;
        processes.push(p);
    }
    for _ in 0..SCALE {
        ready.get()?;
    }
    let peak_kb = before.saturating_sub(available_kb());
    for _ in 0..SCALE {
        go.put("go")?;
    }
    for p in &mut processes {
        anyhow::ensure!(p.join()?.success(), "a scale worker failed");
    }
    let ours_secs = started.elapsed();
    anyhow::ensure!(worker_children().is_empty(), "workers left behind");
    let py = python("scale.py", &["scale", &SCALE.to_string()])?;
    lines.push(Line::time(
        "1,000 concurrent processes, each a queue round trip, all joined",
        ours_secs,
        Duration::from_secs_f64(py["seconds"].as_f64().unwrap_or(f64::NAN)),
        "Process + Queue",
    ));
    let mut memory = Line::time(
        "1,000 concurrent processes: memory in use at the peak",
        Duration::ZERO,
        Duration::ZERO,
        "Process + Queue",
    );
    memory.wasmp = peak_kb as f64 / 1024.0;
    memory.python = py["memory_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    memory.unit = "MiB";
    lines.push(memory);
    for line in lines.iter_mut().filter(|l| l.unit == "ms" && l.wasmp < 1.0) {
        line.wasmp *= 1e3;
        line.python *= 1e3;
        line.unit = "µs";
    }
    Ok(lines)
}
