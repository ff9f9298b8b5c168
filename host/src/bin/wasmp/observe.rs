//! `--events` and `--metrics`: watching a run from outside.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Args;
use wasmp::{EventRecord, Metrics, MetricsServer, Queue, RuntimeBuilder};

use crate::common::say;

#[derive(Args)]
pub(crate) struct ObserveOptions {
    /// Write one JSON line per event to FILE ("-": stdout): processes started and exited,
    /// tasks started, done, failed and retried, pool workers started, lost, recycled and
    /// stopped (the schema is in README).
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics while running (e.g.
    /// 127.0.0.1:9898; port 0 picks a free one; the address is printed on stderr).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// What `--events` and `--metrics` set up; the endpoint stops when this is dropped.
pub(crate) struct Observing {
    metrics: Option<Arc<Metrics>>,
    _server: Option<MetricsServer>,
}

impl ObserveOptions {
    /// Subscribes the event file and the metrics to the runtime `builder` makes, and
    /// starts the metrics endpoint.
    pub(crate) fn apply(&self, mut builder: RuntimeBuilder) -> Result<(RuntimeBuilder, Observing)> {
        if let Some(path) = &self.events {
            let sink: Box<dyn Write + Send> = if path.as_os_str() == "-" {
                Box::new(std::io::stdout())
            } else {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open the events file {}", path.display()))?;
                Box::new(std::io::LineWriter::new(file))
            };
            let sink = Mutex::new(sink);
            builder = builder.on_event(move |event| {
                let line = serde_json::to_string(&EventRecord::now(event)).unwrap_or_else(|e| {
                    serde_json::json!({ "event": "unwritable", "error": e.to_string() }).to_string()
                });
                let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
                // A reader that went away must not stop the work.
                let _ = writeln!(sink, "{line}");
            });
        }
        let (metrics, server) = match self.metrics {
            Some(addr) => {
                let metrics = Arc::new(Metrics::new());
                let server = metrics.serve(addr)?;
                say!("wasmp: metrics at http://{}/metrics", server.addr());
                let observer = metrics.clone();
                builder = builder.on_event(move |event| observer.observe(event));
                (Some(metrics), Some(server))
            }
            None => (None, None),
        };
        Ok((
            builder,
            Observing {
                metrics,
                _server: server,
            },
        ))
    }
}

impl Observing {
    /// Reports `queue` in the metrics (length, puts, gets).
    pub(crate) fn watch(&self, queue: &Queue) {
        if let Some(metrics) = &self.metrics {
            metrics.watch_queue(queue);
        }
    }
}
