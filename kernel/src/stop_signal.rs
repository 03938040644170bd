//! A one-shot signal that any number of waiters on any cores await: the bookkeeping
//! behind `torito::shutdown()`, plain code tested on the host.
//!
//! A waiter is a small id; its waker is stored under that id while it waits and removed
//! when it is dropped. [`StopSignal::raise`] sets the flag first and then takes every
//! stored waker under the lock; [`StopSignal::poll`] checks the flag, and checks it again
//! under the lock before storing a waker. So a waiter either sees the flag or has its
//! waker taken by `raise`: no waiter sleeps through the signal. Only tasks take the lock
//! (interrupt handlers wake the one watcher task that calls `raise`).
//!
//! The wakers are a plain list searched by id: a poll that stores or refreshes a waker,
//! and a waiter's drop, cost a scan linear in the number of waiters (an accept loop and
//! its connections awaiting `until_shutdown`: one entry each). A `BTreeMap` made that
//! logarithmic but cost 8 KiB of echo's image.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Poll, Waker};

/// The signal: a flag, and the wakers of those waiting for it.
#[derive(Debug)]
pub struct StopSignal {
    raised: AtomicBool,
    waiters: spin::Mutex<Vec<(u64, Waker)>>,
    next_id: AtomicU64,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignal {
    /// A signal not raised, with no waiters.
    pub const fn new() -> Self {
        Self {
            raised: AtomicBool::new(false),
            waiters: spin::Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Whether the signal was raised.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// A new waiter's id (ids are never reused).
    pub fn waiter(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `Ready` once the signal is raised; else stores `waker` for waiter `id` (replacing
    /// the one it stored before) and returns `Pending`.
    pub fn poll(&self, id: u64, waker: &Waker) -> Poll<()> {
        if self.is_raised() {
            return Poll::Ready(());
        }
        let mut waiters = self.waiters.lock();
        // Again under the lock: `raise` sets the flag before it takes the lock, so a
        // waker stored after `raise` took the wakers sees the flag here.
        if self.is_raised() {
            return Poll::Ready(());
        }
        match waiters.iter_mut().find(|(stored_id, _)| *stored_id == id) {
            Some((_, stored)) if stored.will_wake(waker) => {}
            Some((_, stored)) => stored.clone_from(waker),
            None => waiters.push((id, waker.clone())),
        }
        Poll::Pending
    }

    /// Forgets waiter `id`'s waker (the waiter was dropped).
    pub fn forget(&self, id: u64) {
        let mut waiters = self.waiters.lock();
        if let Some(index) = waiters.iter().position(|(stored_id, _)| *stored_id == id) {
            waiters.swap_remove(index);
        }
    }

    /// Raises the signal; returns whether it was raised already, and the wakers to wake
    /// (outside the lock; empty on a second raise).
    pub fn raise(&self) -> (bool, Vec<Waker>) {
        let again = self.raised.swap(true, Ordering::AcqRel);
        let waiting = core::mem::take(&mut *self.waiters.lock());
        (again, waiting.into_iter().map(|(_, waker)| waker).collect())
    }

    /// A future ready once the signal is raised (its waker forgotten when dropped).
    pub fn wait(&'static self) -> Wait {
        Wait {
            signal: self,
            id: self.waiter(),
            registered: false,
        }
    }

    /// How many waiters have a waker stored.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiters.lock().len()
    }
}

/// What [`StopSignal::wait`] returns.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Wait {
    signal: &'static StopSignal,
    id: u64,
    registered: bool,
}

impl core::future::Future for Wait {
    type Output = ();

    fn poll(mut self: core::pin::Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<()> {
        let poll = self.signal.poll(self.id, cx.waker());
        self.registered |= poll.is_pending();
        poll
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if self.registered {
            self.signal.forget(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn every_waiter_is_woken_once_and_then_ready() {
        let signal = StopSignal::new();
        let waiters: Vec<_> = (0..5).map(|_| (signal.waiter(), counter())).collect();
        for (id, (_, waker)) in &waiters {
            assert_eq!(signal.poll(*id, waker), Poll::Pending);
            // Polled again with the same waker: still one entry.
            assert_eq!(signal.poll(*id, waker), Poll::Pending);
        }
        assert_eq!(signal.waiting(), 5);
        let (again, wakers) = signal.raise();
        assert!(!again);
        for waker in wakers {
            waker.wake();
        }
        for (id, (count, waker)) in &waiters {
            assert_eq!(count.0.load(Ordering::SeqCst), 1);
            assert_eq!(signal.poll(*id, waker), Poll::Ready(()));
        }
        assert_eq!(signal.waiting(), 0);
        // A waiter that comes later is ready at once and stores nothing.
        let (_, late) = counter();
        assert_eq!(signal.poll(signal.waiter(), &late), Poll::Ready(()));
        assert_eq!(signal.waiting(), 0);
        // A second raise says so, with nobody to wake.
        let (again, wakers) = signal.raise();
        assert!(again);
        assert!(wakers.is_empty());
    }

    #[test]
    fn a_new_waker_replaces_the_old_and_a_dropped_waiter_is_not_woken() {
        let signal = StopSignal::new();
        let (first_count, first) = counter();
        let (second_count, second) = counter();
        let id = signal.waiter();
        assert_eq!(signal.poll(id, &first), Poll::Pending);
        assert_eq!(signal.poll(id, &second), Poll::Pending);
        let (gone_count, gone) = counter();
        let gone_id = signal.waiter();
        assert_eq!(signal.poll(gone_id, &gone), Poll::Pending);
        signal.forget(gone_id);
        let (_, wakers) = signal.raise();
        assert_eq!(wakers.len(), 1);
        wakers.into_iter().for_each(Waker::wake);
        assert_eq!(first_count.0.load(Ordering::SeqCst), 0);
        assert_eq!(second_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(gone_count.0.load(Ordering::SeqCst), 0);
    }

    /// Waiters on other threads polling while the signal is raised: none is left
    /// pending without its waker taken (run many times to meet the interleavings).
    #[test]
    fn no_waiter_sleeps_through_a_raise_across_threads() {
        for _ in 0..200 {
            let signal = Arc::new(StopSignal::new());
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let signal = signal.clone();
                    std::thread::spawn(move || {
                        let (count, waker) = counter();
                        let id = signal.waiter();
                        let ready = signal.poll(id, &waker).is_ready();
                        (ready, count)
                    })
                })
                .collect();
            let (_, wakers) = signal.raise();
            wakers.into_iter().for_each(Waker::wake);
            for thread in threads {
                let (ready, count) = thread.join().unwrap();
                // Either it saw the flag, or its waker was taken and woken.
                assert!(ready || count.0.load(Ordering::SeqCst) == 1);
            }
        }
    }
}
