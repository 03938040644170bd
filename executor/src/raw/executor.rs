//! The raw executor: one round of "fire timers, drain the run queue, poll each task once".

use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{AcqRel, Acquire, Release, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicPtr};
use core::task::Context;

use super::queue::RunQueue;
use super::task::{self, COMPLETED, FREEING, Free, Header, MainTask, RUNNING, SCHEDULED};
use super::timer_queue;
use super::waker::waker_ref;
use crate::{Clock, Platform};

/// Everything an executor owns. Wrapped by the safe `crate::Executor`.
pub(crate) struct RawExecutor {
    pub(crate) core: usize,
    pub(crate) platform: &'static dyn Platform,
    pub(crate) clock: &'static dyn Clock,
    pub(crate) queue: RunQueue,
    /// Set while a round (or `block_on`'s poll of its future) runs; see [`Busy`].
    busy: AtomicBool,
    /// The task being polled right now, or null. Lets a timer registration tell
    /// whether it happens inside its task's poll (see `timer_queue::register`).
    pub(crate) current: AtomicPtr<Header>,
    /// Head of the timer list; only touched with `busy` held.
    pub(crate) timers: UnsafeCell<*mut Header>,
}

// SAFETY: the only non-`Sync` field is `timers` (and the `TimerLink`s it reaches),
// which is only accessed while holding `busy`, acquired with an Acquire swap and
// released with a Release store: those accesses are serialized even if the executor is
// (wrongly) driven from two cores. Everything else is atomic or immutable.
unsafe impl Sync for RawExecutor {}

/// Proof that the caller holds the executor's busy flag: the only way to the timer list
/// and to polling. Dropping it releases the flag, also when a poll panics (host tests).
pub(crate) struct Busy<'a> {
    executor: &'a RawExecutor,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.executor.current.store(ptr::null_mut(), SeqCst);
        // Release: this round's writes (timer list, task stages) happen before the
        // next round, whichever core runs it.
        self.executor.busy.store(false, Release);
    }
}

impl RawExecutor {
    pub(crate) const fn new(
        core: usize,
        platform: &'static dyn Platform,
        clock: &'static dyn Clock,
    ) -> Self {
        RawExecutor {
            core,
            platform,
            clock,
            queue: RunQueue::new(),
            busy: AtomicBool::new(false),
            current: AtomicPtr::new(ptr::null_mut()),
            timers: UnsafeCell::new(ptr::null_mut()),
        }
    }

    /// # Panics
    ///
    /// If the executor is already running: `run_once`/`block_on` called from inside one
    /// of its tasks, or the same executor driven by two cores at once.
    fn enter(&self) -> Busy<'_> {
        if self.busy.swap(true, Acquire) {
            panic!(
                "torito executor re-entered: run_once/block_on called from inside a task, or one executor driven by two cores"
            );
        }
        Busy { executor: self }
    }

    /// Polls one task with the busy flag held; returns "completed".
    ///
    /// # Safety
    ///
    /// `task` is live, not completed, owned by this executor, and the caller holds a
    /// reference to it for the duration of the call.
    unsafe fn poll_task(&self, _busy: &Busy<'_>, task: NonNull<Header>) -> bool {
        // SeqCst pairs with `timer_queue::register` (Dekker): either the registration
        // sees us polling this task, or we see its deadline after the poll.
        self.current.store(task.as_ptr(), SeqCst);
        // SAFETY: live for the call (caller's reference).
        let waker = unsafe { waker_ref(task) };
        let mut cx = Context::from_waker(&waker);
        // SAFETY: owning executor, busy held, task RUNNING/not completed (caller).
        let completed = unsafe { task::poll(task, &mut cx) };
        self.current.store(ptr::null_mut(), SeqCst);
        completed
    }

    /// One round. Returns (tasks polled, earliest pending timer deadline or `NEVER`).
    pub(crate) fn run_once(&self) -> (usize, u64) {
        let busy = self.enter();
        let now = self.clock.now().as_nanos();
        // Fire timers first: tasks they wake join this round's batch.
        let mut next_deadline = timer_queue::fire(self, &busy, now);
        let mut polled = 0;
        // Everything woken from here on lands in a fresh list: polled next round.
        for task in self.queue.take_all() {
            // SAFETY: the batch hands us the queue's reference, so the task is live.
            let header = unsafe { task.as_ref() };
            let state = header.state.load(Acquire);
            if state & FREEING != 0 {
                // SAFETY: pushed by `release(.., Deferred)`; the claim is ours now.
                unsafe { task::dealloc(task) };
                continue;
            }
            if state & COMPLETED != 0 {
                // Woken before it completed. SCHEDULED stays set, so later wakes stay
                // no-ops. SAFETY: the queue's reference, not used afterwards.
                unsafe { task::release(task, Free::Now) };
                continue;
            }
            // SCHEDULED is set (we took it from the queue) and RUNNING clear: one XOR
            // moves it to RUNNING. From here a wake sets SCHEDULED and queues it again.
            // AcqRel: Acquire pairs with every waker's RMW (see `task::wake`).
            header.state.fetch_xor(SCHEDULED | RUNNING, AcqRel);
            polled += 1;
            // SAFETY: live (queue reference), ours, RUNNING so not completed.
            let completed = unsafe { self.poll_task(&busy, task) };
            if completed {
                // SAFETY: RUNNING and just returned Ready; this consumes the
                // executor's reference while we still hold the queue's.
                unsafe { task::complete(task) };
            } else {
                // Release: the poll's writes happen before a later poll on another
                // core (only possible if the executor moves between cores).
                header.state.fetch_and(!RUNNING, Release);
                // SAFETY: live (queue reference), busy held.
                let expires_at = unsafe { timer_queue::link(self, &busy, task) };
                next_deadline = next_deadline.min(expires_at);
            }
            // SAFETY: the queue's reference, not used afterwards.
            unsafe { task::release(task, Free::Now) };
        }
        drop(busy);
        (polled, next_deadline)
    }

    /// Polls `block_on`'s future through `poll`, with `main`'s waker and the busy flag
    /// held, so its timers register like any task's.
    pub(crate) fn poll_main<R>(
        &self,
        main: &MainTask,
        poll: impl FnOnce(&mut Context<'_>) -> R,
    ) -> R {
        let busy = self.enter();
        let task = main.task();
        // SeqCst: see `poll_task`.
        self.current.store(task.as_ptr(), SeqCst);
        let result = {
            // SAFETY: `main` holds a reference for the whole borrow.
            let waker = unsafe { waker_ref(task) };
            poll(&mut Context::from_waker(&waker))
        };
        self.current.store(ptr::null_mut(), SeqCst);
        // SAFETY: `main` holds a reference; busy held.
        unsafe { timer_queue::link(self, &busy, task) };
        result
    }
}
