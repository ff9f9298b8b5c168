//! The host side's shared context: one wasmtime engine, one compile cache, the program
//! worker processes run, and the components loaded with it (validated, adapted from
//! preview 1 when needed, compiled once per content hash).
//!
//! Compiles, never runs: it builds the worker's linker only to check imports (and binds a
//! component's imports of the embedder's host interfaces, `hostfn`). May not see
//! `process`, `pool` or `queue`; it hands standby worker processes to `process` through
//! `link`.

pub(crate) mod adapt;
pub(crate) mod cache;
pub(crate) mod component;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use wasmtime::Engine;

use crate::engine::{EngineOptions, new_engine};
use crate::events::{Event, Events, Subscribers};
use crate::hostfn::{HostInterface, HostInterfaces};
use crate::link::spawn::Spawned;
use crate::link::standby::Standby;
use crate::runtime::cache::CompileCache;
use crate::runtime::component::Component;

/// Compiles components and spawns worker processes. Cheap to clone (an `Arc`).
///
/// # Examples
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// let runtime = wasmp::Runtime::new()?;
/// let component = runtime.load("worker.wasm")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    standby: Standby,
    engine: Engine,
    /// Compiles fuel-metered variants, on first use.
    fuel_engine: OnceLock<Engine>,
    cache: CompileCache,
    worker_program: PathBuf,
    events: Events,
    /// The embedder's own interfaces, served to the guests that import them.
    host_interfaces: HostInterfaces,
    /// The cluster to connect to, connected on first use.
    #[cfg(feature = "cluster")]
    cluster_settings: Option<crate::cluster::ClusterBuilder>,
    #[cfg(feature = "cluster")]
    cluster: OnceLock<crate::cluster::Cluster>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.inner.cache)
            .field("worker_program", &self.inner.worker_program)
            .finish_non_exhaustive()
    }
}

/// Settings for a [`Runtime`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RuntimeBuilder {
    cache_dir: Option<PathBuf>,
    worker_program: Option<PathBuf>,
    standby: usize,
    subscribers: Subscribers,
    host_interfaces: Vec<HostInterface>,
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::ClusterBuilder>,
}

impl RuntimeBuilder {
    /// Where compiled components are cached (default: `$WASMP_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/wasmp`, else `~/.cache/wasmp`). Created with mode 0700.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The program that worker processes run (default: `$WASMP_WORKER_PROGRAM`, else this
    /// very executable). It must call [`run_worker_if_requested`](crate::run_worker_if_requested)
    /// at the start of `main`; the installed `wasmp` binary does.
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// Keep this many idle worker processes spawned ahead of need (default 0), so that
    /// [`Process::start`](crate::Process::start) costs a message instead of an exec. Each
    /// is still used by one process only; a replacement is spawned in the background when
    /// one is taken. Used for processes whose output is [`Output::Inherit`](crate::Output).
    pub fn standby(mut self, processes: usize) -> Self {
        self.standby = processes;
        self
    }

    /// Serves `interface` to every guest that imports it: each call runs the interface's
    /// closure in this process, on the thread serving the calling worker (see
    /// [`HostInterface`]). A component importing an interface nobody provides is refused
    /// when it is loaded.
    ///
    /// Host functions run only here: a cluster pool
    /// ([`PoolBuilder::cluster`](crate::PoolBuilder::cluster)) of a runtime with host
    /// interfaces is refused.
    pub fn host_interface(mut self, interface: HostInterface) -> Self {
        self.host_interfaces.push(interface);
        self
    }

    /// The NATS JetStream server (`nats://host:port`) that cluster pools
    /// ([`PoolBuilder::cluster`](crate::PoolBuilder::cluster)) submit to, in the default
    /// namespace (default: `$WASMP_NATS_URL`). Connected when first needed.
    #[cfg(feature = "cluster")]
    pub fn cluster(self, url: impl Into<String>) -> Self {
        self.cluster_with(crate::cluster::Cluster::builder(url))
    }

    /// As [`cluster`](Self::cluster), with the connection's settings (a namespace, …).
    #[cfg(feature = "cluster")]
    pub fn cluster_with(mut self, settings: crate::cluster::ClusterBuilder) -> Self {
        self.cluster = Some(settings);
        self
    }

    /// Calls `subscriber` with every [`Event`] of this runtime's processes and pools: what
    /// `--events` writes and `--metrics` counts. It runs on the thread where the event
    /// happened (a process's monitor, a pool slot), so it must be quick and must not
    /// block; send the event to a channel to do more.
    pub fn on_event(mut self, subscriber: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.subscribers.0.push(Arc::new(subscriber));
        self
    }

    /// Builds the runtime.
    ///
    /// # Errors
    ///
    /// When the compile cache cannot be created or is not private, or the current
    /// executable cannot be found; an [`InputError`](crate::InputError) for a host
    /// interface with a malformed or duplicate name.
    pub fn build(self) -> Result<Runtime> {
        let host_interfaces = HostInterfaces::new(self.host_interfaces)?;
        let cache = CompileCache::open(self.cache_dir.unwrap_or_else(CompileCache::default_dir))?;
        let worker_program = match self
            .worker_program
            .or_else(|| std::env::var_os("WASMP_WORKER_PROGRAM").map(PathBuf::from))
        {
            Some(program) => program,
            None => std::env::current_exe().context("failed to find the current executable")?,
        };
        Ok(Runtime {
            inner: Arc::new(Inner {
                standby: Standby::new(self.standby, worker_program.clone()),
                events: Events::new(self.subscribers),
                engine: new_engine(EngineOptions::default())?,
                fuel_engine: OnceLock::new(),
                cache,
                worker_program,
                host_interfaces,
                #[cfg(feature = "cluster")]
                cluster_settings: self.cluster,
                #[cfg(feature = "cluster")]
                cluster: OnceLock::new(),
            }),
        })
    }
}

impl Runtime {
    /// A runtime with the default settings; see [`RuntimeBuilder`].
    ///
    /// # Errors
    ///
    /// As [`RuntimeBuilder::build`].
    pub fn new() -> Result<Runtime> {
        RuntimeBuilder::default().build()
    }

    /// Settings for a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Loads, validates and compiles (once, cached) the component at `path`.
    ///
    /// # Errors
    ///
    /// See [`Component::from_file`].
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Component> {
        Component::from_file(self, path)
    }

    /// The cluster this runtime submits to, connecting on first use (to the URL given to
    /// [`RuntimeBuilder::cluster`], else `$WASMP_NATS_URL`).
    ///
    /// # Errors
    ///
    /// When no cluster was named, or its server cannot be reached
    /// ([`ClusterError::Unreachable`](crate::ClusterError)).
    #[cfg(feature = "cluster")]
    pub fn cluster(&self) -> Result<crate::cluster::Cluster> {
        use crate::cluster::{Cluster, NATS_URL_ENV};
        if let Some(cluster) = self.inner.cluster.get() {
            return Ok(cluster.clone());
        }
        let settings = match &self.inner.cluster_settings {
            Some(settings) => settings.clone(),
            None => match std::env::var(NATS_URL_ENV) {
                Ok(url) => Cluster::builder(url),
                Err(_) => anyhow::bail!(
                    "no cluster: give the runtime one (RuntimeBuilder::cluster) or set \
                     ${NATS_URL_ENV}"
                ),
            },
        };
        let cluster = settings.connect()?;
        Ok(self.inner.cluster.get_or_init(|| cluster).clone())
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The engine compiling fuel-metered code.
    pub(crate) fn fuel_engine(&self) -> Result<&Engine> {
        if let Some(engine) = self.inner.fuel_engine.get() {
            return Ok(engine);
        }
        let engine = new_engine(EngineOptions {
            fuel: true,
            ..EngineOptions::default()
        })?;
        Ok(self.inner.fuel_engine.get_or_init(|| engine))
    }

    /// An idle pre-spawned worker, if standby processes were asked for.
    pub(crate) fn take_standby(&self) -> Option<Spawned> {
        self.inner.standby.take()
    }

    pub(crate) fn cache(&self) -> &CompileCache {
        &self.inner.cache
    }

    /// Where this runtime's events go.
    pub(crate) fn events(&self) -> &Events {
        &self.inner.events
    }

    pub(crate) fn worker_program(&self) -> &Path {
        &self.inner.worker_program
    }

    /// The embedder's host interfaces.
    pub(crate) fn host_interfaces(&self) -> &HostInterfaces {
        &self.inner.host_interfaces
    }
}
