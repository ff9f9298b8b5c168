//! How much a guest may use: memory, stack, instances and tables, fuel, and time.
//!
//! Plain data (it travels to the worker in its start message); enforced inside the worker by wasmtime (`StoreLimits`, the stack limit, fuel), with the
//! OS as a backstop: `RLIMIT_DATA` above the memory limit (never `RLIMIT_AS`, which breaks
//! wasmtime's address-space reservations). Wall-clock time limits are set separately
//! (`Process::timeout`, `PoolBuilder::timeout`) because they also involve the host.
//!
//! Every limit is declared once, in [`LIMIT_KEYS`], with wasmtime's `-W` spelling: the
//! `-W KEY=VALUE` parser, the `-W help` list, the keys of `wasmp up` files and the setting
//! of [`LimitSettings`] are all derived from that table, so a new limit is one entry there
//! (and its field in [`Limits`]).

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::{InputErrorKind, input_error};

/// Resource limits for a guest. `None` leaves wasmtime's default.
///
/// # Examples
///
/// ```
/// let limits = wasmp::Limits {
///     max_memory_size: Some(64 << 20),
///     max_wasm_stack: Some(256 << 10),
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of linear memory per memory (`-W max-memory-size`): `memory.grow` beyond it
    /// fails, and a component whose initial memory exceeds it fails to instantiate.
    pub max_memory_size: Option<usize>,
    /// Bytes of wasm stack (`-W max-wasm-stack`; wasmtime's default is 512 KiB): deeper
    /// recursion traps with "call stack exhausted".
    pub max_wasm_stack: Option<usize>,
    /// Units of fuel (`-W fuel`): roughly one per wasm instruction; the guest traps when it
    /// runs out. A deterministic alternative to a wall-clock timeout.
    pub fuel: Option<u64>,
    /// Core and component instances a guest may create (default 10 000).
    pub max_instances: Option<usize>,
    /// Tables a guest may create (default 10 000).
    pub max_tables: Option<usize>,
    /// Elements per table (default [`Limits::DEFAULT_MAX_TABLE_ELEMENTS`]).
    pub max_table_elements: Option<usize>,
}

impl Limits {
    /// Elements a table may grow to when no limit is given: 10 million (80 MB of function
    /// references), far above what real programs use (CPython's tables hold tens of
    /// thousands). wasmtime's own default is unlimited, which lets a `table.grow` loop eat
    /// the host's memory.
    pub const DEFAULT_MAX_TABLE_ELEMENTS: usize = 10_000_000;
}

/// Everything a `-W` key (or a limit key of a `wasmp up` file) can set: the [`Limits`]
/// wasmtime enforces inside the worker, plus the wall-clock timeout.
///
/// The timeout is kept beside `Limits` rather than in it because the host enforces it (it
/// kills a worker that runs too long), so it is given to `Process::timeout` or
/// `PoolBuilder::timeout`, not sent to the worker.
///
/// # Examples
///
/// ```
/// let mut settings = wasmp::LimitSettings::parse("max-memory-size=64MiB")?;
/// settings.overlay(wasmp::LimitSettings::parse("timeout=10s")?);
/// assert_eq!(settings.limits.max_memory_size, Some(64 << 20));
/// assert_eq!(settings.timeout, Some(std::time::Duration::from_secs(10)));
/// # anyhow::Ok(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSettings {
    /// The limits wasmtime enforces.
    pub limits: Limits,
    /// Stop the guest after this long (`-W timeout`; `wasmp run` then exits 124).
    pub timeout: Option<Duration>,
}

/// How a limit key's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// A duration: `10s`, `500ms`, `2m`, `1h 30m`, or bare seconds (`1.5`), as wasmtime.
    Duration,
    /// Bytes: a whole number with an optional unit, `65536`, `64KiB`, `16M`, `1GiB`.
    Size,
    /// A whole number, `_` allowed as a separator: `10_000_000`.
    Count,
}

impl LimitKind {
    /// The placeholder for a value of this kind in help: `DURATION`, `BYTES` or `N`.
    pub fn value_name(self) -> &'static str {
        match self {
            LimitKind::Duration => "DURATION",
            LimitKind::Size => "BYTES",
            LimitKind::Count => "N",
        }
    }
}

/// One resource-limit key, spelled as wasmtime's `-W` option spells it. The keys are
/// [`LIMIT_KEYS`]; [`LimitKey::find`] looks one up by name.
#[derive(Debug)]
pub struct LimitKey {
    name: &'static str,
    help: &'static str,
    field: Field,
}

/// Which setting a key sets, and so the kind of its value. Fuel is `u64` because
/// wasmtime's fuel is; every other count is a `usize`.
#[derive(Debug, Clone, Copy)]
enum Field {
    Duration(fn(&mut LimitSettings) -> &mut Option<Duration>),
    Size(fn(&mut LimitSettings) -> &mut Option<usize>),
    Count(fn(&mut LimitSettings) -> &mut Option<usize>),
    Count64(fn(&mut LimitSettings) -> &mut Option<u64>),
}

/// Every limit key: the one place a limit is declared.
pub static LIMIT_KEYS: &[LimitKey] = &[
    LimitKey {
        name: "timeout",
        help: "stop the guest after this long (10s, 500ms, 2m); exit 124",
        field: Field::Duration(|s| &mut s.timeout),
    },
    LimitKey {
        name: "max-memory-size",
        help: "bytes per linear memory (64MiB); growing past it fails",
        field: Field::Size(|s| &mut s.limits.max_memory_size),
    },
    LimitKey {
        name: "max-wasm-stack",
        help: "wasm stack (256KiB); deeper recursion traps",
        field: Field::Size(|s| &mut s.limits.max_wasm_stack),
    },
    LimitKey {
        name: "fuel",
        help: "about one unit per instruction; traps when it runs out",
        field: Field::Count64(|s| &mut s.limits.fuel),
    },
    LimitKey {
        name: "max-instances",
        help: "core and component instances (default 10000)",
        field: Field::Count(|s| &mut s.limits.max_instances),
    },
    LimitKey {
        name: "max-tables",
        help: "tables (default 10000)",
        field: Field::Count(|s| &mut s.limits.max_tables),
    },
    LimitKey {
        name: "max-table-elements",
        help: "elements per table (default 10_000_000)",
        field: Field::Count(|s| &mut s.limits.max_table_elements),
    },
];

impl LimitKey {
    /// The key named `name`, if there is one.
    pub fn find(name: &str) -> Option<&'static LimitKey> {
        LIMIT_KEYS.iter().find(|key| key.name == name)
    }

    /// The key, as `-W` and `wasmp up` files spell it: `max-memory-size`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How its value is written.
    pub fn kind(&self) -> LimitKind {
        match self.field {
            Field::Duration(_) => LimitKind::Duration,
            Field::Size(_) => LimitKind::Size,
            Field::Count(_) | Field::Count64(_) => LimitKind::Count,
        }
    }

    /// One line saying what it limits.
    pub fn help(&self) -> &'static str {
        self.help
    }

    /// The key with its kind's placeholder, as help shows it: `max-memory-size=BYTES`.
    pub fn usage(&self) -> String {
        format!("{}={}", self.name, self.kind().value_name())
    }

    /// Moves this key's setting, if `from` has one, into `to`.
    fn move_setting(&self, from: &mut LimitSettings, to: &mut LimitSettings) {
        fn moved<T>(
            field: fn(&mut LimitSettings) -> &mut Option<T>,
            from: &mut LimitSettings,
            to: &mut LimitSettings,
        ) {
            if let Some(value) = field(from).take() {
                *field(to) = Some(value);
            }
        }
        match self.field {
            Field::Duration(field) => moved(field, from, to),
            Field::Size(field) | Field::Count(field) => moved(field, from, to),
            Field::Count64(field) => moved(field, from, to),
        }
    }
}

impl LimitSettings {
    /// Parses one `KEY=VALUE` (`timeout=10s`, `max-memory-size=64MiB`, `fuel=1_000_000`)
    /// into settings with just that key set.
    ///
    /// # Errors
    ///
    /// A [`InputErrorKind::BadConfig`] error for a spec without `=`, an unknown key (the
    /// message lists the keys) or a value that does not parse as the key's kind.
    pub fn parse(spec: &str) -> Result<Self> {
        let Some((name, value)) = spec.split_once('=') else {
            return input_error(
                InputErrorKind::BadConfig,
                "expected KEY=VALUE, e.g. timeout=10s or max-memory-size=64MiB",
            );
        };
        let Some(key) = LimitKey::find(name) else {
            return input_error(
                InputErrorKind::BadConfig,
                format!(
                    "unknown -W key {name:?} (-W help lists them):\n{}",
                    Self::help()
                ),
            );
        };
        let mut settings = LimitSettings::default();
        settings.set(key, value)?;
        Ok(settings)
    }

    /// Sets `key` from its value as text (`"64MiB"`, `"10s"`, `"10_000"`).
    ///
    /// # Errors
    ///
    /// A [`InputErrorKind::BadConfig`] error when the value does not parse as the key's
    /// [`LimitKind`]; the settings are then unchanged.
    pub fn set(&mut self, key: &LimitKey, value: &str) -> Result<()> {
        match key.field {
            Field::Duration(field) => *field(self) = Some(parse_duration(value)?),
            Field::Size(field) => *field(self) = Some(parse_size(value)?),
            Field::Count(field) => *field(self) = Some(parse_count(key.name, value)?),
            Field::Count64(field) => *field(self) = Some(parse_count(key.name, value)?),
        }
        Ok(())
    }

    /// Takes every setting `later` has, replacing this one's: repeated `-W` options, the
    /// last one of a key winning.
    pub fn overlay(&mut self, mut later: LimitSettings) {
        for key in LIMIT_KEYS {
            key.move_setting(&mut later, self);
        }
    }

    /// The keys, one line each (`  timeout=DURATION       stop the guest after …`), for
    /// `-W help` and the unknown-key error.
    pub fn help() -> String {
        let width = LIMIT_KEYS
            .iter()
            .map(|key| key.usage().len())
            .max()
            .unwrap_or(0)
            + 2;
        let lines: Vec<String> = LIMIT_KEYS
            .iter()
            .map(|key| format!("  {:<width$}{}", key.usage(), key.help))
            .collect();
        lines.join("\n")
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h 30m` (as `humantime`), or a bare number of seconds
/// (`30`, `1.5`), as wasmtime does.
///
/// # Errors
///
/// A [`InputErrorKind::BadConfig`] error for anything else, negative and NaN included.
pub fn parse_duration(text: &str) -> Result<Duration> {
    // `try_from_secs_f64` refuses negative, NaN, infinite and overflowing seconds.
    if let Ok(secs) = text.parse::<f64>()
        && let Ok(duration) = Duration::try_from_secs_f64(secs)
    {
        return Ok(duration);
    }
    humantime::parse_duration(text).or_else(|e| {
        input_error(
            InputErrorKind::BadConfig,
            format!("invalid duration {text:?}: {e} (try 10s or 500ms)"),
        )
    })
}

/// Parses `65536`, `64KiB`, `64K`, `16MiB`, `16M`, `1GiB`, `1G` (powers of 1024; `KB` is
/// read as `KiB`, as wasmtime does), `_` allowed between digits.
pub(crate) fn parse_size(text: &str) -> Result<usize> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let Ok(number) = digits.replace('_', "").parse::<usize>() else {
        return input_error(
            InputErrorKind::BadConfig,
            format!("invalid size {text:?}: expected e.g. 65536 or 64MiB"),
        );
    };
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return input_error(
                InputErrorKind::BadConfig,
                format!("invalid size {text:?}: the unit must be K, M or G (KiB, MiB, GiB)"),
            );
        }
    };
    match number.checked_mul(1 << shift) {
        Some(bytes) => Ok(bytes),
        None => input_error(
            InputErrorKind::BadConfig,
            format!("size {text:?} is too large"),
        ),
    }
}

/// A whole number, `_` allowed as a separator (`10_000_000`).
fn parse_count<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value.replace('_', "").parse().or_else(|_| {
        input_error(
            InputErrorKind::BadConfig,
            format!("invalid {key} {value:?}: expected a whole number"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value of each kind, written as `-W` takes it.
    fn sample(kind: LimitKind) -> &'static str {
        match kind {
            LimitKind::Duration => "7s",
            LimitKind::Size => "7KiB",
            LimitKind::Count => "7",
        }
    }

    /// A new limit is one entry in `LIMIT_KEYS`: this checks that every entry parses as
    /// `-W KEY=VALUE`, sets a setting of its own, is listed by `-W help` and by the README.
    #[test]
    fn every_key_in_the_table_parses_sets_its_own_setting_and_is_documented() {
        let help = LimitSettings::help();
        let readme = include_str!("../../../README.md");
        let mut seen: Vec<LimitSettings> = Vec::new();
        for key in LIMIT_KEYS {
            let name = key.name();
            let spec = format!("{name}={}", sample(key.kind()));
            let settings = LimitSettings::parse(&spec).unwrap();
            assert_ne!(settings, LimitSettings::default(), "{spec} set nothing");
            assert!(
                !seen.contains(&settings),
                "{name} sets the same setting as another key"
            );
            seen.push(settings);
            assert!(std::ptr::eq(LimitKey::find(name).unwrap(), key));
            assert!(help.contains(&format!("  {name}=")), "-W help lacks {name}");
            assert!(
                readme.contains(&format!("`{name}`")) || readme.contains(&format!("-W {name}=")),
                "README.md does not list -W {name}"
            );
        }
        // All of them together: each survives the others.
        let mut all = LimitSettings::default();
        for settings in &seen {
            all.overlay(*settings);
        }
        for settings in &seen {
            let mut again = all;
            again.overlay(*settings);
            assert_eq!(again, all);
        }
    }

    #[test]
    fn parsing_sets_the_library_settings() {
        let parsed = |spec| LimitSettings::parse(spec).unwrap();
        assert_eq!(parsed("timeout=10s").timeout, Some(Duration::from_secs(10)));
        assert_eq!(
            parsed("max-memory-size=64MiB").limits.max_memory_size,
            Some(64 << 20)
        );
        assert_eq!(
            parsed("max-wasm-stack=256KiB").limits.max_wasm_stack,
            Some(256 << 10)
        );
        assert_eq!(parsed("fuel=1_000_000").limits.fuel, Some(1_000_000));
        assert_eq!(parsed("max-instances=3").limits.max_instances, Some(3));
        assert_eq!(parsed("max-tables=4").limits.max_tables, Some(4));
        assert_eq!(
            parsed("max-table-elements=300_000")
                .limits
                .max_table_elements,
            Some(300_000)
        );
    }

    #[test]
    fn the_later_setting_of_a_key_wins_and_others_are_kept() {
        let mut settings = LimitSettings::parse("fuel=1").unwrap();
        settings.overlay(LimitSettings::parse("timeout=1s").unwrap());
        settings.overlay(LimitSettings::parse("fuel=2").unwrap());
        assert_eq!(settings.limits.fuel, Some(2));
        assert_eq!(settings.timeout, Some(Duration::from_secs(1)));
    }

    fn error(spec: &str) -> String {
        let error = LimitSettings::parse(spec).unwrap_err();
        let input = error.downcast_ref::<crate::error::InputError>().unwrap();
        assert_eq!(input.kind(), InputErrorKind::BadConfig, "{spec}");
        input.to_string()
    }

    #[test]
    fn bad_settings_say_what_is_expected() {
        assert_eq!(
            error("timeout"),
            "expected KEY=VALUE, e.g. timeout=10s or max-memory-size=64MiB"
        );
        assert_eq!(
            error("x=1"),
            format!(
                "unknown -W key \"x\" (-W help lists them):\n{}",
                LimitSettings::help()
            )
        );
        assert_eq!(
            error("fuel=lots"),
            "invalid fuel \"lots\": expected a whole number"
        );
        assert_eq!(
            error("max-tables=-1"),
            "invalid max-tables \"-1\": expected a whole number"
        );
        assert!(error("timeout=abc").starts_with("invalid duration \"abc\": "));
        assert!(error("max-memory-size=64XB").contains("the unit must be K, M or G"));
    }

    #[test]
    fn help_lines_up_the_keys_as_before() {
        let help = LimitSettings::help();
        let lines: Vec<&str> = help.lines().collect();
        assert_eq!(lines.len(), LIMIT_KEYS.len());
        assert_eq!(
            lines[0],
            "  timeout=DURATION       stop the guest after this long (10s, 500ms, 2m); exit 124"
        );
        assert_eq!(
            lines[1],
            "  max-memory-size=BYTES  bytes per linear memory (64MiB); growing past it fails"
        );
    }

    #[test]
    fn sizes_take_every_unit_and_separators() {
        let cases = [
            ("65536", 65536),
            ("0", 0),
            ("1_000_000", 1_000_000),
            ("12b", 12),
            ("12B", 12),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("64KB", 64 << 10),
            ("64KiB", 64 << 10),
            ("16M", 16 << 20),
            ("16MB", 16 << 20),
            ("16MiB", 16 << 20),
            ("16mib", 16 << 20),
            ("1G", 1 << 30),
            ("1GB", 1 << 30),
            ("1GiB", 1 << 30),
            ("1_024KiB", 1 << 20),
            (" 64 MiB ", 64 << 20),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text).unwrap(), bytes, "{text:?}");
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        let message = |text| parse_size(text).unwrap_err().to_string();
        for text in ["", "MiB", "-1", "abc"] {
            assert_eq!(
                message(text),
                format!("invalid size {text:?}: expected e.g. 65536 or 64MiB")
            );
        }
        for text in ["64T", "64TiB", "64 bytes", "1KiBx", "1.5MiB"] {
            assert!(
                message(text).contains("the unit must be K, M or G"),
                "{text:?}"
            );
        }
        let huge = format!("{}G", usize::MAX >> 20);
        assert_eq!(message(&huge), format!("size {huge:?} is too large"));
        let digits = format!("{}0", usize::MAX);
        assert!(message(&digits).starts_with("invalid size"));
    }

    #[test]
    fn durations_take_units_and_bare_seconds() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h 30m", Duration::from_secs(5400)),
            ("30", Duration::from_secs(30)),
            ("1.5", Duration::from_millis(1500)),
            ("0", Duration::ZERO),
        ];
        for (text, duration) in cases {
            assert_eq!(parse_duration(text).unwrap(), duration, "{text:?}");
        }
    }

    #[test]
    fn negative_nan_and_unitless_nonsense_durations_are_refused() {
        for text in [
            "-1",
            "-1.5",
            "NaN",
            "nan",
            "inf",
            "1e300",
            "",
            "abc",
            "10 parsecs",
        ] {
            let error = parse_duration(text).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid duration {text:?}: ")),
                "{text:?}: {error}"
            );
        }
    }
}
