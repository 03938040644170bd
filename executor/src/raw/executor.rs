//! An executor's state and the header of every task it owns.
//!
//! The two point at each other: a task header names its executor (a wake pushes the task
//! on that executor's run queue), and the executor's run queue, timer list and "task
//! being polled" slot hold task headers. So they are defined together, here, as plain
//! data; everything that acts on them sits above this module: the task life cycle
//! (`task`), wakers (`waker`), timers (`timer_queue`) and the round (`round`).

use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{Acquire, Release, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
use core::task::{Context, Waker};

use super::queue::{Linked, RunQueue};
use crate::platform::{Clock, Platform};

/// An async executor for one CPU core.
///
/// Meant to be a `static`, one per core (hence the `const fn` [`new`](Self::new)). It
/// is `Sync`: any core may [`spawn`](Self::spawn) onto it or wake its tasks, but only
/// one core at a time may drive it (`run`, `run_once`, `block_on`), normally the core
/// named by [`core`](Self::core).
///
/// Its state is defined in the crate's unsafe core (`raw`), its methods in the safe
/// shell above it.
///
/// # Examples
///
/// ```
/// use torito_executor::{Clock, Executor, Instant, Platform};
///
/// struct Host;
/// impl Platform for Host {
///     fn idle(&self, _deadline: Option<Instant>, _has_work: &dyn Fn() -> bool) {}
///     fn wake_core(&self, _core: usize) {}
/// }
/// struct Zero;
/// impl Clock for Zero {
///     fn now(&self) -> Instant { Instant::ZERO }
/// }
///
/// static EXECUTOR: Executor = Executor::new(0, &Host, &Zero);
///
/// let answer = EXECUTOR.block_on(async {
///     let task = EXECUTOR.spawn(async { 6 * 7 });
///     task.await
/// });
/// assert_eq!(answer, 42);
/// ```
pub struct Executor {
    pub(crate) core: usize,
    pub(crate) platform: &'static dyn Platform,
    pub(crate) clock: &'static dyn Clock,
    pub(crate) queue: RunQueue<Header>,
    /// Set while a round (or `block_on`'s poll of its future) runs; see [`Busy`].
    busy: AtomicBool,
    /// The task being polled right now, or null. Lets a timer registration tell
    /// whether it happens inside its task's poll (see `timer_queue::register`).
    pub(crate) current: AtomicPtr<Header>,
    /// Head of the timer list; only touched with `busy` held (through [`Busy`]).
    timers: UnsafeCell<*mut Header>,
}

// SAFETY: the only non-`Sync` field is `timers` (and the `TimerLink`s it reaches),
// which is only reached through `Busy`, whose flag is acquired with an Acquire swap
// and released with a Release store: those accesses are serialized even if the
// executor is (wrongly) driven from two cores. Everything else is atomic or immutable.
unsafe impl Sync for Executor {}

// SAFETY: moving an executor to another core moves `timers` with it, and nothing else
// can reach that list then: every task, waker and timer refers to its executor as
// `&'static Executor`, so an executor that can still be moved has never had a task (a
// kernel builds its per-core executors lazily in `spin::Once` cells, which need `Send`).
unsafe impl Send for Executor {}

impl Executor {
    /// An executor for core `core`, sleeping and waking through `platform`, reading
    /// time from `clock`.
    pub const fn new(
        core: usize,
        platform: &'static dyn Platform,
        clock: &'static dyn Clock,
    ) -> Self {
        Executor {
            core,
            platform,
            clock,
            queue: RunQueue::new(),
            busy: AtomicBool::new(false),
            current: AtomicPtr::new(ptr::null_mut()),
            timers: UnsafeCell::new(ptr::null_mut()),
        }
    }

    /// Takes the busy flag.
    ///
    /// # Panics
    ///
    /// If the executor is already running: `run_once`/`block_on` called from inside one
    /// of its tasks, or the same executor driven by two cores at once.
    pub(crate) fn enter(&self) -> Busy<'_> {
        if self.busy.swap(true, Acquire) {
            panic!(
                "torito executor re-entered: run_once/block_on called from inside a task, or one executor driven by two cores"
            );
        }
        Busy { executor: self }
    }
}

/// Proof that the caller holds the executor's busy flag: the only way to the timer list
/// and to polling. Dropping it releases the flag, also when a poll panics (host tests).
pub(crate) struct Busy<'a> {
    executor: &'a Executor,
}

impl<'a> Busy<'a> {
    /// The executor whose flag is held.
    pub(crate) fn executor(&self) -> &'a Executor {
        self.executor
    }

    /// The head of the executor's timer list.
    pub(crate) fn timers(&mut self) -> &mut *mut Header {
        // SAFETY: we hold the busy flag (see `Sync for Executor`), and the `&mut self`
        // borrow keeps this the only reference made through this proof.
        unsafe { &mut *self.executor.timers.get() }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.executor.current.store(ptr::null_mut(), SeqCst);
        // Release: this round's writes (timer list, task stages) happen before the
        // next round, whichever core runs it.
        self.executor.busy.store(false, Release);
    }
}

/// Link in the owning executor's timer list. Only touched by that executor while it
/// holds its busy flag (see [`Busy`]).
pub(crate) struct TimerLink {
    pub(crate) next: *mut Header,
    pub(crate) linked: bool,
}

/// The non-generic part of every task. `#[repr(C)]` and first in `task::Task`, so a
/// `*mut Task<F>` is a valid `*mut Header` and back. Its life cycle and the meaning of
/// each field are in `task`.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) state: AtomicU32,
    pub(crate) refs: AtomicUsize,
    /// Run-queue link, owned by whoever set `SCHEDULED` (or `FREEING`), see `queue`.
    pub(crate) next: AtomicPtr<Header>,
    pub(crate) executor: &'static Executor,
    pub(crate) vtable: &'static TaskVTable,
    /// Earliest timer deadline registered by this task, in nanoseconds, or `NEVER`.
    /// Atomic so a registration is a single `fetch_min` whatever core it comes from.
    pub(crate) expires_at: AtomicU64,
    pub(crate) timer: UnsafeCell<TimerLink>,
    /// The JoinHandle's waker; who may touch it is decided by `JOIN_WAKER`/`COMPLETED`.
    pub(crate) join_waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: `next` is the header's one run-queue link, and only the queue writes it while
// the task is pushed (`SCHEDULED`/`FREEING` keep anyone else from pushing it).
unsafe impl Linked for Header {
    fn next(&self) -> &AtomicPtr<Header> {
        &self.next
    }
}

/// The operations that depend on the future's type (one table per future type).
pub(crate) struct TaskVTable {
    /// Polls the future; on `Ready` drops it and stores the output. Returns "completed".
    pub(crate) poll: unsafe fn(NonNull<Header>, &mut Context<'_>) -> bool,
    /// Moves the output into the `Option<F::Output>` behind the pointer.
    pub(crate) take_output: unsafe fn(NonNull<Header>, *mut ()),
    /// Drops the output if it is still there.
    pub(crate) drop_output: unsafe fn(NonNull<Header>),
    /// Frees the allocation.
    pub(crate) dealloc: unsafe fn(NonNull<Header>),
}
