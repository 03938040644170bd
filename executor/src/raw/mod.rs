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

pub(crate) mod executor;
pub(crate) mod pin;
pub(crate) mod queue;
pub(crate) mod task;
pub(crate) mod timer_queue;
pub(crate) mod waker;

pub(crate) use executor::RawExecutor;
pub(crate) use task::{JoinRef, MainTask, spawn};
pub(crate) use timer_queue::TaskTimer;
pub(crate) use waker::executor_of;
