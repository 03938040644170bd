//! Task memory: the header every task starts with, its state bits, and its life cycle.
//!
//! A task is one `Box` allocation, `Task<F>` = [`Header`] + the future's stage
//! (future, then output). Everything that does not depend on `F` lives in the header so
//! the queue, the wakers and the timers are not generic; the few operations that do
//! depend on `F` go through a four-entry [`TaskVTable`], one per future type.
//!
//! # State bits
//!
//! ```text
//!                   spawn (refs: executor + queue + JoinHandle)
//!                     │
//!                     ▼
//!     ┌──────────▶ SCHEDULED ◀─────────── wake() from any core or interrupt:
//!     │               │                   sets SCHEDULED, pushes, wake_core()
//!     │               │ run_once takes the batch,
//!     │               ▼ flips SCHEDULED -> RUNNING in one RMW
//!     │            RUNNING ──── wake() here sets SCHEDULED again: polled next round
//!     │               │
//!     │   Pending ◀───┴───▶ Ready
//!     │      │                 │ future dropped, output stored,
//!     └── (idle, no bit)       ▼ RUNNING -> COMPLETED in one RMW
//!                          COMPLETED ── wake() is a no-op from here on
//!                             │  JoinHandle alive  -> it takes or drops the output
//!                             │  JoinHandle gone   -> output dropped right away
//!                             ▼
//!                     refs reach 0 ─▶ freed (by the executor, a JoinHandle, or,
//!                                     if a waker let go last, FREEING + queued
//!                                     so the owning executor frees it)
//! ```
//!
//! Orthogonal bits: `JOIN_INTEREST` (a JoinHandle exists; cleared when it is dropped:
//! "detached"), `JOIN_WAKER` (the JoinHandle published a waker in the join slot), `MAIN`
//! (the header-only task standing for `block_on`'s future, never queued).
//!
//! # References
//!
//! `refs` counts: the executor (until completion), the run queue (while `SCHEDULED`
//! and linked), the timer list (while linked), the JoinHandle, and every `Waker`. Only
//! the owning executor polls or completes a task, so the future itself is never
//! touched off its core.

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, fence};
use core::task::{Context, Poll};

use super::executor::{Executor, Header, TaskVTable, TimerLink};

/// Queued for a poll (or about to be pushed). The queue owns a reference.
pub(crate) const SCHEDULED: u32 = 1 << 0;
/// Being polled right now by the owning executor.
pub(crate) const RUNNING: u32 = 1 << 1;
/// The future returned `Ready` and was dropped. Never cleared.
pub(crate) const COMPLETED: u32 = 1 << 2;
/// A JoinHandle exists and will take (or drop) the output.
pub(crate) const JOIN_INTEREST: u32 = 1 << 3;
/// The join slot holds a waker the executor may read (and wake) at completion.
pub(crate) const JOIN_WAKER: u32 = 1 << 4;
/// The header-only task standing for `block_on`'s future: woken, never queued.
pub(crate) const MAIN: u32 = 1 << 5;
/// All references are gone; the task sits in the run queue only to be freed.
pub(crate) const FREEING: u32 = 1 << 6;

/// `expires_at` value meaning "no timer".
pub(crate) const NEVER: u64 = u64::MAX;

#[repr(C)]
struct Task<F: Future> {
    header: Header,
    stage: UnsafeCell<Stage<F>>,
}

enum Stage<F: Future> {
    Running(F),
    Finished(F::Output),
    Consumed,
}

impl<F: Future> Task<F> {
    const VTABLE: TaskVTable = TaskVTable {
        poll: Self::poll,
        take_output: Self::take_output,
        drop_output: Self::drop_output,
        dealloc: Self::dealloc,
    };

    /// # Safety
    ///
    /// `task` is a live `Task<F>` and the caller has exclusive access to its stage:
    /// the owning executor while not `COMPLETED`, the JoinHandle after observing
    /// `COMPLETED` (Acquire), or whoever frees it.
    unsafe fn stage<'a>(task: NonNull<Header>) -> &'a mut Stage<F> {
        // SAFETY: the header is the first field of a `#[repr(C)]` `Task<F>` and the
        // pointer came from that allocation (see `allocate`); exclusivity is the caller's.
        unsafe { &mut *task.cast::<Task<F>>().as_ref().stage.get() }
    }

    /// # Safety
    ///
    /// Called only by the owning executor (busy flag held), task live and not completed.
    unsafe fn poll(task: NonNull<Header>, cx: &mut Context<'_>) -> bool {
        // SAFETY: the owning executor has exclusive access to a stage that is not
        // completed (caller's contract).
        let stage = unsafe { Self::stage(task) };
        let Stage::Running(future) = stage else {
            // `run_once` checks COMPLETED before polling; a second `complete` would
            // flip COMPLETED back off, so fail loudly instead.
            unreachable!("torito task polled after completion");
        };
        // SAFETY: the future lives inside a `Box` that is never moved and is dropped in
        // place (by the assignment below or by `dealloc`), so it stays pinned.
        let future = unsafe { Pin::new_unchecked(future) };
        match future.poll(cx) {
            Poll::Pending => false,
            Poll::Ready(output) => {
                // Dropping `Running` here drops the future right after it completed.
                *stage = Stage::Finished(output);
                true
            }
        }
    }

    /// # Safety
    ///
    /// `task` is a live `Task<F>` that is `COMPLETED` (observed with Acquire), the caller
    /// is its JoinHandle and `out` points to an `Option<F::Output>`.
    unsafe fn take_output(task: NonNull<Header>, out: *mut ()) {
        // SAFETY: after COMPLETED the JoinHandle alone touches the stage (caller's
        // contract; the executor only drops the output when JOIN_INTEREST is clear).
        let stage = unsafe { Self::stage(task) };
        // Match by reference first: `replace` on a `Running` stage would move a pinned
        // future.
        if !matches!(stage, Stage::Finished(_)) {
            panic!("JoinHandle polled again after it returned the task's output");
        }
        if let Stage::Finished(output) = core::mem::replace(stage, Stage::Consumed) {
            // SAFETY: `out` points to an `Option<F::Output>` (caller's contract).
            unsafe { *out.cast::<Option<F::Output>>() = Some(output) };
        }
    }

    /// # Safety
    ///
    /// `task` is a live `Task<F>`, `COMPLETED`, and the caller is the one party
    /// responsible for the output (see `complete` and `JoinRef::drop`).
    unsafe fn drop_output(task: NonNull<Header>) {
        // SAFETY: exclusive access to a completed stage (caller's contract).
        let stage = unsafe { Self::stage(task) };
        if let Stage::Finished(_) = stage {
            *stage = Stage::Consumed;
        }
    }

    /// # Safety
    ///
    /// `task` came from `allocate::<F>` and its reference count reached zero.
    unsafe fn dealloc(task: NonNull<Header>) {
        // SAFETY: the pointer came from `Box::leak` of a `Box<Task<F>>` (`allocate`) and
        // no reference remains, so we own it.
        drop(unsafe { Box::from_raw(task.cast::<Task<F>>().as_ptr()) });
    }
}

/// Allocates a task. The returned pointer carries `refs` references.
fn allocate<F: Future>(
    executor: &'static Executor,
    future: F,
    state: u32,
    refs: usize,
) -> NonNull<Header> {
    let task = Box::new(Task {
        header: Header {
            state: AtomicU32::new(state),
            refs: AtomicUsize::new(refs),
            next: AtomicPtr::new(ptr::null_mut()),
            executor,
            vtable: &Task::<F>::VTABLE,
            expires_at: AtomicU64::new(NEVER),
            timer: UnsafeCell::new(TimerLink {
                next: ptr::null_mut(),
                linked: false,
            }),
            join_waker: UnsafeCell::new(None),
        },
        stage: UnsafeCell::new(Stage::Running(future)),
    });
    // Keep the pointer derived from the whole allocation: every later cast back to
    // `Task<F>` relies on its provenance covering the stage too.
    NonNull::from(Box::leak(task)).cast()
}

/// Spawns `future` on `executor`: allocates the task, queues it and wakes the core.
///
/// `Send` is required because the caller may be any core (the executor is shared),
/// and the future and its output then cross to the executor's core and back.
pub(crate) fn spawn<F>(executor: &'static Executor, future: F) -> JoinRef<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // References: the executor (until completion), the queue, the JoinHandle.
    let task = allocate(executor, future, SCHEDULED | JOIN_INTEREST, 3);
    // SAFETY: the task is fresh: SCHEDULED is set, nobody else can push it, and the
    // queue gets the reference counted for it above.
    unsafe { executor.queue.push(task) };
    executor.platform.wake_core(executor.core);
    JoinRef {
        task,
        _output: PhantomData,
    }
}

/// Who frees a task whose last reference is being dropped.
#[derive(Clone, Copy)]
pub(crate) enum Free {
    /// Free right here: the caller is in task context (the owning executor, a
    /// JoinHandle, `block_on`), where calling the allocator is fine.
    Now,
    /// Hand it to the owning executor: the caller may be a waker dropped in an
    /// interrupt handler, where the allocator's lock may be held by the code it
    /// interrupted.
    Deferred,
}

/// Adds a reference.
///
/// # Safety
///
/// `task` is live and the caller holds a reference to it.
pub(crate) unsafe fn retain(task: NonNull<Header>) {
    // Relaxed: like `Arc::clone`, a new reference can only be made from an existing
    // one, which already keeps the task alive; no data is published by this.
    // SAFETY: live (caller's contract).
    unsafe { task.as_ref() }.refs.fetch_add(1, Relaxed);
}

/// Drops one reference; frees the task if it was the last.
///
/// # Safety
///
/// `task` is live, the caller owns one reference and gives it up: it must not use
/// `task` afterwards.
pub(crate) unsafe fn release(task: NonNull<Header>, free: Free) {
    // SAFETY: live while we hold our reference.
    let header = unsafe { task.as_ref() };
    // Release: our own accesses to the task happen before whoever frees it; the
    // Acquire fence on the last reference makes all of them visible (as in `Arc`).
    if header.refs.fetch_sub(1, Release) != 1 {
        return;
    }
    fence(Acquire);
    match free {
        // SAFETY: that was the last reference, so we own the allocation.
        Free::Now => unsafe { (header.vtable.dealloc)(task) },
        Free::Deferred => {
            // Relaxed: the Release push publishes it.
            header.state.fetch_or(FREEING, Relaxed);
            let executor = header.executor;
            // SAFETY: nobody else holds a reference, so nobody else can push it and
            // the queue takes over our (last) claim on it; `run_once` frees it.
            unsafe { executor.queue.push(task) };
            executor.platform.wake_core(executor.core);
        }
    }
}

/// Marks `task` ready and queues it on its own executor, possibly from another core or
/// an interrupt handler. No allocation, no lock.
///
/// If `owned` is true the caller gives up one reference (`Waker::wake`), which is
/// reused for the queue when the task gets queued.
///
/// # Safety
///
/// `task` is live and the caller holds a reference to it (which it gives up if `owned`).
pub(crate) unsafe fn wake(task: NonNull<Header>, owned: bool) {
    // SAFETY: live while we hold our reference.
    let header = unsafe { task.as_ref() };
    // An RMW even when SCHEDULED is already set: AcqRel makes it part of the release
    // sequence the executor's `SCHEDULED -> RUNNING` RMW reads, so whatever the waker
    // wrote before waking is visible to the poll that follows, even if another waker
    // did the push.
    let prev = header.state.fetch_or(SCHEDULED, AcqRel);
    let queue_it = prev & (SCHEDULED | COMPLETED) == 0;
    if queue_it {
        let executor = header.executor;
        if prev & MAIN == 0 {
            if !owned {
                // SAFETY: live, and we hold a reference.
                unsafe { retain(task) };
            }
            // SAFETY: we set SCHEDULED, so this is the only push in flight, and the
            // queue gets the reference taken (or handed over) just above.
            unsafe { executor.queue.push(task) };
            executor.platform.wake_core(executor.core);
            return;
        }
        // `block_on` polls the main task itself; it only needs its core woken.
        executor.platform.wake_core(executor.core);
    }
    if owned {
        // SAFETY: the caller gave us this reference and we do not use `task` after.
        unsafe { release(task, Free::Deferred) };
    }
}

/// Polls the task's future once.
///
/// # Safety
///
/// Called only by the owning executor with its busy flag held, on a live task that is
/// `RUNNING` (hence not completed).
pub(crate) unsafe fn poll(task: NonNull<Header>, cx: &mut Context<'_>) -> bool {
    // SAFETY: forwarded contract; the vtable matches the allocation (`allocate`).
    unsafe { (task.as_ref().vtable.poll)(task, cx) }
}

/// Frees a task found in the run queue with `FREEING` set.
///
/// # Safety
///
/// `task` was pushed by `release(.., Free::Deferred)` and just taken from the queue.
pub(crate) unsafe fn dealloc(task: NonNull<Header>) {
    // SAFETY: no reference remains and the queue's claim is now ours.
    unsafe { (task.as_ref().vtable.dealloc)(task) }
}

/// Records completion right after `poll` returned `true`: publishes the output to the
/// JoinHandle (or drops it when detached), wakes the joiner, and drops the executor's
/// own reference.
///
/// # Safety
///
/// Called only by the owning executor, on a live task that is `RUNNING` and whose
/// `poll` just returned `true`; the caller owns the executor's reference to it, which
/// this consumes, and still holds the queue's.
pub(crate) unsafe fn complete(task: NonNull<Header>) {
    // SAFETY: live (we hold two references).
    let header = unsafe { task.as_ref() };
    // Release: publishes the output written by `poll`; Acquire: sees the JoinHandle's
    // latest JOIN_WAKER/JOIN_INTEREST and its waker write. RUNNING is set and
    // COMPLETED clear (only this executor sets it), so XOR flips exactly those two.
    let prev = header.state.fetch_xor(RUNNING | COMPLETED, AcqRel);
    if prev & JOIN_INTEREST == 0 {
        // Detached: nobody will ever take the output, drop it now, on this core.
        // SAFETY: the JoinHandle is gone and cleared JOIN_INTEREST before we set
        // COMPLETED, so it will not touch the stage: we are the only party.
        unsafe { (header.vtable.drop_output)(task) };
    } else if prev & JOIN_WAKER != 0 {
        // SAFETY: JOIN_WAKER was set when we set COMPLETED: the JoinHandle can no
        // longer write the slot (its unpublish RMW fails on COMPLETED), it only reads.
        if let Some(waker) = unsafe { &*header.join_waker.get() } {
            waker.wake_by_ref();
        }
    }
    // SAFETY: the executor's reference, given up here; the caller's queue reference
    // keeps the task alive.
    unsafe { release(task, Free::Now) };
}

/// The JoinHandle's claim on a task: one reference plus `JOIN_INTEREST`.
///
/// Only [`spawn`] makes one, with `T = F::Output`, which is what makes
/// `take_output` with `T` sound.
pub(crate) struct JoinRef<T> {
    task: NonNull<Header>,
    _output: PhantomData<T>,
}

// SAFETY: the header is only touched through atomics and the JOIN_WAKER protocol, and
// the output crosses cores only when `T: Send` (it is written on the executor's core).
unsafe impl<T: Send> Send for JoinRef<T> {}
// SAFETY: `&JoinRef` only reads the atomic state (`is_finished`).
unsafe impl<T: Send> Sync for JoinRef<T> {}

impl<T> JoinRef<T> {
    fn header(&self) -> &Header {
        // SAFETY: we hold a reference, so the task is live.
        unsafe { self.task.as_ref() }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.header().state.load(Acquire) & COMPLETED != 0
    }

    /// The JoinHandle's poll. Protocol for the join slot: while `JOIN_WAKER` is clear
    /// the slot is ours to write; once set, both sides only read it, until either we
    /// clear the bit again (only possible before `COMPLETED`) or the task completes.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        let header = self.header();
        let state = &header.state;
        let current = state.load(Acquire);
        if current & COMPLETED == 0 {
            if current & JOIN_WAKER != 0 {
                // SAFETY: JOIN_WAKER is set: the slot is shared read-only.
                let slot = unsafe { &*header.join_waker.get() };
                if slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    return Poll::Pending;
                }
                // Take the slot back to store a different waker.
                let unpublish = |s: u32| (s & COMPLETED == 0).then_some(s & !JOIN_WAKER);
                if state.fetch_update(AcqRel, Acquire, unpublish).is_err() {
                    return Poll::Ready(self.take_output());
                }
            }
            // SAFETY: JOIN_WAKER is clear (we just cleared it or never set it), so the
            // executor will not read the slot and we may write it.
            unsafe { *header.join_waker.get() = Some(cx.waker().clone()) };
            let publish = |s: u32| (s & COMPLETED == 0).then_some(s | JOIN_WAKER);
            if state.fetch_update(AcqRel, Acquire, publish).is_ok() {
                return Poll::Pending;
            }
            // Completed meanwhile; the waker we stored stays until the task is freed.
        }
        Poll::Ready(self.take_output())
    }

    fn take_output(&mut self) -> T {
        let mut output: Option<T> = None;
        // SAFETY: COMPLETED was observed with Acquire, JOIN_INTEREST is still set (we
        // are alive) so we alone own the output, and `T` is the task's output type
        // (only `spawn` makes a `JoinRef`).
        unsafe { (self.header().vtable.take_output)(self.task, (&raw mut output).cast()) };
        match output {
            Some(output) => output,
            None => unreachable!("take_output always fills the slot or panics"),
        }
    }
}

impl<T> Drop for JoinRef<T> {
    /// Detaches: whoever of us and the executor comes second drops the output.
    fn drop(&mut self) {
        let header = self.header();
        // One RMW decides everything: if not completed, clear JOIN_WAKER too so the
        // executor will never read the slot and we may empty it now.
        let detach = |s: u32| {
            Some(if s & COMPLETED != 0 {
                s & !JOIN_INTEREST
            } else {
                s & !(JOIN_INTEREST | JOIN_WAKER)
            })
        };
        let prev = match header.state.fetch_update(AcqRel, Acquire, detach) {
            Ok(prev) | Err(prev) => prev,
        };
        if prev & COMPLETED != 0 {
            // The executor saw JOIN_INTEREST and left the output for us.
            // SAFETY: completed (Acquire) and we are the party owning the output.
            unsafe { (header.vtable.drop_output)(self.task) };
        } else {
            // SAFETY: JOIN_WAKER is now clear and COMPLETED was not set, so the
            // executor will never read the slot: it is ours.
            unsafe { *header.join_waker.get() = None };
        }
        // SAFETY: the JoinHandle's reference, not used afterwards. Freeing here is fine:
        // a JoinHandle lives in task context, never in an interrupt handler.
        unsafe { release(self.task, Free::Now) };
    }
}

/// The header-only task that stands for `block_on`'s future.
///
/// It gives that future a real torito `Waker` (so timers and `current_executor` work
/// inside it) without moving it into the heap or the run queue: waking it only sets
/// `SCHEDULED` and wakes the core, and `block_on` polls the future itself. Wakers may
/// outlive `block_on`: the header is reference counted like any task.
pub(crate) struct MainTask {
    task: NonNull<Header>,
}

impl MainTask {
    pub(crate) fn new(executor: &'static Executor) -> Self {
        // SCHEDULED so that the first iteration polls the future. One reference: ours.
        // The `Pending<()>` stage is never polled: MAIN tasks are never queued.
        let task = allocate(executor, core::future::pending::<()>(), MAIN | SCHEDULED, 1);
        MainTask { task }
    }

    pub(crate) fn task(&self) -> NonNull<Header> {
        self.task
    }

    /// Consumes a pending wake: true if the future should be polled.
    pub(crate) fn take_wake(&self) -> bool {
        // AcqRel pairs with the waker's RMW (see `wake`).
        // SAFETY: we hold a reference.
        let header = unsafe { self.task.as_ref() };
        header.state.fetch_and(!SCHEDULED, AcqRel) & SCHEDULED != 0
    }

    /// Whether a wake is pending, without consuming it.
    pub(crate) fn is_woken(&self) -> bool {
        // SAFETY: we hold a reference.
        let header = unsafe { self.task.as_ref() };
        header.state.load(Acquire) & SCHEDULED != 0
    }
}

impl Drop for MainTask {
    fn drop(&mut self) {
        // SAFETY: we hold a reference.
        let header = unsafe { self.task.as_ref() };
        // COMPLETED turns later wakes into no-ops and lets the timer list unlink it.
        header.state.fetch_or(COMPLETED, Release);
        // SAFETY: our reference, not used afterwards; `block_on` is task context.
        unsafe { release(self.task, Free::Now) };
    }
}
