//! A pool's scheduling state, behind a small API: tasks in, jobs out, and what happens to
//! a job when its worker finishes it or dies under it.
//!
//! The invariants live here and nowhere else:
//! - every submitted task is finished exactly once (its [`ResultCell`] filled), and
//!   `outstanding` counts the tasks submitted and not finished;
//! - a task whose worker died under it is started again at most `retries` times, one that
//!   trapped or timed out at most `error_retries` times (after a jittered back-off): an
//!   attempt is counted when a worker starts it, never for tasks that were sent but not
//!   started when the worker died;
//! - once the pool is halted (terminated, or broken by workers that keep failing to
//!   start) no task waits: queued and returning tasks fail with the reason.
//!
//! Generic over the task's payload, so that it is unit-tested without processes or
//! components; the local slots ([`slot`](super::slot)) carry compiled-component calls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::events::{Event, Events, millis};
use crate::pool::PoolStats;
use crate::pool::task::{AsyncResult, ResultCell, TaskError, TaskResult};

/// Jobs sent to a worker hold at most this many single tasks.
pub(crate) const MAX_JOB: usize = 64;

/// The first back-off before a failed task runs again; each further retry doubles it, up
/// to [`MAX_BACK_OFF`].
pub(crate) const ERROR_BACK_OFF: Duration = Duration::from_millis(100);

/// The longest back-off before a retry of a failed task.
pub(crate) const MAX_BACK_OFF: Duration = Duration::from_secs(30);

/// A queued or running task.
pub(crate) struct Task<P> {
    id: u64,
    /// How many times a worker started it.
    attempts: u32,
    /// How many of those ended with its worker dying under it.
    lost: u32,
    /// How many of those ended with a trap or a timeout.
    errored: u32,
    /// Tasks of one `map` chunk share this and travel to a worker together.
    chunk: Option<u64>,
    cell: Arc<ResultCell>,
    payload: P,
}

impl<P> Task<P> {
    /// Unique within the pool; workers answer with it.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn payload(&self) -> &P {
        &self.payload
    }

    /// The `map` chunk it belongs to; a chunk's tasks share one instance in the worker.
    pub(crate) fn chunk(&self) -> Option<u64> {
        self.chunk
    }

    /// How many times a worker started it (counting the current run).
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// The tasks handed to one worker, in the order it runs them. The front task is running
/// once [`Scheduler::start`] said so.
pub(crate) struct Job<P> {
    tasks: VecDeque<Task<P>>,
    running: bool,
}

impl<P> Job<P> {
    pub(crate) fn tasks(&self) -> impl Iterator<Item = &Task<P>> {
        self.tasks.iter()
    }

    /// The task the worker is running (or will run first).
    pub(crate) fn current(&self) -> Option<&Task<P>> {
        self.tasks.front()
    }
}

/// How a worker ended while it held a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerEnd {
    /// It was killed because its running task overran the time limit.
    TimedOut,
    /// It died (killed, crashed, broke the protocol) or never read the job.
    Lost,
}

/// Why the pool takes no more work.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Halt {
    Terminated,
    /// Workers kept failing to start; the reason is the last failure.
    Broken(String),
}

impl Halt {
    fn error(&self) -> TaskError {
        match self {
            Halt::Terminated => TaskError::Terminated,
            Halt::Broken(reason) => TaskError::Failed(reason.clone()),
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    Closed,
    Broken(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Closed => f.write_str("the pool is closed: no new tasks"),
            Refused::Broken(reason) => write!(f, "the pool is broken: {reason}"),
        }
    }
}

impl std::error::Error for Refused {}

struct State<P> {
    queued: VecDeque<Task<P>>,
    /// Failed tasks waiting out their back-off before they are queued again.
    delayed: Vec<(Instant, Task<P>)>,
    outstanding: usize,
    closed: bool,
    halt: Option<Halt>,
}

#[derive(Debug, Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    workers_started: AtomicU64,
}

/// The state shared by a pool's handle and its worker slots.
pub(crate) struct Scheduler<P> {
    state: Mutex<State<P>>,
    /// Signalled when tasks arrive, the pool closes or halts.
    work: Condvar,
    /// Signalled when the last outstanding task finishes.
    idle: Condvar,
    next_id: AtomicU64,
    /// How many worker slots share the queue (a burst of single tasks is split by it).
    slots: usize,
    retries: u32,
    error_retries: u32,
    back_off: Duration,
    counters: Counters,
    events: Events,
}

impl<P> Scheduler<P> {
    /// A scheduler for `slots` workers that restarts a task whose worker died at most
    /// `retries` times.
    pub(crate) fn new(slots: usize, retries: u32) -> Scheduler<P> {
        Scheduler {
            state: Mutex::new(State {
                queued: VecDeque::new(),
                delayed: Vec::new(),
                outstanding: 0,
                closed: false,
                halt: None,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            next_id: AtomicU64::new(1),
            slots: slots.max(1),
            retries,
            error_retries: 0,
            back_off: ERROR_BACK_OFF,
            counters: Counters::default(),
            events: Events::default(),
        }
    }

    /// Reports retries (`task_retried`) to `events`.
    pub(crate) fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    fn retried(&self, task: &Task<P>, error: &TaskError, delay: Duration) {
        self.counters.retried.fetch_add(1, Ordering::Relaxed);
        self.events.emit(|| Event::TaskRetried {
            id: task.id,
            attempt: task.attempts,
            reason: error.kind(),
            delay_ms: millis(delay),
        });
    }

    /// Also runs again, up to `retries` times, a task that trapped or timed out, each time
    /// after a jittered back-off that starts at `back_off` and doubles (a failure caused by
    /// something outside, a busy service, a full disk, gets time to clear).
    pub(crate) fn with_error_retries(mut self, retries: u32, back_off: Duration) -> Self {
        self.error_retries = retries;
        self.back_off = back_off;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State<P>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one task per payload, in order; `chunked` tasks travel to one worker
    /// together. All or nothing.
    pub(crate) fn submit(
        &self,
        payloads: Vec<P>,
        chunked: bool,
    ) -> Result<Vec<AsyncResult>, Refused> {
        let chunk = chunked.then(|| self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut state = self.lock();
        if state.closed || state.halt == Some(Halt::Terminated) {
            return Err(Refused::Closed);
        }
        if let Some(Halt::Broken(reason)) = &state.halt {
            return Err(Refused::Broken(reason.clone()));
        }
        let mut results = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let cell = ResultCell::new();
            results.push(AsyncResult::new(cell.clone()));
            state.queued.push_back(Task {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                attempts: 0,
                lost: 0,
                errored: 0,
                chunk,
                cell,
                payload,
            });
            state.outstanding += 1;
        }
        drop(state);
        self.work.notify_all();
        Ok(results)
    }

    /// The next job for a worker, waiting for one: a whole `map` chunk, or a share of the
    /// queued single tasks (so that a burst of `apply_async` travels in few frames without
    /// starving other workers). `None` when the pool is done: halted, or closed and empty.
    pub(crate) fn next_job(&self) -> Option<Job<P>> {
        let mut state = self.lock();
        loop {
            if state.halt.is_some() {
                return None;
            }
            let next_due = release_due(&mut state);
            if let Some(first) = state.queued.pop_front() {
                let chunk = first.chunk;
                let mut tasks = VecDeque::from([first]);
                let share = match chunk {
                    Some(_) => usize::MAX,
                    None => (state.queued.len() / self.slots).min(MAX_JOB - 1),
                };
                while tasks.len() <= share && state.queued.front().is_some_and(|t| t.chunk == chunk)
                {
                    tasks.extend(state.queued.pop_front());
                }
                return Some(Job {
                    tasks,
                    running: false,
                });
            }
            state = match next_due {
                Some(due) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    self.work
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None if state.closed => return None,
                None => self.work.wait(state).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// The worker has the job and starts its first task: one attempt is counted for it.
    pub(crate) fn start(&self, job: &mut Job<P>) {
        if let Some(first) = job.tasks.front_mut() {
            first.attempts += 1;
            job.running = true;
        }
    }

    /// The worker finished the running task with `result`; the next task of the job (if
    /// any) is now running.
    pub(crate) fn complete(&self, job: &mut Job<P>, result: TaskResult) {
        if let Some(task) = job.tasks.pop_front() {
            job.running = false;
            self.settle(task, result);
            self.start(job);
        }
    }

    /// The one path for a worker that ended while it held `job`: the running task times
    /// out, is retried or is lost; the tasks it had not started go back to the front of
    /// the queue, in order, with no attempt counted.
    pub(crate) fn worker_ended(&self, mut job: Job<P>, end: WorkerEnd) {
        if job.running
            && let Some(task) = job.tasks.pop_front()
        {
            match end {
                WorkerEnd::TimedOut => self.settle(task, Err(TaskError::TimedOut)),
                WorkerEnd::Lost => self.lose(task),
            }
        }
        self.requeue(job.tasks.into());
    }

    /// The task's worker died under it: retry it if allowed, else fail it.
    fn lose(&self, mut task: Task<P>) {
        let terminated = self.lock().halt == Some(Halt::Terminated);
        if terminated {
            self.finish(task, Err(TaskError::Terminated));
            return;
        }
        task.lost += 1;
        if task.lost <= self.retries {
            let error = TaskError::WorkerLost {
                attempts: task.attempts,
            };
            self.retried(&task, &error, Duration::ZERO);
            // Retried alone: a chunk's other tasks must not wait for it.
            task.chunk = None;
            self.requeue(vec![task]);
        } else {
            let attempts = task.attempts;
            self.finish(task, Err(TaskError::WorkerLost { attempts }));
        }
    }

    /// A started task ended with `result`: a trap or a timeout is retried after a back-off
    /// while the task's error retries last; anything else is its result.
    fn settle(&self, mut task: Task<P>, result: TaskResult) {
        let retriable = matches!(result, Err(TaskError::Trapped(_) | TaskError::TimedOut));
        if !retriable || task.errored >= self.error_retries {
            self.finish(task, result);
            return;
        }
        let mut state = self.lock();
        if let Some(halt) = &state.halt {
            let error = halt.error();
            drop(state);
            self.finish(task, Err(error));
            return;
        }
        task.errored += 1;
        task.chunk = None;
        let delay = back_off(self.back_off, task.errored);
        if let Err(error) = &result {
            tracing::debug!(task = task.id, ?delay, %error, "retrying a failed task");
            self.retried(&task, error, delay);
        }
        state.delayed.push((Instant::now() + delay, task));
        drop(state);
        // A slot waiting without a deadline must learn of the new one.
        self.work.notify_all();
    }

    /// Puts tasks back at the front of the queue, in order; fails them if the pool halted.
    fn requeue(&self, tasks: Vec<Task<P>>) {
        if tasks.is_empty() {
            return;
        }
        let mut state = self.lock();
        if let Some(halt) = &state.halt {
            let error = halt.error();
            drop(state);
            for task in tasks {
                self.finish(task, Err(error.clone()));
            }
            return;
        }
        for task in tasks.into_iter().rev() {
            state.queued.push_front(task);
        }
        drop(state);
        self.work.notify_all();
    }

    /// Records a task's result once and updates the counters.
    fn finish(&self, task: Task<P>, result: TaskResult) {
        let counter = if result.is_ok() {
            &self.counters.succeeded
        } else {
            &self.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        task.cell.complete(result, task.attempts);
        let mut state = self.lock();
        state.outstanding -= 1;
        if state.outstanding == 0 {
            self.idle.notify_all();
        }
    }

    /// No more submissions; the queued tasks still run.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }

    /// Whether `close` (or `terminate`) was called.
    pub(crate) fn is_closed(&self) -> bool {
        let state = self.lock();
        state.closed || state.halt == Some(Halt::Terminated)
    }

    /// Stops the pool: queued tasks fail with [`TaskError::Terminated`], and so do the
    /// running ones when their workers report back or die.
    pub(crate) fn terminate(&self) {
        self.halt(Halt::Terminated);
    }

    /// Workers keep failing to start: every queued task fails with `reason`, and so does
    /// any later submission.
    pub(crate) fn break_pool(&self, reason: String) {
        self.halt(Halt::Broken(reason));
    }

    fn halt(&self, halt: Halt) {
        let mut state = self.lock();
        if halt == Halt::Terminated {
            state.closed = true;
        }
        let error = halt.error();
        state.halt = Some(halt);
        let mut queued: Vec<Task<P>> = state.queued.drain(..).collect();
        queued.extend(state.delayed.drain(..).map(|(_, task)| task));
        drop(state);
        self.work.notify_all();
        for task in queued {
            self.finish(task, Err(error.clone()));
        }
    }

    /// Whether a worker slot should stop: halted, or closed with nothing queued.
    pub(crate) fn is_finished(&self) -> bool {
        let state = self.lock();
        state.halt.is_some()
            || (state.closed && state.queued.is_empty() && state.delayed.is_empty())
    }

    /// Sleeps for `delay` before a slot's next start attempt; termination wakes it.
    pub(crate) fn back_off(&self, delay: Duration) {
        let state = self.lock();
        if state.halt != Some(Halt::Terminated) {
            let _ = self.work.wait_timeout(state, delay);
        }
    }

    /// A worker slot started a worker process.
    pub(crate) fn worker_started(&self) {
        self.counters
            .workers_started
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until no task is outstanding, at most `timeout`; whether none is.
    pub(crate) fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        let busy = |state: &mut State<P>| state.outstanding > 0;
        let state = self.lock();
        let state = crate::sync::wait_while(&self.idle, state, timeout, busy);
        state.outstanding == 0
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let c = &self.counters;
        PoolStats {
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            workers_started: c.workers_started.load(Ordering::Relaxed),
            outstanding: self.lock().outstanding,
            duplicates: 0,
        }
    }
}

/// Moves the delayed tasks whose back-off is over to the front of the queue (oldest due
/// first); when the next of the others is due.
fn release_due<P>(state: &mut State<P>) -> Option<Instant> {
    if state.delayed.is_empty() {
        return None;
    }
    let now = Instant::now();
    state.delayed.sort_by_key(|(due, _)| *due);
    let ready = state.delayed.partition_point(|(due, _)| *due <= now);
    for (_, task) in state.delayed.drain(..ready).rev() {
        state.queued.push_front(task);
    }
    state.delayed.first().map(|(due, _)| *due)
}

/// The wait before error retry number `retry` (from 1): `base` doubled per retry, capped
/// at [`MAX_BACK_OFF`], then a uniformly random part of its second half taken off, so that
/// tasks failing together do not come back together.
fn back_off(base: Duration, retry: u32) -> Duration {
    let full = base
        .saturating_mul(1 << retry.saturating_sub(1).min(20))
        .min(MAX_BACK_OFF);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(n: u32) -> TaskResult {
        Ok(vec![wasmtime::component::Val::U32(n)])
    }

    fn ids(job: &Job<u32>) -> Vec<u32> {
        job.tasks().map(|t| *t.payload()).collect()
    }

    #[test]
    fn single_tasks_are_shared_between_slots_and_chunks_travel_whole() {
        let s = Scheduler::new(2, 0);
        s.submit((0..8).collect(), false).unwrap();
        // 7 left after the first, split between 2 slots: 1 + 3.
        assert_eq!(ids(&s.next_job().unwrap()), [0, 1, 2, 3]);
        assert_eq!(ids(&s.next_job().unwrap()), [4, 5]);
        s.submit(vec![10, 11, 12], true).unwrap();
        s.submit(vec![20, 21], true).unwrap();
        assert_eq!(ids(&s.next_job().unwrap()), [6, 7]);
        assert_eq!(ids(&s.next_job().unwrap()), [10, 11, 12]);
        assert_eq!(ids(&s.next_job().unwrap()), [20, 21]);
    }

    #[test]
    fn a_burst_of_single_tasks_is_cut_into_jobs_of_at_most_max_job() {
        let s = Scheduler::new(1, 0);
        s.submit((0..200).collect(), false).unwrap();
        assert_eq!(s.next_job().unwrap().tasks().count(), MAX_JOB);
    }

    #[test]
    fn completed_tasks_resolve_once_and_the_pool_goes_idle() {
        let s = Scheduler::new(1, 0);
        let results = s.submit(vec![1, 2], false).unwrap();
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        s.complete(&mut job, ok(1));
        assert!(!s.wait_idle(Some(Duration::ZERO)));
        s.complete(&mut job, Err(TaskError::Trapped("t".into())));
        assert!(job.current().is_none());
        assert!(s.wait_idle(Some(Duration::ZERO)));
        assert_eq!(results[0].get(), ok(1));
        assert_eq!(results[1].get(), Err(TaskError::Trapped("t".into())));
        let stats = s.stats();
        assert_eq!(
            (stats.succeeded, stats.failed, stats.outstanding),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_lost_worker_retries_its_running_task_and_requeues_the_unstarted() {
        let s = Scheduler::new(1, 1);
        let results = s.submit(vec![1, 2, 3], false).unwrap();
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        s.complete(&mut job, ok(1));
        // Task 2 is running, 3 was sent but not started.
        s.worker_ended(job, WorkerEnd::Lost);
        assert_eq!(s.stats().retried, 1);
        // The unstarted task goes back in front of the retried one, as it always has.
        let mut job = s.next_job().unwrap();
        assert_eq!(ids(&job), [3, 2]);
        s.start(&mut job);
        s.complete(&mut job, ok(3));
        // Task 2 runs a second time; losing it again exceeds retries = 1.
        s.worker_ended(job, WorkerEnd::Lost);
        assert_eq!(results[2].get(), ok(3));
        assert_eq!(results[1].get(), Err(TaskError::WorkerLost { attempts: 2 }));
        assert_eq!(results[0].get(), ok(1));
        assert_eq!(s.stats().outstanding, 0);
    }

    #[test]
    fn a_job_never_started_goes_back_whole_without_an_attempt() {
        let s = Scheduler::new(1, 0);
        let results = s.submit(vec![1, 2], true).unwrap();
        let job = s.next_job().unwrap();
        s.worker_ended(job, WorkerEnd::Lost);
        let mut job = s.next_job().unwrap();
        assert_eq!(ids(&job), [1, 2]);
        s.start(&mut job);
        s.worker_ended(job, WorkerEnd::Lost);
        // retries = 0 and one attempt: lost; task 2 requeued.
        assert_eq!(results[0].get(), Err(TaskError::WorkerLost { attempts: 1 }));
        assert_eq!(ids(&s.next_job().unwrap()), [2]);
    }

    #[test]
    fn a_timed_out_task_fails_and_is_never_retried() {
        let s = Scheduler::new(1, 5);
        let results = s.submit(vec![1, 2], false).unwrap();
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        s.worker_ended(job, WorkerEnd::TimedOut);
        assert_eq!(results[0].get(), Err(TaskError::TimedOut));
        assert_eq!(s.stats().retried, 0);
        assert_eq!(ids(&s.next_job().unwrap()), [2]);
    }

    #[test]
    fn traps_and_timeouts_are_retried_after_a_back_off_when_asked_for() {
        let s = Scheduler::new(1, 0).with_error_retries(2, Duration::from_millis(20));
        let results = s.submit(vec![1, 2], false).unwrap();
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        let failed_at = Instant::now();
        s.complete(&mut job, Err(TaskError::Trapped("t".into())));
        // Task 2 runs meanwhile; task 1 comes back only after its back-off (10–20 ms).
        assert_eq!(ids(&job), [2]);
        s.complete(&mut job, ok(2));
        let mut job = s.next_job().unwrap();
        assert!(failed_at.elapsed() >= Duration::from_millis(10));
        assert_eq!(ids(&job), [1]);
        s.start(&mut job);
        s.worker_ended(job, WorkerEnd::TimedOut);
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        // The third failure exhausts error_retries = 2 and is the result.
        s.complete(&mut job, Err(TaskError::Trapped("again".into())));
        assert_eq!(results[0].get(), Err(TaskError::Trapped("again".into())));
        assert_eq!(results[0].attempts(), 3);
        assert_eq!(results[1].attempts(), 1);
        assert_eq!(s.stats().retried, 2);
        assert!(s.wait_idle(Some(Duration::ZERO)));
    }

    #[test]
    fn a_closed_pool_waits_for_tasks_in_back_off_and_terminate_fails_them() {
        let s = Scheduler::new(1, 0).with_error_retries(1, Duration::from_secs(60));
        let results = s.submit(vec![1], false).unwrap();
        s.close();
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        s.complete(&mut job, Err(TaskError::TimedOut));
        // Waiting out a minute-long back-off: the slots must not end.
        assert!(!s.is_finished());
        s.terminate();
        assert_eq!(results[0].get(), Err(TaskError::Terminated));
        assert!(s.is_finished() && s.next_job().is_none());
    }

    #[test]
    fn lost_workers_and_errors_have_separate_budgets_and_other_errors_are_final() {
        let s = Scheduler::new(1, 1).with_error_retries(1, Duration::ZERO);
        let results = s.submit(vec![1, 2], false).unwrap();
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        s.worker_ended(job, WorkerEnd::Lost);
        let mut job = s.next_job().unwrap();
        assert_eq!(ids(&job), [2, 1]);
        s.start(&mut job);
        // An exit is the guest's answer, not a transient failure.
        s.complete(&mut job, Err(TaskError::Exited(3)));
        s.complete(&mut job, Err(TaskError::Trapped("t".into())));
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        s.worker_ended(job, WorkerEnd::Lost);
        assert_eq!(results[1].get(), Err(TaskError::Exited(3)));
        assert_eq!(results[0].get(), Err(TaskError::WorkerLost { attempts: 3 }));
    }

    #[test]
    fn back_off_doubles_is_jittered_into_its_upper_half_and_is_capped() {
        let base = Duration::from_millis(100);
        for retry in 1..=4 {
            let full = base * (1 << (retry - 1));
            let wait = back_off(base, retry);
            assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
        }
        assert!(back_off(base, 40) <= MAX_BACK_OFF);
    }

    #[test]
    fn terminate_fails_queued_and_returning_tasks_and_refuses_new_ones() {
        let s = Scheduler::new(1, 3);
        let results = s.submit(vec![1, 2, 3], true).unwrap();
        let queued = s.submit(vec![4], false).unwrap();
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        s.terminate();
        assert_eq!(queued[0].get(), Err(TaskError::Terminated));
        assert!(s.is_finished() && s.is_closed() && s.next_job().is_none());
        // The worker is killed under its job: nothing is retried.
        s.worker_ended(job, WorkerEnd::Lost);
        for result in &results {
            assert_eq!(result.get(), Err(TaskError::Terminated));
        }
        assert_eq!(s.submit(vec![5], false).unwrap_err(), Refused::Closed);
        assert!(s.wait_idle(Some(Duration::ZERO)));
    }

    #[test]
    fn a_broken_pool_fails_everything_with_its_reason() {
        let s = Scheduler::new(1, 0);
        let results = s.submit(vec![1], false).unwrap();
        s.break_pool("no start".into());
        assert_eq!(results[0].get(), Err(TaskError::Failed("no start".into())));
        assert_eq!(
            s.submit(vec![2], false).unwrap_err(),
            Refused::Broken("no start".into())
        );
        assert!(s.is_finished() && !s.is_closed());
    }

    #[test]
    fn close_lets_queued_tasks_run_then_ends_the_slots() {
        let s = Scheduler::new(1, 0);
        s.submit(vec![1], false).unwrap();
        s.close();
        assert_eq!(s.submit(vec![2], false).unwrap_err(), Refused::Closed);
        assert!(!s.is_finished());
        let mut job = s.next_job().unwrap();
        s.start(&mut job);
        s.complete(&mut job, ok(1));
        assert!(s.is_finished());
        assert!(s.next_job().is_none());
    }

    #[test]
    fn a_waiting_slot_wakes_when_work_arrives() {
        let s = Arc::new(Scheduler::new(1, 0));
        let (got, job) = crossbeam_channel::bounded(1);
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || got.send(s.next_job().map(|job| ids(&job))))
        };
        s.submit(vec![7], false).unwrap();
        let job = job.recv_timeout(Duration::from_secs(10));
        // Whatever happened, the waiter is released before the test ends.
        s.terminate();
        waiter.join().unwrap().unwrap();
        assert_eq!(job.unwrap(), Some(vec![7]));
    }
}
