//! `wasmp up`: the processes a file describes, started together and joined together.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use wasmp::{Component, InputError, InputErrorKind, Output, Process, Runtime};

use crate::common::{GrantOptions, Limit, exit_code_of, parse_duration, relative_to};

/// Run the processes described in a TOML file concurrently and join them all.
///
/// Exits 0 when every process succeeded, otherwise with the exit code of the first one
/// (in file order) that did not. A malformed file exits 78 naming its line and column.
#[derive(Args)]
#[command(after_help = "\
Example file (paths are relative to the file):

  [[process]]
  name = \"p1\"
  component = \"tutorial_process.wasm\"
  invoke = 'func1(\"func1...arg1\", \"func1...agr2\")'

  [[process]]
  name = \"p2\"
  component = \"tutorial_process.wasm\"
  invoke = 'func2(\"func2...arg1...\", \"func1...agr2...\")'
  env = [\"LANG=C\"]          # also: args, dirs, dirs-ro, timeout = \"10s\"

Example:
  wasmp up tutorial.toml")]
pub(crate) struct UpCommand {
    /// The file describing the processes.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// The file's shape. Unknown keys are errors, so a typo never becomes a silent default.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default, rename = "process")]
    processes: Vec<ProcessEntry>,
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
            processes.push(build(entry, &component, output)?);
        }
        // Everything is checked before anything starts: bad input spawns nothing.
        for process in &processes {
            process
                .check()
                .with_context(|| format!("process {}", process.get_name()))?;
        }
        for process in &mut processes {
            let name = process.get_name().to_string();
            process
                .start()
                .with_context(|| format!("failed to start process {name}"))?;
        }
        let mut code = ExitCode::SUCCESS;
        let mut failed = false;
        for process in &mut processes {
            let status = process.join()?;
            let pid = process.pid().unwrap_or(0);
            eprintln!("[{} {pid}] {status}", process.get_name());
            if !status.success() && !failed {
                failed = true;
                code = exit_code_of(&status);
                if status.code() == 0 {
                    code = ExitCode::FAILURE;
                }
            }
        }
        Ok(code)
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
        limits: match &entry.timeout {
            Some(text) => vec![Limit::Timeout(parse_duration(text).map_err(|e| {
                InputError::new_config(format!("process {}: timeout: {e:#}", entry.name))
            })?)],
            None => Vec::new(),
        },
    };
    grants.apply(process)
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
