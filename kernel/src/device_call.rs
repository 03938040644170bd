//! [`DeviceCall`]: one request to a device that answers each request (a disk, a virtio-fs
//! share), from submission to its outcome, as a future.
//!
//! Why one place: block and fs drive their drivers the same way: submit (or wait for a
//! free entry), wait for the completion, and abandon the request when the future is
//! dropped midway, so that the driver keeps the buffers until the device returns them
//! (`torito_virtio::requests`). Tested through its users in QEMU (`qemu/tests/block.rs`,
//! `qemu/tests/files.rs`), dropped requests included.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use torito_virtio::requests::{Completion, Requests, Submission, Ticket};

/// Where a request is.
enum Step<R> {
    /// Not yet posted (or waiting for a free entry): the future owns the request.
    Submit(R),
    /// Posted: the driver owns the buffers; the future has only the ticket.
    Wait(Ticket),
    /// Finished.
    Done,
}

/// One request, from submission to completion. Dropped midway, it abandons the request
/// (the driver keeps the buffers until the device returns them).
pub(crate) struct DeviceCall<'a, D: Requests> {
    device: &'a spin::Mutex<D>,
    step: Step<D::Request>,
}

impl<'a, D: Requests> DeviceCall<'a, D> {
    /// `request` to `device`, posted when first polled.
    pub(crate) fn new(device: &'a spin::Mutex<D>, request: D::Request) -> Self {
        DeviceCall {
            device,
            step: Step::Submit(request),
        }
    }
}

impl<D: Requests> Future for DeviceCall<'_, D>
where
    D::Request: Unpin,
{
    type Output = D::Outcome;

    /// # Panics
    /// When polled again after it completed.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<D::Outcome> {
        let this = &mut *self;
        let mut device = this.device.lock();
        loop {
            match core::mem::replace(&mut this.step, Step::Done) {
                Step::Submit(request) => match device.submit(request, cx.waker()) {
                    Submission::Posted(ticket) => this.step = Step::Wait(ticket),
                    Submission::Full(request) => {
                        this.step = Step::Submit(request);
                        return Poll::Pending;
                    }
                    Submission::Finished(outcome) => return Poll::Ready(outcome),
                },
                Step::Wait(ticket) => {
                    return match device.complete(ticket, cx.waker()) {
                        Completion::Finished(outcome) => Poll::Ready(outcome),
                        Completion::Pending(ticket) => {
                            this.step = Step::Wait(ticket);
                            Poll::Pending
                        }
                    };
                }
                Step::Done => panic!("a device request polled after it completed"),
            }
        }
    }
}

impl<D: Requests> Drop for DeviceCall<'_, D> {
    fn drop(&mut self) {
        if let Step::Wait(ticket) = core::mem::replace(&mut self.step, Step::Done) {
            self.device.lock().abandon(ticket);
        }
    }
}
