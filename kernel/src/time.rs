//! Time: a monotonic clock from the calibrated TSC, and the executor's timers.
//!
//! `sleep`, `timeout` and `interval` arm the local APIC timer only while the core idles;
//! there is no periodic tick.

use crate::arch::clock;
pub use core::time::Duration;
pub use torito_executor::time::Instant;
pub use torito_executor::{
    Elapsed, Interval, Sleep, Timeout, interval, sleep, sleep_until, timeout,
};

/// The current time (nanoseconds since kernel entry).
pub fn now() -> Instant {
    Instant::from_nanos(clock::now_nanos())
}

/// Time since the kernel's first instruction.
pub fn since_boot() -> Duration {
    Duration::from_nanos(clock::now_nanos())
}
