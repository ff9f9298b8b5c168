//! A guest that misbehaves on purpose, one way per action: `hostile ACTION [ARG]`.
//! The adversarial tests check that each misbehaviour costs only this guest.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(1) {
        // Allocates and keeps 8 MiB blocks until memory.grow fails.
        "memory-bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![0xa5; 8 << 20]);
                println!("holding {} MiB", hoard.len() * 8);
            }
        }
        "recurse" => println!("depth {}", recurse(0)),
        "connect" => match std::net::TcpStream::connect(arg(2)) {
            Ok(_) => println!("connected to {}", arg(2)),
            Err(e) => println!("denied: {e}"),
        },
        "resolve" => {
            use std::net::ToSocketAddrs;
            match (arg(2), 80).to_socket_addrs() {
                Ok(addrs) => println!("resolved {} to {:?}", arg(2), addrs.collect::<Vec<_>>()),
                Err(e) => println!("denied: {e}"),
            }
        }
        // Terminal control sequences: clear the screen, set a title, colour.
        "ansi" => println!("\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x1b[0m plain"),
        // Writes MIB mebibytes to stdout.
        "flood" => {
            let mib: usize = arg(2).parse().expect("MiB");
            let line = [b'x'; 1023];
            let mut out = std::io::stdout().lock();
            for _ in 0..mib * 1024 {
                out.write_all(&line)
                    .and_then(|()| out.write_all(b"\n"))
                    .expect("stdout");
            }
        }
        other => {
            eprintln!("hostile: unknown action {other:?}");
            std::process::exit(2);
        }
    }
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // An opaque call: the optimiser can neither inline it nor turn it into a loop, and
    // each frame costs little of Rust's shadow stack, so wasmtime's native stack limit is
    // what runs out.
    let next: fn(u64) -> u64 = std::hint::black_box(recurse);
    next(depth + 1).wrapping_add(depth)
}
