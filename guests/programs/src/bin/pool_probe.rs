//! Exports for pool tests: trivial, CPU-bound, stateful, slow, trapping, flaky and blocking
//! tasks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use wasmp_guest::queue::Queue;

wasmp_guest::wit_bindgen::generate!({
    inline: "
        package wasmp:tests;
        world pool-probe {
            export square: func(x: u64) -> u64;
            export noop: func();
            export counter: func() -> u32;
            export pid: func() -> u32;
            export cpu: func(rounds: u64) -> u64;
            export sleep-ms: func(ms: u64);
            export spin: func();
            export trap: func();
            export report-and-sleep: func(queue: string, ms: u64) -> u32;
            export block-on: func(queue: string);
            export grow: func(mib: u32) -> u32;
            export setup: func(fail: bool);
            export trap-while-queued: func(queue: string) -> u32;
        }
    ",
    runtime_path: "wasmp_guest::wit_bindgen::rt",
});

/// State that would leak between tasks if instances were reused.
static CALLS: AtomicU32 = AtomicU32::new(0);

struct Probe;

impl Guest for Probe {
    fn square(x: u64) -> u64 {
        x * x
    }

    fn noop() {}

    fn counter() -> u32 {
        CALLS.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn pid() -> u32 {
        wasmp_guest::process::pid()
    }

    fn cpu(rounds: u64) -> u64 {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..rounds {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x = x.wrapping_add(i);
        }
        x
    }

    fn sleep_ms(ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn spin() {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn trap() {
        std::process::abort();
    }

    fn report_and_sleep(queue: String, ms: u64) -> u32 {
        let pid = wasmp_guest::process::pid();
        Queue::new(queue).put(pid.to_le_bytes()).expect("put");
        std::thread::sleep(Duration::from_millis(ms));
        pid
    }

    fn block_on(queue: String) {
        let _ = Queue::new(queue).get();
    }

    fn grow(mib: u32) -> u32 {
        let block = vec![1u8; mib as usize * 1024 * 1024];
        std::hint::black_box(&block);
        block.len() as u32 / (1024 * 1024)
    }

    /// Fails (traps) while `queue` holds messages, taking one each time: a task that
    /// succeeds on the attempt after the queue's last message, for retry tests.
    fn trap_while_queued(queue: String) -> u32 {
        match Queue::new(queue).try_get() {
            Ok(Some(_)) => panic!("a message was queued: failing this attempt"),
            _ => 7,
        }
    }

    fn setup(fail: bool) {
        if fail {
            panic!("setup was told to fail");
        }
    }
}

export!(Probe);

fn main() {}
