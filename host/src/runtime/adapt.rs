//! WASI preview-1 core modules made into components.
//!
//! Most WASI toolchains (Rust's `wasm32-wasip1`, C with wasi-libc, Zig, TinyGo,
//! AssemblyScript) still emit core modules importing `wasi_snapshot_preview1`. wasmp runs
//! components only, so a core module is wrapped, once, with wasmtime's own preview-1
//! adapter (from the release wasmp runs on, so it matches the host's WASI 0.2): the
//! *command* adapter when the module exports `_start` (a `main`), the *reactor* adapter
//! otherwise. The result is then compiled and cached like any component, keyed on the
//! module's bytes, so the adaptation runs on a cache miss only.
//!
//! A module may also import `wasmp:worker/{process,queue}@0.1.0` directly. Toolchains with
//! a wit-bindgen generator embed the WIT types those imports need (a `component-type`
//! custom section); for modules without one (a C guest using `guests/c/wasmp.h`), wasmp
//! embeds the `wasmp:worker/worker` world itself.
//!
//! One deliberate difference from the stock adapter: its `proc_exit(n)` reports every
//! `n != 0` as 1 (preview 2's `exit` takes a bare result), while `wasmtime run` runs core
//! modules with a native preview-1 layer that keeps `n` (and refuses `n >= 126`). wasmp
//! routes the module's `proc_exit` import to a host function of its own with the same core
//! signature and wasmtime's semantics ([`PROC_EXIT_INTERFACE`]), so a C `return 3;` from
//! `main` exits 3 as it does under `wasmtime run`.
//!
//! And one repair: wasm-ld (before wasi-libc started calling constructors from `_start`
//! itself, e.g. Debian 12's clang 14 + wasi-libc) wraps every export of a command in
//! constructor/destructor calls, `cabi_realloc` included. The host calls `cabi_realloc`
//! while it hands a list to the guest (a queue message), and the wrapper's destructors flush
//! stdio from there, which the component model forbids ("cannot leave component instance").
//! When the name section shows such a wrapper, the export is pointed back at the plain
//! `cabi_realloc` it wraps.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wasm_encoder::reencode::{self, Reencode};
use wasmparser::{ExternalKind, KnownCustom, Name, Parser, Payload};

use crate::error::{InputError, InputErrorKind};
use crate::worker::{PROC_EXIT, PROC_EXIT_INTERFACE};

/// The guest contract, embedded into modules that import it without carrying its types.
const WORKER_WIT: &str = include_str!("../../../wit/worker.wit");
const CORE_MODULE_WIT: &str = "package wasmp:core-module@0.1.0;
interface exit {
  proc-exit: func(status: u32);
}
";
/// The allocator the host calls to hand lists to the guest, and wasm-ld's wrapper of it.
const REALLOC: &str = "cabi_realloc";
const REALLOC_WRAPPER: &str = "cabi_realloc.command_export";

/// Import modules a core module may use: WASI preview 1 (through the adapter) and the
/// wasmp worker interfaces.
const WORKER_IMPORT_PREFIX: &str = "wasmp:worker/";

/// What a core module imports and exports, as far as adapting it is concerned.
#[derive(Debug, Default)]
struct ModuleShape {
    /// Exports `_start`: a command.
    is_command: bool,
    /// Imports something from `wasi_snapshot_preview1`.
    imports_wasi: bool,
    /// Imports from `wasmp:worker/…`.
    imports_worker: bool,
    /// Imports `wasi_snapshot_preview1.proc_exit`.
    imports_proc_exit: bool,
    /// Carries wit-bindgen's type information for its imports and exports.
    has_component_type: bool,
    /// The exported `cabi_realloc` is wasm-ld's ctor/dtor wrapper: (wrapper, wrapped).
    wrapped_realloc: Option<(u32, u32)>,
    /// Import modules nothing here can provide, for the error message.
    foreign_imports: Vec<String>,
}

/// Turns a WASI preview-1 core module into a component, choosing the command or reactor
/// adapter.
///
/// # Errors
///
/// An [`InputErrorKind::UnsatisfiedImport`] error when a module without wit-bindgen types
/// imports from modules other than `wasi_snapshot_preview1` and `wasmp:worker/…`; an
/// [`InputErrorKind::NotAComponent`] error when the adapter cannot wrap it (the message
/// says why).
pub(crate) fn module_to_component(module: &[u8]) -> Result<Vec<u8>> {
    let shape = inspect(module)?;
    // With wit-bindgen's types aboard, any import is described and the linker check after
    // compiling names what wasmp lacks; without them, only the two known sets can be typed.
    if !shape.has_component_type && !shape.foreign_imports.is_empty() {
        return Err(InputError::new(
            InputErrorKind::UnsatisfiedImport,
            format!(
                "this core module imports from {}, which wasmp does not provide; a core \
                 module may import wasi_snapshot_preview1 and wasmp:worker/{{process, \
                 queue}}@0.1.0",
                shape.foreign_imports.join(", ")
            ),
        )
        .into());
    }
    let embed_worker = shape.imports_worker && !shape.has_component_type;
    let mut module = if shape.imports_proc_exit || shape.wrapped_realloc.is_some() {
        rewrite(module, &shape)?
    } else {
        module.to_vec()
    };
    if embed_worker || shape.imports_proc_exit {
        embed_world(&mut module, embed_worker, shape.imports_proc_exit)?;
    }
    let mut encoder = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .map_err(|e| not_adaptable(&e))?;
    if shape.imports_wasi {
        let adapter = if shape.is_command {
            WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER
        } else {
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER
        };
        encoder = encoder
            .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter)
            .context("failed to load wasmtime's preview-1 adapter")?;
    }
    encoder.encode().map_err(|e| not_adaptable(&e))
}

/// A digest of everything besides the module that decides the adapted component: the
/// adapters and the embedded WIT. Part of the compile-cache key of core modules, so that a
/// new adapter is a cache miss.
pub(crate) fn adapter_fingerprint() -> &'static [u8] {
    static FINGERPRINT: OnceLock<Vec<u8>> = OnceLock::new();
    FINGERPRINT.get_or_init(|| {
        let mut digest = Sha256::new();
        digest.update(WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER);
        digest.update(WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER);
        digest.update(WORKER_WIT);
        digest.update(CORE_MODULE_WIT);
        digest.finalize().to_vec()
    })
}

fn not_adaptable(e: &anyhow::Error) -> anyhow::Error {
    InputError::new(
        InputErrorKind::NotAComponent,
        format!("this core module cannot be made into a component: {e:#}"),
    )
    .into()
}

fn invalid_module(e: impl std::fmt::Display) -> InputError {
    InputError::new(
        InputErrorKind::InvalidWasm,
        format!("invalid core module: {e}"),
    )
}

fn inspect(module: &[u8]) -> Result<ModuleShape> {
    let mut shape = ModuleShape::default();
    let (mut exported_realloc, mut realloc_by_name, mut wrapper_by_name) = (None, None, None);
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(invalid_module)?;
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid_module)?;
                    if import.module == WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME {
                        shape.imports_wasi = true;
                        shape.imports_proc_exit |= import.name == "proc_exit";
                    } else if import.module.starts_with(WORKER_IMPORT_PREFIX) {
                        shape.imports_worker = true;
                    } else if !shape.foreign_imports.iter().any(|m| m == import.module) {
                        shape.foreign_imports.push(import.module.to_string());
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid_module)?;
                    shape.is_command |= export.name == "_start";
                    if export.name == REALLOC && export.kind == ExternalKind::Func {
                        exported_realloc = Some(export.index);
                    }
                }
            }
            Payload::CustomSection(section) if section.name() == "name" => {
                let KnownCustom::Name(names) = section.as_known() else {
                    continue;
                };
                // A malformed name section is not worth refusing a module over.
                let functions = names.into_iter().flatten().filter_map(|name| match name {
                    Name::Function(map) => Some(map),
                    _ => None,
                });
                for naming in functions.flat_map(|map| map.into_iter().flatten()) {
                    match naming.name {
                        REALLOC => realloc_by_name = Some(naming.index),
                        REALLOC_WRAPPER => wrapper_by_name = Some(naming.index),
                        _ => {}
                    }
                }
            }
            Payload::CustomSection(section) if section.name().starts_with("component-type") => {
                shape.has_component_type = true;
            }
            _ => {}
        }
    }
    if let (Some(exported), Some(wrapped)) = (exported_realloc, realloc_by_name)
        && wrapper_by_name == Some(exported)
    {
        shape.wrapped_realloc = Some((exported, wrapped));
    }
    Ok(shape)
}

/// Embeds the WIT types of the imports wasmp adds or the module lacks: the `proc_exit`
/// route, the `wasmp:worker/worker` world for modules importing it bare. wit-component
/// merges this section with any the module already carries.
fn embed_world(module: &mut Vec<u8>, worker: bool, exit: bool) -> Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    resolve
        .push_str("worker.wit", WORKER_WIT)
        .context("the built-in wasmp:worker WIT does not parse")?;
    let mut wit = String::from(CORE_MODULE_WIT);
    wit.push_str("world core-module {\n");
    if worker {
        wit.push_str("  include wasmp:worker/worker@0.1.0;\n");
    }
    if exit {
        wit.push_str("  import exit;\n");
    }
    wit.push('}');
    let package = resolve
        .push_str("core-module.wit", &wit)
        .context("the core-module world does not parse")?;
    let world = resolve.select_world(&[package], Some("core-module"))?;
    wit_component::embed_component_metadata(
        module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
}

/// Rewrites the import `wasi_snapshot_preview1.proc_exit` as [`PROC_EXIT_INTERFACE`]'s
/// `proc-exit` (both take one `i32` and never return), and points
/// a wrapped `cabi_realloc` export back at the function it wraps.
fn rewrite(module: &[u8], shape: &ModuleShape) -> Result<Vec<u8>> {
    struct Rewrite {
        wrapped_realloc: Option<(u32, u32)>,
    }
    impl Reencode for Rewrite {
        type Error = std::convert::Infallible;

        fn parse_import_section(
            &mut self,
            imports: &mut wasm_encoder::ImportSection,
            section: wasmparser::ImportSectionReader<'_>,
        ) -> Result<(), reencode::Error<Self::Error>> {
            for import in section.into_imports() {
                let import = import?;
                if import.module == WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME
                    && import.name == "proc_exit"
                {
                    imports.import(PROC_EXIT_INTERFACE, PROC_EXIT, self.entity_type(import.ty)?);
                } else {
                    reencode::utils::parse_import(self, imports, import)?;
                }
            }
            Ok(())
        }

        fn parse_export(
            &mut self,
            exports: &mut wasm_encoder::ExportSection,
            mut export: wasmparser::Export<'_>,
        ) -> Result<(), reencode::Error<Self::Error>> {
            if let Some((wrapper, wrapped)) = self.wrapped_realloc
                && export.name == REALLOC
                && export.index == wrapper
            {
                export.index = wrapped;
            }
            reencode::utils::parse_export(self, exports, export)
        }
    }
    let mut encoded = wasm_encoder::Module::new();
    Rewrite {
        wrapped_realloc: shape.wrapped_realloc,
    }
    .parse_core_module(&mut encoded, Parser::new(0), module)
    .map_err(invalid_module)?;
    Ok(encoded.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(wat: &str) -> ModuleShape {
        inspect(&wat::parse_str(wat).unwrap()).unwrap()
    }

    #[test]
    fn a_module_exporting_start_is_a_wasi_command() {
        let shape = shape(
            r#"(module
                 (import "wasi_snapshot_preview1" "fd_write"
                   (func (param i32 i32 i32 i32) (result i32)))
                 (memory (export "memory") 1)
                 (func (export "_start")))"#,
        );
        assert!(shape.is_command);
        assert!(shape.imports_wasi);
        assert!(!shape.imports_proc_exit);
        assert!(!shape.imports_worker);
        assert!(!shape.has_component_type);
        assert!(shape.foreign_imports.is_empty());
        assert_eq!(shape.wrapped_realloc, None);
    }

    #[test]
    fn a_module_without_start_is_a_reactor() {
        let shape = shape(
            r#"(module
                 (import "wasi_snapshot_preview1" "fd_write"
                   (func (param i32 i32 i32 i32) (result i32)))
                 (memory (export "memory") 1)
                 (func (export "_initialize"))
                 (func (export "start")))"#,
        );
        assert!(!shape.is_command, "only `_start` makes a command");
        assert!(shape.imports_wasi);
    }

    #[test]
    fn importing_proc_exit_is_noticed_so_that_it_can_be_routed() {
        let shape = shape(
            r#"(module
                 (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                 (func (export "_start")))"#,
        );
        assert!(shape.imports_wasi);
        assert!(shape.imports_proc_exit);
    }

    #[test]
    fn a_module_importing_wasmp_worker_is_told_apart_from_foreign_imports() {
        let shape = shape(
            r#"(module
                 (import "wasmp:worker/queue@0.1.0" "len"
                   (func (param i32 i32 i32)))
                 (import "wasmp:worker/process@0.1.0" "pid" (func (result i32)))
                 (memory (export "memory") 1)
                 (func (export "_start")))"#,
        );
        assert!(shape.imports_worker);
        assert!(!shape.imports_wasi);
        assert!(shape.foreign_imports.is_empty());
        assert!(
            !shape.has_component_type,
            "so wasmp embeds the worker world itself"
        );
    }

    #[test]
    fn foreign_import_modules_are_listed_once_each_in_order() {
        let shape = shape(
            r#"(module
                 (import "env" "a" (func))
                 (import "other" "b" (func))
                 (import "env" "c" (func))
                 (import "wasi_snapshot_preview1" "fd_write"
                   (func (param i32 i32 i32 i32) (result i32))))"#,
        );
        assert_eq!(shape.foreign_imports, ["env", "other"]);
        assert!(shape.imports_wasi);
    }

    #[test]
    fn a_component_type_section_says_the_module_carries_its_wit_types() {
        let shape = shape(
            r#"(module
                 (@custom "component-type:wit-bindgen:0.41.0:worker" "")
                 (func (export "_start")))"#,
        );
        assert!(shape.has_component_type);
    }

    #[test]
    fn a_realloc_export_wrapped_by_wasm_ld_points_at_the_function_it_wraps() {
        let realloc = r#"(func $cabi_realloc (param i32 i32 i32 i32) (result i32)
                            (local.get 0))
                          (func $cabi_realloc.command_export (param i32 i32 i32 i32) (result i32)
                            (call $cabi_realloc
                              (local.get 0) (local.get 1) (local.get 2) (local.get 3)))"#;
        let wrapped = shape(&format!(
            r#"(module {realloc}
                 (export "cabi_realloc" (func $cabi_realloc.command_export)))"#
        ));
        assert_eq!(wrapped.wrapped_realloc, Some((1, 0)));
        let plain = shape(&format!(
            r#"(module {realloc}
                 (export "cabi_realloc" (func $cabi_realloc)))"#
        ));
        assert_eq!(plain.wrapped_realloc, None);
    }

    #[test]
    fn bytes_that_are_not_a_module_are_invalid_wasm() {
        let error = inspect(b"\0asm\x01\0\0\0\x01\xff").unwrap_err();
        let input = error.downcast_ref::<InputError>().expect("an input error");
        assert_eq!(input.kind(), InputErrorKind::InvalidWasm);
        assert!(
            error.to_string().starts_with("invalid core module: "),
            "{error}"
        );
    }
}
