//! The queues themselves: FIFO, bounded or not, closable, shared by any number of
//! producers and consumers. Knows nothing of processes: a worker's calls arrive here
//! through its monitor thread, the host program's through [`Queue`](crate::Queue).
//!
//! A `Mutex<VecDeque>` with two condition variables rather than a crossbeam channel: a
//! channel cannot be closed while senders exist, cannot put a message back at the front
//! (needed when the consumer it was meant for died before reading it), and cannot count
//! bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::QueueError;
use crate::events::{Event, Events};
use crate::queue::backend::{QueueBackend, QueueStats, Wait};

/// A batch (`get-many`) stops growing past this many bytes, so that one frame stays small
/// enough to move fast (batches over ~128 KiB per frame get slower on this design).
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;

/// How often a blocked call on behalf of a worker checks that the worker is still there.
const ABANDON_CHECK: Duration = Duration::from_millis(100);

/// One named queue.
#[derive(Debug)]
pub(crate) struct QueueCore {
    name: String,
    capacity: Option<usize>,
    max_message_size: usize,
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    puts: AtomicU64,
    gets: AtomicU64,
    events: OnceLock<Events>,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
    closed: bool,
    /// `queue_drained` was reported.
    drained: bool,
}

impl QueueCore {
    pub(crate) fn new(name: String, capacity: Option<usize>, max_message_size: usize) -> Self {
        QueueCore {
            name,
            capacity,
            max_message_size,
            state: Mutex::new(State::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            events: OnceLock::new(),
        }
    }

    /// Whether this is the moment the closed queue became empty (reported once).
    fn just_drained(state: &mut State) -> bool {
        let now = state.closed && state.items.is_empty() && !state.drained;
        state.drained |= now;
        now
    }

    fn emit(&self, make: impl FnOnce() -> Event) {
        if let Some(events) = self.events.get() {
            events.emit(make);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_full(&self, state: &State) -> bool {
        self.capacity.is_some_and(|cap| state.items.len() >= cap)
    }

    /// Blocks on `condvar` until `ready` holds, the deadline passes (`Timeout`) or the
    /// call is abandoned (`Closed`, which nobody will read).
    fn wait_for<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        condvar: &Condvar,
        wait: Wait<'_>,
        ready: impl Fn(&State) -> bool,
    ) -> Result<MutexGuard<'a, State>, QueueError> {
        while !ready(&state) {
            let mut slice = wait.abandoned.map(|_| ABANDON_CHECK);
            if let Some(deadline) = wait.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(QueueError::Timeout);
                }
                slice = Some(slice.map_or(left, |s| s.min(left)));
            }
            state = match slice {
                None => condvar.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(slice) => {
                    condvar
                        .wait_timeout(state, slice)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            if wait.abandoned.is_some_and(|abandoned| abandoned()) {
                return Err(QueueError::Closed);
            }
        }
        Ok(state)
    }

    fn check_size(&self, len: usize) -> Result<(), QueueError> {
        if len > self.max_message_size {
            return Err(QueueError::TooLarge(self.max_message_size as u64));
        }
        Ok(())
    }
}

/// The local backend: the queue lives in this process.
impl QueueBackend for QueueCore {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Appends a message, waiting for room while the queue is full. A call that may not
    /// wait ([`Wait::now`]) answers `Full` instead; one whose wait ran out, `Timeout`.
    fn put(&self, message: Vec<u8>, wait: Wait<'_>) -> Result<(), QueueError> {
        self.check_size(message.len())?;
        let state = self.lock();
        let expired = wait.deadline.is_some_and(|d| d <= Instant::now());
        if expired && !state.closed && self.is_full(&state) {
            return Err(QueueError::Full);
        }
        let mut state = self.wait_for(state, &self.not_full, wait, |s| {
            s.closed || !self.is_full(s)
        })?;
        if state.closed {
            return Err(QueueError::Closed);
        }
        state.bytes += message.len();
        state.items.push_back(message);
        drop(state);
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Appends messages in order, waiting for room as needed. Sizes are checked first: a
    /// batch with one oversize message puts nothing.
    fn put_many(&self, messages: Vec<Vec<u8>>, wait: Wait<'_>) -> Result<(), QueueError> {
        for message in &messages {
            self.check_size(message.len())?;
        }
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            let state = self.lock();
            let mut state = self.wait_for(state, &self.not_full, wait, |s| {
                s.closed || !self.is_full(s)
            })?;
            if state.closed {
                return Err(QueueError::Closed);
            }
            let room = self
                .capacity
                .map_or(usize::MAX, |cap| cap - state.items.len());
            let mut added = 0u64;
            for message in messages.by_ref().take(room) {
                state.bytes += message.len();
                state.items.push_back(message);
                added += 1;
            }
            drop(state);
            self.puts.fetch_add(added, Ordering::Relaxed);
            self.not_empty.notify_all();
        }
        Ok(())
    }

    /// Takes the oldest message; `Closed` once the queue is closed and drained.
    fn get(&self, wait: Wait<'_>) -> Result<Vec<u8>, QueueError> {
        Ok(self
            .get_many(1, wait)?
            .pop()
            .expect("get_many returns at least one message"))
    }

    /// Takes between one and `max` messages (at most [`MAX_BATCH_BYTES`] after the first),
    /// waiting only for the first.
    fn get_many(&self, max: usize, wait: Wait<'_>) -> Result<Vec<Vec<u8>>, QueueError> {
        let state = self.lock();
        let mut state = self.wait_for(state, &self.not_empty, wait, |s| {
            s.closed || !s.items.is_empty()
        })?;
        if state.items.is_empty() {
            return Err(QueueError::Closed);
        }
        let mut taken = Vec::new();
        let mut bytes = 0;
        while taken.len() < max.max(1) {
            let Some(front) = state.items.front() else {
                break;
            };
            if !taken.is_empty() && bytes + front.len() > MAX_BATCH_BYTES {
                break;
            }
            let message = state.items.pop_front().expect("front exists");
            bytes += message.len();
            state.bytes -= message.len();
            taken.push(message);
        }
        let closed_and_drained = state.closed && state.items.is_empty();
        let just_drained = Self::just_drained(&mut state);
        drop(state);
        if just_drained {
            self.emit(|| Event::QueueDrained {
                queue: self.name.clone(),
            });
        }
        self.gets.fetch_add(taken.len() as u64, Ordering::Relaxed);
        if self.capacity.is_some() {
            self.not_full.notify_all();
        }
        if closed_and_drained {
            self.not_empty.notify_all();
        }
        Ok(taken)
    }

    /// Puts messages back at the front, in order: they were taken for a consumer that died
    /// before it could read them. Ignores the capacity (they were counted in it before).
    fn requeue_front(&self, messages: Vec<Vec<u8>>) {
        let count = messages.len() as u64;
        let mut state = self.lock();
        for message in messages.into_iter().rev() {
            state.bytes += message.len();
            state.items.push_front(message);
        }
        drop(state);
        self.gets.fetch_sub(count, Ordering::Relaxed);
        self.not_empty.notify_all();
    }

    /// No more puts; getters drain what is left, then see `Closed`.
    fn close(&self) {
        let mut state = self.lock();
        let newly = !state.closed;
        state.closed = true;
        let waiting = state.items.len();
        let just_drained = Self::just_drained(&mut state);
        drop(state);
        self.not_empty.notify_all();
        self.not_full.notify_all();
        if newly {
            self.emit(|| Event::QueueClosed {
                queue: self.name.clone(),
                waiting,
            });
        }
        if just_drained {
            self.emit(|| Event::QueueDrained {
                queue: self.name.clone(),
            });
        }
    }

    fn attach_events(&self, events: &Events) {
        let _ = self.events.set(events.clone());
    }

    fn len(&self) -> usize {
        self.lock().items.len()
    }

    fn stats(&self) -> QueueStats {
        let state = self.lock();
        QueueStats {
            len: state.items.len(),
            bytes: state.bytes,
            puts: self.puts.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            capacity: self.capacity,
            closed: state.closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn queue(capacity: Option<usize>) -> Arc<QueueCore> {
        Arc::new(QueueCore::new("q".into(), capacity, 1024))
    }

    #[test]
    fn fifo_then_closed_once_drained() {
        let q = queue(None);
        for m in [b"A", b"B", b"C"] {
            q.put(m.to_vec(), Wait::FOREVER).unwrap();
        }
        q.close();
        assert_eq!(q.put(b"D".to_vec(), Wait::FOREVER), Err(QueueError::Closed));
        assert_eq!(q.get(Wait::FOREVER).unwrap(), b"A");
        assert_eq!(
            q.get_many(10, Wait::FOREVER).unwrap(),
            vec![b"B".to_vec(), b"C".to_vec()]
        );
        assert_eq!(q.get(Wait::FOREVER), Err(QueueError::Closed));
        let stats = q.stats();
        assert_eq!(
            (stats.puts, stats.gets, stats.len, stats.closed),
            (3, 3, 0, true)
        );
    }

    #[test]
    fn bounded_queue_pushes_back() {
        let q = queue(Some(2));
        q.put(vec![1], Wait::now()).unwrap();
        q.put(vec![2], Wait::now()).unwrap();
        assert_eq!(q.put(vec![3], Wait::now()), Err(QueueError::Full));
        assert_eq!(
            q.put(vec![3], Wait::timeout(Some(Duration::from_millis(20)))),
            Err(QueueError::Timeout)
        );
        assert_eq!(q.len(), 2);
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.put_many(vec![vec![3], vec![4], vec![5]], Wait::FOREVER))
        };
        let mut got = Vec::new();
        while got.len() < 5 {
            got.extend(q.get_many(5, Wait::FOREVER).unwrap());
            assert!(q.len() <= 2);
        }
        producer.join().unwrap().unwrap();
        assert_eq!(got, vec![vec![1], vec![2], vec![3], vec![4], vec![5]]);
    }

    #[test]
    fn get_times_out_and_close_wakes_blocked_getters() {
        let q = queue(None);
        assert_eq!(
            q.get(Wait::timeout(Some(Duration::from_millis(20)))),
            Err(QueueError::Timeout)
        );
        let getter = {
            let q = q.clone();
            std::thread::spawn(move || q.get(Wait::FOREVER))
        };
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert_eq!(getter.join().unwrap(), Err(QueueError::Closed));
    }

    #[test]
    fn oversize_messages_are_refused_and_batches_are_all_or_nothing() {
        let q = queue(None);
        assert_eq!(
            q.put(vec![0; 1025], Wait::FOREVER),
            Err(QueueError::TooLarge(1024))
        );
        assert_eq!(
            q.put_many(vec![vec![1], vec![0; 2000]], Wait::FOREVER),
            Err(QueueError::TooLarge(1024))
        );
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn requeued_messages_come_first_in_order() {
        let q = queue(None);
        q.put_many(vec![vec![1], vec![2], vec![3]], Wait::FOREVER)
            .unwrap();
        let taken = q.get_many(2, Wait::FOREVER).unwrap();
        q.requeue_front(taken);
        assert_eq!(
            q.get_many(3, Wait::FOREVER).unwrap(),
            vec![vec![1], vec![2], vec![3]]
        );
        assert_eq!(q.stats().gets, 3);
    }

    #[test]
    fn an_abandoned_wait_returns_without_taking_anything() {
        let q = queue(None);
        let abandoned = || true;
        let wait = Wait {
            deadline: None,
            abandoned: Some(&abandoned),
        };
        assert_eq!(q.get(wait), Err(QueueError::Closed));
        q.put(vec![7], Wait::FOREVER).unwrap();
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn batches_are_capped_by_bytes() {
        let q = Arc::new(QueueCore::new("big".into(), None, 1 << 20));
        for _ in 0..8 {
            q.put(vec![0; 100 * 1024], Wait::FOREVER).unwrap();
        }
        let batch = q.get_many(8, Wait::FOREVER).unwrap();
        assert_eq!(
            batch.len(),
            2,
            "256 KiB cap: two 100 KiB messages per batch"
        );
    }
}
