//! Embedding wasmp the way a plugin host does: untrusted plugins (components) run in
//! sandboxed worker processes and call back into the application through its own API — a
//! host `log` and a key-value store `kv` (`guests/programs/wit/app-host.wit`), implemented
//! here as closures — while each call has a time limit and a misbehaving plugin costs the
//! host nothing but an error value.
//!
//! ```text
//! cargo run --release --example plugin_host                       # the bundled demo plugins
//! cargo run --release --example plugin_host -- plugin.wasm 'greet("you")' 'add(1, 2)'
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use wasmp::{Component, ExitStatus, HostInterface, Output, Pool, Process, Runtime, Val};

fn main() -> Result<()> {
    // Worker processes are this very binary: let it become one when asked, first thing.
    wasmp::run_worker_if_requested();

    let mut args = std::env::args().skip(1);
    if let Some(plugin) = args.next() {
        let runtime = Runtime::new()?;
        return run_calls(&runtime.load(&plugin)?, &args.collect::<Vec<_>>());
    }

    // The application's state that plugins reach only through the host interfaces.
    let store: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    store
        .lock()
        .unwrap()
        .insert("greeting".into(), "hello".into());
    let runtime = Runtime::builder()
        .host_interface(log_interface())
        .host_interface(kv_interface(store.clone()))
        .host_interface(values_interface())
        .build()?;

    // Loading checks every import: a plugin importing an interface this host does not
    // provide would be refused here, before anything runs.
    let plugin = runtime.load(wasmp_artifacts::HOST_PLUGIN)?;

    println!("== two plugin processes, each calling back into the host");
    let mut processes =
        ["plugin-a", "plugin-b"].map(|name| Process::new(&plugin).name(name).invoke("run", [name]));
    for process in &mut processes {
        process.start()?;
    }
    for process in &mut processes {
        process.join()?;
        println!(
            "{} -> {}",
            process.get_name(),
            process.results_wave().unwrap_or_default().join(", ")
        );
    }

    println!("== a pool of two warm plugin workers");
    let pool = Pool::builder(&runtime).processes(2).build()?;
    for result in pool.map(&plugin, "run", ["c", "d", "e", "f"], Some(1))? {
        println!("pool -> {}", wasmp::val_to_json(&result[0]));
    }
    pool.close();
    pool.join()?;

    println!("== the host's store after the plugins ran");
    for (key, value) in store.lock().unwrap().iter() {
        println!("  {key} = {value}");
    }

    println!("== a plugin that misbehaves");
    run_calls(
        &runtime.load(wasmp_artifacts::EXPORTS)?,
        &[
            "greet(\"plugin host\")".into(),
            "fail(\"a plugin bug\")".into(),
            "spin()".into(),
        ],
    )
}

/// `app:host/log` with dynamic values: the closure sees who called.
fn log_interface() -> HostInterface {
    HostInterface::new("app:host/log").func("log", |call, args: &[Val]| {
        let [Val::Enum(level), Val::String(message)] = args else {
            bail!("log takes a level and a message, got {args:?}");
        };
        let task = call
            .task_id()
            .map(|id| format!(" task {id}"))
            .unwrap_or_default();
        println!(
            "  [host log {level} from {} pid {}{task}] {message}",
            call.worker_name(),
            call.pid()
        );
        Ok(vec![])
    })
}

/// `app:host/kv` with Rust types: arguments arrive as a tuple, results convert back.
fn kv_interface(store: Arc<Mutex<BTreeMap<String, String>>>) -> HostInterface {
    let (get, set) = (store.clone(), store.clone());
    HostInterface::new("app:host/kv")
        .typed_func("get", move |_call, (key,): (String,)| {
            Ok(get.lock().unwrap().get(&key).cloned())
        })
        .typed_func("set", move |_call, (key, value): (String, String)| {
            set.lock().unwrap().insert(key, value);
            Ok(())
        })
        .typed_func("incr", move |_call, (key, delta): (String, i64)| {
            let mut store = store.lock().unwrap();
            let entry = store.entry(key).or_insert_with(|| "0".into());
            Ok(match entry.parse::<i64>() {
                Ok(now) => {
                    *entry = (now + delta).to_string();
                    Ok(now + delta)
                }
                Err(_) => Err(format!("{entry:?} is not a number")),
            })
        })
}

/// `app:host/values`, which the demo plugin also imports: echoes its argument.
fn values_interface() -> HostInterface {
    HostInterface::new("app:host/values").func("echo", |_call, args| Ok(args.to_vec()))
}

/// Runs each call (WAVE syntax) of `component` in its own process with a time limit.
fn run_calls(component: &Component, calls: &[String]) -> Result<()> {
    println!("plugin {} exports:", component.name());
    for (name, signature) in component.functions() {
        println!("  {name}: {signature}");
    }
    for call in calls {
        let mut process = Process::new(component)
            .invoke_wave(call)
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
