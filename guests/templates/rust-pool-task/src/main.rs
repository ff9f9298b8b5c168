//! A wasmp pool task: `square` (declared in wit/world.wit). `wasmp pool` reads one JSON
//! array of arguments per line, runs the calls on a pool of worker processes, and writes
//! one `{"result": …}` line per task, in input order.

wit_bindgen::generate!({
    // wit/world.wit: this worker's world, which includes wasmp:worker/worker@0.1.0
    // (vendored in wit/deps/wasmp-worker).
    path: "wit",
    generate_all,
});

struct Worker;

impl Guest for Worker {
    fn square(x: u64) -> u64 {
        x.wrapping_mul(x)
    }
}

export!(Worker);

// A command too (wasi:cli/run), so that `cargo build` makes a binary; the pool calls
// `square`, not `main`.
fn main() {}
