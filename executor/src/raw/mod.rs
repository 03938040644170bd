//! The unsafe core: task header, run queue, waker vtable, timer list.
//!
//! Every `unsafe` block of the crate is in this module (the rest of the crate is
//! `deny(unsafe_code)`), so `grep -rn unsafe src/raw` lists them all. What it
//! guarantees to the safe shell:
//!
//! - A task is one `Box`, freed exactly once, when its reference count reaches zero
//!   ([`task`]); the future is only polled and dropped by its executor, on its core.
//! - Waking is lock-free and allocation-free from any core or interrupt handler: one
//!   atomic OR, one CAS push ([`queue`]), one `Platform::wake_core` call ([`waker`]).
//! - A task is queued at most once (`SCHEDULED`), so the queue needs no bound.
//! - Memory freed on behalf of a waker is freed by the owning executor, never in the
//!   caller's (possibly interrupt) context.
//!
//! Atomic orderings are explained at each use; there is no Miri on stable, so every
//! ordering argument is written down next to the operation it justifies.
//!
//! # Layers
//!
//! Each module imports only the ones below it, and none imports the safe shell (only
//! the vocabulary beside it: `platform`'s traits and `time`'s `Instant`):
//!
//! ```text
//! round        one round: fire timers, poll each ready task once   (top)
//! timer_queue  the timer list, and the timer view of a task
//! waker        the waker vtable: a waker is a task pointer
//! task         task memory and life cycle: spawn, wake, complete, JoinRef, MainTask
//! executor     the Executor's state and the task Header: they name each other
//! queue        an intrusive run queue of any linked node             (bottom)
//! ```

pub(crate) mod executor;
pub(crate) mod queue;
pub(crate) mod round;
pub(crate) mod task;
pub(crate) mod timer_queue;
pub(crate) mod waker;

pub(crate) use executor::Executor;
pub(crate) use task::{JoinRef, MainTask, spawn};
pub(crate) use timer_queue::TaskTimer;
pub(crate) use waker::executor_of;
