//! `wasmp check`: validate a component without running it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use wasmp::{Process, Runtime};

/// Validate a component without spawning anything.
///
/// Checks that the file is a component, that wasmp provides everything it imports, and
/// (with --invoke) that the call matches an export; then lists what it can run.
#[derive(Args)]
#[command(after_help = "\
Examples:
  wasmp check guest.wasm
  wasmp check --invoke 'func1(\"a\", \"b\")' tutorial_process.wasm")]
pub(crate) struct CheckCommand {
    /// Also check this call against the exports, in WAVE syntax: 'name("a", 1)'.
    #[arg(long, value_name = "CALL")]
    invoke: Option<String>,

    /// The component to check.
    #[arg(value_name = "COMPONENT")]
    component: PathBuf,
}

impl CheckCommand {
    pub(crate) fn execute(self) -> Result<ExitCode> {
        let runtime = Runtime::new()?;
        let component = runtime.load(&self.component)?;
        if let Some(call) = &self.invoke {
            Process::new(&component).invoke_wave(call).check()?;
        }
        let kind = if component.is_adapted_module() {
            " (a WASI preview-1 core module, adapted into a component)"
        } else {
            ""
        };
        println!("{}: ok{kind}", self.component.display());
        if component.is_command() {
            println!("  main (wasi:cli/run)");
        }
        for (name, signature) in component.functions() {
            println!("  {name}: {signature}");
        }
        Ok(ExitCode::SUCCESS)
    }
}
