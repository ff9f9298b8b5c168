//! wasmp beside Python's `multiprocessing`, measured in the same run, interleaved, and
//! reported as medians and ratios (absolute times on a shared VM swing 2–3×; ratios taken
//! side by side hold).
//!
//! ```text
//! cargo run --release -p wasmp-bench -- [--rounds N] [ROW ...]
//! ```
//!
//! Rows: `process` (start → join of a no-op worker vs Python fork and spawn).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmp::{Process, Runtime};

fn main() -> Result<()> {
    // This benchmark is its own worker program.
    wasmp::run_worker_if_requested();

    let mut rounds = 5;
    let mut rows = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            row => rows.push(row.to_string()),
        }
    }
    if rows.is_empty() {
        rows.push("process".into());
    }
    let runtime = Runtime::new()?;
    let mut table = Vec::new();
    for row in &rows {
        match row.as_str() {
            "process" => table.extend(process_row(&runtime, rounds)?),
            other => bail!("unknown row {other:?}; rows: process"),
        }
    }
    print_table(&table);
    Ok(())
}

/// One line of the results table.
struct Line {
    what: String,
    wasmp: Duration,
    python: Duration,
    python_label: String,
}

fn print_table(lines: &[Line]) {
    println!("| row | wasmp (median) | Python (median) | Python ÷ wasmp |");
    println!("|---|---:|---:|---:|");
    for line in lines {
        println!(
            "| {} | {:.3} ms | {:.3} ms ({}) | {:.2}× |",
            line.what,
            ms(line.wasmp),
            ms(line.python),
            line.python_label,
            line.python.as_secs_f64() / line.wasmp.as_secs_f64()
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
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

/// Start → join of a no-op guest `Process`, interleaved with Python's fork and spawn.
fn process_row(runtime: &Runtime, rounds: usize) -> Result<Vec<Line>> {
    const PER_ROUND: usize = 40;
    let noop = runtime.load(wasmp_artifacts::NOOP)?;
    let mut ours = Vec::new();
    let (mut fork, mut spawn) = (Vec::new(), Vec::new());
    // Warm-up: the compile cache, page cache and the spawner thread.
    Process::new(&noop).start()?;
    for _ in 0..rounds {
        for _ in 0..PER_ROUND {
            let started = Instant::now();
            let mut p = Process::new(&noop);
            p.start()?;
            let status = p.join()?;
            ours.push(started.elapsed());
            anyhow::ensure!(status.success(), "no-op guest: {status}");
        }
        let py = python("process.py", &[&PER_ROUND.to_string(), "fork"])?;
        fork.extend(seconds(&py["fork"]));
        let py = python("process.py", &["4", "spawn"])?;
        spawn.extend(seconds(&py["spawn"]));
    }
    let ours = median(ours);
    Ok(vec![
        Line {
            what: "Process start → join, no-op guest (cold: a new OS process each)".into(),
            wasmp: ours,
            python: median(fork),
            python_label: "fork".into(),
        },
        Line {
            what: "Process start → join, no-op guest (cold: a new OS process each)".into(),
            wasmp: ours,
            python: median(spawn),
            python_label: "spawn".into(),
        },
    ])
}
