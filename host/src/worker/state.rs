//! The store's data: WASI state plus the `wasmp:worker` imports.
//!
//! Queue calls are forwarded to the host over the channel and block until it answers, so a
//! queue lives in exactly one place (the host's broker) whichever process touches it. Calls
//! of the embedder's host interfaces travel the same way: the closures live in the host.

use std::collections::{HashMap, HashSet};

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable, Val};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::Worker;
use super::bindings::wasmp::worker::{process, queue};
use super::channel::Channel;
use crate::error::QueueError;
use crate::protocol::{
    HostCall, MAX_HOST_CALL_LEN, QueueCall, QueueReply, ToHost, ToWorker, host_interface_serves,
};

/// Everything a guest's imports reach.
pub(crate) struct WorkerState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) name: String,
    pub(crate) parent_pid: u32,
    /// `None` when the linker is only used to check a component's imports in the host.
    pub(crate) channel: Option<Channel>,
    /// Granted queue names and their maximum message sizes.
    pub(crate) queues: HashMap<String, u64>,
    /// Memory, instance and table limits (the store's limiter), and the first one hit.
    pub(crate) limits: super::limiter::Limiter,
}

impl WasiView for WorkerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The host interface a core module's `proc_exit` is routed to: preview-1's exit with its
/// status kept, which neither the adapter nor `wasi:cli/exit` (a `u8`) can carry.
pub(crate) const PROC_EXIT_INTERFACE: &str = "wasmp:core-module/exit@0.1.0";
pub(crate) const PROC_EXIT: &str = "proc-exit";

/// What the routed `proc_exit(status)` does, as `wasmtime run`'s preview-1 layer: exit with
/// `status` below 126; above, fail with wasmtime's message.
fn proc_exit(status: u32) -> wasmtime::Error {
    match i32::try_from(status) {
        Ok(code) if code < 126 => wasmtime::format_err!(wasmtime_wasi::I32Exit(code)),
        _ => wasmtime::format_err!("exit with invalid exit status outside of [0..126)"),
    }
}

/// The linker every worker instantiates against: WASI p2, `wasmp:worker`, and the
/// `proc_exit` route of adapted preview-1 modules.
///
/// The host builds it too, without running anything, to check a component's imports
/// before spawning a worker for it.
pub(crate) fn new_linker(engine: &Engine) -> anyhow::Result<Linker<WorkerState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Worker::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    linker
        .instance(PROC_EXIT_INTERFACE)?
        .func_wrap(PROC_EXIT, |_, (status,): (u32,)| -> wasmtime::Result<()> {
            Err(proc_exit(status))
        })?;
    Ok(linker)
}

/// Links every function of `component`'s imports that one of the embedder's `interfaces`
/// serves (as `protocol::host_interface_serves` matches them) as a call to the host, typed
/// dynamically by the import itself. `defined` remembers what the linker already has, for a
/// linker shared by several components. Resources are left out: the host refuses them
/// when it loads the component.
pub(crate) fn link_host_imports(
    linker: &mut Linker<WorkerState>,
    component: &Component,
    interfaces: &[String],
    defined: &mut HashSet<(String, String)>,
) -> anyhow::Result<()> {
    if interfaces.is_empty() {
        return Ok(());
    }
    let engine = linker.engine().clone();
    for (import, item) in component.component_type().imports(&engine) {
        if !interfaces
            .iter()
            .any(|registered| host_interface_serves(registered, import))
        {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut linked = linker.instance(import)?;
        for (function, export) in instance.exports(&engine) {
            if !matches!(export.ty, ComponentItem::ComponentFunc(_))
                || !defined.insert((import.to_string(), function.to_string()))
            {
                continue;
            }
            let interface = import.to_string();
            let name = function.to_string();
            linked.func_new(function, move |mut store, ty, params, results| {
                store
                    .data_mut()
                    .host_call(&interface, &name, &ty, params, results)
            })?;
        }
    }
    Ok(())
}

impl process::Host for WorkerState {
    fn pid(&mut self) -> u32 {
        std::process::id()
    }

    fn ppid(&mut self) -> u32 {
        self.parent_pid
    }

    fn name(&mut self) -> String {
        self.name.clone()
    }
}

impl WorkerState {
    /// Refuses locally what the host would refuse: an ungranted queue, an oversize message.
    fn check(
        &self,
        queue: &str,
        sizes: impl IntoIterator<Item = usize>,
    ) -> Result<(), queue::QueueError> {
        let Some(&limit) = self.queues.get(queue) else {
            return Err(queue::QueueError::Unknown(queue.to_string()));
        };
        if sizes.into_iter().any(|size| size as u64 > limit) {
            return Err(queue::QueueError::TooLarge(limit));
        }
        Ok(())
    }

    /// Sends a queue call to the host and waits for its answer. A host that is gone is not
    /// an answer the guest could act on: the worker exits (the host, if alive, sees EOF).
    fn call(&mut self, call: QueueCall) -> Result<QueueReply, queue::QueueError> {
        let channel = self
            .channel
            .as_ref()
            .expect("queue calls need a channel to the host");
        let reply = channel.call(&ToHost::Call(call));
        match reply {
            Ok(Some(ToWorker::Reply(QueueReply::Error(fault)))) => Err(fault.into()),
            Ok(Some(ToWorker::Reply(reply))) => Ok(reply),
            other => unanswered("a queue call", other),
        }
    }
}

impl WorkerState {
    /// A guest's call of a host function: encodes the arguments, waits for the host's
    /// answer, decodes the results with the import's result types. The host function's
    /// error, or arguments too large to send, trap the guest with the message.
    fn host_call(
        &mut self,
        interface: &str,
        function: &str,
        ty: &ComponentFunc,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let label = format!("{interface}.{function}");
        let args = crate::value::wire::encode(params).map_err(|e| {
            wasmtime::format_err!("cannot send the arguments of {label} to the host: {e:#}")
        })?;
        if args.len() > MAX_HOST_CALL_LEN {
            return Err(wasmtime::format_err!(
                "the arguments of {label} are over {MAX_HOST_CALL_LEN} bytes (encoded): too \
                 large to send to the host"
            ));
        }
        let Some(channel) = self.channel.as_ref() else {
            return Err(wasmtime::format_err!("{label}: no host to call"));
        };
        let reply = channel.call(&ToHost::HostCall(HostCall {
            interface: interface.to_string(),
            function: function.to_string(),
            args,
        }));
        let values = match reply {
            Ok(Some(ToWorker::HostReply(Ok(values)))) => values,
            Ok(Some(ToWorker::HostReply(Err(message)))) => {
                return Err(wasmtime::format_err!("{message}"));
            }
            other => unanswered("a host call", other),
        };
        let types: Vec<_> = ty.results().collect();
        let values = crate::value::wire::decode(&values, &types).map_err(|e| {
            wasmtime::format_err!("the host answered {label} with values that do not fit: {e:#}")
        })?;
        for (slot, value) in results.iter_mut().zip(values) {
            *slot = value;
        }
        Ok(())
    }
}

/// A host that is gone, or answers a call with something else, is not an answer the guest
/// could act on: the worker exits (the host, if alive, sees EOF).
fn unanswered(call: &str, reply: anyhow::Result<Option<ToWorker>>) -> ! {
    match reply {
        Ok(other) => eprintln!("wasmp worker: the host answered {call} with {other:?}"),
        Err(e) => eprintln!("wasmp worker: lost the host during {call}: {e:#}"),
    }
    std::process::exit(crate::exit::code::FAILED)
}

impl From<QueueError> for queue::QueueError {
    fn from(fault: QueueError) -> Self {
        match fault {
            QueueError::Closed => queue::QueueError::Closed,
            QueueError::Timeout => queue::QueueError::Timeout,
            QueueError::Full => queue::QueueError::Full,
            QueueError::TooLarge(limit) => queue::QueueError::TooLarge(limit),
            QueueError::Unknown(name) => queue::QueueError::Unknown(name),
        }
    }
}

/// A reply of the wrong shape for the call is a host bug; the guest sees it as an error
/// naming the queue rather than a panic.
fn unexpected(queue: &str) -> queue::QueueError {
    queue::QueueError::Unknown(format!("{queue} (unexpected reply from the host)"))
}

impl queue::Host for WorkerState {
    fn put(&mut self, queue: String, message: Vec<u8>) -> Result<(), queue::QueueError> {
        self.check(&queue, [message.len()])?;
        self.call(QueueCall::Put {
            queue,
            message,
            block: true,
        })
        .map(drop)
    }

    fn try_put(&mut self, queue: String, message: Vec<u8>) -> Result<(), queue::QueueError> {
        self.check(&queue, [message.len()])?;
        self.call(QueueCall::Put {
            queue,
            message,
            block: false,
        })
        .map(drop)
    }

    fn put_many(&mut self, queue: String, messages: Vec<Vec<u8>>) -> Result<(), queue::QueueError> {
        self.call(QueueCall::PutMany { queue, messages }).map(drop)
    }

    fn get(
        &mut self,
        queue: String,
        timeout_ms: Option<u64>,
    ) -> Result<Vec<u8>, queue::QueueError> {
        self.check(&queue, [])?;
        match self.call(QueueCall::Get {
            queue: queue.clone(),
            timeout_ms,
            block: true,
        })? {
            QueueReply::Message(Some(message)) => Ok(message),
            _ => Err(unexpected(&queue)),
        }
    }

    fn try_get(&mut self, queue: String) -> Result<Option<Vec<u8>>, queue::QueueError> {
        self.check(&queue, [])?;
        match self.call(QueueCall::Get {
            queue: queue.clone(),
            timeout_ms: None,
            block: false,
        })? {
            QueueReply::Message(message) => Ok(message),
            _ => Err(unexpected(&queue)),
        }
    }

    fn get_many(
        &mut self,
        queue: String,
        max: u32,
        timeout_ms: Option<u64>,
    ) -> Result<Vec<Vec<u8>>, queue::QueueError> {
        self.check(&queue, [])?;
        match self.call(QueueCall::GetMany {
            queue: queue.clone(),
            max,
            timeout_ms,
        })? {
            QueueReply::Messages(messages) => Ok(messages),
            _ => Err(unexpected(&queue)),
        }
    }

    fn close(&mut self, queue: String) -> Result<(), queue::QueueError> {
        self.check(&queue, [])?;
        self.call(QueueCall::Close { queue }).map(drop)
    }

    fn len(&mut self, queue: String) -> Result<u64, queue::QueueError> {
        self.check(&queue, [])?;
        match self.call(QueueCall::Len {
            queue: queue.clone(),
        })? {
            QueueReply::Len(len) => Ok(len),
            _ => Err(unexpected(&queue)),
        }
    }
}
