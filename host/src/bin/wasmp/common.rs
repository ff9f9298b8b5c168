//! Options and exit codes shared by the subcommands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use wasmp::{
    Cluster, ClusterBuilder, ClusterError, ExitStatus, Grants, InputError, InputErrorKind,
    LIMIT_KEYS, LimitKey, LimitSettings, Process,
};

/// Writes a line to stderr, ignoring failure. `eprintln!` panics when stderr is a closed
/// pipe, which turned a clean SIGTERM exit (143) into a panic (101) when the host
/// reported a worker's end at the wrong moment; a message nobody can read is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use say;

/// Exit codes (sysexits.h where one fits), documented in README.
pub(crate) mod code {
    /// Bad input data: invalid wasm, not a component, missing export, wrong arguments.
    pub(crate) const DATAERR: u8 = 65;
    /// A named file or directory does not exist.
    pub(crate) const NOINPUT: u8 = 66;
    /// wasmp itself failed.
    pub(crate) const SOFTWARE: u8 = 70;
    /// The system ran out of something: file descriptors, processes, memory.
    pub(crate) const OSERR: u8 = 71;
    /// An I/O error on wasmp's own files (the compile cache): unwritable, disk full.
    pub(crate) const IOERR: u8 = 74;
    /// A service is unavailable: the NATS server cannot be reached.
    pub(crate) const UNAVAILABLE: u8 = 69;
    /// A configuration file or value is wrong.
    pub(crate) const CONFIG: u8 = 78;
    /// An output file or directory cannot be created (`wasmp new` on an existing path).
    pub(crate) const CANTCREAT: u8 = 73;
}

/// `wasmp --version`: `wasmp 0.1.0 (wasmtime 48.0.8, WIT wasmp:worker@0.1.0)`. The wasmtime
/// inside and the guest contract decide which components run, so both are named.
pub(crate) fn version_line() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{} (wasmtime {}, WIT {}@{})",
            wasmp::VERSION,
            wasmp::WASMTIME_VERSION,
            wasmp::WIT_PACKAGE,
            wasmp::WIT_VERSION
        )
    })
}

/// The exit code for an error: by its [`InputError`] kind, else by the OS error under it.
pub(crate) fn exit_code_for(error: &anyhow::Error) -> u8 {
    if let Some(cluster) = error.chain().find_map(|e| e.downcast_ref::<ClusterError>()) {
        return match cluster {
            ClusterError::Unreachable { .. } => code::UNAVAILABLE,
            _ => code::CONFIG,
        };
    }
    if let Some(input) = error.chain().find_map(|e| e.downcast_ref::<InputError>()) {
        return match input.kind() {
            InputErrorKind::NotFound => code::NOINPUT,
            InputErrorKind::BadConfig => code::CONFIG,
            _ => code::DATAERR,
        };
    }
    let os_error = error
        .chain()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .map(|e| e.raw_os_error());
    match os_error {
        Some(Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN)) => code::OSERR,
        Some(_) => code::IOERR,
        None => code::SOFTWARE,
    }
}

/// The exit code a finished worker maps to; the guest's own code when it exited.
pub(crate) fn exit_code_of(status: &ExitStatus) -> ExitCode {
    ExitCode::from(status.code().clamp(0, 255) as u8)
}

/// Which NATS JetStream server and namespace (`serve`, `cluster`).
#[derive(Args, Debug, Clone)]
pub(crate) struct NatsOptions {
    /// The NATS server with JetStream (`nats-server -js`), e.g. nats://127.0.0.1:4222.
    #[arg(long = "nats", value_name = "URL", env = "WASMP_NATS_URL")]
    pub(crate) url: String,

    /// Pools, queues and hosts of one namespace see each other and nothing of another.
    #[arg(long, value_name = "NS", default_value = wasmp::DEFAULT_NAMESPACE)]
    pub(crate) namespace: String,
}

impl NatsOptions {
    /// Connects (exit 69 when the server cannot be reached).
    pub(crate) fn connect(&self) -> Result<Cluster> {
        cluster_settings(&self.url, &self.namespace).connect()
    }
}

/// The connection to `url` in `namespace`; `$WASMP_NATS_PING_INTERVAL` (tests) shortens
/// the ping, so a dead connection is noticed sooner.
pub(crate) fn cluster_settings(url: &str, namespace: &str) -> ClusterBuilder {
    let mut builder = Cluster::builder(url).namespace(namespace);
    if let Some(interval) = std::env::var("WASMP_NATS_PING_INTERVAL")
        .ok()
        .and_then(|v| wasmp::parse_duration(&v).ok())
    {
        builder = builder.ping_interval(interval);
    }
    builder
}

/// What a guest may reach, with wasmtime's spellings.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct GrantOptions {
    /// Grant a host directory: HOST[::GUEST] (the guest path defaults to HOST).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub(crate) dirs: Vec<String>,

    /// Grant a host directory read-only: HOST[::GUEST].
    #[arg(long = "dir-ro", value_name = "HOST[::GUEST]")]
    pub(crate) dirs_ro: Vec<String>,

    /// Grant an environment variable: NAME=VALUE, or NAME to pass the host's value.
    #[arg(long = "env", value_name = "NAME[=VAL]")]
    pub(crate) env: Vec<String>,

    // Resource limits: the help line names every key of the library's table.
    #[arg(short = 'W', long = "wasm", value_name = "KEY=VAL", value_parser = parse_limit,
          help = limit_option_help())]
    pub(crate) limits: Vec<LimitSettings>,
}

/// The `-W` line of `--help`: every key with its kind, the details left to `-W help`.
fn limit_option_help() -> String {
    let keys: Vec<String> = LIMIT_KEYS.iter().map(LimitKey::usage).collect();
    format!(
        "Resource limits, with wasmtime's -W keys: {}; `-W help` lists them.",
        keys.join(", ")
    )
}

/// Parses one `-W KEY=VALUE`; `-W help` prints the keys and exits.
pub(crate) fn parse_limit(spec: &str) -> Result<LimitSettings> {
    if spec == "help" {
        // As `wasmtime run -W help`: the list, then exit 0, whatever else is missing.
        println!(
            "Resource limits, -W KEY=VALUE (repeatable):\n{}",
            LimitSettings::help()
        );
        std::process::exit(0);
    }
    LimitSettings::parse(spec).map_err(|ours| {
        // A key of wasmtime's -W that is not a wasmp limit: say why, rather than "unknown".
        let key = spec.split_once('=').map_or(spec, |(key, _)| key);
        match crate::wasmtime_flags::wasmtime_accepts('W', spec) {
            Ok(()) if LimitKey::find(key).is_none() => anyhow::anyhow!(
                "wasmp does not apply -W {spec}: {}",
                crate::wasmtime_flags::reason('W', key)
            ),
            _ => ours,
        }
    })
}

impl GrantOptions {
    /// The library's grants for these options: one path for `run`, `up` and `pool`, with
    /// the library's error strategy (a malformed spec is reported when the grants are used).
    pub(crate) fn grants(&self) -> Grants {
        self.grants_on(Grants::new())
    }

    /// These options' grants on top of `base` (a later `--env` of a name replaces
    /// `base`'s).
    pub(crate) fn grants_on(&self, base: Grants) -> Grants {
        let settings = self.limit_settings();
        let mut grants = base.limits(settings.limits);
        for spec in &self.dirs {
            grants = grants.dir_spec(spec, false);
        }
        for spec in &self.dirs_ro {
            grants = grants.dir_spec(spec, true);
        }
        for spec in &self.env {
            grants = grants.env_spec(spec);
        }
        if let Some(timeout) = settings.timeout {
            grants = grants.timeout(timeout);
        }
        grants
    }

    /// Applies the grants and limits to a process.
    pub(crate) fn apply(&self, process: Process) -> Process {
        process.grants(self.grants())
    }

    /// The `-W` settings together, a later setting of a key replacing an earlier one.
    pub(crate) fn limit_settings(&self) -> LimitSettings {
        let mut settings = LimitSettings::default();
        for later in &self.limits {
            settings.overlay(*later);
        }
        settings
    }
}

/// Resolves a path relative to a base directory (for paths read from a file).
pub(crate) fn relative_to(base: &std::path::Path, path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// Prints the end of a worker that did not succeed, one line on stderr.
pub(crate) fn report_failure(name: &str, status: &ExitStatus) {
    match status {
        ExitStatus::Exited(0) => {}
        ExitStatus::Exited(_) => {}
        other => say!("error: {name}: {other}"),
    }
}

/// `--nats` on `run` and `pool`: work with a cluster instead of this machine alone.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ClusterTarget {
    /// A NATS JetStream server: `pool` submits its tasks to the `wasmp serve` hosts there
    /// (they set worker settings and grants); `run` makes the queues it names cluster
    /// queues, shared with every machine of the namespace.
    #[arg(long, value_name = "URL")]
    pub(crate) nats: Option<String>,

    /// The cluster namespace (with --nats).
    #[arg(long, value_name = "NS", default_value = wasmp::DEFAULT_NAMESPACE, requires = "nats")]
    pub(crate) namespace: String,
}

impl ClusterTarget {
    /// The connection, when `--nats` was given (exit 69 when unreachable).
    pub(crate) fn connect(&self) -> Result<Option<Cluster>> {
        self.nats
            .as_ref()
            .map(|url| cluster_settings(url, &self.namespace).connect())
            .transpose()
    }
}

/// Parses `NAME` or `NAME=CAPACITY` into a new queue: in `cluster` when given (shared with
/// other machines), else in this process.
pub(crate) fn parse_queue(spec: &str, cluster: Option<&Cluster>) -> Result<wasmp::Queue> {
    let (name, capacity) = match spec.split_once('=') {
        Some((name, capacity)) => {
            let capacity: usize = capacity.parse().map_err(|_| {
                InputError::new_config(format!(
                    "invalid queue {spec:?}: the capacity must be a positive number"
                ))
            })?;
            (name, Some(capacity))
        }
        None => (spec, None),
    };
    if name.is_empty() {
        return Err(InputError::new_config(format!("invalid queue {spec:?}: empty name")).into());
    }
    let mut builder = wasmp::Queue::builder(name);
    if let Some(capacity) = capacity {
        builder = builder.capacity(capacity);
    }
    match cluster {
        Some(cluster) => builder.cluster(cluster),
        None => Ok(builder.build()),
    }
}
