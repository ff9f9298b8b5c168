//! Loads the compiled component, builds the guest's WASI context from its grants, and runs
//! the entry point, turning every way a guest can end into an [`Outcome`].

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmtime::component::{Component, Linker, Val, wasm_wave};
use wasmtime::{Engine, Store, Trap, WasmBacktrace};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx};

use super::channel::Channel;
use super::state::{WorkerState, new_linker};
use crate::engine::new_engine;
use crate::protocol::{Entry, Outcome, StartSpec};

/// Runs the guest described by `spec`; the channel serves its queue calls and is handed
/// back for the final report.
pub(crate) fn run_guest(spec: StartSpec, channel: Channel) -> (Outcome, Channel) {
    let mut slot = Some(channel);
    let outcome = try_run(&spec, &mut slot).unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
    let channel = slot.expect("the store hands the channel back");
    (outcome, channel)
}

fn try_run(spec: &StartSpec, slot: &mut Option<Channel>) -> Result<Outcome> {
    let engine = new_engine()?;
    let component = load_compiled(&engine, &spec.cwasm)?;
    let linker = new_linker(&engine)?;
    let state = WorkerState {
        wasi: build_wasi(spec)?,
        table: Default::default(),
        name: spec.name.clone(),
        parent_pid: rustix::process::getppid().map_or(0, |pid| pid.as_raw_pid() as u32),
        channel: slot.take(),
        queues: spec.queues.iter().cloned().collect(),
    };
    let mut store = Store::new(&engine, state);
    store.set_epoch_deadline(1);
    if let Some(ms) = spec.timeout_ms {
        arm_timeout(&engine, Duration::from_millis(ms));
    }
    let result = call_entry(&mut store, &component, &linker, &spec.entry);
    *slot = store.into_data().channel;
    result
}

/// Loads a `.cwasm` from the host's compile cache.
fn load_compiled(engine: &Engine, cwasm: &Path) -> Result<Component> {
    #[expect(
        unsafe_code,
        reason = "loading precompiled code is unsafe by wasmtime's contract"
    )]
    // SAFETY: the file was produced by `Engine::precompile_component` in the host, under the
    // same engine configuration, and lives in the host's private (0700, owner-checked)
    // compile cache, so nobody else could have written it.
    let component = unsafe { Component::deserialize_file(engine, cwasm) };
    component
        .map_err(anyhow::Error::from)
        .with_context(|| format!("failed to load compiled component {}", cwasm.display()))
}

fn build_wasi(spec: &StartSpec) -> Result<WasiCtx> {
    let mut wasi = WasiCtx::builder();
    wasi.args(&spec.args)
        .envs(&spec.env)
        .inherit_stdout()
        .inherit_stderr()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    for dir in &spec.dirs {
        let perms = if dir.is_read_only() {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        wasi.preopened_dir(dir.host(), dir.guest(), perms)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("failed to open granted directory {}", dir.host().display())
            })?;
    }
    Ok(wasi.build())
}

/// One thread that bumps the epoch when the wall-clock limit passes: the guest then traps
/// with `Trap::Interrupt` at its next loop back-edge or function entry.
fn arm_timeout(engine: &Engine, limit: Duration) {
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("wasmp-timeout".into())
        .spawn(move || {
            std::thread::sleep(limit);
            engine.increment_epoch();
        })
        .expect("failed to spawn the timeout thread");
}

fn call_entry(
    store: &mut Store<WorkerState>,
    component: &Component,
    linker: &Linker<WorkerState>,
    entry: &Entry,
) -> Result<Outcome> {
    match entry {
        Entry::Run => {
            let command = Command::instantiate(&mut *store, component, linker)
                .map_err(anyhow::Error::from)
                .context("failed to instantiate the component")?;
            Ok(match command.wasi_cli_run().call_run(&mut *store) {
                Ok(Ok(())) => Outcome::Exited(0),
                Ok(Err(())) => Outcome::Exited(1),
                Err(e) => classify(e),
            })
        }
        Entry::Invoke { export, args } => {
            let instance = linker
                .instantiate(&mut *store, component)
                .map_err(anyhow::Error::from)
                .context("failed to instantiate the component")?;
            let Some(func) = instance.get_func(&mut *store, export.as_str()) else {
                bail!("the component has no exported function {export:?}");
            };
            let ty = func.ty(&*store);
            let params = ty
                .params()
                .zip(args)
                .map(|((_, ty), arg)| {
                    wasm_wave::from_str::<Val>(&ty, arg)
                        .with_context(|| format!("failed to decode argument {arg}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut results = vec![Val::Bool(false); ty.results().len()];
            if let Err(e) = func.call(&mut *store, &params, &mut results) {
                return Ok(classify(e));
            }
            let results = results
                .iter()
                .map(|val| wasm_wave::to_string(val).context("failed to encode a result"))
                .collect::<Result<_>>()?;
            Ok(Outcome::Returned(results))
        }
    }
}

/// `exit(n)` arrives as an error carrying `I32Exit`; the epoch timeout as `Trap::Interrupt`;
/// everything else is a trap whose message (with the wasm backtrace) is reported verbatim.
fn classify(error: wasmtime::Error) -> Outcome {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return Outcome::TimedOut;
    }
    Outcome::Trapped(describe_trap(&error))
}

/// The trap's cause and the guest's wasm backtrace; not the host's own stack, which says
/// nothing to the guest's author.
fn describe_trap(error: &wasmtime::Error) -> String {
    let cause = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    match error.downcast_ref::<WasmBacktrace>() {
        Some(backtrace) if !backtrace.frames().is_empty() => {
            format!("{cause}\n{backtrace}")
        }
        _ => cause,
    }
}
