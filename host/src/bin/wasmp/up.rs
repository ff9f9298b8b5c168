//! `wasmp up`: the processes a file describes, started together and joined together.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::LazyLock;

use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, de};
use wasmp::{
    Component, InputError, InputErrorKind, LIMIT_KEYS, LimitKey, LimitKind, LimitSettings, Output,
    Process, Queue, Runtime,
};

use crate::common::{GrantOptions, exit_code_of, relative_to, say};
use crate::observe::ObserveOptions;
use crate::pipes::PipeOptions;

/// Run the processes described in a TOML file concurrently and join them all.
///
/// Exits 0 when every process succeeded, otherwise with the exit code of the first one
/// (in file order) that did not. A malformed file exits 78 naming its line and column.
#[derive(Args)]
#[command(after_help = "\
Example file (paths are relative to the file):

  [[queue]]
  name = \"q\"
  capacity = 100            # optional; also max-message-size
  close-after = [\"pw\"]      # closed once pw ends: the reader drains it and returns

  [[process]]
  name = \"pw\"
  component = \"tutorial_queue.wasm\"
  invoke = 'writer(\"q\")'
  queues = [\"q\"]

  [[process]]
  name = \"pr\"
  component = \"tutorial_queue.wasm\"
  invoke = 'reader(\"q\")'
  queues = [\"q\"]
  env = [\"LANG=C\"]          # also: args, dirs, dirs-ro, and the -W keys
  timeout = \"10s\"           # (wasmp run -W help), e.g. max-memory-size = \"64MiB\"

Example:
  wasmp up tutorial.toml")]
pub(crate) struct UpCommand {
    #[command(flatten)]
    pipes: PipeOptions,

    #[command(flatten)]
    observe: ObserveOptions,

    /// The file describing the processes.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// The file's shape. Unknown keys are errors, so a typo never becomes a silent default.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default, rename = "queue")]
    queues: Vec<QueueEntry>,
    #[serde(default, rename = "process")]
    processes: Vec<ProcessEntry>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct QueueEntry {
    name: String,
    capacity: Option<usize>,
    max_message_size: Option<usize>,
    /// Close the queue once these processes have all ended (its producers), so that its
    /// readers drain it and finish; every queue is closed when all processes have ended.
    #[serde(default)]
    close_after: Vec<String>,
}

/// A `[[process]]` table. Besides the fields below it takes every limit key of the
/// library's table ([`LIMIT_KEYS`], as `-W`); its `Deserialize` is written out (below) because
/// serde's `flatten` would lose toml's error positions and `deny_unknown_fields`.
#[derive(Debug, Default)]
struct ProcessEntry {
    name: String,
    component: String,
    invoke: Option<String>,
    args: Vec<String>,
    env: Vec<String>,
    dirs: Vec<String>,
    dirs_ro: Vec<String>,
    queues: Vec<String>,
    /// The limit keys given, each with its value as text; parsed by [`entry_limits`], whose
    /// errors name the process.
    limits: Vec<(&'static LimitKey, String)>,
}

impl UpCommand {
    pub(crate) fn execute(self) -> Result<ExitCode> {
        let manifest = load_manifest(&self.file)?;
        let base = self.file.parent().unwrap_or(Path::new("."));
        let (runtime, observing) = self.observe.apply(Runtime::builder())?;
        let runtime = runtime.build()?;
        let output = if manifest.processes.len() > 1 {
            Output::Tagged
        } else {
            Output::Inherit
        };

        let queues: HashMap<&str, Queue> = manifest
            .queues
            .iter()
            .map(|entry| {
                let mut builder = Queue::builder(&entry.name);
                if let Some(capacity) = entry.capacity {
                    builder = builder.capacity(capacity);
                }
                if let Some(size) = entry.max_message_size {
                    builder = builder.max_message_size(size);
                }
                (entry.name.as_str(), builder.build())
            })
            .collect();
        for queue in queues.values() {
            observing.watch(queue);
        }
        let mut components: HashMap<PathBuf, Component> = HashMap::new();
        let mut processes = Vec::new();
        for entry in &manifest.processes {
            let path = relative_to(base, &entry.component);
            let component = match components.get(&path) {
                Some(component) => component.clone(),
                None => {
                    let component = runtime.load(&path)?;
                    components.insert(path, component.clone());
                    component
                }
            };
            let mut process = build(entry, &component, output)?;
            for name in &entry.queues {
                process = process.queue(&queues[name.as_str()]);
            }
            processes.push(process);
        }
        // Everything is checked before anything starts: bad input spawns nothing.
        for process in &processes {
            process
                .check()
                .with_context(|| format!("process {}", process.get_name()))?;
        }
        let pipes = self.pipes.start(|name| queues.get(name).cloned())?;
        let (ended, events) = crossbeam_channel::unbounded();
        let mut waiters = Vec::new();
        for (index, mut process) in processes.into_iter().enumerate() {
            let name = process.get_name().to_string();
            process
                .start()
                .with_context(|| format!("failed to start process {name}"))?;
            let ended = ended.clone();
            waiters.push(std::thread::spawn(move || {
                let status = process.join();
                let _ = ended.send((index, process.pid().unwrap_or(0), status));
            }));
        }
        drop(ended);

        let mut statuses = vec![None; manifest.processes.len()];
        for (index, pid, status) in events {
            let status = status?;
            let name = &manifest.processes[index].name;
            say!("[{name} {pid}] {status}");
            statuses[index] = Some(status);
            let done = |n: &String| {
                manifest
                    .processes
                    .iter()
                    .position(|p| &p.name == n)
                    .is_some_and(|i| statuses[i].is_some())
            };
            for entry in &manifest.queues {
                if !entry.close_after.is_empty() && entry.close_after.iter().all(done) {
                    queues[entry.name.as_str()].close();
                }
            }
        }
        for waiter in waiters {
            let _ = waiter.join();
        }
        for queue in queues.values() {
            queue.close();
        }
        pipes.finish();

        let first_failure = statuses.iter().flatten().find(|status| !status.success());
        Ok(match first_failure {
            None => ExitCode::SUCCESS,
            Some(status) if status.code() == 0 => ExitCode::FAILURE,
            Some(status) => exit_code_of(status),
        })
    }
}

fn build(entry: &ProcessEntry, component: &Component, output: Output) -> Result<Process> {
    let mut process = Process::new(component)
        .name(&entry.name)
        .stdout(output)
        .stderr(output);
    process = match &entry.invoke {
        Some(call) => process.invoke_wave(call),
        None => process.args(entry.args.iter().cloned()),
    };
    let grants = GrantOptions {
        dirs: entry.dirs.clone(),
        dirs_ro: entry.dirs_ro.clone(),
        env: entry.env.clone(),
        limits: vec![entry_limits(entry)?],
    };
    Ok(grants.apply(process))
}

/// The limits a process entry asks for.
fn entry_limits(entry: &ProcessEntry) -> Result<LimitSettings> {
    let mut settings = LimitSettings::default();
    for (key, value) in &entry.limits {
        settings.set(key, value).map_err(|e| {
            InputError::new_config(format!("process {}: {}: {e:#}", entry.name, key.name()))
        })?;
    }
    Ok(settings)
}

/// A key of a `[[process]]` table. It is looked up while toml deserializes the key, so an
/// unknown key is reported at the key's line and column.
enum EntryKey {
    Name,
    Component,
    Invoke,
    Args,
    Env,
    Dirs,
    DirsRo,
    Queues,
    Limit(&'static LimitKey),
}

/// The keys of a `[[process]]` table that are not limit keys.
const ENTRY_KEYS: [&str; 8] = [
    "name",
    "component",
    "invoke",
    "args",
    "env",
    "dirs",
    "dirs-ro",
    "queues",
];

impl<'de> Deserialize<'de> for EntryKey {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(EntryKeyVisitor)
    }
}

struct EntryKeyVisitor;

impl de::Visitor<'_> for EntryKeyVisitor {
    type Value = EntryKey;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a [[process]] key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<EntryKey, E> {
        Ok(match key {
            "name" => EntryKey::Name,
            "component" => EntryKey::Component,
            "invoke" => EntryKey::Invoke,
            "args" => EntryKey::Args,
            "env" => EntryKey::Env,
            "dirs" => EntryKey::Dirs,
            "dirs-ro" => EntryKey::DirsRo,
            "queues" => EntryKey::Queues,
            _ => match LimitKey::find(key) {
                Some(limit) => EntryKey::Limit(limit),
                None => return Err(E::unknown_field(key, &ALL_ENTRY_KEYS)),
            },
        })
    }
}

/// Every key a `[[process]]` table takes, for the unknown-key error.
static ALL_ENTRY_KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    ENTRY_KEYS
        .into_iter()
        .chain(LIMIT_KEYS.iter().map(LimitKey::name))
        .collect()
});

impl<'de> Deserialize<'de> for ProcessEntry {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ProcessEntryVisitor)
    }
}

struct ProcessEntryVisitor;

impl<'de> de::Visitor<'de> for ProcessEntryVisitor {
    type Value = ProcessEntry;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a [[process]] table")
    }

    // toml refuses a repeated key before it gets here, so a later value simply wins.
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ProcessEntry, A::Error> {
        let mut entry = ProcessEntry::default();
        let (mut name, mut component) = (None, None);
        while let Some(key) = map.next_key()? {
            match key {
                EntryKey::Name => name = Some(map.next_value()?),
                EntryKey::Component => component = Some(map.next_value()?),
                EntryKey::Invoke => entry.invoke = Some(map.next_value()?),
                EntryKey::Args => entry.args = map.next_value()?,
                EntryKey::Env => entry.env = map.next_value()?,
                EntryKey::Dirs => entry.dirs = map.next_value()?,
                EntryKey::DirsRo => entry.dirs_ro = map.next_value()?,
                EntryKey::Queues => entry.queues = map.next_value()?,
                EntryKey::Limit(limit) => {
                    let value = map.next_value_seed(LimitValue(limit.kind()))?;
                    entry.limits.push((limit, value));
                }
            }
        }
        entry.name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        entry.component = component.ok_or_else(|| de::Error::missing_field("component"))?;
        Ok(entry)
    }
}

/// A limit's value as written in the file, as text for [`LimitSettings::set`]: a duration
/// is a string (`"10s"`), a count an integer, a size either (`65536` or `"64MiB"`).
struct LimitValue(LimitKind);

impl<'de> de::DeserializeSeed<'de> for LimitValue {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl de::Visitor<'_> for LimitValue {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            LimitKind::Duration => "a duration string such as \"10s\"",
            LimitKind::Size => "a number of bytes or a string such as \"64MiB\"",
            LimitKind::Count => "a whole number",
        })
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<String, E> {
        match self.0 {
            LimitKind::Size | LimitKind::Count => Ok(number.to_string()),
            LimitKind::Duration => Err(E::invalid_type(de::Unexpected::Unsigned(number), &self)),
        }
    }

    // toml integers are signed.
    fn visit_i64<E: de::Error>(self, number: i64) -> Result<String, E> {
        match u64::try_from(number) {
            Ok(number) => self.visit_u64(number),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(number), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        match self.0 {
            LimitKind::Duration | LimitKind::Size => Ok(text.to_string()),
            LimitKind::Count => Err(E::invalid_type(de::Unexpected::Str(text), &self)),
        }
    }
}

/// Reads and checks the file; errors say `FILE:LINE:COLUMN: what`.
fn load_manifest(path: &Path) -> Result<Manifest> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return Err(InputError::new_kind(
                InputErrorKind::NotFound,
                format!("cannot read {}: {e}", path.display()),
            )
            .into());
        }
    };
    let manifest: Manifest = toml::from_str(&text).map_err(|e| {
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_column(&text, span.start));
        InputError::new_config(format!(
            "{}:{line}:{column}: {}",
            path.display(),
            e.message()
        ))
    })?;
    let config_error = |message: String| {
        Err(InputError::new_config(format!("{}: {message}", path.display())).into())
    };
    let mut queue_names = HashSet::new();
    for entry in &manifest.queues {
        if !queue_names.insert(entry.name.as_str()) {
            return config_error(format!("two queues are named {:?}", entry.name));
        }
    }
    let process_names: HashSet<&str> = manifest.processes.iter().map(|p| p.name.as_str()).collect();
    for entry in &manifest.queues {
        if let Some(unknown) = entry
            .close_after
            .iter()
            .find(|n| !process_names.contains(n.as_str()))
        {
            return config_error(format!(
                "queue {:?}: close-after names {unknown:?}, which is not a process",
                entry.name
            ));
        }
    }
    for entry in &manifest.processes {
        if let Some(unknown) = entry
            .queues
            .iter()
            .find(|n| !queue_names.contains(n.as_str()))
        {
            return config_error(format!(
                "process {:?} is granted queue {unknown:?}, which no [[queue]] declares",
                entry.name
            ));
        }
    }
    let mut names = HashSet::new();
    for entry in &manifest.processes {
        if !names.insert(entry.name.as_str()) {
            return Err(InputError::new_config(format!(
                "{}: two processes are named {:?}",
                path.display(),
                entry.name
            ))
            .into());
        }
        if entry.invoke.is_some() && !entry.args.is_empty() {
            return Err(InputError::new_config(format!(
                "{}: process {:?} has both `invoke` and `args`; `args` are for `main`",
                path.display(),
                entry.name
            ))
            .into());
        }
    }
    if manifest.processes.is_empty() {
        return Err(
            InputError::new_config(format!("{}: no [[process]] entries", path.display())).into(),
        );
    }
    Ok(manifest)
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Result<ProcessEntry, toml::de::Error> {
        toml::from_str::<Manifest>(&format!(
            "[[process]]\nname = \"a\"\ncomponent = \"c\"\n{text}"
        ))
        .map(|mut manifest| manifest.processes.remove(0))
    }

    /// The line and column of a toml error in the file `entry` parses.
    fn error_at(text: &str) -> (String, (usize, usize)) {
        let source = format!("[[process]]\nname = \"a\"\ncomponent = \"c\"\n{text}");
        let error = toml::from_str::<Manifest>(&source).unwrap_err();
        let start = error.span().unwrap().start;
        (error.message().to_string(), line_column(&source, start))
    }

    #[test]
    fn line_column_counts_from_one() {
        let text = "ab\ncd\n\nef";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 6), (3, 1));
        assert_eq!(line_column(text, 8), (4, 2));
        assert_eq!(line_column(text, 100), (4, 3));
        assert_eq!(line_column("", 0), (1, 1));
    }

    /// Every key of the library's table is an up-file key, setting what `-W` sets.
    #[test]
    fn every_limit_key_is_an_up_file_key() {
        let mut text = String::new();
        let mut expected = LimitSettings::default();
        for key in LIMIT_KEYS {
            let (toml_value, w_value) = match key.kind() {
                LimitKind::Duration => ("\"7s\"", "7s"),
                LimitKind::Size => ("\"7KiB\"", "7KiB"),
                LimitKind::Count => ("7", "7"),
            };
            text.push_str(&format!("{} = {toml_value}\n", key.name()));
            expected.overlay(LimitSettings::parse(&format!("{}={w_value}", key.name())).unwrap());
        }
        let entry = entry(&text).unwrap();
        assert_eq!(entry_limits(&entry).unwrap(), expected);
    }

    #[test]
    fn a_size_may_be_a_number_of_bytes_or_a_string_with_a_unit() {
        let limits = |text| entry_limits(&entry(text).unwrap()).unwrap().limits;
        assert_eq!(
            limits("max-memory-size = 65536").max_memory_size,
            Some(65536)
        );
        assert_eq!(
            limits("max-memory-size = \"64MiB\"").max_memory_size,
            Some(64 << 20)
        );
        assert_eq!(limits("fuel = 1_000").fuel, Some(1000));
    }

    #[test]
    fn wrong_keys_and_types_are_reported_where_they_are() {
        let (message, at) = error_at("colour = \"red\"\n");
        assert!(message.starts_with("unknown field `colour`, expected one of `name`"));
        assert!(message.contains("`max-table-elements`"), "{message}");
        assert_eq!(at, (4, 1));
        let (message, at) = error_at("fuel = \"lots\"\n");
        assert!(message.contains("expected a whole number"), "{message}");
        assert_eq!(at, (4, 8));
        let (message, at) = error_at("timeout = 10\n");
        assert!(message.contains("expected a duration string"), "{message}");
        assert_eq!(at, (4, 11));
        let (message, at) = error_at("max-tables = -1\n");
        assert!(message.contains("expected a whole number"), "{message}");
        assert_eq!(at, (4, 14));
        let (_, at) = error_at("args = \"x\"\n");
        assert_eq!(at, (4, 8));
    }

    #[test]
    fn a_bad_limit_value_names_the_process_and_the_key() {
        let error = entry_limits(&entry("max-memory-size = \"64XB\"").unwrap()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("process a: max-memory-size: invalid size \"64XB\""),
            "{error}"
        );
        let error = entry_limits(&entry("timeout = \"soon\"").unwrap()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("process a: timeout: invalid duration"),
            "{error}"
        );
    }

    #[test]
    fn the_regular_keys_are_not_limit_keys() {
        for name in ENTRY_KEYS {
            let key = de::Visitor::visit_str::<de::value::Error>(EntryKeyVisitor, name).unwrap();
            assert!(!matches!(key, EntryKey::Limit(_)), "{name}");
            assert!(LimitKey::find(name).is_none(), "{name} is also a limit key");
        }
        assert!(toml::from_str::<Manifest>("[[process]]\nname = \"a\"\n").is_err());
    }
}
