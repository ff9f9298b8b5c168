//! Options and exit codes shared by the subcommands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use wasmp::{ExitStatus, Grants, InputError, InputErrorKind, Process};

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
    /// A configuration file or value is wrong.
    pub(crate) const CONFIG: u8 = 78;
}

/// The exit code for an error: by its [`InputError`] kind, else by the OS error under it.
pub(crate) fn exit_code_for(error: &anyhow::Error) -> u8 {
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

    /// Resource limits, with wasmtime's -W keys: timeout=DURATION (10s, 500ms),
    /// max-memory-size=BYTES (64MiB), max-wasm-stack=BYTES (256KiB), fuel=N,
    /// max-instances=N, max-tables=N, max-table-elements=N; `-W help` lists them.
    #[arg(short = 'W', value_name = "KEY=VAL", value_parser = parse_limit)]
    pub(crate) limits: Vec<Limit>,
}

/// One `-W KEY=VALUE` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Limit {
    Timeout(Duration),
    MaxMemorySize(usize),
    MaxWasmStack(usize),
    Fuel(u64),
    MaxInstances(usize),
    MaxTables(usize),
    MaxTableElements(usize),
}

/// The -W keys, for `-W help` and error messages.
const LIMIT_KEYS: &str = concat!(
    "  timeout=DURATION       stop the guest after this long (10s, 500ms, 2m); exit 124\n",
    "  max-memory-size=BYTES  bytes per linear memory (64MiB); growing past it fails\n",
    "  max-wasm-stack=BYTES   wasm stack (256KiB); deeper recursion traps\n",
    "  fuel=N                 about one unit per instruction; traps when it runs out\n",
    "  max-instances=N        core and component instances (default 10000)\n",
    "  max-tables=N           tables (default 10000)\n",
    "  max-table-elements=N   elements per table (default 10_000_000)",
);

pub(crate) fn parse_limit(spec: &str) -> Result<Limit> {
    if spec == "help" {
        // As `wasmtime run -W help`: the list, then exit 0, whatever else is missing.
        println!("Resource limits, -W KEY=VALUE (repeatable):\n{LIMIT_KEYS}");
        std::process::exit(0);
    }
    let Some((key, value)) = spec.split_once('=') else {
        bail!("expected KEY=VALUE, e.g. timeout=10s or max-memory-size=64MiB");
    };
    match key {
        "timeout" => Ok(Limit::Timeout(parse_duration(value)?)),
        "max-memory-size" => Ok(Limit::MaxMemorySize(parse_size(value)?)),
        "max-wasm-stack" => Ok(Limit::MaxWasmStack(parse_size(value)?)),
        "fuel" => Ok(Limit::Fuel(parse_count(key, value)?)),
        "max-instances" => Ok(Limit::MaxInstances(parse_count(key, value)?)),
        "max-tables" => Ok(Limit::MaxTables(parse_count(key, value)?)),
        "max-table-elements" => Ok(Limit::MaxTableElements(parse_count(key, value)?)),
        other => bail!("unknown -W key {other:?} (-W help lists them):\n{LIMIT_KEYS}"),
    }
}

/// A whole number, `_` allowed as a separator (`10_000_000`).
fn parse_count<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid {key} {value:?}: expected a whole number"))
}

/// Parses `65536`, `64KiB`, `64K`, `16MiB`, `16M`, `1GiB`, `1G` (powers of 1024).
pub(crate) fn parse_size(text: &str) -> Result<usize> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: usize = digits
        .replace('_', "")
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {text:?}: expected e.g. 65536 or 64MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => bail!("invalid size {text:?}: the unit must be K, M or G (KiB, MiB, GiB)"),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| anyhow::anyhow!("size {text:?} is too large"))
}

/// The library's limits for a list of -W settings (the timeout is applied separately).
pub(crate) fn limits_of(settings: &[Limit]) -> wasmp::Limits {
    let mut limits = wasmp::Limits::default();
    for setting in settings {
        match setting {
            Limit::Timeout(_) => {}
            Limit::MaxMemorySize(bytes) => limits.max_memory_size = Some(*bytes),
            Limit::MaxWasmStack(bytes) => limits.max_wasm_stack = Some(*bytes),
            Limit::Fuel(fuel) => limits.fuel = Some(*fuel),
            Limit::MaxInstances(count) => limits.max_instances = Some(*count),
            Limit::MaxTables(count) => limits.max_tables = Some(*count),
            Limit::MaxTableElements(count) => limits.max_table_elements = Some(*count),
        }
    }
    limits
}

/// The -W timeout, if any.
pub(crate) fn timeout_of(settings: &[Limit]) -> Option<Duration> {
    settings.iter().rev().find_map(|setting| match setting {
        Limit::Timeout(timeout) => Some(*timeout),
        _ => None,
    })
}

/// Parses `10s`, `500ms`, `2m`, `1h 30m` (a bare number is seconds, as wasmtime).
pub(crate) fn parse_duration(text: &str) -> Result<Duration> {
    if let Ok(secs) = text.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| anyhow::anyhow!("invalid duration {text:?}: {e} (try 10s or 500ms)"))
}

impl GrantOptions {
    /// The library's grants for these options: one path for `run`, `up` and `pool`, with
    /// the library's error strategy (a malformed spec is reported when the grants are used).
    pub(crate) fn grants(&self) -> Grants {
        let mut grants = Grants::new().limits(limits_of(&self.limits));
        for spec in &self.dirs {
            grants = grants.dir_spec(spec, false);
        }
        for spec in &self.dirs_ro {
            grants = grants.dir_spec(spec, true);
        }
        for spec in &self.env {
            grants = grants.env_spec(spec);
        }
        if let Some(timeout) = timeout_of(&self.limits) {
            grants = grants.timeout(timeout);
        }
        grants
    }

    /// Applies the grants and limits to a process.
    pub(crate) fn apply(&self, process: Process) -> Process {
        process.grants(self.grants())
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

/// Parses `NAME` or `NAME=CAPACITY` into a new queue.
pub(crate) fn parse_queue(spec: &str) -> Result<wasmp::Queue> {
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
    Ok(match capacity {
        Some(capacity) => wasmp::Queue::bounded(name, capacity),
        None => wasmp::Queue::new(name),
    })
}
