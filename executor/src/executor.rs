//! The per-core executor's safe API: spawn tasks, run rounds, sleep when idle.
//!
//! The [`Executor`] type itself (its state) is defined in `raw`, next to the task
//! header that points at it; this module adds every public method but `new`.

use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::{Poll, Waker};

use crate::join::JoinHandle;
use crate::raw::{self, Executor, MainTask};
use crate::time::Instant;

/// What one [`Executor::run_once`] round did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOnce {
    /// How many task polls the round made (each ready task is polled once).
    pub polled: usize,
    /// The earliest deadline among the timers still pending, for the idle loop to
    /// arm; `None` if no task waits for a timer.
    pub next_deadline: Option<Instant>,
}

impl Executor {
    /// The core this executor belongs to (the one `wake_core` is called with).
    pub fn core(&self) -> usize {
        self.core
    }

    /// The current time, read from this executor's clock: the time its timers compare
    /// their deadlines with.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Whether a task (or a task's memory to free) is waiting for the next round.
    pub fn has_ready(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Spawns `future` as a task of this executor and returns its [`JoinHandle`].
    ///
    /// Works from any core and from inside tasks: the task goes through the same
    /// lock-free queue as a wake, and `Platform::wake_core` is called for this
    /// executor's core. The task is first polled in the next round of this executor.
    ///
    /// `future` and its output must be `Send` because nothing tells the executor which
    /// core the caller runs on: `EXECUTOR_1.spawn(f)` from core 0 moves `f` to core 1
    /// (and the output back through the `JoinHandle`). Only `block_on`'s own future may
    /// be `!Send`.
    ///
    /// Allocates the task with the global allocator: do not call it from an interrupt
    /// handler (wake a task instead).
    pub fn spawn<F>(&'static self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        JoinHandle::new(raw::spawn(self, future))
    }

    /// Runs this executor until `main` completes and returns its output.
    ///
    /// Each iteration polls `main` if it was woken, runs one [`run_once`](Self::run_once)
    /// round, and idles through the platform when nothing is ready. `main` gets a real
    /// torito waker, so timers and [`current_executor`] work inside it. Tasks still
    /// pending when `main` completes stay spawned; they run again when the executor is
    /// next driven (e.g. by [`run`](Self::run)).
    ///
    /// # Panics
    ///
    /// If called while this executor is already running (from inside one of its tasks,
    /// or while another core drives it), and if `main` panics.
    pub fn block_on<F: Future>(&'static self, main: F) -> F::Output {
        let mut main = pin!(main);
        let main_task = MainTask::new(self);
        loop {
            if main_task.take_wake() {
                let poll = raw::round::poll_main(self, &main_task, |cx| main.as_mut().poll(cx));
                if let Poll::Ready(output) = poll {
                    return output;
                }
            }
            let round = self.run_once();
            self.idle_unless_ready(round, &|| self.has_ready() || main_task.is_woken());
        }
    }

    /// Drives this executor forever: the loop of the kernel's secondary cores.
    ///
    /// # Panics
    ///
    /// If this executor is already running (see [`block_on`](Self::block_on)).
    pub fn run(&'static self) -> ! {
        loop {
            let round = self.run_once();
            self.idle_unless_ready(round, &|| self.has_ready());
        }
    }

    /// One round: wake the tasks whose timers expired, then poll every task that was
    /// ready at the start of the round exactly once, in wake order. Tasks woken during
    /// the round (including a task waking itself) are polled in the next round, so a
    /// busy task cannot starve the others.
    ///
    /// Also frees the memory of tasks whose last waker was dropped since the last round.
    ///
    /// # Panics
    ///
    /// If this executor is already running (see [`block_on`](Self::block_on)), and if a
    /// task panics.
    pub fn run_once(&'static self) -> RunOnce {
        let (polled, next_deadline) = raw::round::run_once(self);
        RunOnce {
            polled,
            next_deadline: (next_deadline != u64::MAX)
                .then_some(Instant::from_nanos(next_deadline)),
        }
    }

    /// The executor owning the task behind `waker`, if it is a torito task waker.
    pub fn from_waker(waker: &Waker) -> Option<&'static Executor> {
        raw::executor_of(waker)
    }

    /// Calls `Platform::idle` unless there is already something to do.
    fn idle_unless_ready(&self, round: RunOnce, has_work: &dyn Fn() -> bool) {
        if has_work() {
            return;
        }
        if let Some(deadline) = round.next_deadline
            && deadline <= self.now()
        {
            return;
        }
        self.platform.idle(round.next_deadline, has_work);
    }
}

/// The executor running the current task.
///
/// This is how code inside a task spawns siblings on its own core without a `static`
/// in scope: `current_executor().await.spawn(f)`.
///
/// # Panics
///
/// If awaited outside a torito executor task (the waker is not a torito waker).
pub fn current_executor() -> impl Future<Output = &'static Executor> {
    poll_fn(|cx| match Executor::from_waker(cx.waker()) {
        Some(executor) => Poll::Ready(executor),
        None => panic!("current_executor() must be awaited inside a torito executor task"),
    })
}
