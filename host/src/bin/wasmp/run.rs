//! `wasmp run`: one component in one worker process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use wasmp::{Input, Output, Process, Queue, Runtime};

use crate::common::{ClusterTarget, GrantOptions, exit_code_of, parse_queue, report_failure};
use crate::observe::ObserveOptions;
use crate::pipes::PipeOptions;
use crate::wasmtime_flags::WasmtimeFlags;

/// Run a component in a sandboxed worker process.
///
/// Runs the component's `main` with ARGS, or calls one exported function with --invoke.
/// The guest reads wasmp's stdin (unless --stdin-to-queue takes it) and writes to its
/// stdout and stderr. The exit code is the guest's; a trap exits 134 with the trap's message.
#[derive(Args)]
#[command(after_help = "\
Examples:
  wasmp run guest.wasm arg1 arg2
  wasmp run --dir ./data::/data --env HOME=/data guest.wasm
  wasmp run --invoke 'func1(\"func1...arg1\", \"func1...agr2\")' tutorial_process.wasm
  wasmp run -W timeout=5s spin.wasm
  seq 10 | wasmp run --stdin-to-queue jobs --queue-to-stdout results worker.wasm")]
pub(crate) struct RunCommand {
    /// Call this exported function instead of `main`, in WAVE syntax: 'name("a", 1)'.
    #[arg(long, value_name = "CALL")]
    invoke: Option<String>,

    /// The worker's name (what `process::name()` answers); defaults to the file's stem.
    #[arg(long)]
    name: Option<String>,

    /// argv[0] of a command; defaults to the component's file name, as `wasmtime run` does.
    #[arg(long)]
    argv0: Option<String>,

    #[command(flatten)]
    grants: GrantOptions,

    #[command(flatten)]
    wasmtime: WasmtimeFlags,

    /// Grant a new queue NAME (unbounded) or NAME=CAPACITY.
    #[arg(long = "queue", value_name = "NAME[=CAPACITY]")]
    queues: Vec<String>,

    #[command(flatten)]
    cluster: ClusterTarget,

    /// With --nats: close cluster queue NAME when the process ends (the producer's side;
    /// readers elsewhere then drain it and see it closed). Local queues are always closed.
    #[arg(long = "close-on-exit", value_name = "NAME", requires = "nats")]
    close_on_exit: Vec<String>,

    #[command(flatten)]
    pipes: PipeOptions,

    #[command(flatten)]
    observe: ObserveOptions,

    /// The component to run.
    #[arg(value_name = "COMPONENT")]
    component: PathBuf,

    /// Arguments passed to the component's `main`.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

impl RunCommand {
    pub(crate) fn execute(self) -> Result<ExitCode> {
        let (runtime, observing) = self.observe.apply(Runtime::builder())?;
        let runtime = runtime.build()?;
        let component = runtime.load(&self.component)?;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| component.name().to_string());
        let argv0 = self.argv0.clone().unwrap_or_else(|| {
            self.component
                .file_name()
                .map_or_else(|| name.clone(), |file| file.to_string_lossy().into_owned())
        });
        self.wasmtime.refuse_flags();
        let wasi = self.wasmtime.applied();
        // The guest reads wasmp's stdin, as under `wasmtime run`, unless a queue takes it.
        let stdin = if self.pipes.stdin_to_queue.is_some() || !wasi.stdin {
            Input::Null
        } else {
            Input::Inherit
        };
        let inherit = |yes: bool| if yes { Output::Inherit } else { Output::Null };
        let mut process = Process::new(&component)
            .name(&name)
            .argv0(argv0)
            .stdin(stdin)
            .stdout(inherit(wasi.stdout))
            .stderr(inherit(wasi.stderr));
        process = match &self.invoke {
            Some(call) => {
                if !self.args.is_empty() {
                    anyhow::bail!(
                        "arguments after the component are for `main`; with --invoke, put them in the call"
                    );
                }
                process.invoke_wave(call)
            }
            None => process.args(self.args.iter().cloned()),
        };
        let mut process = process.grants(self.grants.grants_on(wasi.base_grants()));
        let cluster = self.cluster.connect()?;
        let mut queues: Vec<Queue> = Vec::new();
        for spec in &self.queues {
            queues.push(parse_queue(spec, cluster.as_ref())?);
        }
        for name in self.pipes.names() {
            if !queues.iter().any(|q| q.name() == name) {
                queues.push(parse_queue(name, cluster.as_ref())?);
            }
        }
        for queue in &queues {
            process = process.queue(queue);
            observing.watch(queue);
        }
        process.check()?;
        let pipes = self
            .pipes
            .start(|name| queues.iter().find(|q| q.name() == name).cloned())?;
        process.start()?;
        let status = process.join()?;
        // Nothing can put any more: let the drain finish what is left. A cluster queue is
        // shared with other machines: its producers close it (a --stdin-to-queue feed does
        // at end of input), not whoever ends first.
        for queue in &queues {
            if cluster.is_none() || self.close_on_exit.iter().any(|name| name == queue.name()) {
                queue.close();
            }
        }
        pipes.finish();
        if let Some(results) = process.results_wave() {
            for result in results {
                println!("{result}");
            }
        }
        report_failure(&name, &status);
        Ok(exit_code_of(&status))
    }
}
