//! `wasmp pool`: one task per input line, on a pool of warm worker processes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use wasmp::{Component, InputError, InputErrorKind, Pool, Runtime, TaskResult, Val, val_to_json};

use crate::common::{ClusterTarget, GrantOptions, cluster_settings, parse_queue, say};

/// Run an export once per input line on a pool of warm worker processes.
///
/// Each line holds one task's arguments: a JSON array (["a", 2]) or WAVE ("a", 2); blank
/// lines are skipped. Each task's result is written as one JSON line, {"result": …} or
/// {"error": "…"}, in input order (or, with --unordered, as tasks finish, with "index").
/// Exits 1 when any task failed.
#[derive(Args)]
#[command(after_help = "\
Examples:
  printf '[1]\\n[2]\\n[3]\\n' | wasmp pool -j 2 worker.wasm --invoke square
  wasmp pool --input tasks.jsonl --timeout 5s --retries 2 worker.wasm --invoke process
  wasmp pool --unordered --max-tasks-per-worker 100 worker.wasm --invoke f < args.txt")]
pub(crate) struct PoolCommand {
    /// Worker processes (default: the available parallelism; at most 1024).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,

    /// Stop a task that runs longer than this (e.g. 5s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = wasmp::parse_duration)]
    timeout: Option<Duration>,

    /// Replace a worker process after this many tasks.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    max_tasks_per_worker: Option<u64>,

    /// Run a task again up to R times when its worker process dies under it.
    #[arg(long, value_name = "R", default_value_t = 0)]
    retries: u32,

    /// Keep each worker's instance across tasks (faster for tiny tasks; guest state then
    /// persists from one task to the next, as module globals do in a Python pool).
    #[arg(long)]
    reuse_instances: bool,

    /// Read tasks from FILE instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,

    /// Write results as tasks finish, each with its input "index".
    #[arg(long)]
    unordered: bool,

    /// Grant a new queue NAME (unbounded) or NAME=CAPACITY to every task.
    #[arg(long = "queue", value_name = "NAME[=CAPACITY]")]
    queues: Vec<String>,

    #[command(flatten)]
    grants: GrantOptions,

    #[command(flatten)]
    cluster: ClusterTarget,

    /// The export to call for each task.
    #[arg(long, value_name = "NAME")]
    invoke: String,

    /// The component.
    #[arg(value_name = "COMPONENT")]
    component: PathBuf,
}

impl PoolCommand {
    pub(crate) fn execute(self) -> Result<ExitCode> {
        if self.cluster.nats.is_some() {
            // Worker settings and grants of queues belong to the hosts.
            let host_flags = [
                ("-j", self.jobs.is_some()),
                (
                    "--max-tasks-per-worker",
                    self.max_tasks_per_worker.is_some(),
                ),
                ("--reuse-instances", self.reuse_instances),
                ("--queue", !self.queues.is_empty()),
            ];
            if let Some((flag, _)) = host_flags.iter().find(|(_, set)| *set) {
                clap::Error::raw(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "{flag} is a setting of the hosts with --nats: give it to `wasmp serve`\n"
                    ),
                )
                .exit();
            }
        }
        let mut grants = self.grants.grants();
        match (self.timeout, grants.get_timeout()) {
            (Some(_), Some(_)) => clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                "--timeout and -W timeout=… both set the task time limit: give one of them\n",
            )
            .exit(),
            (Some(timeout), None) => grants = grants.timeout(timeout),
            (None, _) => {}
        }
        let mut runtime = Runtime::builder();
        if let Some(url) = &self.cluster.nats {
            runtime = runtime.cluster_with(cluster_settings(url, &self.cluster.namespace));
        }
        let runtime = runtime.build()?;
        if self.cluster.nats.is_some() {
            // Connect now: an unreachable server is exit 69 before any input is read.
            runtime.cluster()?;
        }
        let component = runtime.load(&self.component)?;
        let tasks = self.read_tasks(&component)?;

        for spec in &self.queues {
            grants = grants.queue(&parse_queue(spec, None)?);
        }
        let mut builder = Pool::builder(&runtime)
            .retries(self.retries)
            .reuse_instances(self.reuse_instances)
            .grants(grants);
        if self.cluster.nats.is_some() {
            builder = builder.cluster();
        }
        if let Some(jobs) = self.jobs {
            builder = builder.processes(jobs as usize);
        }
        if let Some(k) = self.max_tasks_per_worker {
            builder = builder.max_tasks_per_worker(k);
        }

        let started = Instant::now();
        let pool = builder.build()?;
        let progress = progress_bar(tasks.len() as u64);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<(usize, TaskResult)>();
        let mut results = Vec::with_capacity(tasks.len());
        for (index, args) in tasks.into_iter().enumerate() {
            let result = pool.apply_async(&component, &self.invoke, args)?;
            let (done_tx, progress) = (done_tx.clone(), progress.clone());
            result.on_done(move |result| {
                progress.inc(1);
                let _ = done_tx.send((index, result.clone()));
            });
            results.push(result);
        }
        drop(done_tx);
        pool.close();

        let mut stdout = std::io::stdout().lock();
        let mut failed = 0usize;
        let mut write = |index: Option<usize>, result: &TaskResult| -> Result<()> {
            let mut line = match result {
                Ok(values) => json!({ "result": values_to_json(values) }),
                Err(error) => {
                    failed += 1;
                    json!({ "error": error.to_string() })
                }
            };
            if let Some(index) = index {
                line["index"] = json!(index);
            }
            writeln!(stdout, "{line}").context("failed to write a result")
        };
        if self.unordered {
            for (index, result) in done_rx {
                write(Some(index), &result)?;
            }
        } else {
            for result in &results {
                write(None, &result.get())?;
            }
        }
        drop(stdout);
        pool.join()?;
        progress.finish_and_clear();
        let stats = pool.stats();
        let elapsed = started.elapsed();
        say!(
            "wasmp pool: {} done, {} failed, {} retried in {:.2}s ({:.0} tasks/s, {})",
            stats.succeeded,
            stats.failed,
            stats.retried,
            elapsed.as_secs_f64(),
            results.len() as f64 / elapsed.as_secs_f64(),
            if self.cluster.nats.is_some() {
                format!("{} duplicate results dropped", stats.duplicates)
            } else {
                format!("{} worker processes started", stats.workers_started)
            },
        );
        Ok(if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }

    /// Reads and type-checks every task before a worker starts: a bad line spawns nothing.
    fn read_tasks(&self, component: &Component) -> Result<Vec<Vec<Val>>> {
        let reader: Box<dyn BufRead> = match &self.input {
            Some(path) => Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(
                |e| {
                    InputError::new_kind(
                        InputErrorKind::NotFound,
                        format!("cannot read {}: {e}", path.display()),
                    )
                },
            )?)),
            None => Box::new(std::io::stdin().lock()),
        };
        let source = self
            .input
            .as_ref()
            .map_or_else(|| "stdin".to_string(), |p| p.display().to_string());
        let mut tasks = Vec::new();
        for (number, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("failed to read {source}"))?;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let args = parse_line(component, &self.invoke, line).map_err(|e| {
                InputError::new_kind(
                    InputErrorKind::BadArguments,
                    format!("{source}:{}: {e:#}", number + 1),
                )
            })?;
            tasks.push(args);
        }
        Ok(tasks)
    }
}

/// A JSON array of arguments, or WAVE arguments as they would appear inside the call.
fn parse_line(component: &Component, export: &str, line: &str) -> Result<Vec<Val>> {
    if let Ok(json) = serde_json::from_str::<Value>(line)
        && json.is_array()
    {
        return component.args_from_json(export, &json);
    }
    component.parse_call_args(&format!("{export}({line})"))
}

fn values_to_json(values: &[Val]) -> Value {
    match values {
        [] => Value::Null,
        [one] => val_to_json(one),
        many => Value::Array(many.iter().map(val_to_json).collect()),
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tasks, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
