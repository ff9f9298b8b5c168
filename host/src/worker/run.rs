//! Loads compiled components, builds a guest's WASI context from its grants, and calls
//! entry points, turning every way a guest can end into an [`Outcome`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmtime::component::{Component, InstancePre, Linker, Val, wasm_wave};
use wasmtime::{Engine, Store, Trap, WasmBacktrace};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx};

use super::channel::Channel;
use super::state::{WorkerState, new_linker};
use super::timer::EpochTimer;
use crate::engine::new_engine;
use crate::protocol::{Entry, Grants, Outcome, StartSpec};

/// The worker's wasmtime side: one engine and linker, compiled components kept warm.
pub(crate) struct Runner {
    engine: Engine,
    linker: Linker<WorkerState>,
    timer: EpochTimer,
    loaded: HashMap<PathBuf, InstancePre<WorkerState>>,
    parent_pid: u32,
}

impl Runner {
    pub(crate) fn new() -> Result<Runner> {
        let engine = new_engine()?;
        let linker = new_linker(&engine)?;
        let timer = EpochTimer::start(&engine);
        Ok(Runner {
            engine,
            linker,
            timer,
            loaded: HashMap::new(),
            parent_pid: rustix::process::getppid().map_or(0, |pid| pid.as_raw_pid() as u32),
        })
    }

    /// The pre-instantiated component at `cwasm`, loaded on first use.
    fn instance_pre(&mut self, cwasm: &Path) -> Result<InstancePre<WorkerState>> {
        if let Some(pre) = self.loaded.get(cwasm) {
            return Ok(pre.clone());
        }
        let component = load_compiled(&self.engine, cwasm)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("failed to link the component")?;
        self.loaded.insert(cwasm.to_path_buf(), pre.clone());
        Ok(pre)
    }

    /// A fresh store for one guest run: nothing survives from a previous task.
    fn new_store(&self, grants: &Grants, channel: &Channel) -> Result<Store<WorkerState>> {
        let state = WorkerState {
            wasi: build_wasi(grants)?,
            table: Default::default(),
            name: grants.name.clone(),
            parent_pid: self.parent_pid,
            channel: Some(channel.clone()),
            queues: grants.queues.iter().cloned().collect(),
        };
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(1);
        Ok(store)
    }

    /// Runs one guest entry in a fresh instance; the channel serves its queue calls.
    pub(crate) fn run(
        &mut self,
        grants: &Grants,
        cwasm: &Path,
        entry: &Entry,
        timeout: Option<Duration>,
        channel: &Channel,
    ) -> Outcome {
        let result = self.instance_pre(cwasm).and_then(|pre| {
            let mut store = self.new_store(grants, channel)?;
            self.timer.arm(timeout.map(|t| Instant::now() + t));
            let outcome = call_entry(&mut store, &pre, entry);
            self.timer.arm(None);
            outcome
        });
        result.unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")))
    }
}

/// Runs the guest described by `spec` (a `Process`).
pub(crate) fn run_guest(spec: &StartSpec, channel: &Channel) -> Outcome {
    match Runner::new() {
        Ok(mut runner) => runner.run(
            &spec.grants,
            &spec.cwasm,
            &spec.entry,
            spec.timeout_ms.map(Duration::from_millis),
            channel,
        ),
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
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

fn build_wasi(grants: &Grants) -> Result<WasiCtx> {
    let mut wasi = WasiCtx::builder();
    wasi.args(&grants.args)
        .envs(&grants.env)
        .inherit_stdout()
        .inherit_stderr()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    for dir in &grants.dirs {
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

fn call_entry(
    store: &mut Store<WorkerState>,
    pre: &InstancePre<WorkerState>,
    entry: &Entry,
) -> Result<Outcome> {
    match entry {
        Entry::Run => {
            let instance = pre
                .instantiate(&mut *store)
                .map_err(anyhow::Error::from)
                .context("failed to instantiate the component")?;
            let command = Command::new(&mut *store, &instance)
                .map_err(anyhow::Error::from)
                .context("the component is not a WASI command")?;
            Ok(match command.wasi_cli_run().call_run(&mut *store) {
                Ok(Ok(())) => Outcome::Exited(0),
                Ok(Err(())) => Outcome::Exited(1),
                Err(e) => classify(e),
            })
        }
        Entry::Invoke { export, args } => {
            let instance = pre
                .instantiate(&mut *store)
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
        Some(backtrace) if !backtrace.frames().is_empty() => format!("{cause}\n{backtrace}"),
        _ => cause,
    }
}
