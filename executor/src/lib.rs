//! Torito's per-core async executor: `no_std`, no architecture code, tested on the host.
//!
//! # Promises
//!
//! - **No allocation on wake.** A task is allocated once, at [`Executor::spawn`], and
//!   freed once. Waking, cloning and dropping a `Waker` adjust atomics only.
//! - **Lock-free wake from anywhere.** `Waker::wake` from an interrupt handler or
//!   another core is one atomic OR, one compare-and-swap push onto the owning
//!   executor's intrusive run queue, and one [`Platform::wake_core`] call. No lock a task
//!   may hold is ever taken, and a task is queued at most once however often it is woken.
//! - **Sleeps when idle.** With nothing ready, the executor calls [`Platform::idle`] with
//!   the earliest timer deadline; the platform checks for work with interrupts disabled
//!   and halts in the same step, so no wakeup is lost.
//! - **Fair rounds.** [`Executor::run_once`] polls every task that was ready when the
//!   round started exactly once, in wake order; tasks woken during the round (even by
//!   themselves) wait for the next round.
//! - **Timers without a timer wheel.** [`sleep`], [`timeout`] and [`Interval`] keep one
//!   deadline per task; the executor reports the earliest to the idle loop.
//! - **Unsafe is fenced in.** Every `unsafe` block lives in the private `raw` module;
//!   the rest of the crate denies `unsafe_code`.
//!
//! # Shape
//!
//! One [`Executor`] per core, created as a `static` (its constructor is `const`). Core 0
//! calls [`Executor::block_on`] with the application's main future, the other cores call
//! [`Executor::run`]. The platform supplies exactly two things through [`Platform`]: an
//! idle loop and a "wake that core" hook; time comes from a [`Clock`].
//!
//! Tasks spawned with [`Executor::spawn`] must be `Send`: any core may spawn onto any
//! executor, and the executor cannot tell which core it is called from. Inside a task,
//! [`current_executor`] returns the executor running it.
//!
//! Task memory whose last reference was a `Waker` is freed by the owning executor in
//! its next round, never in the (possibly interrupt) context that dropped the waker.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod channel;
mod executor;
mod join;
mod platform;
#[allow(unsafe_code)]
mod raw;
pub mod time;
mod timer;

pub use channel::{Receiver, Sender, channel};
pub use executor::{RunOnce, current_executor};
pub use join::JoinHandle;
pub use platform::{Clock, Platform};
pub use raw::executor::Executor;
pub use time::{Duration, Instant};
pub use timer::{
    Elapsed, Interval, Sleep, Timeout, interval, interval_at, sleep, sleep_until, timeout,
    timeout_at,
};
