//! A pool worker: a warm process that runs task after task, each in a fresh instance.
//!
//! Compiled components stay loaded (and pre-linked) across tasks, so a task costs an
//! instantiation, not a process start; a fresh `Store` per task means no guest state leaks
//! from one task to the next. The tasks of one `map` chunk share an instance (as the items
//! of a Python chunk share an interpreter): a chunk, not an item, costs an instantiation.

use std::time::Duration;

use anyhow::Result;

use super::channel::Channel;
use super::run::Runner;
use super::sandbox;
use crate::protocol::{Entry, ServeSpec, ToHost, ToWorker};

/// Serves jobs until told to shut down or the host closes the channel; the exit code.
pub(crate) fn serve(spec: &ServeSpec, channel: &Channel) -> Result<u8> {
    let mut runner = Runner::for_pool(&spec.grants.limits, spec.reuse_instances)?;
    runner.serve_host_interfaces(&spec.grants.host_interfaces);
    let grants = &spec.grants;
    sandbox::enter(&sandbox::Walls {
        cache_dir: spec.cache_dir.clone(),
        dirs: &grants.dirs,
        proc_status: spec.track_memory,
        network: grants.network,
    })?;
    super::fault::inject(super::fault::Point::InSandbox, channel);
    channel.send(&ToHost::Ready)?;
    loop {
        match channel.recv()? {
            Some(ToWorker::Job(tasks)) => {
                // Results of quick tasks travel together; the deadline thread sends any
                // that waited FLUSH_AFTER while a slower task runs.
                let count = tasks.len();
                let chunks: Vec<Option<u64>> = tasks.iter().map(|t| t.chunk).collect();
                for (i, task) in tasks.into_iter().enumerate() {
                    let entry = Entry::Invoke {
                        export: task.export,
                        args: task.args,
                    };
                    let timeout = task.timeout_ms.map(Duration::from_millis);
                    // The next task of the same chunk continues in this task's instance.
                    let share = task.chunk.is_some() && chunks.get(i + 1) == Some(&task.chunk);
                    let outcome = runner.run(grants, &task.cwasm, &entry, timeout, channel, share);
                    runner.report_limit_hit(channel)?;
                    let done = ToHost::TaskDone {
                        id: task.id,
                        outcome,
                        rss_kb: if spec.track_memory {
                            peak_resident_kb()
                        } else {
                            0
                        },
                    };
                    if i + 1 == count {
                        channel.send(&done)?;
                        runner.flushed();
                    } else {
                        channel.send_buffered(&done)?;
                        runner.flush_soon(channel);
                    }
                }
            }
            Some(ToWorker::Shutdown) | None => return Ok(0),
            Some(other) => anyhow::bail!("unexpected message in a pool worker: {other:?}"),
        }
    }
}

/// This process's peak resident set size (`VmHWM`), for the host's memory-threshold
/// recycling: a task's instance memory is unmapped when its store drops, so the current
/// size would miss what the task used.
fn peak_resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
