//! `wasmp cluster`: look at a cluster (hosts, tasks, dead letters) and resubmit dead letters.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::common::NatsOptions;

/// Inspect a cluster of `wasmp serve` hosts.
#[derive(Args)]
pub(crate) struct ClusterCommand {
    #[command(flatten)]
    nats: NatsOptions,

    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: ClusterSubcommand,
}

#[derive(Subcommand)]
enum ClusterSubcommand {
    /// Hosts (slots, running tasks), tasks waiting and running, dead letters.
    Status,
    /// Tasks that kept killing their workers or could not run.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

#[derive(Subcommand)]
enum DeadCommand {
    /// List the dead letters, oldest first.
    List,
    /// Submit dead letters again (a fresh attempt count) and remove them.
    Retry {
        /// Sequence numbers from `dead list`.
        #[arg(value_name = "SEQ", required_unless_present = "all")]
        sequences: Vec<u64>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "sequences")]
        all: bool,
    },
}

impl ClusterCommand {
    pub(crate) fn execute(self) -> Result<ExitCode> {
        let cluster = self.nats.connect()?;
        let mut out = std::io::stdout().lock();
        match self.command {
            ClusterSubcommand::Status => {
                let status = cluster.status()?;
                if self.json {
                    writeln!(out, "{}", serde_json::to_string(&status)?)?;
                } else {
                    writeln!(out, "namespace {} at {}", status.namespace, cluster.url())?;
                    writeln!(
                        out,
                        "tasks: {} waiting, {} running; {} dead letters",
                        status.waiting, status.running, status.dead
                    )?;
                    writeln!(out, "hosts: {}", status.hosts.len())?;
                    for host in &status.hosts {
                        writeln!(
                            out,
                            "  {}  {}/{} running, {} done",
                            host.id, host.running, host.slots, host.done
                        )?;
                    }
                    writeln!(out, "queues: {}", status.queues.len())?;
                    for queue in &status.queues {
                        let closed = if queue.closed { ", closed" } else { "" };
                        writeln!(out, "  {}  {} waiting{closed}", queue.name, queue.messages)?;
                    }
                }
            }
            ClusterSubcommand::Dead {
                command: DeadCommand::List,
            } => {
                for letter in cluster.dead_letters()? {
                    if self.json {
                        writeln!(out, "{}", serde_json::to_string(&letter)?)?;
                    } else {
                        writeln!(
                            out,
                            "{}\t{}\t{}\t{}",
                            letter.sequence, letter.task, letter.call, letter.reason
                        )?;
                    }
                }
            }
            ClusterSubcommand::Dead {
                command: DeadCommand::Retry { sequences, all },
            } => {
                let sequences = if all {
                    cluster.dead_letters()?.iter().map(|l| l.sequence).collect()
                } else {
                    sequences
                };
                for sequence in sequences {
                    let letter = cluster
                        .retry_dead_letter(sequence)
                        .with_context(|| format!("cannot retry dead letter {sequence}"))?;
                    writeln!(out, "resubmitted {sequence} as task {}", letter.task)?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
