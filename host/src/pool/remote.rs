//! The cluster pool backend: tasks go to a NATS JetStream work queue, `wasmp serve` hosts
//! run them, and their results come back on this pool's own result subject.
//!
//! Each task has an id unique to this pool (`<client>-<n>`); a result for an id that is
//! not outstanding (a frozen host that woke up after its task ran elsewhere, a result
//! re-sent after a lost acknowledgement) is dropped and counted in
//! [`PoolStats::duplicates`], so every [`AsyncResult`] resolves exactly once.
//! What a host may reach is the host's business: this side sends only what a task
//! needs (guest directory paths, environment variable names), never grants.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::consumer;
use futures_util::StreamExt;
use futures_util::future::join_all;

use crate::cluster::wire::{self, Needs, Outcome, ResultMessage, TaskMessage};
use crate::cluster::{Cluster, objects, publish_stored, streams};
use crate::grants::Grants;
use crate::pool::PoolStats;
use crate::pool::backend::{Call, PoolBackend};
use crate::pool::task::{AsyncResult, ResultCell, TaskError, TaskResult};
use crate::runtime::component::Component;

/// A task submitted and not resolved.
struct Pending {
    cell: Arc<ResultCell>,
    component: Component,
    export: String,
}

#[derive(Default)]
struct State {
    outstanding: HashMap<String, Pending>,
    closed: bool,
    next: u64,
    succeeded: u64,
    failed: u64,
    retried: u64,
    duplicates: u64,
}

/// A component's bytes (kept alive, so their address stays theirs) and their object key.
type Uploaded = (Arc<[u8]>, String);

struct Shared {
    cluster: Cluster,
    /// This pool's id: its task and result subjects, and the prefix of its task ids.
    client: String,
    retries: u32,
    timeout: Option<Duration>,
    needs: Needs,
    state: Mutex<State>,
    idle: Condvar,
    /// Components already in the object store, by the address of their bytes (the `Arc`
    /// kept here keeps the address from being reused).
    uploaded: Mutex<HashMap<usize, Uploaded>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The object key of `component`, uploading it the first time.
    fn component_key(&self, component: &Component) -> Result<String> {
        let wasm = component.wasm();
        let address = wasm.as_ptr() as usize;
        if let Some((_, key)) = self
            .uploaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&address)
        {
            return Ok(key.clone());
        }
        let key = self
            .cluster
            .block_on(objects::upload(&self.cluster, wasm))
            .with_context(|| format!("failed to upload component {}", component.name()))?;
        self.uploaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(address, (wasm.clone(), key.clone()));
        Ok(key)
    }

    /// Resolves the task a result is for, once.
    fn resolve(&self, result: ResultMessage) {
        let mut state = self.lock();
        let Some(pending) = state.outstanding.remove(&result.id) else {
            state.duplicates += 1;
            tracing::debug!(task = %result.id, host = %result.host, "duplicate result dropped");
            return;
        };
        state.retried += u64::from(result.attempt.saturating_sub(1));
        let attempts = result.attempt;
        let outcome = task_result(&pending, result.outcome);
        if outcome.is_ok() {
            state.succeeded += 1;
        } else {
            state.failed += 1;
        }
        let idle = state.outstanding.is_empty();
        drop(state);
        pending.cell.complete(outcome, attempts);
        if idle {
            self.idle.notify_all();
        }
    }

    /// Resolves every outstanding task with `error`.
    fn fail_all(&self, error: &TaskError) {
        let pending: Vec<Pending> = {
            let mut state = self.lock();
            state.failed += state.outstanding.len() as u64;
            state.outstanding.drain().map(|(_, p)| p).collect()
        };
        for pending in pending {
            // Whether a host had started it is not known here.
            pending.cell.complete(Err(error.clone()), 0);
        }
        self.idle.notify_all();
    }
}

/// What a host reported, as the pool's result type.
fn task_result(pending: &Pending, outcome: Outcome) -> TaskResult {
    match outcome {
        Outcome::Returned { values } => pending
            .component
            .decode_results(&pending.export, &values)
            .map_err(|e| TaskError::Failed(format!("{e:#}"))),
        Outcome::Trapped { message } => Err(TaskError::Trapped(message)),
        Outcome::TimedOut => Err(TaskError::TimedOut),
        Outcome::WorkerLost { attempts } => Err(TaskError::WorkerLost { attempts }),
        Outcome::Exited { code } => Err(TaskError::Exited(code)),
        Outcome::Failed { message } => Err(TaskError::Failed(message)),
    }
}

/// A local task result as it travels back from a host.
pub(crate) fn outcome_of(result: &TaskResult) -> Outcome {
    use wasmtime::component::wasm_wave;
    match result {
        Ok(values) => match values.iter().map(wasm_wave::to_string).collect() {
            Ok(values) => Outcome::Returned { values },
            Err(e) => Outcome::Failed {
                message: format!("the result cannot be encoded: {e}"),
            },
        },
        Err(TaskError::Trapped(message)) => Outcome::Trapped {
            message: message.clone(),
        },
        Err(TaskError::TimedOut) => Outcome::TimedOut,
        Err(TaskError::WorkerLost { attempts }) => Outcome::WorkerLost {
            attempts: *attempts,
        },
        Err(TaskError::Exited(code)) => Outcome::Exited { code: *code },
        Err(error @ (TaskError::Failed(_) | TaskError::Terminated | TaskError::NotReady)) => {
            Outcome::Failed {
                message: error.to_string(),
            }
        }
    }
}

/// Forwards this pool's results, in order, from the first. The consumer is ephemeral
/// (a server restart forgets it, and async-nats 0.51 then reports "consumer not found"
/// rather than re-creating it): on any error it is opened again after the last result
/// seen, so none is lost and none comes twice.
async fn read_results(
    cluster: Cluster,
    subject: String,
    sender: crossbeam_channel::Sender<ResultMessage>,
) {
    let mut next_sequence = 1;
    loop {
        let opened = async {
            let stream = streams::results(&cluster).await?;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: subject.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: next_sequence,
                    },
                    ..Default::default()
                })
                .await?;
            anyhow::Ok(consumer.messages().await?)
        };
        let mut messages = match opened.await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "opening the result reader");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(error = %e, "result reader; reopening");
                    break;
                }
            };
            if let Ok(info) = message.info() {
                next_sequence = info.stream_sequence + 1;
            }
            match serde_json::from_slice::<ResultMessage>(&message.payload) {
                Ok(result) => {
                    if sender.send(result).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "malformed result message ignored"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) struct RemotePool {
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
    resolver: Mutex<Option<JoinHandle<()>>>,
}

impl RemotePool {
    /// Opens the streams and starts reading this pool's results.
    pub(crate) fn start(cluster: Cluster, retries: u32, grants: &Grants) -> Result<RemotePool> {
        let client = nuid::next().to_string();
        let needs = Needs {
            dirs: grants
                .dirs()
                .iter()
                .map(|d| d.guest().to_string())
                .collect(),
            env: grants
                .get_env()
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
        };
        let subject = cluster.names().result_subject(&client);
        cluster.block_on(async {
            streams::tasks(&cluster).await?;
            streams::results(&cluster).await
        })?;
        let shared = Arc::new(Shared {
            cluster: cluster.clone(),
            client,
            retries,
            timeout: grants.get_timeout(),
            needs,
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            uploaded: Mutex::new(HashMap::new()),
        });
        // Results are resolved on an ordinary thread: callbacks may block, or submit.
        let (sender, receiver) = crossbeam_channel::unbounded::<ResultMessage>();
        let reader = cluster.spawn(read_results(cluster.clone(), subject, sender));
        let resolver = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wasmp-results".into())
                .spawn(move || {
                    for result in receiver {
                        shared.resolve(result);
                    }
                })
                .context("failed to start the result thread")?
        };
        Ok(RemotePool {
            shared,
            reader,
            resolver: Mutex::new(Some(resolver)),
        })
    }

    /// Wait for outstanding tasks, at most `timeout`; whether none is left.
    fn wait_outstanding(&self, timeout: Option<Duration>) -> bool {
        let state = self.shared.lock();
        let state = crate::sync::wait_while(&self.shared.idle, state, timeout, |state| {
            !state.outstanding.is_empty()
        });
        state.outstanding.is_empty()
    }
}

impl PoolBackend for RemotePool {
    fn submit(&self, calls: Vec<Call>, _chunked: bool) -> Result<Vec<AsyncResult>> {
        let shared = &self.shared;
        let names = shared.cluster.names();
        let reply = names.result_subject(&shared.client);
        let subject = names.task_subject(&shared.client);
        let mut messages = Vec::with_capacity(calls.len());
        for call in &calls {
            messages.push(TaskMessage {
                v: wire::VERSION,
                id: String::new(),
                reply: reply.clone(),
                component: shared.component_key(&call.component)?,
                name: call.component.name().to_string(),
                export: call.export.clone(),
                args: call.args.clone(),
                timeout_ms: call.timeout.or(shared.timeout).map(crate::protocol::millis),
                retries: shared.retries,
                needs: shared.needs.clone(),
            });
        }
        let mut results = Vec::with_capacity(calls.len());
        {
            let mut state = shared.lock();
            if state.closed {
                anyhow::bail!("the pool is closed: no more tasks can be submitted");
            }
            for (message, call) in messages.iter_mut().zip(calls) {
                state.next += 1;
                message.id = format!("{}-{}", shared.client, state.next);
                let cell = ResultCell::new();
                results.push(AsyncResult::new(cell.clone()));
                state.outstanding.insert(
                    message.id.clone(),
                    Pending {
                        cell,
                        component: call.component,
                        export: call.export,
                    },
                );
            }
        }
        // Pipelined: every publish in flight at once, each retried through reconnects.
        let cluster = &shared.cluster;
        let published = cluster.block_on(join_all(messages.iter().map(|message| {
            publish_stored(
                cluster,
                &subject,
                &message.id,
                None,
                message.to_json().into(),
            )
        })));
        for (message, outcome) in messages.iter().zip(published) {
            if let Err(e) = outcome {
                shared.resolve(ResultMessage {
                    v: wire::VERSION,
                    id: message.id.clone(),
                    host: String::new(),
                    attempt: 0,
                    outcome: Outcome::Failed {
                        message: format!("the task could not be submitted: {e:#}"),
                    },
                });
            }
        }
        Ok(results)
    }

    fn close(&self) {
        self.shared.lock().closed = true;
    }

    fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    fn join(&self) {
        // No workers of its own: joined once every task has its result.
        self.wait_outstanding(None);
    }

    fn terminate(&self) {
        self.close();
        // Tasks not yet taken by a host are removed; those running finish there and their
        // results are dropped as duplicates.
        let shared = &self.shared;
        let subject = shared.cluster.names().task_subject(&shared.client);
        if !shared.lock().outstanding.is_empty() {
            let purged = shared.cluster.block_on(async {
                let stream = streams::tasks(&shared.cluster).await?;
                stream
                    .purge()
                    .filter(subject)
                    .await
                    .map_err(anyhow::Error::from)
            });
            if let Err(e) = purged {
                tracing::warn!(error = %e, "could not remove the pool's queued tasks");
            }
        }
        shared.fail_all(&TaskError::Terminated);
    }

    fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        self.wait_outstanding(timeout)
    }

    fn stats(&self) -> PoolStats {
        let state = self.shared.lock();
        PoolStats {
            succeeded: state.succeeded,
            failed: state.failed,
            retried: state.retried,
            workers_started: 0,
            outstanding: state.outstanding.len(),
            duplicates: state.duplicates,
        }
    }
}

impl Drop for RemotePool {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(resolver) = self
            .resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            // The reader's sender goes with the aborted task; the thread then ends.
            let _ = resolver.join();
        }
    }
}
