//! Points in time: an `Instant` is a `u64` count of nanoseconds.
//!
//! The executor never reads a hardware clock itself: it asks the [`Clock`](crate::Clock)
//! it was built with, so tests can drive time by hand. A `u64` of nanoseconds lasts
//! 584 years from the clock's epoch (usually boot), which is why plain integers are
//! enough and no `u128` arithmetic appears on the timer path.

use core::ops::{Add, AddAssign, Sub, SubAssign};

pub use core::time::Duration;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A point in time, in nanoseconds since the clock's epoch (usually boot).
///
/// Arithmetic with [`Duration`] saturates instead of panicking: an instant past the end
/// of time becomes [`Instant::MAX`], which timers treat as "never", so
/// `sleep(Duration::MAX)` sleeps forever instead of crashing the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The clock's epoch.
    pub const ZERO: Instant = Instant { nanos: 0 };
    /// The end of time; a timer set for it never fires.
    pub const MAX: Instant = Instant { nanos: u64::MAX };

    /// The instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant { nanos }
    }

    /// The instant `micros` microseconds after the epoch (saturating).
    pub const fn from_micros(micros: u64) -> Self {
        Instant {
            nanos: micros.saturating_mul(1_000),
        }
    }

    /// The instant `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant {
            nanos: millis.saturating_mul(1_000_000),
        }
    }

    /// The instant `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Instant {
            nanos: secs.saturating_mul(NANOS_PER_SEC),
        }
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// `self + duration`, or `None` if that is past [`Instant::MAX`].
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        self.nanos
            .checked_add(duration_nanos(duration)?)
            .map(Instant::from_nanos)
    }

    /// `self - duration`, or `None` if that is before the epoch.
    pub fn checked_sub(self, duration: Duration) -> Option<Instant> {
        self.nanos
            .checked_sub(duration_nanos(duration)?)
            .map(Instant::from_nanos)
    }

    /// `self + duration`, clamped to [`Instant::MAX`].
    pub fn saturating_add(self, duration: Duration) -> Instant {
        self.checked_add(duration).unwrap_or(Instant::MAX)
    }

    /// `self - duration`, clamped to [`Instant::ZERO`].
    pub fn saturating_sub(self, duration: Duration) -> Instant {
        self.checked_sub(duration).unwrap_or(Instant::ZERO)
    }

    /// Time elapsed from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.nanos
            .checked_sub(earlier.nanos)
            .map(Duration::from_nanos)
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later (like
    /// `std::time::Instant::duration_since`, it saturates rather than panics).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Whole nanoseconds in `duration`, or `None` if they do not fit in a `u64`.
fn duration_nanos(duration: Duration) -> Option<u64> {
    duration
        .as_secs()
        .checked_mul(NANOS_PER_SEC)?
        .checked_add(u64::from(duration.subsec_nanos()))
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturates at [`Instant::MAX`] ("never").
    fn add(self, duration: Duration) -> Instant {
        self.saturating_add(duration)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturates at [`Instant::ZERO`].
    fn sub(self, duration: Duration) -> Instant {
        self.saturating_sub(duration)
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, duration: Duration) {
        *self = *self - duration;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero, see [`Instant::duration_since`].
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let t = Instant::from_millis(5);
        assert_eq!(t + Duration::from_micros(1), Instant::from_nanos(5_001_000));
        assert_eq!(t + Duration::MAX, Instant::MAX);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(t - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(t.checked_sub(Duration::from_secs(1)), None);
        assert_eq!(t - Instant::from_millis(2), Duration::from_millis(3));
        assert_eq!(Instant::from_millis(2) - t, Duration::ZERO);
        assert_eq!(Instant::from_millis(2).checked_duration_since(t), None);
        assert_eq!(Instant::from_secs(u64::MAX), Instant::MAX);
        assert!(Instant::from_secs(1) > Instant::from_millis(999));
    }
}
