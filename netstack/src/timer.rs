//! Socket timeouts, kept by the runner rather than by the executor.
//!
//! A socket operation with a timeout registers an entry holding only the duration and
//! its waker; the runner arms it with its own clock at its next poll (which the
//! registration triggers, so "next poll" is "now" up to scheduling), fires it when due
//! and includes it in its next deadline. So timeouts work the same in a torito task, in
//! a blocking wrapper parked by the kernel, and in host tests driving
//! [`Runner::poll`](crate::Runner::poll) with explicit time.

use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use torito_executor::{Duration, Instant};

use crate::error::Error;
use crate::stack::{Inner, Stack};

struct Entry {
    id: u64,
    after: Duration,
    deadline: Option<Instant>,
    fired: bool,
    waker: Waker,
}

/// The pending socket timeouts.
#[derive(Default)]
pub(crate) struct Timers {
    entries: Vec<Entry>,
    next_id: u64,
}

impl Timers {
    fn add(&mut self, after: Duration, waker: &Waker) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push(Entry {
            id,
            after,
            deadline: None,
            fired: false,
            waker: waker.clone(),
        });
        id
    }

    /// Whether timer `id` fired; if not, `waker` is the one to wake when it does.
    fn check(&mut self, id: u64, waker: &Waker) -> bool {
        let Some(entry) = self.entries.iter_mut().find(|entry| entry.id == id) else {
            return true;
        };
        if !entry.fired && !entry.waker.will_wake(waker) {
            entry.waker = waker.clone();
        }
        entry.fired
    }

    fn remove(&mut self, id: u64) {
        self.entries.retain(|entry| entry.id != id);
    }

    /// Arms new timers, fires due ones; returns the earliest deadline left.
    pub fn fire(&mut self, now: Instant) -> Option<Instant> {
        let mut next = None::<Instant>;
        for entry in self.entries.iter_mut().filter(|entry| !entry.fired) {
            let deadline = *entry.deadline.get_or_insert(now + entry.after);
            if now >= deadline {
                entry.fired = true;
                entry.waker.wake_by_ref();
            } else {
                next = Some(next.map_or(deadline, |next| next.min(deadline)));
            }
        }
        next
    }
}

/// Removes its timer when the operation ends, however it ends (even by being dropped).
struct Guard<'a> {
    stack: &'a Stack,
    id: Option<u64>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.stack.lock().timers.remove(id);
        }
    }
}

impl Stack {
    /// Polls `op` under the lock until it is ready, or until `timeout` passed
    /// ([`Error::TimedOut`]). `op` registers the waker with smoltcp before it returns
    /// `Pending`.
    pub(crate) async fn wait<T>(
        &self,
        timeout: Option<Duration>,
        mut op: impl FnMut(&mut Inner, &Waker) -> Poll<Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut guard = Guard {
            stack: self,
            id: None,
        };
        poll_fn(|cx| {
            let mut inner = self.lock();
            if let Poll::Ready(result) = op(&mut inner, cx.waker()) {
                return Poll::Ready(result);
            }
            if let Some(after) = timeout {
                match guard.id {
                    None => {
                        guard.id = Some(inner.timers.add(after, cx.waker()));
                        inner.wake_runner();
                    }
                    Some(id) => {
                        if inner.timers.check(id, cx.waker()) {
                            return Poll::Ready(Err(Error::TimedOut));
                        }
                    }
                }
            }
            Poll::Pending
        })
        .await
    }
}
