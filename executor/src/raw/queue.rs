//! The run queue: an intrusive, lock-free, multi-producer stack drained whole.
//!
//! Wakers push from any core and from interrupt handlers, so the queue can use neither
//! a lock (an interrupt could fire while its own core holds it) nor allocation. Each
//! task header carries its own `next` link and the `SCHEDULED` state bit guarantees a
//! task is linked at most once, so a push is one compare-and-swap. The owning
//! executor takes the whole list with one swap and reverses it, which gives wake
//! (FIFO) order and makes the fairness rule structural: whatever is pushed while a
//! round runs lands in a fresh list, polled next round.
//!
//! Pushes never unlink single nodes, so the classic ABA problem of Treiber stacks cannot
//! happen: if `head` is seen equal to an old value, linking in front of it is still right.
//!
//! The queue is generic over the node type so that it sits below the task header (which
//! names the executor that holds the queue) instead of importing it.

use core::ptr::{self, NonNull};
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// A node that carries its own run-queue link.
///
/// # Safety
///
/// Implementors: `next` returns the same link every time for a given node, and nothing
/// but a [`RunQueue`] writes that link while the node is pushed (see [`RunQueue::push`]).
pub(crate) unsafe trait Linked: Sized {
    /// The node's run-queue link.
    fn next(&self) -> &AtomicPtr<Self>;
}

/// The per-executor run queue. Each linked task is owned by the queue: it holds one
/// reference count (or, for a `FREEING` task, the right to free it).
pub(crate) struct RunQueue<T> {
    head: AtomicPtr<T>,
}

impl<T: Linked> RunQueue<T> {
    pub(crate) const fn new() -> Self {
        RunQueue {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Links `task` in front of the queue.
    ///
    /// # Safety
    ///
    /// `task` must point to a live header, and the caller must hand the queue exclusive
    /// use of its `next` link: it has just set `SCHEDULED` (or `FREEING`) itself, so no
    /// other push of the same task can be in flight, and it gives the queue one
    /// reference (or the last one, for `FREEING`).
    pub(crate) unsafe fn push(&self, task: NonNull<T>) {
        // SAFETY: the caller guarantees `task` is live.
        let next = unsafe { task.as_ref().next() };
        let mut head = self.head.load(Relaxed);
        loop {
            // Relaxed: the Release CAS below publishes this store together with
            // everything the waker wrote before waking.
            next.store(head, Relaxed);
            match self
                .head
                .compare_exchange_weak(head, task.as_ptr(), Release, Relaxed)
            {
                Ok(_) => return,
                Err(current) => head = current,
            }
        }
    }

    /// Whether no task is queued. A hint unless called with interrupts disabled by
    /// the only core that drains this queue.
    pub(crate) fn is_empty(&self) -> bool {
        // Acquire pairs with the Release push so a `true` answer from `has_work()` in
        // `idle` is followed by a run that sees the pushed task's links.
        self.head.load(Acquire).is_null()
    }

    /// Takes every queued task, in wake (FIFO) order.
    pub(crate) fn take_all(&self) -> Batch<T> {
        // Acquire: each push is a Release RMW and every later push continues its release
        // sequence, so this swap synchronizes with all pushes it takes over, and every
        // `next` link below is visible.
        let mut lifo = self.head.swap(ptr::null_mut(), Acquire);
        let mut fifo: *mut T = ptr::null_mut();
        while let Some(task) = NonNull::new(lifo) {
            // SAFETY: queued tasks are live (the queue owns a reference) and their `next`
            // links are ours now that they are unlinked from `head`: the `SCHEDULED`
            // (or `FREEING`) bit stops anyone from pushing them again until we let go.
            let next = unsafe { task.as_ref().next() };
            lifo = next.load(Relaxed);
            next.store(fifo, Relaxed);
            fifo = task.as_ptr();
        }
        Batch { head: fifo }
    }
}

/// Tasks taken from a [`RunQueue`], oldest wake first. Each yielded task carries the
/// queue's reference, which the receiver now owns.
pub(crate) struct Batch<T> {
    head: *mut T,
}

impl<T: Linked> Iterator for Batch<T> {
    type Item = NonNull<T>;

    fn next(&mut self) -> Option<NonNull<T>> {
        let task = NonNull::new(self.head)?;
        // SAFETY: the task is live (the batch owns its queue reference) and its link is
        // read *before* the task is handed out: once handed out it may be woken and
        // pushed again, which rewrites `next`.
        self.head = unsafe { task.as_ref().next().load(Relaxed) };
        Some(task)
    }
}
