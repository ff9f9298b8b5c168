//! A wasmp worker exporting `greet` (declared in wit/world.wit): the host calls it by name,
//! `wasmp run --invoke 'greet("world")' {{name}}.wasm`, and prints what it returns.

wit_bindgen::generate!({
    // wit/world.wit: this worker's world, which includes wasmp:worker/worker@0.1.0
    // (vendored in wit/deps/wasmp-worker).
    path: "wit",
    generate_all,
});

use wasmp::worker::process;

struct Worker;

impl Guest for Worker {
    fn greet(name: String) -> String {
        // The worker's own output goes to the host's stdout, tagged in multi-worker runs.
        println!("greeting {name} from pid {} (host pid {})", process::pid(), process::ppid());
        format!("hello, {name}")
    }
}

export!(Worker);

// A command too (wasi:cli/run), so that `cargo build` makes a binary; the host calls
// `greet`, not `main`.
fn main() {}
