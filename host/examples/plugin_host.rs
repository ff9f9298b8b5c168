//! Embedding wasmp the way a plugin host does: untrusted plugins (components) run in
//! sandboxed worker processes, each call with a time limit, and a misbehaving plugin costs
//! the host nothing but an error value.
//!
//! ```text
//! cargo run --release --example plugin_host                       # the bundled demo plugin
//! cargo run --release --example plugin_host -- plugin.wasm 'greet("you")' 'add(1, 2)'
//! ```

use std::time::Duration;

use anyhow::Result;
use wasmp::{ExitStatus, Output, Process, Runtime};

fn main() -> Result<()> {
    // Worker processes are this very binary: let it become one when asked, first thing.
    wasmp::run_worker_if_requested();

    let mut args = std::env::args().skip(1);
    let (plugin, calls): (String, Vec<String>) = match args.next() {
        Some(plugin) => (plugin, args.collect()),
        None => (
            wasmp_artifacts::EXPORTS.to_string(),
            [
                "greet(\"plugin host\")",
                "add(40, 2)",
                "fail(\"a plugin bug\")",
                "spin()",
            ]
            .map(String::from)
            .to_vec(),
        ),
    };

    let runtime = Runtime::new()?;
    // Validated and compiled once (cached on disk by content hash); shared by every call.
    let component = runtime.load(&plugin)?;
    println!("plugin {} exports:", component.name());
    for (name, signature) in component.functions() {
        println!("  {name}: {signature}");
    }

    for call in calls {
        let mut process = Process::new(&component)
            .invoke_wave(&call)
            .stdout(Output::Capture)
            .stderr(Output::Capture)
            .timeout(Duration::from_secs(1));
        // Bad calls (unknown export, wrong argument types) are refused before any spawn.
        if let Err(e) = process.start() {
            println!("{call}: refused: {e:#}");
            continue;
        }
        let status = process.join()?;
        let output = String::from_utf8_lossy(&process.stdout_bytes().unwrap_or_default())
            .trim_end()
            .to_string();
        match status {
            ExitStatus::Exited(0) => println!(
                "{call} -> {} (plugin printed {output:?})",
                process.results_wave().unwrap_or_default().join(", ")
            ),
            ExitStatus::Trapped(message) => {
                println!(
                    "{call}: plugin trapped: {}",
                    message.lines().next().unwrap_or("")
                )
            }
            other => println!("{call}: {other}"),
        }
    }
    Ok(())
}
