//! A component loaded, validated and compiled once in the host, shared by every process
//! that runs it.
//!
//! Everything that can be wrong with a component is found here, before a worker is
//! spawned: a missing file, bytes that are not wasm, a core module that cannot be adapted
//! into a component, an import wasmp does not provide (nor the embedder, as a host
//! interface), an export that is not there, arguments of the wrong count or type.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use tracing::debug;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Val, wasm_wave};

use crate::error::{InputErrorKind, input_error};
use crate::hostfn::bound::{BoundHost, bind};
use crate::link::host::HostCalls;
use crate::runtime::Runtime;
use crate::value::signature::{describe_func, describe_type};
use crate::version::{VERSION, WIT_PACKAGE, WIT_VERSION, worker_import_version};
use crate::worker::{link_host_imports, new_linker};

/// Components larger than this are refused before they are read.
pub const MAX_COMPONENT_SIZE: u64 = 512 * 1024 * 1024;

/// A validated, compiled component. Cheap to clone; share one among many processes.
#[derive(Clone)]
pub struct Component {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    name: String,
    /// The component's bytes, kept to compile a fuel-metered variant on demand.
    wasm: Arc<[u8]>,
    cwasm: PathBuf,
    cwasm_fuel: OnceLock<PathBuf>,
    is_command: bool,
    functions: BTreeMap<String, ComponentFunc>,
    /// Its imports of the embedder's host interfaces, bound to their closures.
    host: Option<Arc<BoundHost>>,
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.inner.name)
            .field("is_command", &self.inner.is_command)
            .field(
                "functions",
                &self.inner.functions.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Component {
    /// Loads the component at `path`: reads it, validates it, checks its imports against
    /// what wasmp provides, and compiles it (or finds it in the compile cache).
    ///
    /// # Errors
    ///
    /// An [`InputError`](crate::InputError) (inside the `anyhow::Error`) naming the problem:
    /// [`NotFound`](InputErrorKind::NotFound), [`InvalidWasm`](InputErrorKind::InvalidWasm),
    /// [`NotAComponent`](InputErrorKind::NotAComponent) or
    /// [`UnsatisfiedImport`](InputErrorKind::UnsatisfiedImport); an I/O error otherwise.
    pub fn from_file(runtime: &Runtime, path: impl AsRef<Path>) -> Result<Component> {
        let path = path.as_ref();
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                return input_error(
                    InputErrorKind::NotFound,
                    format!("cannot read component {}: {e}", path.display()),
                );
            }
        };
        if meta.len() > MAX_COMPONENT_SIZE {
            return input_error(
                InputErrorKind::InvalidWasm,
                format!(
                    "{} is {} bytes, over the {MAX_COMPONENT_SIZE}-byte limit for a component",
                    path.display(),
                    meta.len()
                ),
            );
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("failed to read component {}", path.display()))?;
        let name = path
            .file_stem()
            .map_or_else(|| "component".into(), |s| s.to_string_lossy().into_owned());
        Component::from_bytes(runtime, &name, &bytes)
            .with_context(|| format!("invalid component {}", path.display()))
    }

    /// Like [`Component::from_file`] for bytes already in memory; `name` labels messages.
    ///
    /// # Errors
    ///
    /// As [`Component::from_file`].
    pub fn from_bytes(runtime: &Runtime, name: &str, bytes: &[u8]) -> Result<Component> {
        check_header(bytes)?;
        let engine = runtime.engine();
        let started = std::time::Instant::now();
        let (cwasm, compiled_now) = runtime.cache().compile(engine, bytes)?;
        debug!(name, compiled_now, elapsed = ?started.elapsed(), cwasm = %cwasm.display(), "component ready");
        #[expect(
            unsafe_code,
            reason = "loading precompiled code is unsafe by wasmtime's contract"
        )]
        // SAFETY: `cwasm` was just produced (or earlier produced) by `precompile_component`
        // with this engine's settings, in our private, owner-checked cache directory.
        let compiled = unsafe { wasmtime::component::Component::deserialize_file(engine, &cwasm) }
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to load compiled component {}", cwasm.display()))?;

        let host = bind(runtime.host_interfaces(), &compiled, engine, name)?;
        let mut linker = new_linker(engine)?;
        link_host_imports(
            &mut linker,
            &compiled,
            &runtime.host_interfaces().names(),
            &mut HashSet::new(),
        )?;
        if let Err(e) = linker.instantiate_pre(&compiled) {
            let ty = compiled.component_type();
            // The imports a host interface serves are not what is missing.
            let hint = unsatisfied_import_hint(
                ty.imports(engine)
                    .map(|(name, _)| name)
                    .filter(|name| runtime.host_interfaces().serving(name).is_none()),
            );
            return input_error(InputErrorKind::UnsatisfiedImport, format!("{e:#}; {hint}"));
        }

        let mut is_command = false;
        let mut functions = BTreeMap::new();
        for (export, item) in compiled.component_type().exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    functions.insert(export.to_string(), func);
                }
                ComponentItem::ComponentInstance(_) if export.starts_with("wasi:cli/run@") => {
                    is_command = true;
                }
                _ => {}
            }
        }
        Ok(Component {
            inner: Arc::new(Inner {
                runtime: runtime.clone(),
                name: name.to_string(),
                wasm: Arc::from(bytes),
                cwasm,
                cwasm_fuel: OnceLock::new(),
                is_command,
                functions,
                host: host.map(Arc::new),
            }),
        })
    }

    /// The component's bytes as given (before adaptation), shared.
    #[cfg(feature = "cluster")]
    pub(crate) fn wasm(&self) -> &Arc<[u8]> {
        &self.inner.wasm
    }

    /// The name messages use for this component (its file stem).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether it was given as a WASI preview-1 core module (and adapted into a component).
    pub fn is_adapted_module(&self) -> bool {
        wasmparser::Parser::is_core_wasm(&self.inner.wasm)
    }

    /// Whether the component is a WASI command (exports `wasi:cli/run`, i.e. has a `main`).
    pub fn is_command(&self) -> bool {
        self.inner.is_command
    }

    /// The functions the component exports at its top level, with WIT-like signatures:
    /// `("func1", "func(args1: string, args2: string)")`.
    pub fn functions(&self) -> impl Iterator<Item = (&str, String)> + '_ {
        self.inner
            .functions
            .iter()
            .map(|(name, func)| (name.as_str(), describe_func(func)))
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// What answers this component's host-function calls, if it imports any.
    pub(crate) fn host_calls(&self) -> Option<Arc<dyn HostCalls>> {
        self.inner
            .host
            .clone()
            .map(|host| host as Arc<dyn HostCalls>)
    }

    /// The compiled file for a worker: the fuel-metered variant (compiled on first use)
    /// when the guest has a fuel limit.
    pub(crate) fn cwasm_for(&self, limits: &crate::grants::limits::Limits) -> Result<PathBuf> {
        if limits.fuel.is_none() {
            return Ok(self.inner.cwasm.clone());
        }
        if let Some(path) = self.inner.cwasm_fuel.get() {
            return Ok(path.clone());
        }
        let runtime = &self.inner.runtime;
        let (path, _) = runtime
            .cache()
            .compile(runtime.fuel_engine()?, &self.inner.wasm)?;
        Ok(self.inner.cwasm_fuel.get_or_init(|| path).clone())
    }

    /// Checks that the component can be run as a command.
    pub(crate) fn check_command(&self) -> Result<()> {
        if self.inner.is_command {
            return Ok(());
        }
        let mut message = format!(
            "component {} has no `main` (it does not export wasi:cli/run)",
            self.inner.name
        );
        if !self.inner.functions.is_empty() {
            message.push_str("; invoke one of its functions instead: ");
            message.push_str(&self.function_list());
        }
        input_error(InputErrorKind::MissingExport, message)
    }

    fn function(&self, export: &str) -> Result<&ComponentFunc> {
        match self.inner.functions.get(export) {
            Some(func) => Ok(func),
            None => {
                let available = if self.inner.functions.is_empty() {
                    "it exports no functions".to_string()
                } else {
                    format!("it exports {}", self.function_list())
                };
                input_error(
                    InputErrorKind::MissingExport,
                    format!(
                        "component {} has no exported function {export:?}; {available}",
                        self.inner.name
                    ),
                )
            }
        }
    }

    fn function_list(&self) -> String {
        self.functions()
            .map(|(name, sig)| format!("`{name}: {sig}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Type-checks `args` against `export`'s parameters and encodes them for the worker.
    /// Integer arguments are converted to the parameter's integer type when they fit.
    pub(crate) fn encode_args(&self, export: &str, args: &[Val]) -> Result<Vec<String>> {
        let func = self.function(export)?;
        let params: Vec<_> = func.params().collect();
        if params.len() != args.len() {
            return input_error(
                InputErrorKind::BadArguments,
                format!(
                    "{export} takes {} argument{} ({export}: {}), got {}",
                    params.len(),
                    if params.len() == 1 { "" } else { "s" },
                    describe_func(func),
                    args.len()
                ),
            );
        }
        params
            .iter()
            .zip(args)
            .enumerate()
            .map(|(i, ((param, ty), arg))| {
                let text = wasm_wave::to_string(arg)
                    .with_context(|| format!("cannot encode argument {} ({arg:?})", i + 1))?;
                match wasm_wave::from_str::<Val>(ty, &text) {
                    Ok(typed) => Ok(wasm_wave::to_string(&typed)?),
                    Err(_) => input_error(
                        InputErrorKind::BadArguments,
                        format!(
                            "argument {} of {export} ({param}) must be {}, got {text}",
                            i + 1,
                            describe_type(ty)
                        ),
                    ),
                }
            })
            .collect()
    }

    /// The arguments of a call written in WAVE syntax, `func1("a", 2)`, typed by the
    /// export's parameters.
    ///
    /// # Errors
    ///
    /// A [`BadArguments`](InputErrorKind::BadArguments) or
    /// [`MissingExport`](InputErrorKind::MissingExport) input error.
    pub fn parse_call_args(&self, call: &str) -> Result<Vec<Val>> {
        Ok(self.parse_call(call)?.1)
    }

    /// Parses a call in WAVE syntax, `func1("a", 2)`, against the component's exports.
    pub(crate) fn parse_call(&self, call: &str) -> Result<(String, Vec<Val>)> {
        let parsed = match wasm_wave::untyped::UntypedFuncCall::parse(call) {
            Ok(parsed) => parsed,
            Err(e) => {
                return input_error(
                    InputErrorKind::BadArguments,
                    format!(
                        "cannot parse --invoke {call:?}: {e}; expected a call such as \
                         'func1(\"a\", 2)'"
                    ),
                );
            }
        };
        let export = parsed.name().to_string();
        let func = self.function(&export)?;
        let types: Vec<_> = func.params().map(|(_, ty)| ty).collect();
        match parsed.to_wasm_params::<Val>(types.iter()) {
            Ok(args) => Ok((export, args)),
            Err(e) => input_error(
                InputErrorKind::BadArguments,
                format!(
                    "wrong arguments in {call:?}: {e}; {export} is `{}`",
                    describe_func(func)
                ),
            ),
        }
    }

    /// Converts one call's arguments written as a JSON array (`["a", 2]`) to values of the
    /// export's parameter types.
    ///
    /// # Errors
    ///
    /// A [`BadArguments`](InputErrorKind::BadArguments) input error naming the argument.
    pub fn args_from_json(&self, export: &str, json: &serde_json::Value) -> Result<Vec<Val>> {
        let func = self.function(export)?;
        let Some(items) = json.as_array() else {
            return input_error(
                InputErrorKind::BadArguments,
                format!("expected a JSON array of arguments for {export}, got {json}"),
            );
        };
        let params: Vec<_> = func.params().collect();
        if params.len() != items.len() {
            return input_error(
                InputErrorKind::BadArguments,
                format!(
                    "{export} takes {} arguments ({export}: {}), got {json}",
                    params.len(),
                    describe_func(func)
                ),
            );
        }
        params
            .iter()
            .zip(items)
            .enumerate()
            .map(|(i, ((param, ty), item))| {
                crate::value::json::from_json(item, ty).or_else(|e| {
                    input_error(
                        InputErrorKind::BadArguments,
                        format!("argument {} of {export} ({param}): {e:#}", i + 1),
                    )
                })
            })
            .collect()
    }

    /// Decodes what an invoked export returned.
    pub(crate) fn decode_results(&self, export: &str, results: &[String]) -> Result<Vec<Val>> {
        let func = self.function(export)?;
        func.results()
            .zip(results)
            .map(|(ty, text)| {
                wasm_wave::from_str::<Val>(&ty, text)
                    .with_context(|| format!("worker returned an undecodable value {text}"))
            })
            .collect()
    }
}

/// Tells "not wasm at all" from wasm before the compiler's messages do.
fn check_header(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return input_error(
            InputErrorKind::InvalidWasm,
            format!(
                "not a WebAssembly file ({}): it does not start with the magic bytes \\0asm",
                if bytes.is_empty() {
                    "the file is empty".to_string()
                } else {
                    format!("{} bytes", bytes.len())
                }
            ),
        );
    }
    Ok(())
}

/// What to do about a component wasmp cannot link, given the names it imports. A guest
/// built against another version of the guest contract (an old SDK, a newer `worker.wit`)
/// is told which version this wasmp provides and how to rebuild; any other is told what a
/// worker may import.
fn unsatisfied_import_hint<'a>(imports: impl Iterator<Item = &'a str>) -> String {
    let mut other_versions = Vec::new();
    let mut imports_worker = false;
    let mut foreign = Vec::new();
    for import in imports {
        match worker_import_version(import) {
            Some(WIT_VERSION) => imports_worker = true,
            Some(_) => other_versions.push(import),
            None if !import.starts_with("wasi:") && !import.starts_with("wasmp:") => {
                foreign.push(import);
            }
            None => {}
        }
    }
    let rebuild = format!(
        "rebuild it against the WIT of wasmp {VERSION} (its wit/worker.wit, `package \
         {WIT_PACKAGE}@{WIT_VERSION}`, which `wasmp new` vendors into a new project)"
    );
    if !other_versions.is_empty() {
        format!(
            "it was built for another version of the wasmp guest contract ({}), but this \
             wasmp provides {WIT_PACKAGE}@{WIT_VERSION}: {rebuild}",
            other_versions.join(", ")
        )
    } else if !foreign.is_empty() {
        format!(
            "a wasmp worker may import WASI 0.2 (cli, clocks, filesystem, io, random, \
             sockets), {WIT_PACKAGE}/{{process, queue}}@{WIT_VERSION} and the host interfaces \
             its embedder registers (RuntimeBuilder::host_interface); no host interface of \
             this runtime provides {}",
            foreign.join(", ")
        )
    } else if imports_worker {
        format!(
            "this wasmp provides {WIT_PACKAGE}/{{process, queue}}@{WIT_VERSION}; if the \
             component was built from another worker.wit, {rebuild}"
        )
    } else {
        format!(
            "a wasmp worker may import WASI 0.2 (cli, clocks, filesystem, io, random, \
             sockets) and {WIT_PACKAGE}/{{process, queue}}@{WIT_VERSION}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::unsatisfied_import_hint;

    #[test]
    fn a_guest_built_for_another_contract_version_is_told_which_and_how_to_rebuild() {
        let hint = unsatisfied_import_hint(
            ["wasi:cli/stdout@0.2.0", "wasmp:worker/queue@0.2.0"].into_iter(),
        );
        assert!(hint.contains("(wasmp:worker/queue@0.2.0)"), "{hint}");
        assert!(hint.contains("provides wasmp:worker@0.1.0"), "{hint}");
        assert!(hint.contains("rebuild it against"), "{hint}");

        let hint = unsatisfied_import_hint(["wasmp:worker/queue@0.1.0"].into_iter());
        assert!(hint.contains("another worker.wit"), "{hint}");
        let hint = unsatisfied_import_hint(["my:thing/api"].into_iter());
        assert!(
            hint.starts_with("a wasmp worker may import WASI 0.2"),
            "{hint}"
        );
        assert!(
            hint.ends_with("no host interface of this runtime provides my:thing/api"),
            "{hint}"
        );
    }
}
