//! `wasmp up`: the processes a file describes, started together and joined together.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use wasmp::{Component, InputError, InputErrorKind, Output, Process, Queue, Runtime};

use crate::common::{
    GrantOptions, Limit, exit_code_of, parse_duration, parse_size, relative_to, say,
};
use crate::pipes::PipeOptions;

/// Run the processes described in a TOML file concurrently and join them all.
///
/// Exits 0 when every process succeeded, otherwise with the exit code of the first one
/// (in file order) that did not. A malformed file exits 78 naming its line and column.
#[derive(Args)]
#[command(after_help = "\
Example file (paths are relative to the file):

  [[queue]]
  name = \"q\"
  capacity = 100            # optional; also max-message-size
  close-after = [\"pw\"]      # closed once pw ends: the reader drains it and returns

  [[process]]
  name = \"pw\"
  component = \"tutorial_queue.wasm\"
  invoke = 'writer(\"q\")'
  queues = [\"q\"]

  [[process]]
  name = \"pr\"
  component = \"tutorial_queue.wasm\"
  invoke = 'reader(\"q\")'
  queues = [\"q\"]
  env = [\"LANG=C\"]          # also: args, dirs, dirs-ro, timeout = \"10s\"

Example:
  wasmp up tutorial.toml")]
pub(crate) struct UpCommand {
    #[command(flatten)]
    pipes: PipeOptions,

    /// The file describing the processes.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// The file's shape. Unknown keys are errors, so a typo never becomes a silent default.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default, rename = "queue")]
    queues: Vec<QueueEntry>,
    #[serde(default, rename = "process")]
    processes: Vec<ProcessEntry>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct QueueEntry {
    name: String,
    capacity: Option<usize>,
    max_message_size: Option<usize>,
    /// Close the queue once these processes have all ended (its producers), so that its
    /// readers drain it and finish; every queue is closed when all processes have ended.
    #[serde(default)]
    close_after: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ProcessEntry {
    name: String,
    component: String,
    invoke: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    dirs: Vec<String>,
    #[serde(default)]
    dirs_ro: Vec<String>,
    timeout: Option<String>,
    max_memory_size: Option<Size>,
    max_wasm_stack: Option<Size>,
    fuel: Option<u64>,
    max_instances: Option<usize>,
    max_tables: Option<usize>,
    max_table_elements: Option<usize>,
    #[serde(default)]
    queues: Vec<String>,
}

impl UpCommand {
    pub(crate) fn execute(self) -> Result<ExitCode> {
        let manifest = load_manifest(&self.file)?;
        let base = self.file.parent().unwrap_or(Path::new("."));
        let runtime = Runtime::new()?;
        let output = if manifest.processes.len() > 1 {
            Output::Tagged
        } else {
            Output::Inherit
        };

        let queues: HashMap<&str, Queue> = manifest
            .queues
            .iter()
            .map(|entry| {
                let mut builder = Queue::builder(&entry.name);
                if let Some(capacity) = entry.capacity {
                    builder = builder.capacity(capacity);
                }
                if let Some(size) = entry.max_message_size {
                    builder = builder.max_message_size(size);
                }
                (entry.name.as_str(), builder.build())
            })
            .collect();
        let mut components: HashMap<PathBuf, Component> = HashMap::new();
        let mut processes = Vec::new();
        for entry in &manifest.processes {
            let path = relative_to(base, &entry.component);
            let component = match components.get(&path) {
                Some(component) => component.clone(),
                None => {
                    let component = runtime.load(&path)?;
                    components.insert(path, component.clone());
                    component
                }
            };
            let mut process = build(entry, &component, output)?;
            for name in &entry.queues {
                process = process.queue(&queues[name.as_str()]);
            }
            processes.push(process);
        }
        // Everything is checked before anything starts: bad input spawns nothing.
        for process in &processes {
            process
                .check()
                .with_context(|| format!("process {}", process.get_name()))?;
        }
        let pipes = self.pipes.start(|name| queues.get(name).cloned())?;
        let (ended, events) = crossbeam_channel::unbounded();
        let mut waiters = Vec::new();
        for (index, mut process) in processes.into_iter().enumerate() {
            let name = process.get_name().to_string();
            process
                .start()
                .with_context(|| format!("failed to start process {name}"))?;
            let ended = ended.clone();
            waiters.push(std::thread::spawn(move || {
                let status = process.join();
                let _ = ended.send((index, process.pid().unwrap_or(0), status));
            }));
        }
        drop(ended);

        let mut statuses = vec![None; manifest.processes.len()];
        for (index, pid, status) in events {
            let status = status?;
            let name = &manifest.processes[index].name;
            say!("[{name} {pid}] {status}");
            statuses[index] = Some(status);
            let done = |n: &String| {
                manifest
                    .processes
                    .iter()
                    .position(|p| &p.name == n)
                    .is_some_and(|i| statuses[i].is_some())
            };
            for entry in &manifest.queues {
                if !entry.close_after.is_empty() && entry.close_after.iter().all(done) {
                    queues[entry.name.as_str()].close();
                }
            }
        }
        for waiter in waiters {
            let _ = waiter.join();
        }
        for queue in queues.values() {
            queue.close();
        }
        pipes.finish();

        let first_failure = statuses.iter().flatten().find(|status| !status.success());
        Ok(match first_failure {
            None => ExitCode::SUCCESS,
            Some(status) if status.code() == 0 => ExitCode::FAILURE,
            Some(status) => exit_code_of(status),
        })
    }
}

fn build(entry: &ProcessEntry, component: &Component, output: Output) -> Result<Process> {
    let mut process = Process::new(component)
        .name(&entry.name)
        .stdout(output)
        .stderr(output);
    process = match &entry.invoke {
        Some(call) => process.invoke_wave(call),
        None => process.args(entry.args.iter().cloned()),
    };
    let grants = GrantOptions {
        dirs: entry.dirs.clone(),
        dirs_ro: entry.dirs_ro.clone(),
        env: entry.env.clone(),
        limits: entry_limits(entry)?,
    };
    Ok(grants.apply(process))
}

/// A size written as a number of bytes or a string with a unit (`"64MiB"`).
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Size {
    Bytes(usize),
    Text(String),
}

/// The -W settings a process entry asks for.
fn entry_limits(entry: &ProcessEntry) -> Result<Vec<Limit>> {
    let bad = |key: &str, e: anyhow::Error| {
        InputError::new_config(format!("process {}: {key}: {e:#}", entry.name))
    };
    let size = |key: &str, size: &Size| match size {
        Size::Bytes(bytes) => Ok(*bytes),
        Size::Text(text) => parse_size(text).map_err(|e| bad(key, e)),
    };
    let mut limits = Vec::new();
    if let Some(text) = &entry.timeout {
        limits.push(Limit::Timeout(
            parse_duration(text).map_err(|e| bad("timeout", e))?,
        ));
    }
    if let Some(value) = &entry.max_memory_size {
        limits.push(Limit::MaxMemorySize(size("max-memory-size", value)?));
    }
    if let Some(value) = &entry.max_wasm_stack {
        limits.push(Limit::MaxWasmStack(size("max-wasm-stack", value)?));
    }
    let counts = [
        entry.fuel.map(Limit::Fuel),
        entry.max_instances.map(Limit::MaxInstances),
        entry.max_tables.map(Limit::MaxTables),
        entry.max_table_elements.map(Limit::MaxTableElements),
    ];
    limits.extend(counts.into_iter().flatten());
    Ok(limits)
}

/// Reads and checks the file; errors say `FILE:LINE:COLUMN: what`.
fn load_manifest(path: &Path) -> Result<Manifest> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return Err(InputError::new_kind(
                InputErrorKind::NotFound,
                format!("cannot read {}: {e}", path.display()),
            )
            .into());
        }
    };
    let manifest: Manifest = toml::from_str(&text).map_err(|e| {
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_column(&text, span.start));
        InputError::new_config(format!(
            "{}:{line}:{column}: {}",
            path.display(),
            e.message()
        ))
    })?;
    let config_error = |message: String| {
        Err(InputError::new_config(format!("{}: {message}", path.display())).into())
    };
    let mut queue_names = HashSet::new();
    for entry in &manifest.queues {
        if !queue_names.insert(entry.name.as_str()) {
            return config_error(format!("two queues are named {:?}", entry.name));
        }
    }
    let process_names: HashSet<&str> = manifest.processes.iter().map(|p| p.name.as_str()).collect();
    for entry in &manifest.queues {
        if let Some(unknown) = entry
            .close_after
            .iter()
            .find(|n| !process_names.contains(n.as_str()))
        {
            return config_error(format!(
                "queue {:?}: close-after names {unknown:?}, which is not a process",
                entry.name
            ));
        }
    }
    for entry in &manifest.processes {
        if let Some(unknown) = entry
            .queues
            .iter()
            .find(|n| !queue_names.contains(n.as_str()))
        {
            return config_error(format!(
                "process {:?} is granted queue {unknown:?}, which no [[queue]] declares",
                entry.name
            ));
        }
    }
    let mut names = HashSet::new();
    for entry in &manifest.processes {
        if !names.insert(entry.name.as_str()) {
            return Err(InputError::new_config(format!(
                "{}: two processes are named {:?}",
                path.display(),
                entry.name
            ))
            .into());
        }
        if entry.invoke.is_some() && !entry.args.is_empty() {
            return Err(InputError::new_config(format!(
                "{}: process {:?} has both `invoke` and `args`; `args` are for `main`",
                path.display(),
                entry.name
            ))
            .into());
        }
    }
    if manifest.processes.is_empty() {
        return Err(
            InputError::new_config(format!("{}: no [[process]] entries", path.display())).into(),
        );
    }
    Ok(manifest)
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}
