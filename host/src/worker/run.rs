//! Loads compiled components, builds a guest's WASI context from its grants, and calls
//! entry points, turning every way a guest can end into an [`Outcome`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmtime::component::{
    Component, ComponentExportIndex, Instance, InstancePre, Linker, Type, Val, wasm_wave,
};
use wasmtime::{Engine, Store, Trap, WasmBacktrace};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx};

use super::channel::Channel;
use super::limiter::Limiter;
use super::sandbox;
use super::state::{WorkerState, link_host_imports, new_linker};
use super::timer::EpochTimer;
use crate::engine::{EngineOptions, new_engine};
use crate::grants::limits::Limits;
use crate::protocol::{Entry, Grants, LimitHit, Outcome, StartSpec, ToHost};

/// A compiled component, linked and ready to instantiate, with its exports looked up once.
struct Loaded {
    pre: InstancePre<WorkerState>,
    exports: HashMap<String, Export>,
}

/// An exported function's index and signature, resolved once per component.
#[derive(Clone)]
struct Export {
    index: ComponentExportIndex,
    params: Vec<Type>,
    results: usize,
}

/// An instance kept across tasks when the pool asked for instance reuse.
struct Kept {
    cwasm: PathBuf,
    store: Store<WorkerState>,
    instance: Instance,
}

/// The worker's wasmtime side: one engine and linker, compiled components kept warm.
pub(crate) struct Runner {
    /// The settings `engine` was built with.
    options: EngineOptions,
    engine: Engine,
    linker: Linker<WorkerState>,
    timer: EpochTimer,
    loaded: HashMap<PathBuf, Loaded>,
    /// The embedder's host interfaces (linked as calls to the host), and the functions of
    /// theirs the linker already has.
    host_interfaces: Vec<String>,
    host_functions: HashSet<(String, String)>,
    parent_pid: u32,
    reuse_instances: bool,
    kept: Option<Kept>,
    /// The limit the last run hit, for the host (`ToHost::LimitHit`).
    limit_hit: Option<LimitHit>,
}

impl Runner {
    /// A runner for one `Process`: the default (on-demand) instance allocator.
    pub(crate) fn new(limits: &Limits) -> Result<Runner> {
        Runner::with_engine(engine_options(limits, false), false)
    }

    /// A runner for a pool worker, which instantiates once per task.
    pub(crate) fn for_pool(limits: &Limits, reuse_instances: bool) -> Result<Runner> {
        Runner::with_engine(engine_options(limits, true), reuse_instances)
    }

    fn with_engine(options: EngineOptions, reuse_instances: bool) -> Result<Runner> {
        let engine = new_engine(options)?;
        let linker = new_linker(&engine)?;
        let timer = EpochTimer::new(&engine);
        Ok(Runner {
            options,
            engine,
            linker,
            timer,
            loaded: HashMap::new(),
            host_interfaces: Vec::new(),
            host_functions: HashSet::new(),
            parent_pid: rustix::process::getppid().map_or(0, |pid| pid.as_raw_pid() as u32),
            reuse_instances,
            kept: None,
            limit_hit: None,
        })
    }

    /// Links the embedder's host interfaces (by name) as calls to the host, in every
    /// component loaded from now on.
    pub(crate) fn serve_host_interfaces(&mut self, interfaces: &[String]) {
        self.host_interfaces = interfaces.to_vec();
    }

    /// The component compiled at `cwasm`, loaded and linked on first use.
    fn load(&mut self, cwasm: &Path) -> Result<&mut Loaded> {
        if !self.loaded.contains_key(cwasm) {
            let component = load_compiled(&self.engine, cwasm)?;
            link_host_imports(
                &mut self.linker,
                &component,
                &self.host_interfaces,
                &mut self.host_functions,
            )
            .context("failed to link the host interfaces")?;
            let pre = self
                .linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .context("failed to link the component")?;
            self.loaded.insert(
                cwasm.to_path_buf(),
                Loaded {
                    pre,
                    exports: HashMap::new(),
                },
            );
        }
        Ok(self.loaded.get_mut(cwasm).expect("just inserted"))
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
            limits: Limiter::new(&grants.limits),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        Ok(store)
    }

    /// Runs one guest entry; the channel serves its queue calls. A fresh instance each
    /// time, unless the pool asked for instance reuse.
    ///
    /// With `share`, the instance is kept for the next call (the next task of a `map`
    /// chunk) if this one returns.
    pub(crate) fn run(
        &mut self,
        grants: &Grants,
        cwasm: &Path,
        entry: &Entry,
        timeout: Option<Duration>,
        channel: &Channel,
        share: bool,
    ) -> Outcome {
        self.try_run(grants, cwasm, entry, timeout, channel, share)
            .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")))
    }

    fn try_run(
        &mut self,
        grants: &Grants,
        cwasm: &Path,
        entry: &Entry,
        timeout: Option<Duration>,
        channel: &Channel,
        share: bool,
    ) -> Result<Outcome> {
        let (mut store, instance) = match self.kept.take() {
            Some(kept) if kept.cwasm == cwasm => (kept.store, Some(kept.instance)),
            _ => (self.new_store(grants, channel)?, None),
        };
        let pre = self.load(cwasm)?.pre.clone();
        store.set_epoch_deadline(1);
        if let Some(fuel) = grants.limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(anyhow::Error::from)
                .context("failed to set the fuel limit")?;
        }
        self.timer.arm(timeout.map(|t| Instant::now() + t));
        let result = self.call(&mut store, instance, &pre, cwasm, entry);
        self.timer.arm(None);
        self.limit_hit = store.data_mut().limits.take_hit();
        if (self.reuse_instances || share)
            && let (Ok((Outcome::Returned(_), Some(instance))), Entry::Invoke { .. }) =
                (&result, entry)
        {
            self.kept = Some(Kept {
                cwasm: cwasm.to_path_buf(),
                store,
                instance: *instance,
            });
        }
        result.map(|(outcome, _)| outcome)
    }

    /// Calls `entry` in `store` (in `instance`, or a fresh one); the outcome and the
    /// instance an invoked export ran in.
    fn call(
        &mut self,
        store: &mut Store<WorkerState>,
        instance: Option<Instance>,
        pre: &InstancePre<WorkerState>,
        cwasm: &Path,
        entry: &Entry,
    ) -> Result<(Outcome, Option<Instance>)> {
        match entry {
            Entry::Run => Ok((run_command(store, pre)?, None)),
            Entry::Invoke { export, args } => {
                let instance = match instance {
                    Some(instance) => instance,
                    None => instantiate(store, pre)?,
                };
                let found = self.export(cwasm, store, instance, export)?;
                Ok((call_export(store, instance, &found, args)?, Some(instance)))
            }
        }
    }

    /// Tells the host which limit the last run hit, if it hit one; buffered, so it goes
    /// out with the run's outcome.
    pub(crate) fn report_limit_hit(&mut self, channel: &Channel) -> Result<()> {
        match self.limit_hit.take() {
            Some(hit) => channel.send_buffered(&ToHost::LimitHit(hit)),
            None => Ok(()),
        }
    }

    /// Buffered results should go out soon even if the next task is slow.
    pub(crate) fn flush_soon(&mut self, channel: &Channel) {
        self.timer.flush_soon(channel);
    }

    /// Buffered results went out.
    pub(crate) fn flushed(&mut self) {
        self.timer.flushed();
    }

    /// The export `name`, looked up once per component.
    fn export(
        &mut self,
        cwasm: &Path,
        store: &mut Store<WorkerState>,
        instance: Instance,
        name: &str,
    ) -> Result<Export> {
        let loaded = self.load(cwasm)?;
        if let Some(found) = loaded.exports.get(name) {
            return Ok(found.clone());
        }
        let Some(index) = loaded.pre.component().get_export_index(None, name) else {
            bail!("the component has no exported function {name:?}");
        };
        let Some(func) = instance.get_func(&mut *store, index) else {
            bail!("the component's export {name:?} is not a function");
        };
        let ty = func.ty(&*store);
        let found = Export {
            index,
            params: ty.params().map(|(_, ty)| ty).collect(),
            results: ty.results().len(),
        };
        loaded.exports.insert(name.to_string(), found.clone());
        Ok(found)
    }
}

/// The engine settings a guest's limits ask for.
fn engine_options(limits: &Limits, pooling: bool) -> EngineOptions {
    EngineOptions {
        fuel: limits.fuel.is_some(),
        max_wasm_stack: limits.max_wasm_stack,
        pooling,
    }
}

/// Runs the guest described by `spec` (a `Process`): loads its component, raises the
/// sandbox walls, then calls it.
pub(crate) fn run_guest(
    spec: &StartSpec,
    channel: &Channel,
    warm: Option<Runner>,
) -> Result<Outcome> {
    let warm = warm.filter(|runner| runner.options == engine_options(&spec.grants.limits, false));
    let runner = match warm {
        Some(runner) => Ok(runner),
        None => Runner::new(&spec.grants.limits),
    };
    let mut runner = match runner {
        Ok(runner) => runner,
        Err(e) => return Ok(Outcome::Failed(format!("{e:#}"))),
    };
    runner.serve_host_interfaces(&spec.grants.host_interfaces);
    if let Err(e) = runner.load(&spec.cwasm) {
        return Ok(Outcome::Failed(format!("{e:#}")));
    }
    sandbox::enter(&sandbox::Walls {
        cache_dir: spec.cwasm.parent().unwrap_or(Path::new("/")).to_path_buf(),
        dirs: &spec.grants.dirs,
        proc_status: false,
        network: spec.grants.network,
    })?;
    super::fault::inject(super::fault::Point::InSandbox, channel);
    let outcome = runner.run(
        &spec.grants,
        &spec.cwasm,
        &spec.entry,
        spec.timeout_ms.map(Duration::from_millis),
        channel,
        false,
    );
    runner.report_limit_hit(channel)?;
    Ok(outcome)
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
    // This process's stdin is /dev/null, or the host's when the host passed it along.
    wasi.args(&grants.args)
        .envs(&grants.env)
        .inherit_stdin()
        .inherit_stdout()
        .inherit_stderr()
        .allow_tcp(grants.network.tcp)
        .allow_udp(grants.network.udp)
        .allow_ip_name_lookup(grants.network.ip_name_lookup);
    if grants.network.inherit {
        wasi.inherit_network();
    }
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

fn run_command(store: &mut Store<WorkerState>, pre: &InstancePre<WorkerState>) -> Result<Outcome> {
    let instance = instantiate(store, pre)?;
    let command = Command::new(&mut *store, &instance)
        .map_err(anyhow::Error::from)
        .context("the component is not a WASI command")?;
    Ok(match command.wasi_cli_run().call_run(&mut *store) {
        Ok(Ok(())) => Outcome::Exited(0),
        Ok(Err(())) => Outcome::Exited(1),
        Err(e) => classify(e, &mut store.data_mut().limits),
    })
}

/// A fresh instance of the component in `store`.
fn instantiate(store: &mut Store<WorkerState>, pre: &InstancePre<WorkerState>) -> Result<Instance> {
    pre.instantiate(store)
        .map_err(anyhow::Error::from)
        .context("failed to instantiate the component")
}

fn call_export(
    store: &mut Store<WorkerState>,
    instance: Instance,
    export: &Export,
    args: &[String],
) -> Result<Outcome> {
    let func = instance
        .get_func(&mut *store, export.index)
        .context("the export vanished")?;
    let params = export
        .params
        .iter()
        .zip(args)
        .map(|(ty, arg)| {
            wasm_wave::from_str::<Val>(ty, arg)
                .with_context(|| format!("failed to decode argument {arg}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut results = vec![Val::Bool(false); export.results];
    if let Err(e) = func.call(&mut *store, &params, &mut results) {
        return Ok(classify(e, &mut store.data_mut().limits));
    }
    let results = results
        .iter()
        .map(|val| wasm_wave::to_string(val).context("failed to encode a result"))
        .collect::<Result<_>>()?;
    Ok(Outcome::Returned(results))
}

/// `exit(n)` arrives as an error carrying `I32Exit`; the epoch timeout as `Trap::Interrupt`;
/// everything else is a trap whose message (with the wasm backtrace) is reported verbatim.
/// A trap of a limit (fuel, stack) is also noted in `limiter`.
fn classify(error: wasmtime::Error, limiter: &mut Limiter) -> Outcome {
    limiter.note_trap(&error);
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
        // A host function's own error (the backtrace is attached as context around it).
        None => error.root_cause().to_string(),
    };
    match error.downcast_ref::<WasmBacktrace>() {
        Some(backtrace) if !backtrace.frames().is_empty() => format!("{cause}\n{backtrace}"),
        _ => cause,
    }
}
