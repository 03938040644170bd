//! One round of an executor: fire timers, drain the run queue, poll each task once.
//!
//! The top of `raw`: it drives the pieces below it (the task life cycle, the wakers it
//! polls with, the timer list) over the state defined in `raw::executor`.

use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{AcqRel, Acquire, Release, SeqCst};
use core::task::Context;

use super::executor::{Busy, Executor, Header};
use super::task::{self, COMPLETED, FREEING, Free, MainTask, RUNNING, SCHEDULED};
use super::timer_queue;
use super::waker::waker_ref;

/// Polls one task with the busy flag held; returns "completed".
///
/// # Safety
///
/// `task` is live, not completed, owned by the executor `busy` was taken on, and the
/// caller holds a reference to it for the duration of the call.
unsafe fn poll_task(busy: &Busy<'_>, task: NonNull<Header>) -> bool {
    let executor = busy.executor();
    // SeqCst pairs with `timer_queue::register` (Dekker): either the registration
    // sees us polling this task, or we see its deadline after the poll.
    executor.current.store(task.as_ptr(), SeqCst);
    // SAFETY: live for the call (caller's reference).
    let waker = unsafe { waker_ref(task) };
    let mut cx = Context::from_waker(&waker);
    // SAFETY: owning executor, busy held, task RUNNING/not completed (caller).
    let completed = unsafe { task::poll(task, &mut cx) };
    executor.current.store(ptr::null_mut(), SeqCst);
    completed
}

/// One round. Returns (tasks polled, earliest pending timer deadline or `NEVER`).
///
/// # Panics
///
/// If `executor` is already running (see `Executor::enter`), and if a task panics.
pub(crate) fn run_once(executor: &Executor) -> (usize, u64) {
    let mut busy = executor.enter();
    let now = executor.clock.now().as_nanos();
    // Fire timers first: tasks they wake join this round's batch.
    let mut next_deadline = timer_queue::fire(&mut busy, now);
    let mut polled = 0;
    // Everything woken from here on lands in a fresh list: polled next round.
    for task in executor.queue.take_all() {
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
        let completed = unsafe { poll_task(&busy, task) };
        if completed {
            // SAFETY: RUNNING and just returned Ready; this consumes the
            // executor's reference while we still hold the queue's.
            unsafe { task::complete(task) };
        } else {
            // Release: the poll's writes happen before a later poll on another
            // core (only possible if the executor moves between cores).
            header.state.fetch_and(!RUNNING, Release);
            // SAFETY: live (queue reference), owned by this executor.
            let expires_at = unsafe { timer_queue::link(&mut busy, task) };
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
///
/// # Panics
///
/// If `executor` is already running (see `Executor::enter`), and if `poll` panics.
pub(crate) fn poll_main<R>(
    executor: &Executor,
    main: &MainTask,
    poll: impl FnOnce(&mut Context<'_>) -> R,
) -> R {
    let mut busy = executor.enter();
    let task = main.task();
    // SeqCst: see `poll_task`.
    executor.current.store(task.as_ptr(), SeqCst);
    let result = {
        // SAFETY: `main` holds a reference for the whole borrow.
        let waker = unsafe { waker_ref(task) };
        poll(&mut Context::from_waker(&waker))
    };
    executor.current.store(ptr::null_mut(), SeqCst);
    // SAFETY: `main` holds a reference, and `MainTask::new` made it for this executor
    // (`block_on` makes both from the same `&'static Executor`).
    unsafe { timer_queue::link(&mut busy, task) };
    result
}
