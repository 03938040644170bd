//! Join handles: await a task's output, or drop the handle to detach the task.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::raw::JoinRef;

/// An owned permission to await a spawned task's output.
///
/// Awaiting it returns the output. Dropping it detaches the task: the task keeps
/// running and its output is dropped as soon as it completes. A join handle may be
/// awaited from any core and any executor.
///
/// # Panics
///
/// Polling it again after it returned the output panics.
#[must_use = "dropping a JoinHandle detaches the task; call `.detach()` to say so"]
pub struct JoinHandle<T> {
    raw: JoinRef<T>,
}

// No pinning needed: the handle is a pointer to the task; the output moves out by value.
impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    pub(crate) fn new(raw: JoinRef<T>) -> Self {
        JoinHandle { raw }
    }

    /// Whether the task completed (its output is ready, or was already taken).
    pub fn is_finished(&self) -> bool {
        self.raw.is_finished()
    }

    /// Lets the task run on without anyone waiting for it; same as dropping the handle.
    pub fn detach(self) {}
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.get_mut().raw.poll(cx)
    }
}
