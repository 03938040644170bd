//! Timers without a timer wheel: one deadline per task, one list per executor.
//!
//! As in embassy, a timer future does not own a timer slot. It lowers its task's
//! `expires_at` to its deadline (`fetch_min`) and returns `Pending`; after each poll the
//! executor links tasks with a deadline into its timer list. Each round walks that
//! list: tasks whose deadline passed are woken (and unlinked), the rest give the next
//! deadline for the idle loop. A woken timer future re-checks the clock itself, so a
//! wake for a deadline that belonged to a dropped timer, or to a sibling future in the
//! same task, only costs one spurious poll.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use core::task::Waker;

use super::executor::{Busy, Header};
use super::task::{self, COMPLETED, Free, NEVER};
use super::waker::task_of;
use crate::time::Instant;

/// The panic message of timers polled with a foreign waker.
pub(crate) const NOT_IN_TASK: &str = "torito timers must be polled inside a torito executor task";

/// Wakes every linked task whose deadline is `<= now` and unlinks it, unlinks tasks
/// that completed or no longer have a deadline, and returns the earliest remaining
/// deadline (or `NEVER`). Tasks woken here are polled in the same round.
pub(crate) fn fire(busy: &mut Busy<'_>, now: u64) -> u64 {
    let mut next_deadline = NEVER;
    // `slot` is the link pointing at the task under inspection: the list head first,
    // then the `next` field of the last task kept.
    let mut slot: *mut *mut Header = busy.timers();
    // SAFETY: `busy` proves we hold the busy flag, the only way to touch the list;
    // `slot` points to the head or to a linked (hence live) task's link.
    while let Some(task) = NonNull::new(unsafe { *slot }) {
        // SAFETY: linked tasks are live: the list holds a reference to each.
        let header = unsafe { task.as_ref() };
        // SAFETY: busy held, so this executor is the only one touching links.
        let link = unsafe { &mut *header.timer.get() };
        let expires_at = header.expires_at.load(Relaxed);
        let keep = if header.state.load(Acquire) & COMPLETED != 0 || expires_at == NEVER {
            false
        } else if expires_at <= now {
            // Reset before waking: the poll this wake causes re-registers any timer
            // still pending, so nothing registered before this store is lost.
            header.expires_at.store(NEVER, Relaxed);
            // SAFETY: live, and the list's reference is held across the call.
            unsafe { task::wake(task, false) };
            false
        } else {
            next_deadline = next_deadline.min(expires_at);
            true
        };
        if keep {
            slot = &raw mut link.next;
        } else {
            // SAFETY: as above; `slot` is not aliased by any live reference.
            unsafe { *slot = link.next };
            link.next = ptr::null_mut();
            link.linked = false;
            // SAFETY: the list's reference, given up; `link` and `header` are not used
            // after this. Busy held: we are in task context on the owning core.
            unsafe { task::release(task, Free::Now) };
        }
    }
    next_deadline
}

/// Links `task` into the timer list if it has a deadline and is not linked yet.
/// Returns its deadline (or `NEVER`).
///
/// # Safety
///
/// `task` is live, owned by the executor `busy` was taken on, and the caller holds a
/// reference to it.
pub(crate) unsafe fn link(busy: &mut Busy<'_>, task: NonNull<Header>) -> u64 {
    // SAFETY: live (caller's reference).
    let header = unsafe { task.as_ref() };
    // SeqCst: the other half of the Dekker pair in `register`.
    let expires_at = header.expires_at.load(SeqCst);
    if expires_at != NEVER {
        // SAFETY: busy held: we alone touch links and the list head.
        let link = unsafe { &mut *header.timer.get() };
        if !link.linked {
            // SAFETY: live and we hold a reference; the new one belongs to the list.
            unsafe { task::retain(task) };
            link.linked = true;
            let head = busy.timers();
            link.next = *head;
            *head = task.as_ptr();
        }
    }
    expires_at
}

/// The timer view of the task behind a `Waker`.
pub(crate) struct TaskTimer<'a> {
    task: NonNull<Header>,
    _waker: PhantomData<&'a Waker>,
}

impl<'a> TaskTimer<'a> {
    /// # Panics
    ///
    /// If `waker` is not a torito task waker (see [`NOT_IN_TASK`]).
    pub(crate) fn of(waker: &'a Waker) -> Self {
        match task_of(waker) {
            Some(task) => TaskTimer {
                task,
                _waker: PhantomData,
            },
            None => panic!("{}", NOT_IN_TASK),
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the borrowed waker holds a reference for `'a`.
        unsafe { self.task.as_ref() }
    }

    /// The owning executor's clock.
    pub(crate) fn now(&self) -> Instant {
        self.header().executor.clock.now()
    }

    /// Asks for a wake once the clock reaches `deadline`.
    pub(crate) fn register(&self, deadline: Instant) {
        let header = self.header();
        // SeqCst, with the SeqCst `current` stores and `expires_at` load of the
        // executor (Dekker): if this runs outside the task's own poll (say, a future
        // polled elsewhere with this task's waker), either we see `current` is not
        // our task and wake it, or the executor's post-poll `link` sees our deadline.
        header.expires_at.fetch_min(deadline.as_nanos(), SeqCst);
        if header.executor.current.load(SeqCst) != self.task.as_ptr() {
            // Not inside our task's poll: nobody would link it, so get it polled.
            // SAFETY: live, and the waker holds a reference during the call.
            unsafe { task::wake(self.task, false) };
        }
    }
}
