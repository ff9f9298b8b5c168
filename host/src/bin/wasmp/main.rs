//! The `wasmp` command: run wasm workers in sandboxed OS processes.

mod check;
mod common;
mod pipes;
mod pool;
mod run;
mod up;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Python's multiprocessing for WebAssembly: every worker a WASI component in its own
/// sandboxed OS process.
#[derive(Parser)]
#[command(name = "wasmp", version, about, propagate_version = true)]
struct Wasmp {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run::RunCommand),
    Up(up::UpCommand),
    Check(check::CheckCommand),
    Pool(pool::PoolCommand),
}

fn main() -> ExitCode {
    // A worker process is this same binary: become one if asked, before anything else.
    wasmp::run_worker_if_requested();
    init_logging();
    let cli = Wasmp::parse();
    let result = match cli.command {
        Command::Run(cmd) => cmd.execute(),
        Command::Up(cmd) => cmd.execute(),
        Command::Check(cmd) => cmd.execute(),
        Command::Pool(cmd) => cmd.execute(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(common::exit_code_for(&e))
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[test]
fn verify_cli() {
    use clap::CommandFactory;
    Wasmp::command().debug_assert();
}
