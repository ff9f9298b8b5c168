//! The store's data: WASI state plus the `wasmp:worker` imports.
//!
//! Queue calls are forwarded to the host over the channel and block until it answers, so a
//! queue lives in exactly one place (the host's broker) whichever process touches it.

use std::collections::HashMap;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::Worker;
use super::bindings::wasmp::worker::{process, queue};
use super::channel::Channel;
use crate::error::QueueError;
use crate::protocol::{QueueCall, QueueReply, ToHost, ToWorker};

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
    /// Memory, instance and table limits (the store's limiter).
    pub(crate) limits: wasmtime::StoreLimits,
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
            Ok(other) => {
                eprintln!("wasmp worker: the host answered a queue call with {other:?}");
                std::process::exit(crate::exit::code::FAILED)
            }
            Err(e) => {
                eprintln!("wasmp worker: lost the host during a queue call: {e:#}");
                std::process::exit(crate::exit::code::FAILED)
            }
        }
    }
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
