//! Timer futures: `sleep`, `timeout`, `Interval`.
//!
//! None of them owns a hardware timer or a timer-queue slot. They reach their task and
//! executor through the `Waker` they are polled with, read the executor's clock, and
//! lower the task's deadline (see `raw::timer_queue`). That makes them free to create,
//! free to drop, and usable only inside torito tasks.
//!
//! Relative deadlines are computed at the first poll, not at creation: `sleep(d)`
//! sleeps `d` from the moment it is first awaited.
//!
//! There is no timer-side `now`: the time is the executor's [`Clock`](crate::Clock),
//! read with [`Executor::now`](crate::Executor::now) (inside a task,
//! `Executor::from_waker(cx.waker())` finds the executor), and the platform that
//! supplies the clock may offer the same reading directly (the kernel's
//! `torito::time::now`).

use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use crate::raw::TaskTimer;
use crate::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Deadline {
    /// Relative: fixed at the first poll.
    After(Duration),
    At(Instant),
}

/// Future returned by [`sleep`] and [`sleep_until`].
///
/// # Panics
///
/// Polling it outside a torito executor task panics with "torito timers must be polled
/// inside a torito executor task".
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Deadline,
}

/// Completes once `duration` has passed, counted from the first poll.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        deadline: Deadline::After(duration),
    }
}

/// Completes once the executor's clock reads `deadline` or later.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline: Deadline::At(deadline),
    }
}

impl Sleep {
    /// The absolute deadline, or `None` for a relative sleep not yet polled.
    pub fn deadline(&self) -> Option<Instant> {
        match self.deadline {
            Deadline::After(_) => None,
            Deadline::At(at) => Some(at),
        }
    }

    /// Moves the deadline; the sleep may be awaited again afterwards.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = Deadline::At(deadline);
    }

    /// Ready once the clock reaches the deadline; otherwise registers it with the task.
    fn poll_at(&mut self, waker: &Waker) -> Poll<()> {
        let timer = TaskTimer::of(waker);
        let now = timer.now();
        let deadline = match self.deadline {
            Deadline::After(duration) => {
                let at = now + duration;
                self.deadline = Deadline::At(at);
                at
            }
            Deadline::At(at) => at,
        };
        if now >= deadline {
            Poll::Ready(())
        } else {
            timer.register(deadline);
            Poll::Pending
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_at(cx.waker())
    }
}

/// The error of a [`timeout`]: the deadline passed before the future completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed {
    deadline: Instant,
}

impl Elapsed {
    /// The deadline that passed.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadline of {} ns passed before the operation completed; retry or raise the timeout",
            self.deadline.as_nanos()
        )
    }
}

impl core::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// Future returned by [`timeout`] and [`timeout_at`].
    ///
    /// The inner future is polled first, so if it completes in the same poll in which
    /// the deadline passes, the result is `Ok`.
    ///
    /// # Panics
    ///
    /// Polling it outside a torito executor task panics (see [`Sleep`]).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

/// Runs `future` for at most `duration` (counted from the first poll).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

/// Runs `future` until the clock reaches `deadline` at the latest.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep_until(deadline),
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (future, sleep) = (this.future, this.sleep);
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match sleep.poll_at(cx.waker()) {
            Poll::Ready(()) => {
                let deadline = sleep.deadline().unwrap_or(Instant::MAX);
                Poll::Ready(Err(Elapsed { deadline }))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A periodic timer: see [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: u64,
    /// The next scheduled tick; `None` until the first poll fixes the start.
    next: Option<Instant>,
}

/// A timer that ticks every `period`, the first tick at the first call to
/// [`Interval::tick`].
///
/// **Missed ticks are skipped.** Ticks are scheduled at `start + k * period`. When a
/// tick is awaited late (the task was busy, or the core slept past several periods),
/// `tick` completes at once, returning the scheduled instant it was due at, and the
/// next tick is the first scheduled instant strictly after the current time: there is
/// never a burst of catch-up ticks, and the schedule never drifts.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval(period: Duration) -> Interval {
    Interval {
        period: period_nanos(period),
        next: None,
    }
}

/// Like [`interval`], with the first tick at `start` instead of at the first call.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    Interval {
        period: period_nanos(period),
        next: Some(start),
    }
}

fn period_nanos(period: Duration) -> u64 {
    let nanos = Instant::ZERO.saturating_add(period).as_nanos();
    assert!(nanos > 0, "interval period must be non-zero");
    nanos
}

impl Interval {
    /// The period between ticks.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period)
    }

    /// Waits for the next tick and returns the instant it was scheduled for.
    ///
    /// # Panics
    ///
    /// If awaited outside a torito executor task.
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick; the building block of [`tick`](Self::tick) for
    /// hand-written futures.
    ///
    /// # Panics
    ///
    /// If polled outside a torito executor task.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        let timer = TaskTimer::of(cx.waker());
        let now = timer.now();
        let scheduled = *self.next.get_or_insert(now);
        if now < scheduled {
            timer.register(scheduled);
            return Poll::Pending;
        }
        self.next = Some(self.after(scheduled, now));
        Poll::Ready(scheduled)
    }

    /// The first scheduled instant strictly after `now`, for a tick due at `scheduled`.
    fn after(&self, scheduled: Instant, now: Instant) -> Instant {
        let scheduled = scheduled.as_nanos();
        let late_by = now.as_nanos() - scheduled;
        let periods = late_by / self.period + 1;
        Instant::from_nanos(scheduled.saturating_add(periods.saturating_mul(self.period)))
    }
}
