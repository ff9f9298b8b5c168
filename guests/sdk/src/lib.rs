//! Guest SDK for [wasmp](https://github.com/wasmp/wasmp) workers.
//!
//! A wasmp worker is an ordinary Rust crate built for `wasm32-wasip2`. This crate is the one
//! place that runs `wit-bindgen` over `wasmp:worker` (the guest contract in `wit/worker.wit`)
//! and wraps the raw imports in the Python-flavoured calls a worker needs:
//!
//! ```no_run
//! use wasmp_guest::{process, queue::Queue};
//!
//! println!("worker {} pid {} ppid {}", process::name(), process::pid(), process::ppid());
//! let results = Queue::new("results");
//! results.put("done").unwrap();
//! for message in Queue::new("jobs").iter() {
//!     // each message exactly once, until the host closes "jobs" and it is drained
//!     let _ = message;
//! }
//! ```
//!
//! Workers that export functions for the host to invoke (`wasmp run --invoke 'f("a")'`,
//! `Process::invoke`) declare their exports with [`wit_bindgen`], re-exported here so that
//! every guest uses the same version:
//!
//! ```ignore
//! wasmp_guest::wit_bindgen::generate!({
//!     inline: "package my:worker; world w { export greet: func(who: string); }",
//!     runtime_path: "wasmp_guest::wit_bindgen::rt",
//! });
//! ```

pub use wit_bindgen;

#[allow(unsafe_code, unreachable_pub, reason = "wit-bindgen's generated glue")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package wasmp:guest;
            world sdk {
                include wasmp:worker/worker@0.1.0;
                import wasi:cli/exit@0.2.12;
            }
        ",
        world: "wasmp:guest/sdk",
        generate_all,
    });
}

pub mod process;
pub mod queue;
