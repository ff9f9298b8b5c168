//! `wasmtime run`'s own flags on `wasmp run`, so that a user's `wasmtime run …` line works
//! with `wasmp` in front of it.
//!
//! Every option group (`-O`, `-C`, `-D`, `-S`, `-R`, and the `-W` keys that are not wasmp
//! limits) is checked by wasmtime's own parser (the `wasmtime-cli-flags` crate of the
//! wasmtime inside), so a key or value wasmtime refuses gets wasmtime's message and
//! `-S help` lists wasmtime's keys. A valid setting then either works with wasmtime's
//! meaning ([`Applied`]) or exits 2 saying why it does not apply to a sandboxed worker —
//! one reason per family of keys, in [`reason`]. Nothing is silently ignored.

use clap::Args;
use wasmp::{Grants, Network};

/// `wasmtime run`'s flags beyond those `wasmp run` shares with it (`--dir`, `--env`,
/// `--invoke`, `--argv0`, `-W`).
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct WasmtimeFlags {
    /// wasmtime's WASI options (`-S help` lists them): inherit-env, inherit-network, tcp,
    /// udp, allow-ip-name-lookup, cli, cli-exit-with-code, preview2 and inherit-std{in,out,err}
    /// work as in wasmtime; the others exit 2 saying why.
    #[arg(short = 'S', long = "wasi", value_name = "KEY[=VAL[,..]]",
          value_parser = |v: &str| parse_group('S', v))]
    wasi: Vec<Vec<Setting>>,

    /// wasmtime's optimization options (`-O help`): wasmp compiles with one fixed
    /// configuration, so only `opt-level=2` (what it uses) is accepted.
    #[arg(short = 'O', long = "optimize", value_name = "KEY[=VAL[,..]]",
          value_parser = |v: &str| parse_group('O', v))]
    optimize: Vec<Vec<Setting>>,

    /// wasmtime's codegen options (`-C help`): `cache` and `compiler=cranelift` (what wasmp
    /// does) are accepted; the others exit 2 saying why.
    #[arg(short = 'C', long = "codegen", value_name = "KEY[=VAL[,..]]",
          value_parser = |v: &str| parse_group('C', v))]
    codegen: Vec<Vec<Setting>>,

    /// wasmtime's debug options (`-D help`): none applies to a sandboxed worker.
    #[arg(short = 'D', long = "debug", value_name = "KEY[=VAL[,..]]",
          value_parser = |v: &str| parse_group('D', v))]
    debug: Vec<Vec<Setting>>,

    /// wasmtime's execution recording (`-R help`): not supported.
    #[arg(short = 'R', long = "record", value_name = "KEY[=VAL[,..]]",
          value_parser = |v: &str| parse_group('R', v))]
    record: Vec<Vec<Setting>>,

    /// wasmtime's `--preload NAME=MODULE`: refused (a worker runs one component).
    #[arg(long = "preload", value_name = "NAME=MODULE_PATH",
          value_parser = |_: &str| refused("--preload"))]
    preload: Vec<String>,

    /// wasmtime's `--allow-precompiled`: refused (workers load only their host's code).
    #[arg(long = "allow-precompiled")]
    allow_precompiled: bool,

    /// wasmtime's `--profile STRATEGY`: refused (no profiler reaches into the sandbox).
    #[arg(long = "profile", value_name = "STRATEGY",
          value_parser = |_: &str| refused("--profile"))]
    profile: Option<String>,

    /// wasmtime's `-g/--gdbstub [ADDR:]PORT`: refused.
    #[arg(short = 'g', long = "gdbstub", value_name = "[ADDR:]PORT",
          value_parser = |_: &str| refused("--gdbstub"))]
    gdbstub: Option<String>,

    /// wasmtime's `--target TARGET`: refused (wasmp compiles for this machine).
    #[arg(long = "target", value_name = "TARGET", value_parser = |_: &str| refused("--target"))]
    target: Option<String>,

    /// wasmtime's `--config FILE`: refused (its settings are engine options wasmp keeps
    /// fixed; `wasmp up` files configure wasmp).
    #[arg(long = "config", value_name = "FILE", value_parser = |_: &str| refused("--config"))]
    config: Option<String>,
}

/// One `KEY[=VAL]` of an option group that wasmp applies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    key: String,
    /// `true` for a bare key, `y`, `yes` or `true`.
    on: bool,
}

/// What the accepted `-S` settings ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The host's whole environment, before `--env` (which overrides it).
    pub(crate) inherit_env: bool,
    pub(crate) network: Network,
    /// `false` after `-S inherit-stdin=n` (and the same for stdout and stderr).
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
}

impl WasmtimeFlags {
    /// Exits 2, as a bad flag does, for the flags that take no value (their value parser
    /// refuses the others).
    pub(crate) fn refuse_flags(&self) {
        if self.allow_precompiled {
            let message = refused("--allow-precompiled").unwrap_err();
            clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!("{message}\n"),
            )
            .exit();
        }
    }

    /// The `-S` settings, in order (a later one wins, as in wasmtime).
    pub(crate) fn applied(&self) -> Applied {
        let mut applied = Applied {
            stdin: true,
            stdout: true,
            stderr: true,
            ..Applied::default()
        };
        for setting in self.wasi.iter().flatten() {
            let on = setting.on;
            match setting.key.as_str() {
                "inherit-env" => applied.inherit_env = on,
                "inherit-network" => applied.network.inherit = on,
                "tcp" => applied.network.tcp = on,
                "udp" => applied.network.udp = on,
                "allow-ip-name-lookup" => applied.network.ip_name_lookup = on,
                "inherit-stdin" => applied.stdin = on,
                "inherit-stdout" => applied.stdout = on,
                "inherit-stderr" => applied.stderr = on,
                // Accepted as what wasmp always does (see `accepts`).
                _ => {}
            }
        }
        // wasmtime's defaults: with the network inherited, TCP and UDP are on unless
        // turned off.
        if applied.network.inherit {
            let turned_off = |key: &str| self.wasi.iter().flatten().any(|s| s.key == key && !s.on);
            applied.network.tcp = !turned_off("tcp");
            applied.network.udp = !turned_off("udp");
        }
        applied
    }
}

impl Applied {
    /// The grants `wasmp run`'s own options build on: the host's environment (with
    /// `-S inherit-env`; `--env` then overrides it, as in wasmtime) and the network.
    pub(crate) fn base_grants(&self) -> Grants {
        let mut base = Grants::new().network(self.network);
        if self.inherit_env {
            for (name, value) in std::env::vars_os() {
                if let (Ok(name), Ok(value)) = (name.into_string(), value.into_string()) {
                    base = base.env(name, value);
                }
            }
        }
        base
    }
}

/// Parses one `-X KEY[=VAL][,KEY[=VAL]…]`: wasmtime's parser first (its message for a
/// key or value it does not know), then wasmp's disposition of each key.
fn parse_group(group: char, value: &str) -> Result<Vec<Setting>, String> {
    wasmtime_accepts(group, value)?;
    value
        .split(',')
        .map(|item| {
            let (key, val) = match item.split_once('=') {
                Some((key, val)) => (key, Some(val)),
                None => (item, None),
            };
            let on = matches!(val, None | Some("y" | "yes" | "true"));
            if accepts(group, key, val, on) {
                Ok(Setting {
                    key: key.to_string(),
                    on,
                })
            } else {
                Err(format!(
                    "wasmp does not apply -{group} {item}: {}",
                    reason(group, key)
                ))
            }
        })
        .collect()
}

/// Whether wasmtime's own parser takes `-{group} {value}`; its message if not. `help` makes
/// it print the group's options and exit, as `wasmtime run -S help` does.
pub(crate) fn wasmtime_accepts(group: char, value: &str) -> Result<(), String> {
    use clap::Parser;
    #[derive(Parser)]
    struct Wasmtime {
        #[command(flatten)]
        common: wasmtime_cli_flags::CommonOptions,
    }
    let flag = format!("-{group}");
    match Wasmtime::try_parse_from(["wasmtime", flag.as_str(), value]) {
        Ok(_) => Ok(()),
        // wasmtime's own message, without clap's frame around it.
        Err(e) => {
            let message = match std::error::Error::source(&e) {
                Some(cause) => cause.to_string(),
                None => e.to_string(),
            };
            let message = message.trim();
            Err(message
                .strip_prefix("error: ")
                .unwrap_or(message)
                .to_string())
        }
    }
}

/// The settings wasmp applies, or takes as what it always does.
fn accepts(group: char, key: &str, val: Option<&str>, on: bool) -> bool {
    match (group, key) {
        (
            'S',
            "inherit-env"
            | "inherit-network"
            | "tcp"
            | "udp"
            | "allow-ip-name-lookup"
            | "inherit-stdin"
            | "inherit-stdout"
            | "inherit-stderr",
        ) => true,
        // Always linked (WASI 0.2's CLI, `exit-with-code` included, on preview 2).
        ('S', "cli" | "common" | "cli-exit-with-code" | "preview2") => on,
        ('O', "opt-level") => val == Some("2"),
        ('C', "cache") => on,
        ('C', "compiler") => val == Some("cranelift"),
        _ => false,
    }
}

/// Why a valid wasmtime setting does not apply to a wasmp worker.
pub(crate) fn reason(group: char, key: &str) -> &'static str {
    match (group, key) {
        ('S', "cli" | "common" | "cli-exit-with-code" | "preview2") => {
            "WASI 0.2's CLI interfaces are always linked in a wasmp worker and cannot be turned off"
        }
        (
            'S',
            "nn"
            | "nn-graph"
            | "threads"
            | "http"
            | "config"
            | "config-var"
            | "keyvalue"
            | "keyvalue-in-memory-data"
            | "tls"
            | "p3"
            | "preview0"
            | "network-error-code",
        ) => {
            "a wasmp worker links WASI 0.2 (CLI, filesystem, clocks, random, sockets) and \
             wasmp:worker; this WASI proposal is not provided"
        }
        ('S', "listenfd" | "tcplisten") => {
            "a worker inherits no file descriptor from the host (its sandbox closes them); \
             grant the network with -S inherit-network instead"
        }
        ('S', "cwd") => {
            "a worker's directories are its --dir grants; it has no working directory to set"
        }
        ('S', _) => {
            "wasmp does not expose this wasmtime-wasi setting; its resource limits are the -W \
             keys (`wasmp run -W help`)"
        }
        ('O', _) => {
            "wasmp compiles each component once, in the host, with one engine configuration \
             that every worker shares and its compile cache is keyed on, so -O settings cannot \
             change per run (it uses opt-level=2)"
        }
        ('C', "cache" | "cache-config") => {
            "wasmp's workers cannot compile (their sandbox forbids it): they load what the host \
             compiled into its private cache, which cannot be turned off or configured \
             (WASMP_CACHE_DIR moves it)"
        }
        ('C', _) => {
            "wasmp compiles with cranelift for this machine, one configuration for every worker \
             (its compile cache is keyed on it)"
        }
        ('D', "logging" | "log-to-files") => {
            "a worker's logs go to the host's stderr; WASMP_LOG=debug (tracing filter syntax) \
             turns them on"
        }
        ('D', _) => {
            "a worker runs in a sandboxed process of its own: no debugger, profiler or dump \
             file reaches into it"
        }
        ('R', _) => "wasmp does not record executions",
        ('W', "unknown-exports-allow" | "unknown-imports-trap" | "unknown-imports-default") => {
            "wasmp refuses a component whose imports nothing provides before anything spawns \
             (exit 65, naming the import)"
        }
        ('W', _) => {
            "wasmp runs every worker on one engine configuration (its compile cache is keyed \
             on it), so wasm features and engine settings cannot change per run; its -W keys \
             are the resource limits (`wasmp run -W help`)"
        }
        _ => "not supported by wasmp",
    }
}

/// The reason a flag of `wasmtime run` without a wasmp meaning is refused.
fn refused(flag: &str) -> Result<String, String> {
    Err(format!(
        "wasmp does not support {flag}: {}",
        match flag {
            "--preload" => {
                "a wasmp worker runs one component; link or compose the modules into it \
                 beforehand (e.g. `wasm-tools component link`, `wac plug`)"
            }
            "--allow-precompiled" => {
                "workers load only code their host compiled into its private cache; a .cwasm \
                 from elsewhere would run as trusted native code inside the sandbox"
            }
            "--profile" | "--gdbstub" => {
                "a worker runs in a sandboxed process of its own: no profiler or debugger \
                 reaches into it"
            }
            "--target" => "wasmp compiles for the machine it runs on",
            "--config" => {
                "wasmtime's configuration files set engine options wasmp keeps fixed; `wasmp \
                 up` files configure wasmp"
            }
            _ => "it does not apply to a sandboxed worker",
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wasmtime run`'s flags and every key of its option groups, recorded from wasmtime
    /// 48.0.8 (the groups as `-X help` prints them, from `wasmtime-cli-flags`; the run
    /// flags from `wasmtime-cli`'s `RunCommand` and `RunCommon`).
    const RECORDED: &str = include_str!("../../../../tests/data/wasmtime-run-48.0.8-options.txt");

    /// A value wasmtime takes for an option shown with `help` (`=N`, `[=y|n]`, `=a|b`).
    fn sample(key: &str, val_help: &str) -> String {
        let value = match val_help {
            "" => return key.to_string(),
            h if h.starts_with("[=") => return key.to_string(),
            "=N" => "1".to_string(),
            "=N|Ns|Nms|.." => "1s".to_string(),
            "=path" => "/tmp/x".to_string(),
            "=<name>=<val>" => "a=b".to_string(),
            "=<format>::<dir>" => "openvino::/tmp".to_string(),
            "=val" => "x".to_string(),
            h => h
                .trim_start_matches('=')
                .split('|')
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        format!("{key}={value}")
    }

    /// The recorded group options: (group, `KEY[=VAL]` to try).
    fn recorded_group_options() -> Vec<(char, String)> {
        let mut options = Vec::new();
        for line in RECORDED.lines() {
            let Some(rest) = line.strip_prefix("  -") else {
                continue;
            };
            let mut chars = rest.chars();
            let group = chars.next().expect("a group letter");
            let spec = chars.as_str().trim_start();
            let spec = spec.split(" -- ").next().unwrap_or_default().trim();
            let split = spec.find(['=', '[']).unwrap_or(spec.len());
            let (key, val_help) = spec.split_at(split);
            let key = key.replace("<KEY>", "flag");
            options.push((group, sample(&key, val_help)));
        }
        options
    }

    #[test]
    fn every_option_of_wasmtime_runs_groups_is_accepted_or_refused_with_a_reason() {
        let options = recorded_group_options();
        assert!(options.len() > 150, "{} options recorded", options.len());
        let mut accepted = Vec::new();
        for (group, item) in &options {
            // -W keys that are wasmp limits are parsed by wasmp's own -W (tested there).
            let key = item.split('=').next().unwrap_or_default();
            if *group == 'W' && wasmp::LimitKey::find(key).is_some() {
                continue;
            }
            let parsed = match group {
                'W' => crate::common::parse_limit(item)
                    .map(drop)
                    .map_err(|e| e.to_string()),
                _ => parse_group(*group, item).map(drop),
            };
            match parsed {
                Ok(()) => accepted.push(format!("-{group} {item}")),
                Err(message) => assert!(
                    message.starts_with(&format!("wasmp does not apply -{group} {item}: "))
                        && message.len() > 60,
                    "-{group} {item}: {message}"
                ),
            }
        }
        // What works, as in wasmtime.
        for flag in [
            "-S inherit-env",
            "-S inherit-network",
            "-S tcp",
            "-S udp",
            "-S allow-ip-name-lookup",
            "-S cli-exit-with-code",
            "-C cache",
        ] {
            assert!(accepted.iter().any(|a| a == flag), "{flag}: {accepted:?}");
        }
    }

    #[test]
    fn every_flag_of_wasmtime_run_parses() {
        use clap::CommandFactory;
        let run = crate::Wasmp::command();
        let run = run.find_subcommand("run").expect("wasmp run");
        let known: Vec<String> = run
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .chain(
                run.get_arguments()
                    .filter_map(|a| a.get_short().map(|s| format!("-{s}"))),
            )
            .collect();
        let recorded: Vec<&str> = RECORDED
            .lines()
            .filter_map(|l| l.strip_prefix("run flag: "))
            .collect();
        assert!(recorded.len() >= 12, "{recorded:?}");
        for flag in recorded {
            for spelling in flag.split(", ") {
                assert!(known.iter().any(|k| k == spelling), "{spelling} missing");
            }
        }
    }

    #[test]
    fn wasmtimes_message_for_what_wasmtime_does_not_know() {
        let message = parse_group('S', "no-such-thing").unwrap_err();
        assert!(message.contains("no-such-thing"), "{message}");
        assert!(!message.starts_with("wasmp does not apply"), "{message}");
        let message = parse_group('O', "opt-level=7").unwrap_err();
        assert!(message.contains("opt-level"), "{message}");
    }

    #[test]
    fn network_settings_follow_wasmtimes_defaults() {
        let flags = |values: &[&str]| WasmtimeFlags {
            wasi: values
                .iter()
                .map(|v| parse_group('S', v).unwrap())
                .collect(),
            ..WasmtimeFlags::default()
        };
        assert_eq!(flags(&[]).applied().network, Network::default());
        assert_eq!(
            flags(&["inherit-network"]).applied().network,
            Network::inherit()
        );
        let network = flags(&["inherit-network,udp=n", "allow-ip-name-lookup"])
            .applied()
            .network;
        assert!(network.inherit && network.tcp && !network.udp && network.ip_name_lookup);
        assert!(flags(&["inherit-env"]).applied().inherit_env);
        assert!(!flags(&["inherit-stdout=n"]).applied().stdout);
    }
}
