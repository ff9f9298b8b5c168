//! `wasmp pool`: one task per input line, on a pool of warm worker processes.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use crossbeam_channel::{Receiver, Sender, never, select};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use wasmp::{Component, InputError, InputErrorKind, Pool, Runtime, TaskResult, Val, val_to_json};

use crate::common::{ClusterTarget, GrantOptions, cluster_settings, parse_queue, say};
use crate::observe::ObserveOptions;

/// Run an export once per input line on a pool of warm worker processes.
///
/// Each line holds one task's arguments: a JSON array (["a", 2]), WAVE ("a", 2), or a
/// dead-letter record ({"args": […], …}); blank lines are skipped. Input is read as it
/// comes (`tail -f log | wasmp pool …` works) with at most --backlog tasks in flight.
/// Each task's result is written as one JSON line as soon as it is ready, {"result": …} or
/// {"error": "…"}, in input order (or, with --unordered, as tasks finish, with "index").
/// A bad first line starts nothing (exit 65); a later one becomes an error line naming
/// it. Exits 1 when any task or line failed.
#[derive(Args)]
#[command(after_help = "\
Examples:
  printf '[1]\\n[2]\\n[3]\\n' | wasmp pool -j 2 worker.wasm --invoke square
  wasmp pool --input tasks.jsonl --timeout 5s --retries 2 worker.wasm --invoke process
  wasmp pool --unordered --max-tasks-per-worker 100 worker.wasm --invoke f < args.txt
  wasmp pool --retry-errors 3 --dead-letter failed.jsonl worker.wasm --invoke f < args.txt
  wasmp pool --input failed.jsonl worker.wasm --invoke f     # run the dead letters again")]
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

    /// Run a task again up to N times when it traps or times out, after a jittered
    /// back-off (50-100 ms, doubling).
    #[arg(long, value_name = "N", default_value_t = 0)]
    retry_errors: u32,

    /// Append each finally failed task to FILE as a JSON line (its arguments, the reason,
    /// the attempts, the last error, the input line number), which `wasmp pool` accepts
    /// again as input.
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,

    /// Stop at the first failed task or bad line: nothing more is read or written, the
    /// workers are stopped, exit 1.
    #[arg(long)]
    fail_fast: bool,

    /// At most N tasks read and not yet written (the memory bound on an endless input).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    backlog: u64,

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

    #[command(flatten)]
    observe: ObserveOptions,

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
                ("--retry-errors", self.retry_errors > 0),
            ];
            if let Some((flag, _)) = host_flags.iter().find(|(_, set)| *set) {
                clap::Error::raw(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{flag} is not available with --nats: a setting of `wasmp serve`, or of local pools\n"),
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
        let (mut runtime, observing) = self.observe.apply(Runtime::builder())?;
        if let Some(url) = &self.cluster.nats {
            runtime = runtime.cluster_with(cluster_settings(url, &self.cluster.namespace));
        }
        let runtime = runtime.build()?;
        if self.cluster.nats.is_some() {
            // Connect now: an unreachable server is exit 69 before any input is read.
            runtime.cluster()?;
        }
        let component = runtime.load(&self.component)?;
        let dead_letters = match &self.dead_letter {
            Some(path) => Some(open_dead_letters(path)?),
            None => None,
        };
        let total = match &self.input {
            Some(path) => Some(count_tasks(path)?),
            None => None,
        };
        let lines = read_lines(self.input.clone(), component.clone(), self.invoke.clone())?;
        // The first task decides whether anything starts: a bad one spawns nothing.
        let first = match lines.recv() {
            Ok(Line::Task { args: Err(e), .. }) => {
                return Err(InputError::new_kind(InputErrorKind::BadArguments, e).into());
            }
            Ok(Line::ReadFailed(e)) => return Err(e),
            Ok(first) => Some(first),
            Err(_) => None,
        };

        for spec in &self.queues {
            let queue = parse_queue(spec, None)?;
            observing.watch(&queue);
            grants = grants.queue(&queue);
        }
        let mut builder = Pool::builder(&runtime)
            .retries(self.retries)
            .retry_errors(self.retry_errors)
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
        let mut run = Streaming {
            pool: &pool,
            component: &component,
            export: &self.invoke,
            unordered: self.unordered,
            fail_fast: self.fail_fast,
            backlog: usize::try_from(self.backlog).unwrap_or(usize::MAX),
            progress: progress_bar(total),
            dead_letters,
            stdout: std::io::stdout(),
            pending: BTreeMap::new(),
            next_index: 0,
            failed: 0,
            stopped: false,
        };
        run.run(first, &lines)?;
        let (tasks, failed, stopped) = (run.next_index, run.failed, run.stopped);
        let progress = run.progress.clone();
        drop(run);
        if stopped {
            pool.terminate();
        } else {
            pool.close();
        }
        pool.join()?;
        progress.finish_and_clear();
        let stats = pool.stats();
        let elapsed = started.elapsed();
        say!(
            "wasmp pool: {} done, {} failed, {} retried in {:.2}s ({:.0} tasks/s, {}){}",
            stats.succeeded,
            failed,
            stats.retried,
            elapsed.as_secs_f64(),
            tasks as f64 / elapsed.as_secs_f64(),
            if self.cluster.nats.is_some() {
                format!("{} duplicate results dropped", stats.duplicates)
            } else {
                format!("{} worker processes started", stats.workers_started)
            },
            if stopped {
                "; stopped at the first failure (--fail-fast)"
            } else {
                ""
            },
        );
        Ok(if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// What the reader thread hands over, in input order.
enum Line {
    /// A non-blank line (numbered from 1): its arguments, or why they are not valid.
    Task {
        number: usize,
        args: std::result::Result<Vec<Val>, String>,
    },
    /// The input could not be read; nothing after it comes.
    ReadFailed(anyhow::Error),
}

/// Reads and type-checks the input on its own thread, so that results are written while
/// the next line is awaited. The channel is small: the reader stays a few lines ahead.
fn read_lines(
    input: Option<PathBuf>,
    component: Component,
    export: String,
) -> Result<Receiver<Line>> {
    let (sender, lines) = crossbeam_channel::bounded(64);
    let reader: Box<dyn BufRead + Send> = match &input {
        Some(path) => Box::new(std::io::BufReader::new(open_input(path)?)),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let source = input.map_or_else(|| "stdin".to_string(), |p| p.display().to_string());
    std::thread::Builder::new()
        .name("wasmp-input".into())
        .spawn(move || {
            for (number, line) in reader.lines().enumerate() {
                let message = match line {
                    Err(e) => Line::ReadFailed(
                        anyhow::Error::new(e).context(format!("failed to read {source}")),
                    ),
                    Ok(line) if line.trim().is_empty() => continue,
                    Ok(line) => Line::Task {
                        number: number + 1,
                        args: parse_line(&component, &export, line.trim())
                            .map_err(|e| format!("{source}:{}: {e:#}", number + 1)),
                    },
                };
                let failed = matches!(message, Line::ReadFailed(_));
                if sender.send(message).is_err() || failed {
                    return;
                }
            }
        })
        .context("failed to start the input thread")?;
    Ok(lines)
}

fn open_input(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| {
        InputError::new_kind(
            InputErrorKind::NotFound,
            format!("cannot read {}: {e}", path.display()),
        )
        .into()
    })
}

/// The non-blank lines of an input file, for the progress bar's total (a stream has none).
fn count_tasks(path: &Path) -> Result<u64> {
    let reader = std::io::BufReader::new(open_input(path)?);
    let mut count = 0;
    for line in reader.lines() {
        let line = line.with_context(|| format!("failed to read {}", path.display()))?;
        count += u64::from(!line.trim().is_empty());
    }
    Ok(count)
}

fn open_dead_letters(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the dead-letter file {}", path.display()))
}

/// One task read and not yet written.
struct Pending {
    /// Its input line.
    number: usize,
    /// Its arguments (for a dead letter), `None` for a bad line.
    args: Option<Vec<Val>>,
    outcome: Option<Outcome>,
}

enum Outcome {
    Task(TaskResult, u32),
    BadLine(String),
}

/// One `wasmp pool` run: tasks are submitted as lines arrive and written as they finish,
/// with at most `backlog` of them read and not yet written.
struct Streaming<'a> {
    pool: &'a Pool,
    component: &'a Component,
    export: &'a str,
    unordered: bool,
    fail_fast: bool,
    backlog: usize,
    progress: ProgressBar,
    dead_letters: Option<std::fs::File>,
    /// Not a held `StdoutLock`: `--events -` writes its lines to stdout from the pool's
    /// threads, and each `writeln!` locks it for one whole line.
    stdout: std::io::Stdout,
    /// By input index: the order results are written in.
    pending: BTreeMap<usize, Pending>,
    next_index: usize,
    failed: usize,
    /// `--fail-fast` saw a failure.
    stopped: bool,
}

impl Streaming<'_> {
    fn run(&mut self, first: Option<Line>, lines: &Receiver<Line>) -> Result<()> {
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<(usize, TaskResult, u32)>();
        let Some(first) = first else {
            return Ok(());
        };
        self.take(first, &done_tx)?;
        let mut input_open = true;
        let closed: Receiver<Line> = never();
        while !self.stopped && (input_open || !self.pending.is_empty()) {
            let source = if input_open && self.pending.len() < self.backlog {
                lines
            } else {
                &closed
            };
            select! {
                recv(source) -> line => match line {
                    Ok(line) => self.take(line, &done_tx)?,
                    Err(_) => input_open = false,
                },
                recv(done_rx) -> done => {
                    let (index, result, attempts) = done.expect("a sender is held here");
                    self.finished(index, Outcome::Task(result, attempts))?;
                }
            }
        }
        Ok(())
    }

    /// Submits the task a line holds (or records the bad line in its place).
    fn take(&mut self, line: Line, done: &Sender<(usize, TaskResult, u32)>) -> Result<()> {
        let (number, args) = match line {
            Line::Task { number, args } => (number, args),
            Line::ReadFailed(e) => return Err(e),
        };
        let index = self.next_index;
        self.next_index += 1;
        match args {
            Ok(args) => {
                let result = self
                    .pool
                    .apply_async(self.component, self.export, args.clone())?;
                let (done, progress, handle) =
                    (done.clone(), self.progress.clone(), result.clone());
                result.on_done(move |outcome| {
                    progress.inc(1);
                    let _ = done.send((index, outcome.clone(), handle.attempts()));
                });
                self.pending.insert(
                    index,
                    Pending {
                        number,
                        args: Some(args),
                        outcome: None,
                    },
                );
            }
            Err(error) => {
                self.pending.insert(
                    index,
                    Pending {
                        number,
                        args: None,
                        outcome: None,
                    },
                );
                self.finished(index, Outcome::BadLine(error))?;
            }
        }
        Ok(())
    }

    /// Task `index` is done: write it (and, in input order, whatever waited for it).
    fn finished(&mut self, index: usize, outcome: Outcome) -> Result<()> {
        if let Some(pending) = self.pending.get_mut(&index) {
            pending.outcome = Some(outcome);
        }
        if self.unordered {
            if let Some(pending) = self.pending.remove(&index) {
                self.write(index, pending)?;
            }
            return Ok(());
        }
        while !self.stopped
            && let Some(entry) = self.pending.first_entry()
            && entry.get().outcome.is_some()
        {
            let (index, pending) = entry.remove_entry();
            self.write(index, pending)?;
        }
        Ok(())
    }

    fn write(&mut self, index: usize, pending: Pending) -> Result<()> {
        let Some(outcome) = pending.outcome else {
            return Ok(());
        };
        let mut line = match &outcome {
            Outcome::Task(Ok(values), _) => json!({ "result": values_to_json(values) }),
            Outcome::Task(Err(error), attempts) => {
                if let (Some(file), Some(args)) = (&mut self.dead_letters, &pending.args) {
                    let letter = json!({
                        "args": args.iter().map(val_to_json).collect::<Vec<_>>(),
                        "reason": error.kind(),
                        "attempts": attempts,
                        "error": error.to_string(),
                        "line": pending.number,
                    });
                    writeln!(file, "{letter}").context("failed to write a dead letter")?;
                }
                json!({ "error": error.to_string() })
            }
            Outcome::BadLine(error) => {
                self.progress.inc(1);
                json!({ "error": error, "line": pending.number })
            }
        };
        if self.unordered {
            line["index"] = json!(index);
        }
        writeln!(self.stdout, "{line}").context("failed to write a result")?;
        let ok = matches!(outcome, Outcome::Task(Ok(_), _));
        if !ok {
            self.failed += 1;
            self.progress
                .set_message(format!("{} failed,", self.failed));
            self.stopped = self.fail_fast;
        }
        Ok(())
    }
}
/// A JSON array of arguments, a dead-letter record (its `args`), or WAVE arguments as they
/// would appear inside the call.
fn parse_line(component: &Component, export: &str, line: &str) -> Result<Vec<Val>> {
    if let Ok(json) = serde_json::from_str::<Value>(line) {
        if json.is_array() {
            return component.args_from_json(export, &json);
        }
        if let Some(args) = json.get("args").filter(|args| args.is_array()) {
            return component.args_from_json(export, args);
        }
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

/// A bar towards `total` for an input file; for a stream, done and failed counts and the
/// rate, without a total.
fn progress_bar(total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{bar:40} {pos}/{len} tasks, {msg} {per_sec}, eta {eta}",
        ),
        None => (
            ProgressBar::no_length(),
            "{spinner} {pos} tasks done, {msg} {per_sec}",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("0 failed,");
    bar
}
