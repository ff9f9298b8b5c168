//! The messages of the host ⇄ worker conversation.
//!
//! A worker's life: the host spawns it; it says [`ToHost::Hello`]; the host sends
//! [`ToWorker::Start`]; while the guest runs, each queue call is a [`ToHost::Call`] answered
//! by one [`ToWorker::Reply`], and each call of an embedder's host function is a
//! [`ToHost::HostCall`] answered by one [`ToWorker::HostReply`]; the worker ends with
//! [`ToHost::Finished`] and exits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::QueueError;
use crate::grants::dir::DirGrant;
use crate::grants::limits::Limits;
use crate::grants::network::Network;

/// Bumped whenever a message changes shape; a worker program of another version is refused.
pub(crate) const PROTOCOL_VERSION: u32 = 4;

/// The most a host call's encoded arguments, or its encoded results, may weigh. Checked by
/// whichever side encodes them (the worker for arguments, the host for results), so that a
/// call over it becomes a clear error (a trap in the guest) instead of a frame the other
/// side must refuse; well under [`MAX_FRAME_LEN`](super::MAX_FRAME_LEN).
pub(crate) const MAX_HOST_CALL_LEN: usize = 16 * 1024 * 1024;

/// Host → worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run this guest, report, exit (a `Process`).
    Start(Box<StartSpec>),
    /// Become a pool worker: run [`ToWorker::Job`]s until [`ToWorker::Shutdown`] or the
    /// channel closes.
    Serve(Box<ServeSpec>),
    /// Tasks to run in order, each in a fresh instance, each answered by a
    /// [`ToHost::TaskDone`].
    Job(Vec<TaskSpec>),
    /// Exit once the current job is done (recycling).
    Shutdown,
    /// The answer to the worker's last [`ToHost::Call`].
    Reply(QueueReply),
    /// The answer to the worker's last [`ToHost::HostCall`]: the encoded results, or why
    /// the host function failed (the guest traps with it).
    HostReply(#[serde(with = "host_reply")] Result<Vec<u8>, String>),
}

/// Worker → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToHost {
    /// The first frame: the worker's pid and protocol version.
    Hello { pid: u32, version: u32 },
    /// A queue call from the guest; the guest waits for the [`ToWorker::Reply`].
    Call(QueueCall),
    /// A call of an embedder-defined host function; the guest waits for the
    /// [`ToWorker::HostReply`].
    HostCall(HostCall),
    /// The guest is done; the worker exits right after.
    Finished(Outcome),
    /// A pool worker is set up (runtime built, sandbox raised) and waits for jobs.
    Ready,
    /// The guest ran into one of its limits; sent before the run's `Finished` or
    /// `TaskDone`, at most once per run.
    LimitHit(LimitHit),
    /// A pool task is done; `rss_kb` is the worker's peak resident memory so far.
    TaskDone {
        id: u64,
        outcome: Outcome,
        rss_kb: u64,
    },
}

/// A limit a guest ran into, and what it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LimitHit {
    pub(crate) limit: GuestLimit,
    /// What the guest asked for and the limit, in words.
    pub(crate) detail: String,
}

/// The limits a worker enforces and reports (the host enforces the time limit and a pool's
/// memory threshold itself). A closed set on the wire, so that a worker cannot invent
/// labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum GuestLimit {
    MaxMemorySize,
    MaxTableElements,
    Fuel,
    MaxWasmStack,
}

impl GuestLimit {
    /// The limit's key, as `-W` spells it.
    pub(crate) fn key(self) -> &'static str {
        match self {
            GuestLimit::MaxMemorySize => "max-memory-size",
            GuestLimit::MaxTableElements => "max-table-elements",
            GuestLimit::Fuel => "fuel",
            GuestLimit::MaxWasmStack => "max-wasm-stack",
        }
    }
}

/// What a guest may reach, and who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Grants {
    /// The worker's name, as the guest sees it through `process.name`.
    pub(crate) name: String,
    /// The guest's argv, `argv[0]` included.
    pub(crate) args: Vec<String>,
    /// The guest's environment: only what was granted.
    pub(crate) env: Vec<(String, String)>,
    /// The guest's preopened directories: only what was granted.
    pub(crate) dirs: Vec<DirGrant>,
    /// The queues the guest may use, with each one's maximum message size: the worker
    /// refuses what the host would refuse without a round trip (the host checks again).
    pub(crate) queues: Vec<(String, u64)>,
    /// How much the guest may use.
    pub(crate) limits: Limits,
    /// Network access (none unless granted).
    pub(crate) network: Network,
    /// The embedder-defined host interfaces (`app:host/kv`) the worker links, as calls
    /// back to the host.
    pub(crate) host_interfaces: Vec<String>,
}

/// How a pool worker runs its tasks.
impl Grants {
    /// What a worker named `name`, with `args` as its argv, is told of what it was granted.
    pub(crate) fn new(name: String, args: Vec<String>, granted: &crate::grants::Grants) -> Self {
        Grants {
            name,
            args,
            env: granted.get_env().to_vec(),
            dirs: granted.dirs().to_vec(),
            queues: granted.queues().limits(),
            limits: *granted.get_limits(),
            network: granted.get_network(),
            host_interfaces: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServeSpec {
    pub(crate) grants: Grants,
    /// Keep one instance per component across tasks (guest state persists, as module
    /// globals do in a Python pool worker) instead of a fresh instance per task.
    pub(crate) reuse_instances: bool,
    /// Report peak memory with each task (reading it costs a few microseconds).
    pub(crate) track_memory: bool,
    /// The compile cache, the one place besides the grants the worker may read.
    pub(crate) cache_dir: PathBuf,
}

/// One pool task: call `export` of the component compiled at `cwasm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskSpec {
    pub(crate) id: u64,
    pub(crate) cwasm: PathBuf,
    pub(crate) export: String,
    /// Arguments in WAVE syntax, type-checked by the host.
    pub(crate) args: Vec<String>,
    pub(crate) timeout_ms: Option<u64>,
    /// Tasks of one `map` chunk (consecutive in a job, with the same number) run in one
    /// instance, as a Python pool's chunk runs in one interpreter.
    pub(crate) chunk: Option<u64>,
}

/// Everything a worker needs to run one guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StartSpec {
    pub(crate) grants: Grants,
    /// The compiled component, in the host's private compile cache.
    pub(crate) cwasm: PathBuf,
    /// What to call.
    pub(crate) entry: Entry,
    /// Wall-clock limit for the guest, in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// The host's stdin arrives with this frame as an `SCM_RIGHTS` file descriptor, for the
    /// guest's stdin.
    pub(crate) stdin: bool,
}

/// The guest's entry point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Entry {
    /// The command's `wasi:cli/run` (`fn main`).
    Run,
    /// An exported function, with its arguments in WAVE syntax (already type-checked by the
    /// host against the export's signature).
    Invoke { export: String, args: Vec<String> },
}

/// How the guest ended, as the worker saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// `main` returned (0) or the guest called `exit(code)`.
    Exited(i32),
    /// The invoked export returned these values (WAVE syntax).
    Returned(Vec<String>),
    /// The guest trapped; the message says where and why.
    Trapped(String),
    /// The guest ran past its wall-clock limit and was interrupted.
    TimedOut,
    /// The worker could not run the guest (loading or instantiating failed).
    Failed(String),
}

/// A queue operation requested by a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum QueueCall {
    Put {
        queue: String,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
        block: bool,
    },
    PutMany {
        queue: String,
        #[serde(with = "bytes_list")]
        messages: Vec<Vec<u8>>,
    },
    Get {
        queue: String,
        timeout_ms: Option<u64>,
        block: bool,
    },
    GetMany {
        queue: String,
        max: u32,
        timeout_ms: Option<u64>,
    },
    Close {
        queue: String,
    },
    Len {
        queue: String,
    },
}

/// A guest's call of a host function: `function` of the imported `interface` (its name as
/// the component imports it, `app:host/kv@0.1.0`), its arguments encoded (`value::wire`;
/// opaque here). The host decodes them with the component's own import types, not the
/// worker's word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostCall {
    pub(crate) interface: String,
    pub(crate) function: String,
    #[serde(with = "serde_bytes")]
    pub(crate) args: Vec<u8>,
}

/// A host reply's results travel as one byte string.
mod host_reply {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub(super) fn serialize<S: Serializer>(
        reply: &Result<Vec<u8>, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        reply.as_ref().map(|b| Bytes::new(b)).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Result<Vec<u8>, String>, D::Error> {
        Ok(Result::<ByteBuf, String>::deserialize(d)?.map(ByteBuf::into_vec))
    }
}

/// The host's answer to a [`QueueCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum QueueReply {
    Done,
    Message(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Messages(#[serde(with = "bytes_list")] Vec<Vec<u8>>),
    Len(u64),
    Error(QueueError),
}

/// Message bodies travel as byte strings (one length and one copy), not as sequences of
/// `u8` (serde's default: one call per byte, ≈10× slower for 64 KiB messages).
mod bytes_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub(super) fn serialize<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|m| Bytes::new(m)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<ByteBuf>::deserialize(d)?
            .into_iter()
            .map(ByteBuf::into_vec)
            .collect())
    }
}
