//! `wasmp serve`: this machine becomes a host of a cluster, running its tasks.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use wasmp::{ClusterHost, Runtime};

use crate::common::{GrantOptions, NatsOptions, say};
use crate::observe::ObserveOptions;

/// Run a cluster's pool tasks on this machine's worker processes.
///
/// Takes tasks from the NATS JetStream work queue of the namespace only as fast as local
/// workers become idle, runs each in a sandboxed worker process (limits, recycling and
/// time limits as `wasmp pool`), stores its result, then acknowledges it. A host that
/// dies or freezes loses nothing: the server gives its tasks to another host after the
/// ack deadline. Ctrl-C or SIGTERM: stop taking tasks, let the running ones finish for
/// --shutdown-timeout, hand back the rest, exit 130 or 143.
#[derive(Args)]
#[command(after_help = "\
Examples:
  nats-server -js -sd /var/lib/nats &
  wasmp serve --nats nats://127.0.0.1:4222 -j 4
  wasmp serve --nats nats://queue.internal:4222 --namespace batch --dir /srv/data::/data")]
pub(crate) struct ServeCommand {
    #[command(flatten)]
    nats: NatsOptions,

    /// Worker processes, hence tasks at once (default: the available parallelism).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,

    /// How long the server waits for word about a task before giving it to another
    /// host; running tasks are kept alive every quarter of it. The first host sets it.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = wasmp::parse_duration)]
    ack_wait: Duration,

    /// Replace a worker process after this many tasks.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    max_tasks_per_worker: Option<u64>,

    /// This host's name in `wasmp cluster status` (default: hostname-pid).
    #[arg(long, value_name = "ID")]
    id: Option<String>,

    #[command(flatten)]
    grants: GrantOptions,

    #[command(flatten)]
    observe: ObserveOptions,
}

impl ServeCommand {
    pub(crate) fn execute(self, drain: Duration) -> Result<ExitCode> {
        let grants = self.grants.grants();
        grants.check()?;
        let cluster = self.nats.connect()?;
        let (runtime, _observing) = self.observe.apply(Runtime::builder())?;
        let runtime = runtime.build()?;
        let mut builder = ClusterHost::builder(&runtime, &cluster)
            .grants(grants)
            .ack_wait(self.ack_wait);
        if let Some(jobs) = self.jobs {
            builder = builder.slots(jobs as usize);
        }
        if let Some(tasks) = self.max_tasks_per_worker {
            builder = builder.max_tasks_per_worker(tasks);
        }
        if let Some(id) = self.id {
            builder = builder.id(id);
        }
        let host = builder.build()?;
        let signal = stop_on_signals(&host)?;
        say!(
            "wasmp serve: serving namespace {} of {}",
            cluster.namespace(),
            cluster.url()
        );
        let report = host.run(drain)?;
        say!(
            "wasmp serve: {} done, {} handed back, {} dead letters",
            report.done,
            report.handed_back,
            report.dead
        );
        let code = signal.load(std::sync::atomic::Ordering::SeqCst);
        Ok(ExitCode::from(if code == 0 { 0 } else { code }))
    }
}

/// SIGINT/SIGTERM stop the host in order (it hands back what it cannot finish); a second
/// signal kills the workers and exits at once. The signal number is kept for the exit code.
fn stop_on_signals(host: &ClusterHost) -> Result<std::sync::Arc<std::sync::atomic::AtomicU8>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let code = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let handle = host.handle();
    let seen = code.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let exit = (128 + signal) as u8;
            if seen.swap(exit, std::sync::atomic::Ordering::SeqCst) != 0 {
                wasmp::shutdown_workers(Duration::ZERO);
                std::process::exit(i32::from(exit));
            }
            say!("wasmp serve: stopping (again to force)");
            handle.stop();
        }
    });
    Ok(code)
}
