//! One component's imports of host interfaces, bound to the embedder's closures when the
//! component is loaded, and the host's half of each call: decode the worker's arguments
//! with the import's own parameter types, run the closure, check and encode its results.
//!
//! Everything that can be wrong with the binding is found at load, before anything spawns:
//! a function the interface does not implement, a resource type (a handle cannot cross a
//! process boundary as a value), an interface imported as something else.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use anyhow::Result;
use tracing::{trace, warn};
use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Type, Val};

use crate::error::{InputErrorKind, input_error};
use crate::hostfn::{HostCall, HostFn, HostInterfaces};
use crate::link::host::{Caller, HostCalls};
use crate::protocol::{HostCall as HostCallFrame, MAX_HOST_CALL_LEN};
use crate::value::signature::describe_type;
use crate::value::wire;

/// A component's host-function imports, each bound to its closure.
pub(crate) struct BoundHost {
    /// By (interface as imported, function).
    functions: HashMap<(String, String), BoundFn>,
}

struct BoundFn {
    func: HostFn,
    params: Vec<Type>,
    results: Vec<Type>,
}

/// Binds the imports of `component` that `interfaces` serve; `None` when it imports none.
///
/// # Errors
///
/// An [`UnsatisfiedImport`](InputErrorKind::UnsatisfiedImport) input error naming the
/// interface: a function the host interface does not implement, a resource, an async
/// value, or an interface imported as something other than an instance.
pub(crate) fn bind(
    interfaces: &HostInterfaces,
    component: &wasmtime::component::Component,
    engine: &Engine,
    name: &str,
) -> Result<Option<BoundHost>> {
    if interfaces.is_empty() {
        return Ok(None);
    }
    let mut functions = HashMap::new();
    for (import, item) in component.component_type().imports(engine) {
        let Some(interface) = interfaces.serving(import) else {
            continue;
        };
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            return input_error(
                InputErrorKind::UnsatisfiedImport,
                format!(
                    "component {name} imports {import} as something other than an interface; \
                     the host provides {import} as an interface of functions"
                ),
            );
        };
        for (function, export) in instance.exports(engine) {
            let func = match export.ty {
                ComponentItem::ComponentFunc(func) => func,
                ComponentItem::Resource(_) => {
                    return input_error(
                        InputErrorKind::UnsatisfiedImport,
                        format!(
                            "component {name} imports resource `{function}` of host interface \
                             {import}: resources cannot cross to the host process, only values \
                             (records, variants, lists, strings, …) can; pass an id instead"
                        ),
                    );
                }
                _ => continue,
            };
            let Some(implementation) = interface.functions.get(function) else {
                let provided = interface
                    .functions
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                return input_error(
                    InputErrorKind::UnsatisfiedImport,
                    format!(
                        "component {name} imports {import}.{function}, which the host interface \
                         {} does not implement (it implements: {provided})",
                        interface.name
                    ),
                );
            };
            check_value_types(name, import, function, &func)?;
            functions.insert(
                (import.to_string(), function.to_string()),
                BoundFn {
                    func: implementation.clone(),
                    params: func.params().map(|(_, ty)| ty).collect(),
                    results: func.results().collect(),
                },
            );
        }
    }
    Ok((!functions.is_empty()).then_some(BoundHost { functions }))
}

/// Refuses a function whose parameters or results hold something that is not a plain
/// value: a resource handle, a future, a stream.
fn check_value_types(name: &str, import: &str, function: &str, func: &ComponentFunc) -> Result<()> {
    let types = func.params().map(|(_, ty)| ty).chain(func.results());
    for ty in types {
        if let Some(bad) = not_a_value(&ty) {
            return input_error(
                InputErrorKind::UnsatisfiedImport,
                format!(
                    "component {name} imports {import}.{function}, whose signature holds {bad}: \
                     only values (records, variants, lists, strings, …) cross to the host \
                     process, not resources, futures, streams or (unstable) maps and \
                     fixed-length lists"
                ),
            );
        }
    }
    Ok(())
}

/// The first part of `ty` that is not a plain value, described.
fn not_a_value(ty: &Type) -> Option<String> {
    match ty {
        Type::Own(_) | Type::Borrow(_) => Some("a resource handle".into()),
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext => Some(describe_type(ty)),
        Type::List(list) => not_a_value(&list.ty()),
        Type::FixedLengthList(_) | Type::Map(_) => Some(describe_type(ty)),
        Type::Option(option) => not_a_value(&option.ty()),
        Type::Result(result) => result
            .ok()
            .and_then(|ty| not_a_value(&ty))
            .or_else(|| result.err().and_then(|ty| not_a_value(&ty))),
        Type::Record(record) => record.fields().find_map(|field| not_a_value(&field.ty)),
        Type::Tuple(tuple) => tuple.types().find_map(|ty| not_a_value(&ty)),
        Type::Variant(variant) => variant
            .cases()
            .find_map(|case| case.ty.and_then(|ty| not_a_value(&ty))),
        _ => None,
    }
}

impl HostCalls for BoundHost {
    fn call(
        &self,
        caller: &Caller<'_>,
        call: HostCallFrame,
        abandoned: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, String> {
        let HostCallFrame {
            interface,
            function,
            args,
        } = call;
        let label = format!("{interface}.{function}");
        let Some(bound) = self.functions.get(&(interface.clone(), function.clone())) else {
            return Err(format!(
                "{label} is not a host function this component imports"
            ));
        };
        trace!(worker = caller.name, pid = caller.pid, function = %label, "host call");
        // The worker checks this too; a worker that does not is refused the same way.
        if args.len() > MAX_HOST_CALL_LEN {
            return Err(format!(
                "the arguments of {label} are over {MAX_HOST_CALL_LEN} bytes (encoded)"
            ));
        }
        let args = wire::decode(&args, &bound.params)
            .map_err(|e| format!("the arguments of {label} do not fit its parameters: {e:#}"))?;
        let host_call = HostCall {
            interface: &interface,
            function: &function,
            caller,
            abandoned,
        };
        // A panicking closure must not take down the thread serving this worker (it would
        // leave the worker unreaped): it fails the call instead.
        let returned = std::panic::catch_unwind(AssertUnwindSafe(|| {
            (bound.func)(&host_call, &args, &bound.results)
        }));
        let results = match returned {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => return Err(format!("host function {label} failed: {e:#}")),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                warn!(function = %label, "host function panicked: {message}");
                return Err(format!("host function {label} panicked: {message}"));
            }
        };
        encode_results(&label, &bound.results, &results)
    }
}

/// The closure's results, checked against the function's result types and encoded; a
/// mismatch is the embedder's bug, reported to the guest as a failed call.
fn encode_results(label: &str, types: &[Type], results: &[Val]) -> Result<Vec<u8>, String> {
    if types.len() != results.len() {
        return Err(format!(
            "host function {label} returned {} values, but its WIT signature has {}",
            results.len(),
            types.len()
        ));
    }
    let encoded = wire::encode(results)
        .map_err(|e| format!("host function {label} returned a value that cannot cross: {e:#}"))?;
    if let Err(e) = wire::decode(&encoded, types) {
        let shown = results
            .iter()
            .map(|val| abbreviate(&format!("{val:?}")))
            .collect::<Vec<_>>()
            .join(", ");
        let expected = types
            .iter()
            .map(describe_type)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "host function {label} returned {shown}, but its result type is {expected} ({e:#})"
        ));
    }
    if encoded.len() > MAX_HOST_CALL_LEN {
        return Err(format!(
            "host function {label} returned {} bytes (encoded), over the {MAX_HOST_CALL_LEN}-byte \
             limit of a host call",
            encoded.len()
        ));
    }
    Ok(encoded)
}

/// At most a line of `text`, for messages.
fn abbreviate(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
