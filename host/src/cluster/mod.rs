//! The connection to the NATS JetStream server that pools and queues across machines share.
//!
//! A [`Cluster`] is a synchronous facade over `async-nats`: one private tokio runtime per
//! connection, and every call a `block_on` from an ordinary thread, so the public API has
//! no async in it. Long-running loops (the result reader of a cluster pool, the host's
//! fetch loop) are tokio tasks that hand their work to ordinary threads over channels:
//! user callbacks never run on the runtime's threads.
//!
//! This module is the transport only: names ([`names`]), the JSON messages that travel
//! ([`wire`]), the streams and their settings ([`streams`]), components by content hash
//! ([`objects`]), dead letters ([`dead`]) and the hosts' heartbeats ([`hosts`]). It knows
//! nothing of pools, processes or wasmtime; `pool::remote` (the client) and `serve` (the
//! host) build on it. May see only `error`.

pub(crate) mod dead;
pub(crate) mod hosts;
pub(crate) mod names;
pub(crate) mod objects;
pub(crate) mod streams;
pub(crate) mod wire;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream;

use crate::cluster::names::Names;

/// The namespace used when none is given: lets several users or tests share one server.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The environment variable naming the NATS server when no URL is given.
pub const NATS_URL_ENV: &str = "WASMP_NATS_URL";

/// Why a cluster operation failed, where callers branch on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterError {
    /// The NATS server could not be reached when connecting (the CLI exits 69).
    Unreachable {
        /// The server's URL.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// A namespace, pool or queue name that NATS cannot carry.
    BadName(String),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Unreachable { url, reason } => write!(
                f,
                "cannot reach the NATS server at {url}: {reason} (is `nats-server -js` running \
                 there?)"
            ),
            ClusterError::BadName(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ClusterError {}

/// Settings for a [`Cluster`] connection.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClusterBuilder {
    url: String,
    namespace: String,
    ping_interval: Duration,
    connect_timeout: Duration,
}

impl ClusterBuilder {
    /// The namespace (default `default`): pools, queues and hosts of one namespace see
    /// each other and nothing of another. `[A-Za-z0-9_-]{1,32}`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How often the client pings the server; a dead connection is noticed after two
    /// missed pings (default 10 s; tests use ~1 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Connects. Mid-run the client reconnects by itself, with back-off, forever; only the
    /// first connection must succeed.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unreachable`] when the server does not answer,
    /// [`ClusterError::BadName`] for a namespace NATS cannot carry.
    pub fn connect(self) -> Result<Cluster> {
        let names = Names::new(&self.namespace)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wasmp-nats")
            .enable_all()
            .build()
            .context("failed to start the NATS client's runtime")?;
        let options = async_nats::ConnectOptions::new()
            .name(format!("wasmp-{}", std::process::id()))
            .ping_interval(self.ping_interval)
            .connection_timeout(self.connect_timeout)
            .max_reconnects(None)
            .event_callback(|event| async move {
                tracing::info!(%event, "NATS connection");
            });
        let url = self.url.clone();
        let client = runtime
            .block_on(options.connect(url.as_str()))
            .map_err(|e| ClusterError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let check = Self::check_jetstream(&runtime, &client, &url);
        // The context spawns its acknowledgement task on the current runtime.
        let jetstream = {
            let _runtime = runtime.enter();
            jetstream::new(client)
        };
        let cluster = Cluster {
            inner: Arc::new(Inner {
                runtime: Some(runtime),
                jetstream,
                names,
                url,
            }),
        };
        check?;
        Ok(cluster)
    }

    /// A server without JetStream (`nats-server` without `-js`) answers plain NATS but
    /// not JetStream: say so at connection rather than at the first task. (async-nats's
    /// typed account info does not parse 2.9's answer, so the raw one is read.)
    fn check_jetstream(
        runtime: &tokio::runtime::Runtime,
        client: &async_nats::Client,
        url: &str,
    ) -> Result<()> {
        let info = runtime.block_on(client.request("$JS.API.INFO", bytes::Bytes::new()));
        let problem = match info {
            Ok(reply) => match serde_json::from_slice::<serde_json::Value>(&reply.payload) {
                Ok(json) => json.get("error").map(|error| error.to_string()),
                Err(e) => Some(e.to_string()),
            },
            Err(e) => Some(e.to_string()),
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(ClusterError::Unreachable {
                url: url.to_string(),
                reason: format!(
                    "JetStream is not available ({problem}); start the server with -js"
                ),
            }
            .into()),
        }
    }
}

/// A connection to a NATS JetStream server, in one namespace. Cheap to clone.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// let cluster = wasmp::Cluster::builder("nats://127.0.0.1:4222").namespace("demo").connect()?;
/// for host in cluster.status()?.hosts {
///     println!("{} runs {} of {} tasks", host.id, host.running, host.slots);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    /// `Option` only so that `Drop` can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    jetstream: jetstream::Context,
    names: Names,
    url: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks on its tasks, and panics inside another runtime.
            runtime.shutdown_background();
        }
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.inner.url)
            .field("namespace", &self.inner.names.namespace())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Settings for a connection to the server at `url` (`nats://host:port`).
    pub fn builder(url: impl Into<String>) -> ClusterBuilder {
        ClusterBuilder {
            url: url.into(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            ping_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
        }
    }

    /// Connects to `url` in the default namespace.
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::connect`].
    pub fn connect(url: impl Into<String>) -> Result<Cluster> {
        Cluster::builder(url).connect()
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.inner.names.namespace()
    }

    pub(crate) fn names(&self) -> &Names {
        &self.inner.names
    }

    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.inner.jetstream
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.inner.runtime.as_ref().expect("taken only on drop")
    }

    /// Runs `future` to completion from an ordinary thread (never from a runtime thread).
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime().block_on(future)
    }

    /// Starts `future` on the connection's runtime.
    pub(crate) fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime().spawn(future)
    }

    /// The hosts, tasks, queues and dead letters of the namespace.
    ///
    /// # Errors
    ///
    /// When the server does not answer.
    pub fn status(&self) -> Result<hosts::ClusterStatus> {
        self.block_on(hosts::status(self))
    }

    /// The dead letters: tasks that kept killing their workers, or could not run anywhere.
    ///
    /// # Errors
    ///
    /// When the server does not answer.
    pub fn dead_letters(&self) -> Result<Vec<dead::DeadLetter>> {
        self.block_on(dead::list(self))
    }

    /// Submits a dead letter's task again (a fresh delivery count) and removes it from the
    /// dead letters. Its result goes where the original's would have gone.
    ///
    /// # Errors
    ///
    /// When no dead letter has that sequence number, or the server does not answer.
    pub fn retry_dead_letter(&self, sequence: u64) -> Result<dead::DeadLetter> {
        self.block_on(dead::retry(self, sequence))
    }
}

/// Retries `attempt` with back-off while the server is away (reconnecting), up to
/// `deadline`; the last error otherwise. Used where giving up would lose work: a result
/// must be stored before its task is acknowledged.
pub(crate) async fn with_retry<T, E, F, Fut>(
    what: &str,
    deadline: Duration,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: fmt::Display,
{
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if started.elapsed() < deadline => {
                tracing::debug!(what, error = %e, ?delay, "retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(e) => anyhow::bail!("{what}: {e}"),
        }
    }
}

/// How long a publish keeps retrying while the server is away before the caller is told.
pub(crate) const PUBLISH_DEADLINE: Duration = Duration::from_secs(60);

/// Publishes `payload` on `subject` and waits until the stream has stored it, retrying
/// through reconnects with the same message id (so a retry after a lost acknowledgement
/// is stored once).
pub(crate) async fn publish_stored(
    cluster: &Cluster,
    subject: &str,
    message_id: &str,
    headers: Option<async_nats::HeaderMap>,
    payload: bytes::Bytes,
) -> Result<()> {
    with_retry("publish", PUBLISH_DEADLINE, || async {
        let mut message = jetstream::message::PublishMessage::build().payload(payload.clone());
        if let Some(headers) = &headers {
            message = message.headers(headers.clone());
        }
        let message = message.message_id(message_id);
        cluster
            .jetstream()
            .send_publish(subject.to_string(), message)
            .await?
            .await
    })
    .await
    .with_context(|| format!("failed to publish to {subject}"))?;
    Ok(())
}
