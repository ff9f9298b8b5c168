//! Section 1 of the tutorial: two functions taking two strings, each printing its arguments,
//! its own pid and its parent's pid. The host starts each in its own OS process:
//!
//! ```text
//! wasmp run --invoke 'func1("func1...arg1", "func1...agr2")' tutorial_process.wasm
//! ```
//!
//! The Python original loops forever; these print a few lines and return, so `join` ends.

use std::time::Duration;

use wasmp_guest::process;

wasmp_guest::wit_bindgen::generate!({
    inline: "
        package wasmp:examples;
        world tutorial-process {
            export func1: func(args1: string, args2: string);
            export func2: func(args1: string, args2: string);
        }
    ",
    runtime_path: "wasmp_guest::wit_bindgen::rt",
});

const ROUNDS: u32 = 3;
const PAUSE: Duration = Duration::from_millis(200);

struct Tutorial;

impl Guest for Tutorial {
    fn func1(args1: String, args2: String) {
        repeat("func1", &args1, &args2);
    }

    fn func2(args1: String, args2: String) {
        repeat("func2", &args1, &args2);
    }
}

fn repeat(func: &str, args1: &str, args2: &str) {
    for round in 0..ROUNDS {
        if round > 0 {
            std::thread::sleep(PAUSE);
        }
        println!(
            "this is {func} with args: {args1}, {args2}---{}---{}",
            process::pid(),
            process::ppid()
        );
    }
}

export!(Tutorial);

fn main() {}
