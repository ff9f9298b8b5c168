//! A WASI command whose first argument names one thing to do, so that tests can check
//! exit codes, traps, args, env and directory grants against a real guest.
//!
//! Every action prints what it saw on stdout, one fact per line, and exits 0 unless the
//! action is about exit codes; a denied operation prints `denied: <error>`.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let action = args.get(1).map(String::as_str).unwrap_or("");
    let rest = &args[args.len().min(2)..];
    match action {
        "exit" => wasmp_guest::process::exit(rest[0].parse().expect("exit code")),
        "std-exit" => std::process::exit(rest[0].parse().expect("exit code")),
        // `abort` is the `unreachable` instruction on wasm32: a trap, not an exit.
        "trap" => std::process::abort(),
        "panic" => panic!("probe was told to panic"),
        "spin" => {
            println!("spinning");
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "sleep" => {
            let ms = rest[0].parse().expect("milliseconds");
            std::thread::sleep(std::time::Duration::from_millis(ms));
            println!("slept {ms}");
        }
        "args" => {
            for arg in &args {
                println!("arg: {arg}");
            }
        }
        "env" => {
            for name in rest {
                match std::env::var(name) {
                    Ok(value) => println!("env {name}={value}"),
                    Err(_) => println!("env {name} unset"),
                }
            }
            println!("env count {}", std::env::vars().count());
        }
        "read" => match std::fs::read_to_string(&rest[0]) {
            Ok(text) => println!("read: {}", text.trim_end()),
            Err(e) => println!("denied: {e}"),
        },
        "write" => match std::fs::write(&rest[0], &rest[1]) {
            Ok(()) => println!("wrote: {}", rest[0]),
            Err(e) => println!("denied: {e}"),
        },
        "identity" => println!(
            "name={} pid={} ppid={}",
            wasmp_guest::process::name(),
            wasmp_guest::process::pid(),
            wasmp_guest::process::ppid()
        ),
        "print" => {
            let lines: u32 = rest[0].parse().expect("line count");
            let mut out = std::io::stdout().lock();
            for i in 0..lines {
                writeln!(out, "line {i}").expect("stdout");
            }
            eprintln!("stderr line");
        }
        other => {
            eprintln!("cli_probe: unknown action {other:?}");
            std::process::exit(2);
        }
    }
}
