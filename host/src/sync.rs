//! Waiting on a condition variable with an optional deadline, as every handle that can be
//! joined (`Process`, `AsyncResult`, `Pool::wait_idle`) does.

use std::sync::{Condvar, MutexGuard};
use std::time::Duration;

/// Waits while `condition` holds, at most `timeout` (forever when `None`); returns the guard
/// either way, so the caller reads the state it waited for. A poisoned lock is taken over:
/// the state behind it is plain data that stays consistent.
pub(crate) fn wait_while<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Option<Duration>,
    condition: impl FnMut(&mut T) -> bool,
) -> MutexGuard<'a, T> {
    match timeout {
        None => condvar
            .wait_while(guard, condition)
            .unwrap_or_else(|e| e.into_inner()),
        Some(timeout) => {
            condvar
                .wait_timeout_while(guard, timeout, condition)
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
    }
}
