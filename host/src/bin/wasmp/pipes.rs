//! Queues on the command line: granted by name, fed from stdin, drained to stdout, so that
//! wasm workers sit in shell pipelines (`seq 100 | wasmp run --stdin-to-queue jobs …`).

use std::io::{BufRead, Write};
use std::thread::JoinHandle;

use anyhow::{Result, bail};
use clap::Args;
use wasmp::Queue;

/// Queue options shared by `run` and `up`.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct PipeOptions {
    /// Feed the host's stdin into queue NAME, one message per line (without the newline);
    /// the queue is closed at end of input.
    #[arg(long, value_name = "NAME")]
    pub(crate) stdin_to_queue: Option<String>,

    /// Print every message of queue NAME on stdout, one per line, until it is closed and
    /// drained (every queue is closed once the processes have ended).
    #[arg(long, value_name = "NAME")]
    pub(crate) queue_to_stdout: Option<String>,
}

/// The threads moving data between stdio and queues.
pub(crate) struct Pipes {
    drain: Option<JoinHandle<()>>,
}

impl PipeOptions {
    /// The queue names these options need, so that callers can create and grant them.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.stdin_to_queue
            .iter()
            .chain(self.queue_to_stdout.iter())
            .map(String::as_str)
    }

    /// Starts the feeding and draining threads over the given queues.
    pub(crate) fn start(&self, find: impl Fn(&str) -> Option<Queue>) -> Result<Pipes> {
        let lookup = |name: &String| match find(name) {
            Some(queue) => Ok(queue),
            None => bail!("no queue named {name:?}"),
        };
        if let Some(name) = &self.stdin_to_queue {
            let queue = lookup(name)?;
            // Not joined: it may be blocked reading a terminal when the workers are done.
            std::thread::Builder::new()
                .name("wasmp-stdin".into())
                .spawn(move || feed(&queue))?;
        }
        let drain = match &self.queue_to_stdout {
            Some(name) => {
                let queue = lookup(name)?;
                Some(
                    std::thread::Builder::new()
                        .name("wasmp-stdout".into())
                        .spawn(move || drain(&queue))?,
                )
            }
            None => None,
        };
        Ok(Pipes { drain })
    }
}

impl Pipes {
    /// Waits until the drained queue is closed and empty.
    pub(crate) fn finish(self) {
        if let Some(drain) = self.drain {
            let _ = drain.join();
        }
    }
}

fn feed(queue: &Queue) {
    let stdin = std::io::stdin().lock();
    for line in stdin.split(b'\n') {
        let Ok(mut line) = line else { break };
        if line.ends_with(b"\r") {
            line.pop();
        }
        if queue.put(line).is_err() {
            break;
        }
    }
    queue.close();
}

fn drain(queue: &Queue) {
    let mut stdout = std::io::stdout().lock();
    for message in queue.iter() {
        if stdout
            .write_all(&message)
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
}
