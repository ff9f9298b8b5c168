//! A WASI command exercising `wasmp:worker/queue`: `queue_probe ACTION QUEUE [ARGS]`.
//!
//! Prints what it saw, one fact per line; queue errors print as `error: <error>`.

use std::time::Duration;

use wasmp_guest::queue::{Queue, QueueError};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let action = args[1].as_str();
    let q = Queue::new(args[2].clone());
    let n = |i: usize| -> u64 { args[i].parse().expect("a number") };
    let result: Result<(), QueueError> = (|| {
        match action {
            // Puts messages "0", "1", … and returns at once.
            "put" => {
                for i in 0..n(3) {
                    q.put(i.to_string())?;
                }
                println!("put {}", n(3));
            }
            "put-many" => {
                let batch: Vec<Vec<u8>> = (0..n(3)).map(|i| i.to_string().into_bytes()).collect();
                q.put_many(&batch)?;
                println!("put-many {}", n(3));
            }
            "try-put" => {
                q.try_put("x")?;
                println!("try-put ok");
            }
            "put-size" => {
                q.put(vec![7u8; n(3) as usize])?;
                println!("put {} bytes", n(3));
            }
            "get" => println!("got {}", String::from_utf8_lossy(&q.get()?)),
            "get-timeout" => {
                let got = q.get_timeout(Duration::from_millis(n(3)))?;
                println!("got {}", String::from_utf8_lossy(&got));
            }
            "try-get" => match q.try_get()? {
                Some(message) => println!("got {}", String::from_utf8_lossy(&message)),
                None => println!("empty"),
            },
            // Takes one message, then spins: a consumer to be killed after taking.
            "get-then-spin" => {
                println!("got {}", String::from_utf8_lossy(&q.get()?));
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "drain" => {
                let mut count = 0;
                for message in &q {
                    println!("got {}", String::from_utf8_lossy(&message));
                    count += 1;
                }
                println!("drained {count}");
            }
            "drain-many" => {
                let mut count = 0;
                loop {
                    match q.get_many(n(3) as u32, None) {
                        Ok(batch) => {
                            for message in batch {
                                println!("got {}", String::from_utf8_lossy(&message));
                                count += 1;
                            }
                        }
                        Err(QueueError::Closed) => break,
                        Err(e) => return Err(e),
                    }
                }
                println!("drained {count}");
            }
            "len" => println!("len {}", q.len()?),
            "close" => {
                q.close()?;
                println!("closed");
            }
            // Benchmark producer: N messages of SIZE bytes, in batches of BATCH.
            "produce" => {
                let (count, size, batch) = (n(3), n(4) as usize, n(5) as usize);
                let message = vec![0xa5u8; size];
                let mut sent = 0;
                while sent < count {
                    let k = batch.min((count - sent) as usize);
                    if k == 1 {
                        q.put(&message)?;
                    } else {
                        q.put_many(&vec![message.clone(); k])?;
                    }
                    sent += k as u64;
                }
            }
            // Benchmark consumer: drains in batches of BATCH; prints the count.
            "consume" => {
                let batch = n(3) as u32;
                let mut count = 0u64;
                loop {
                    let got = if batch <= 1 {
                        q.get().map(|m| vec![m])
                    } else {
                        q.get_many(batch, None)
                    };
                    match got {
                        Ok(messages) => count += messages.len() as u64,
                        Err(QueueError::Closed) => break,
                        Err(e) => return Err(e),
                    }
                }
                println!("consumed {count}");
            }
            // Ping-pong: `ping QUEUE REPLIES N` puts to QUEUE and waits on REPLIES, N times.
            "ping" => {
                let replies = Queue::new(args[3].clone());
                for i in 0..n(4) {
                    q.put(i.to_le_bytes())?;
                    replies.get()?;
                }
                q.close()?;
            }
            // `pong QUEUE REPLIES` echoes until QUEUE closes.
            "pong" => {
                let replies = Queue::new(args[3].clone());
                for message in &q {
                    replies.put(message)?;
                }
            }
            other => panic!("unknown action {other:?}"),
        }
        Ok(())
    })();
    if let Err(e) = result {
        println!("error: {e}");
    }
}
