//! Time: the kernel's one clock, and the executor's timers that read it.
//!
//! The clock is the calibrated TSC, in nanoseconds since kernel entry. [`now`] reads
//! it, and every core's executor reads the same `TscClock` to fire its timers, so an
//! instant from `now` and a timer deadline are on one scale. `Instant` and `Duration`
//! are the executor's (`Duration` is `core::time::Duration`).
//!
//! `sleep`, `timeout` and `interval` arm the local APIC timer only while the core idles;
//! there is no periodic tick.

use crate::arch::clock;
pub use torito_executor::{
    Duration, Elapsed, Instant, Interval, Sleep, Timeout, interval, interval_at, sleep,
    sleep_until, timeout, timeout_at,
};

/// The clock every executor reads: the TSC, scaled to nanoseconds since kernel entry.
pub(crate) struct TscClock;

impl torito_executor::Clock for TscClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(clock::now_nanos())
    }
}

/// The kernel's clock, given to every core's executor (`runtime`).
pub(crate) static CLOCK: TscClock = TscClock;

/// The current time (nanoseconds since kernel entry), from the clock the executors'
/// timers use.
pub fn now() -> Instant {
    torito_executor::Clock::now(&CLOCK)
}

/// Time since the kernel's first instruction: [`now`] as a `Duration`.
pub fn since_boot() -> Duration {
    now().duration_since(Instant::ZERO)
}
