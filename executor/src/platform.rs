//! What the executor needs from the machine: a clock, an idle loop, a "wake that core" hook.
//!
//! Keeping these behind two small traits is what keeps the executor free of
//! architecture code: the kernel implements them with the TSC/LAPIC timer, `sti; hlt`
//! and IPIs; the host tests implement them with an atomic counter and a condition
//! variable.

use crate::time::Instant;

/// A monotonic clock.
///
/// Implementations must never go backwards: timers compare deadlines against `now()`
/// and a clock that jumps back would delay every pending timer.
pub trait Clock: Sync {
    /// The current time.
    fn now(&self) -> Instant;
}

/// The platform: exactly two things, an idle loop and a cross-core wake hook.
pub trait Platform: Sync {
    /// Sleeps until something happens (an interrupt, or a [`wake_core`](Self::wake_core)
    /// from another core) **without losing a wakeup**.
    ///
    /// The implementation must disable interrupts, call `has_work()`, and if it returns
    /// `false`, arm the timer for `deadline` (if `Some`) and then enable interrupts and
    /// halt as one step (`sti; hlt` on x86_64), so that a wakeup arriving after the check
    /// still ends the halt. A `deadline` may already be in the past: the timer must then
    /// fire at once. It may return spuriously; the executor loops.
    fn idle(&self, deadline: Option<Instant>, has_work: &dyn Fn() -> bool);

    /// A task owned by core `core` became ready.
    ///
    /// Called by wakers from any core and from interrupt handlers, so it must not
    /// allocate or take a lock a task may hold. The platform sends an IPI if that core
    /// may be halted, and does nothing when `core` is the calling core (the caller's own
    /// idle loop re-checks the run queue before halting).
    fn wake_core(&self, core: usize);
}
