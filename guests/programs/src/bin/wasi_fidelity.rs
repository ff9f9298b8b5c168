//! A plain WASI program — std only, no wasmp imports — built for both `wasm32-wasip1` and
//! `wasm32-wasip2`, that prints what WASI shows it, one fact per line. The tests run it
//! under `wasmp run` and compare every byte of stdout and stderr and the exit code with
//! what `wasmtime run` gives for the same program and flags.
//!
//! Output is deterministic: clocks and randomness print checks, not values.

use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let action = args.get(1).map(String::as_str).unwrap_or("");
    let rest = &args[args.len().min(2)..];
    match action {
        "args" => {
            println!("argc {}", args.len());
            for (i, arg) in args.iter().enumerate() {
                println!("argv[{i}] {arg:?}");
            }
        }
        "env" => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            println!("{} variables", vars.len());
            for (name, value) in vars {
                println!("{name}={value:?}");
            }
        }
        "files" => files(&rest[0]),
        "ls" => {
            for dir in rest {
                list(dir);
            }
        }
        "clocks" => clocks(),
        "random" => random(),
        "stdio" => stdio(),
        "exit" => {
            print!("exiting with {}", rest[0]);
            eprint!("to stderr before exit");
            std::process::exit(rest[0].parse().expect("exit code"));
        }
        "panic" => panic!("fidelity probe panics"),
        other => {
            eprintln!("wasi_fidelity: unknown action {other:?}");
            std::process::exit(2);
        }
    }
}

/// Creates, writes, appends, reads, renames, stats and removes files and directories
/// under `dir`, printing each result.
fn files(dir: &str) {
    let base = format!("{dir}/fidelity");
    let _ = std::fs::remove_dir_all(&base);
    report("mkdir", std::fs::create_dir(&base));
    report(
        "mkdir nested",
        std::fs::create_dir_all(format!("{base}/a/b")),
    );
    let file = format!("{base}/a/b/file.txt");
    report("write", std::fs::write(&file, b"hello\n"));
    let append = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .and_then(|mut f| f.write_all(b"world\n"));
    report("append", append);
    match std::fs::read_to_string(&file) {
        Ok(text) => println!("read {text:?}"),
        Err(e) => println!("read error {}", e.kind()),
    }
    match std::fs::metadata(&file) {
        Ok(meta) => println!(
            "stat len={} file={} dir={} readonly={}",
            meta.len(),
            meta.is_file(),
            meta.is_dir(),
            meta.permissions().readonly()
        ),
        Err(e) => println!("stat error {}", e.kind()),
    }
    let renamed = format!("{base}/a/renamed.txt");
    report("rename", std::fs::rename(&file, &renamed));
    println!(
        "old exists={} new exists={}",
        std::fs::exists(&file).unwrap_or(false),
        std::fs::exists(&renamed).unwrap_or(false)
    );
    match std::fs::read_to_string(format!("{base}/missing")) {
        Ok(_) => println!("read missing: found?"),
        Err(e) => println!("read missing: {}", e.kind()),
    }
    report(
        "remove non-empty dir",
        std::fs::remove_dir(format!("{base}/a")),
    );
    list(&base);
    report("remove file", std::fs::remove_file(&renamed));
    report("remove tree", std::fs::remove_dir_all(&base));
    println!(
        "exists after remove={}",
        std::fs::exists(&base).unwrap_or(true)
    );
}

/// Lists `dir` sorted, with each entry's kind and size (directories' sizes vary by file
/// system, so only files show theirs).
fn list(dir: &str) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            println!("ls {dir}: {}", e.kind());
            return;
        }
    };
    let mut lines: Vec<String> = entries
        .map(|entry| {
            let entry = entry.expect("directory entry");
            let meta = entry.metadata().expect("metadata");
            let name = entry.file_name().to_string_lossy().into_owned();
            if meta.is_dir() {
                format!("  {name}/")
            } else {
                format!("  {name} {}", meta.len())
            }
        })
        .collect();
    lines.sort();
    println!("ls {dir}: {} entries", lines.len());
    for line in lines {
        println!("{line}");
    }
}

fn clocks() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("wall clock after 1970");
    println!("wall clock after 2020: {}", now.as_secs() > 1_577_836_800);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    let slept = start.elapsed();
    println!(
        "monotonic sleep of 20ms took at least 20ms: {}",
        slept >= Duration::from_millis(20)
    );
    println!("and less than 5s: {}", slept < Duration::from_secs(5));
    let a = Instant::now();
    let b = Instant::now();
    println!("monotonic never goes back: {}", b >= a);
}

fn random() {
    // std's hash seeds come from WASI's random_get / get-random-bytes.
    use std::hash::BuildHasher;
    let seeds: std::collections::BTreeSet<u64> = (0..16)
        .map(|_| std::collections::hash_map::RandomState::new().hash_one(0u8))
        .collect();
    println!("16 random seeds, {} distinct", seeds.len());
}

/// Reads stdin to the end and echoes it, then writes bytes that are not UTF-8, a NUL, a
/// carriage return and no final newline, to both streams.
fn stdio() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).expect("stdin");
    let mut out = std::io::stdout().lock();
    writeln!(out, "stdin had {} bytes:", input.len()).unwrap();
    out.write_all(&input).unwrap();
    writeln!(out).unwrap();
    out.write_all(b"raw \xff\xfe \x00 cr\r\nno newline at the end")
        .unwrap();
    out.flush().unwrap();
    let mut err = std::io::stderr().lock();
    err.write_all(b"err \xc3\x28 line\n").unwrap();
    err.write_all(b"second err line").unwrap();
}

fn report(what: &str, result: std::io::Result<()>) {
    match result {
        Ok(()) => println!("{what}: ok"),
        Err(e) => println!("{what}: {}", e.kind()),
    }
}
