//! What a worker may reach and use: directories, environment variables, queues, resource
//! limits, network access and a time limit — deny by default, granted one by one with wasmtime's spellings.
//!
//! [`Grants`] is the one type `Process`, `PoolBuilder` and the CLI build them with, and it has
//! one error strategy: a malformed spec (`--dir ::x`, `--env =v`, two different queues under
//! one name) is kept and reported when the grants are used (`Process::start`,
//! `PoolBuilder::build`, [`Grants::check`]), so that builder chains stay chains and bad input
//! spawns nothing. `dir` and `limits` are plain data that also travel to the worker.

pub(crate) mod dir;
pub(crate) mod limits;
pub(crate) mod network;

use std::time::Duration;

use anyhow::Result;

use crate::error::{InputError, InputErrorKind};
use crate::grants::dir::{DirGrant, parse_env};
use crate::grants::limits::Limits;
use crate::grants::network::Network;
use crate::queue::{Queue, QueueGrants};

/// What a worker may reach and use. Cheap to clone; granting the same grants to several
/// processes or pools shares the queues.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let jobs = wasmp::Queue::new("jobs");
/// let grants = wasmp::Grants::new()
///     .dir_spec("/tmp::/scratch", false)
///     .env_spec("LANG=C")
///     .queue(&jobs)
///     .timeout(Duration::from_secs(10));
/// grants.check().unwrap();
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Grants {
    dirs: Vec<DirGrant>,
    env: Vec<(String, String)>,
    queues: QueueGrants,
    limits: Limits,
    network: Network,
    timeout: Option<Duration>,
    /// The first malformed spec, reported by [`check`](Grants::check).
    error: Option<InputError>,
}

impl Grants {
    /// Nothing granted: no directories, no environment, no queues, default limits.
    pub fn new() -> Grants {
        Grants::default()
    }

    /// Grants a directory.
    pub fn dir(mut self, grant: DirGrant) -> Self {
        self.dirs.push(grant);
        self
    }

    /// Grants a directory in wasmtime's `HOST[::GUEST]` spelling, read-only if asked.
    pub fn dir_spec(self, spec: &str, read_only: bool) -> Self {
        match DirGrant::parse(spec) {
            Ok(grant) => self.dir(grant.read_only(read_only)),
            Err(e) => self.fail(e),
        }
    }

    /// Grants an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_env((name.into(), value.into()));
        self
    }

    /// A later grant of a name replaces the earlier one, as `wasmtime run --env` overrides
    /// `-S inherit-env`.
    fn set_env(&mut self, (name, value): (String, String)) {
        match self.env.iter_mut().find(|(have, _)| *have == name) {
            Some(slot) => slot.1 = value,
            None => self.env.push((name, value)),
        }
    }

    /// Grants an environment variable in wasmtime's `NAME[=VALUE]` spelling (a bare name
    /// passes the host's value through, and nothing when the host has none).
    pub fn env_spec(mut self, spec: &str) -> Self {
        match parse_env(spec) {
            Ok(Some(pair)) => {
                self.set_env(pair);
                self
            }
            Ok(None) => self,
            Err(e) => self.fail(e),
        }
    }

    /// Grants a queue: the guest reaches it by its name through `wasmp:worker/queue`.
    /// Queues not granted answer `unknown` to the guest.
    pub fn queue(mut self, queue: &Queue) -> Self {
        if let Err(message) = self.queues.grant(queue) {
            self.error
                .get_or_insert(InputError::new(InputErrorKind::BadConfig, message));
        }
        self
    }

    /// Resource limits: memory, stack, instances and tables, fuel.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Network access (none by default): see [`Network`]. It widens this worker's
    /// sandbox only.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Stops the guest (a `Process`, or each pool task) once it has run this long.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The time limit, if any.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Checks the grants as starting a worker would, without spawning: the first malformed
    /// spec, then that every granted directory exists.
    ///
    /// # Errors
    ///
    /// An [`InputError`] (inside the `anyhow::Error`).
    pub fn check(&self) -> Result<()> {
        if let Some(e) = &self.error {
            return Err(e.clone().into());
        }
        for dir in &self.dirs {
            dir.check()?;
        }
        Ok(())
    }

    fn fail(mut self, error: anyhow::Error) -> Self {
        let error = match error.downcast::<InputError>() {
            Ok(input) => input,
            Err(other) => InputError::new(InputErrorKind::BadConfig, format!("{other:#}")),
        };
        self.error.get_or_insert(error);
        self
    }

    pub(crate) fn get_limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn get_network(&self) -> Network {
        self.network
    }

    pub(crate) fn queues(&self) -> &QueueGrants {
        &self.queues
    }

    pub(crate) fn dirs(&self) -> &[DirGrant] {
        &self.dirs
    }

    pub(crate) fn get_env(&self) -> &[(String, String)] {
        &self.env
    }
}
