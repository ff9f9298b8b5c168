//! Section 3 of the tutorial: a writer puts 'A', 'B', 'C', 'D' with pauses; a reader takes
//! them as they come. The host owns the queue and grants it to both:
//!
//! ```text
//! Process::new(&c).invoke("writer", ["q"]).queue(&q)   Process::new(&c).invoke("reader", ["q"]).queue(&q)
//! ```
//!
//! Unlike the Python original, the reader needs no `while True` and no `terminate()`: when
//! the host closes the queue, the reader drains what is left and its loop ends.

use std::time::Duration;

use wasmp_guest::queue::Queue;

wasmp_guest::wit_bindgen::generate!({
    inline: "
        package wasmp:examples;
        world tutorial-queue {
            // Not `write` / `read`: a top-level export's core symbol would collide with
            // wasi-libc's `write` and `read`.
            export writer: func(queue: string);
            export reader: func(queue: string);
        }
    ",
    runtime_path: "wasmp_guest::wit_bindgen::rt",
});

const PAUSE: Duration = Duration::from_millis(200);

struct Tutorial;

impl Guest for Tutorial {
    fn writer(queue: String) {
        let q = Queue::new(queue);
        println!("write start...");
        for value in ["A", "B", "C", "D"] {
            q.put(value).expect("put");
            std::thread::sleep(PAUSE);
        }
        println!("write end...");
    }

    fn reader(queue: String) {
        let q = Queue::new(queue);
        println!("read start...");
        for value in &q {
            println!("read value {}", String::from_utf8_lossy(&value));
        }
        println!("read end...");
    }
}

export!(Tutorial);

fn main() {}
