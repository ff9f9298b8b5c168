//! The `wasmp` command: run wasm workers in sandboxed OS processes.

mod check;
mod cluster;
mod common;
mod new;
mod observe;
mod pipes;
mod pool;
mod run;
mod serve;
mod up;
mod wasmtime_flags;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Python's multiprocessing for WebAssembly: every worker a WASI component in its own
/// sandboxed OS process.
#[derive(Parser)]
#[command(name = "wasmp", version = common::version_line(), about, propagate_version = true)]
struct Wasmp {
    /// On Ctrl-C or SIGTERM, how long workers get to exit after SIGTERM before SIGKILL.
    #[arg(long, global = true, value_name = "DURATION", default_value = "2s",
          value_parser = wasmp::parse_duration)]
    shutdown_timeout: std::time::Duration,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(Box<run::RunCommand>),
    Up(up::UpCommand),
    Check(check::CheckCommand),
    Pool(pool::PoolCommand),
    New(new::NewCommand),
    Serve(serve::ServeCommand),
    Cluster(cluster::ClusterCommand),
    /// Print a shell completion script: `wasmp completion bash > /etc/bash_completion.d/wasmp`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // A worker process is this same binary: become one if asked, before anything else.
    wasmp::run_worker_if_requested();
    init_logging();
    let cli = Wasmp::parse();
    // A host stops in its own order (stop taking tasks, finish or hand back the rest).
    if !matches!(cli.command, Command::Serve(_)) {
        stop_workers_on_signals(cli.shutdown_timeout);
    }
    let result = match cli.command {
        Command::Run(cmd) => cmd.execute(),
        Command::Up(cmd) => cmd.execute(),
        Command::Check(cmd) => cmd.execute(),
        Command::Pool(cmd) => cmd.execute(),
        Command::New(cmd) => cmd.execute(),
        Command::Serve(cmd) => cmd.execute(cli.shutdown_timeout),
        Command::Cluster(cmd) => cmd.execute(),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Wasmp::command(),
                "wasmp",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    // Interrupted: the workers were stopped on purpose; say so, whatever they reported.
    let interrupted = INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
    if interrupted != 0 {
        return ExitCode::from(interrupted);
    }
    match result {
        Ok(code) => code,
        // A reader that stopped reading (`wasmp pool … | head -1`) is not an error, as in
        // ripgrep: stop quietly (the workers are reaped as their handles drop).
        Err(e)
            if e.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            common::say!("error: {e:#}");
            ExitCode::from(common::exit_code_for(&e))
        }
    }
}

/// 128 + the signal that interrupted the host, or 0.
static INTERRUPTED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Ctrl-C (SIGINT) or SIGTERM: stop every worker (SIGTERM, then SIGKILL after `grace`,
/// `--shutdown-timeout`) and exit 130 or 143, as a shell expects. A second signal while
/// stopping kills the workers at once. Workers are in their own process groups, so a
/// terminal's Ctrl-C reaches only the host, which stops them in order.
fn stop_workers_on_signals(grace: std::time::Duration) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        let mut stopping = false;
        for signal in signals.forever() {
            let code = 128 + signal;
            if stopping {
                wasmp::shutdown_workers(std::time::Duration::ZERO);
                std::process::exit(code);
            }
            stopping = true;
            INTERRUPTED.store(code as u8, std::sync::atomic::Ordering::SeqCst);
            // Never `eprintln!` here: with stderr a closed pipe it panics, this thread
            // dies, and the signal it swallowed would leave the host and its workers up.
            let _ = writeln!(
                std::io::stderr(),
                "wasmp: interrupted; stopping workers (again to force)"
            );
            std::thread::spawn(move || {
                wasmp::shutdown_workers(grace);
                std::process::exit(code);
            });
        }
    });
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
