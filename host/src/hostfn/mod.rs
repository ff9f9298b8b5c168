//! Embedder-defined host interfaces: the application's own API (`app:host/kv`), described
//! in WIT by the embedder and implemented by closures in the host process, that plugins
//! import like any other interface.
//!
//! A guest runs in another OS process, so its call cannot reach the closure directly: the
//! worker links every function of a provided interface the component imports as a call over
//! its channel (`worker::state`), and the host thread that serves that worker (a `Process`'s
//! monitor or a pool slot) runs the closure and answers (`link::conn`). This module holds
//! what the embedder registers ([`HostInterface`]), what a closure sees ([`HostCall`]),
//! and, per component, the binding of its imports to the closures (`bound`), typed by the
//! component's own import types so that nothing the worker says is taken on trust.

pub(crate) mod bound;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{Type, Val};

use crate::error::InputError;

/// A host function as the registry keeps it: the dynamic form, given the result types so
/// that the typed form can convert its Rust result.
pub(crate) type HostFn =
    Arc<dyn Fn(&HostCall<'_>, &[Val], &[Type]) -> Result<Vec<Val>> + Send + Sync>;

/// An interface of the embedder's own (`app:host/kv`), implemented in the host process and
/// callable from guests that import it.
///
/// Register it on the runtime with [`RuntimeBuilder::host_interface`](crate::RuntimeBuilder::host_interface).
/// Each function runs on the host thread that serves the calling worker, one call at a time
/// per worker; a closure's error becomes a trap in the guest with its message.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// use wasmp::{HostInterface, Runtime, Val};
///
/// let log = HostInterface::new("app:host/log").func("info", |call, args: &[Val]| {
///     eprintln!("[{} {}] {args:?}", call.worker_name(), call.pid());
///     Ok(vec![])
/// });
/// let kv = HostInterface::new("app:host/kv")
///     .typed_func("get", |_call, (key,): (String,)| Ok(Some(format!("value of {key}"))));
/// let runtime = Runtime::builder().host_interface(log).host_interface(kv).build()?;
/// # Ok(()) }
/// ```
///
/// # Caveats
///
/// A closure runs on the host thread that serves its worker, so one that blocks holds that
/// thread: the worker's deadline is enforced only once it returns, and
/// [`Process::terminate`](crate::Process::terminate) and
/// [`Pool::terminate`](crate::Pool::terminate) kill the worker at once but return (with it
/// reaped) only when the closure does. A closure that waits for something should poll
/// [`HostCall::is_abandoned`] (true once the worker is gone or past its deadline) and give up.
#[derive(Clone)]
#[must_use]
pub struct HostInterface {
    name: String,
    functions: BTreeMap<String, HostFn>,
}

impl fmt::Debug for HostInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostInterface")
            .field("name", &self.name)
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl HostInterface {
    /// An interface named as guests import it: `namespace:package/interface`, with or
    /// without a version (`app:host/kv@0.1.0`). Without one it serves imports of every
    /// version of the interface.
    pub fn new(name: impl Into<String>) -> HostInterface {
        HostInterface {
            name: name.into(),
            functions: BTreeMap::new(),
        }
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Implements the function `name` with dynamic values: `args` are typed by the
    /// component's import of the function, and the closure returns one value per WIT
    /// result (none for a function without a result). A result of the wrong type or count
    /// traps the guest with a message saying so; the host carries on.
    pub fn func<F>(mut self, name: impl Into<String>, func: F) -> HostInterface
    where
        F: Fn(&HostCall<'_>, &[Val]) -> Result<Vec<Val>> + Send + Sync + 'static,
    {
        let func: HostFn = Arc::new(move |call, args, _results| func(call, args));
        self.functions.insert(name.into(), func);
        self
    }

    /// Implements the function `name` with Rust types: the arguments arrive as a tuple
    /// `A` (`(String,)`, `(String, u32)`), the result is any `R` (`()` for none).
    ///
    /// Values convert through serde with the JSON mapping of
    /// [`val_to_json`](crate::val_to_json): strings, numbers, `bool`, `Vec` (lists),
    /// `Option`, structs (records, fields by name), unit enums (WIT enums), `Result` (WIT
    /// `result`), tuples. WIT names are kebab-case: give structs and enums
    /// `#[serde(rename_all = "kebab-case")]` when a name has more than one word. A value
    /// that does not fit the WIT type traps the guest with a message naming the function.
    pub fn typed_func<A, R, F>(mut self, name: impl Into<String>, func: F) -> HostInterface
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&HostCall<'_>, A) -> Result<R> + Send + Sync + 'static,
    {
        let func: HostFn = Arc::new(move |call, args, results| {
            let json = serde_json::Value::Array(
                args.iter().map(crate::value::json::val_to_json).collect(),
            );
            // No arguments: `()` is serde's unit (JSON null), not an empty array.
            let args: A = serde_json::from_value(json.clone())
                .or_else(|e| match args.is_empty() {
                    true => serde_json::from_value(serde_json::Value::Null),
                    false => Err(e),
                })
                .with_context(|| format!("arguments {json} do not fit the Rust types"))?;
            let result =
                serde_json::to_value(func(call, args)?).context("failed to convert the result")?;
            results
                .iter()
                .map(|ty| crate::value::json::from_json(&result, ty))
                .collect::<Result<Vec<_>>>()
                .context("the result does not fit the function's WIT result type")
        });
        self.functions.insert(name.into(), func);
        self
    }

    /// Whether this interface serves an import named `import` (`app:host/kv@0.1.0`): the
    /// same name, or the same name but for the version when this one has none.
    fn serves(&self, import: &str) -> bool {
        crate::protocol::host_interface_serves(&self.name, import)
    }
}

/// A call of a host function, as its closure sees it: which function, and who called.
pub struct HostCall<'a> {
    pub(crate) interface: &'a str,
    pub(crate) function: &'a str,
    pub(crate) caller: &'a crate::link::host::Caller<'a>,
    pub(crate) abandoned: &'a dyn Fn() -> bool,
}

impl fmt::Debug for HostCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostCall")
            .field("interface", &self.interface)
            .field("function", &self.function)
            .field("worker", &self.caller.name)
            .field("pid", &self.caller.pid)
            .field("task", &self.caller.task)
            .finish_non_exhaustive()
    }
}

impl HostCall<'_> {
    /// The interface as the component imports it (`app:host/kv@0.1.0`).
    pub fn interface(&self) -> &str {
        self.interface
    }

    /// The function called (`get`).
    pub fn function(&self) -> &str {
        self.function
    }

    /// The calling worker's name: a [`Process`](crate::Process)'s name, or
    /// `pool-worker-N` for a pool worker.
    pub fn worker_name(&self) -> &str {
        self.caller.name
    }

    /// The calling worker's OS process id (what the guest sees as `pid()`).
    pub fn pid(&self) -> u32 {
        self.caller.pid
    }

    /// The pool's id for the task that is calling (unique within its pool; the `id` of its
    /// [`Event`](crate::Event)s), or `None` for a [`Process`](crate::Process) (or a pool's
    /// initializer).
    pub fn task_id(&self) -> Option<u64> {
        self.caller.task
    }

    /// When the host stops waiting for this worker (its time limit, plus a short grace),
    /// if it has one. The call counts against that limit: a closure that outlasts it sees
    /// its worker killed as timed out once it returns.
    pub fn deadline(&self) -> Option<Instant> {
        self.caller.deadline
    }

    /// Whether nobody waits for the answer any more (the worker died, was terminated, or
    /// is past its deadline): a closure that waits for something should check it and give
    /// up, since the host thread serving this worker is blocked until it returns.
    pub fn is_abandoned(&self) -> bool {
        (self.abandoned)()
    }
}

/// The host interfaces of a runtime, by name.
#[derive(Clone, Default)]
pub(crate) struct HostInterfaces {
    interfaces: Arc<BTreeMap<String, HostInterface>>,
}

impl fmt::Debug for HostInterfaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.interfaces.values()).finish()
    }
}

impl HostInterfaces {
    /// The registry of `interfaces`.
    ///
    /// # Errors
    ///
    /// A [`BadConfig`](crate::InputErrorKind::BadConfig) input error for a name that is not
    /// `namespace:package/interface`, one given twice, or one in a namespace wasmp serves
    /// itself (`wasi:`, `wasmp:`).
    pub(crate) fn new(interfaces: Vec<HostInterface>) -> Result<HostInterfaces> {
        let mut by_name = BTreeMap::new();
        for interface in interfaces {
            let name = interface.name.clone();
            let bare = name.split('@').next().unwrap_or_default();
            let well_formed = bare
                .split_once(':')
                .and_then(|(namespace, rest)| Some((namespace, rest.split_once('/')?)))
                .is_some_and(|(namespace, (package, item))| {
                    [namespace, package, item]
                        .iter()
                        .all(|part| !part.is_empty())
                });
            if !well_formed {
                return Err(InputError::new_config(format!(
                    "host interface name {name:?} must be namespace:package/interface \
                     (e.g. app:host/kv), as guests import it"
                ))
                .into());
            }
            if name.starts_with("wasi:") || name.starts_with("wasmp:") {
                return Err(InputError::new_config(format!(
                    "host interface {name}: the wasi: and wasmp: namespaces are wasmp's own; \
                     name your interface in a namespace of yours"
                ))
                .into());
            }
            if by_name.insert(name.clone(), interface).is_some() {
                return Err(InputError::new_config(format!(
                    "host interface {name} was registered twice"
                ))
                .into());
            }
        }
        Ok(HostInterfaces {
            interfaces: Arc::new(by_name),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.interfaces.is_empty()
    }

    /// The names the worker links as calls to the host.
    pub(crate) fn names(&self) -> Vec<String> {
        self.interfaces.keys().cloned().collect()
    }

    /// The interface serving the import `import`, if any: the one registered under that
    /// very name, else one registered without a version.
    pub(crate) fn serving(&self, import: &str) -> Option<&HostInterface> {
        self.interfaces
            .get(import)
            .or_else(|| self.interfaces.values().find(|i| i.serves(import)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_is_served_by_its_exact_name_first_then_by_a_versionless_one() {
        let interfaces = HostInterfaces::new(vec![
            HostInterface::new("app:host/kv"),
            HostInterface::new("app:host/kv@0.2.0"),
        ])
        .unwrap();
        let name = |import| interfaces.serving(import).map(HostInterface::name);
        assert_eq!(name("app:host/kv@0.2.0"), Some("app:host/kv@0.2.0"));
        assert_eq!(name("app:host/kv@0.1.0"), Some("app:host/kv"));
        assert_eq!(name("app:host/kv"), Some("app:host/kv"));
        assert_eq!(name("app:host/kvx@0.1.0"), None);
        assert_eq!(name("app:host/log"), None);
    }
}
