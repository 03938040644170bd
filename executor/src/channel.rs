//! Bounded async channels between tasks on any cores: many senders, one receiver.
//!
//! The executor keeps no state shared between cores, so a channel is how a task on
//! one core hands values to a task on another (or on the same core). It is bounded so
//! that a fast producer waits for a slow consumer instead of filling the heap.
//!
//! # Promises
//!
//! - **Bounded.** At most `capacity` values are queued. The slots are allocated once,
//!   by [`channel`]; [`Sender::send`] waits while all are taken and
//!   [`Sender::try_send`] returns [`TrySendError::Full`].
//! - **FIFO per sender.** Values arrive in the order their sends completed, so the
//!   values of one sender arrive in the order it sent them.
//! - **Exactly once.** Every value is received once, or handed back inside an error,
//!   or dropped once: by a [`SendFuture`] dropped before it completed, by the
//!   [`Receiver`]'s drop if still queued then, or with the channel if a send racing with
//!   the receiver's drop queued it afterwards.
//! - **No lost wakeup, no busy re-wake.** A waiting task registers its waker, then
//!   checks again before it returns `Pending`. It is woken only when what it waits for
//!   may have changed: the receiver when a value arrives or the last sender goes; one
//!   waiting sender per value taken, in the order they started waiting; every waiting
//!   sender when the receiver goes. A woken sender that finds the slot already taken
//!   (a sender that never waited does not queue behind those that do) waits again.
//! - **No lock.** Queue operations are compare-and-swaps on a fixed ring
//!   ([`crossbeam_queue::ArrayQueue`]); waiting senders are kept in a lock-free list.
//!   Wakers may belong to any executor on any core, or to no torito executor at all.
//! - **Allocation only to wait.** After [`channel`], only a send that has to wait
//!   allocates (one small waiter record per wait, plus list blocks now and then).
//!
//! # Not from interrupt handlers
//!
//! "No lock" is not "wait-free": an operation that finds a slot half-written by
//! another core spins until that core finishes, which never happens if the other
//! operation is the task interrupted on the same core. Interrupt handlers record and
//! wake a task; the task sends.
//!
//! # Examples
//!
//! ```
//! # use torito_executor::{Clock, Executor, Instant, Platform};
//! # struct Host;
//! # impl Platform for Host {
//! #     fn idle(&self, _deadline: Option<Instant>, _has_work: &dyn Fn() -> bool) {}
//! #     fn wake_core(&self, _core: usize) {}
//! # }
//! # struct Zero;
//! # impl Clock for Zero {
//! #     fn now(&self) -> Instant { Instant::ZERO }
//! # }
//! # static EXECUTOR: Executor = Executor::new(0, &Host, &Zero);
//! use torito_executor::channel;
//!
//! let sum = EXECUTOR.block_on(async {
//!     let (sender, mut receiver) = channel(2);
//!     EXECUTOR
//!         .spawn(async move {
//!             for n in 1..=10 {
//!                 // Waits whenever two values are queued.
//!                 sender.send(n).await.expect("the receiver outlives the sender");
//!             }
//!         })
//!         .detach();
//!     let mut sum = 0;
//!     // `None` once the sender is dropped and the queue is empty.
//!     while let Some(n) = receiver.recv().await {
//!         sum += n;
//!     }
//!     sum
//! });
//! assert_eq!(sum, 55);
//! ```

use alloc::sync::Arc;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::Ordering::{AcqRel, Relaxed, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, fence};
use core::task::{Context, Poll, Waker};

use crossbeam_queue::{ArrayQueue, SegQueue};
use futures_util::task::AtomicWaker;

/// Creates a channel holding at most `capacity` values.
///
/// The [`Sender`] may be cloned (one per producer); the [`Receiver`] is unique.
/// Allocates the `capacity` slots now; sending and receiving do not allocate unless a
/// sender has to wait.
///
/// # Panics
///
/// If `capacity` is zero (a rendezvous channel is not supported).
pub fn channel<T: Send>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "channel capacity must be non-zero");
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(capacity),
        waiting_senders: SegQueue::new(),
        receiver_waker: AtomicWaker::new(),
        senders: AtomicUsize::new(1),
        receiver_gone: AtomicBool::new(false),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// What both halves point to; freed (with any value still queued) when the last goes.
struct Shared<T> {
    queue: ArrayQueue<T>,
    /// Senders waiting for a free slot, oldest first. May hold `CANCELLED` entries,
    /// skipped (and freed) when reached.
    waiting_senders: SegQueue<Arc<Waiter>>,
    receiver_waker: AtomicWaker,
    /// Live `Sender`s; the receiver sees the end of the stream when it reaches zero.
    senders: AtomicUsize,
    receiver_gone: AtomicBool,
}

/// A waiting send: its waker, and where it is in the cycle below.
///
/// ```text
///   new ──> QUEUED ──(a value is taken, or the receiver goes)──> NOTIFIED
///             ^                                                     │
///             └───────────(woken, still full: queued again)─────────┘
///   QUEUED or NOTIFIED ──(the send completes or is dropped)──> CANCELLED
/// ```
///
/// Only the receiver side moves `QUEUED -> NOTIFIED`, and only right after popping
/// the entry from `waiting_senders`, so a waiter is in the list exactly when it is
/// `QUEUED` (or `CANCELLED` and not yet reached). Everything else is done by the
/// owning [`SendFuture`].
struct Waiter {
    state: AtomicU8,
    waker: AtomicWaker,
}

const QUEUED: u8 = 0;
const NOTIFIED: u8 = 1;
const CANCELLED: u8 = 2;

impl<T> Shared<T> {
    /// Pops a value and, since that frees a slot, wakes the oldest waiting sender.
    fn take(&self) -> Option<T> {
        let value = self.queue.pop()?;
        // Pairs with the fence in `SendFuture::poll` between queuing a waiter and
        // retrying the push: either that retry sees the slot freed above, or the pop
        // below sees the waiter.
        fence(SeqCst);
        self.notify_one_sender();
        Some(value)
    }

    /// Wakes the oldest sender still waiting, if any, dropping cancelled entries.
    fn notify_one_sender(&self) {
        while let Some(waiter) = self.waiting_senders.pop() {
            if waiter
                .state
                .compare_exchange(QUEUED, NOTIFIED, SeqCst, Relaxed)
                .is_ok()
            {
                waiter.waker.wake();
                return;
            }
        }
    }

    /// Wakes every waiting sender: the receiver is gone.
    fn notify_all_senders(&self) {
        while let Some(waiter) = self.waiting_senders.pop() {
            if waiter
                .state
                .compare_exchange(QUEUED, NOTIFIED, SeqCst, Relaxed)
                .is_ok()
            {
                waiter.waker.wake();
            }
        }
    }

    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        if self.receiver_gone.load(SeqCst) {
            return Err(TrySendError::Closed(value));
        }
        match self.queue.push(value) {
            Ok(()) => {
                self.receiver_waker.wake();
                Ok(())
            }
            Err(value) => Err(TrySendError::Full(value)),
        }
    }

    fn try_recv(&self) -> Result<T, TryRecvError> {
        if let Some(value) = self.take() {
            return Ok(value);
        }
        // SeqCst (at least Acquire): each sender's pushes happen before its decrement,
        // so once zero is seen, the pop below sees every value ever sent.
        if self.senders.load(SeqCst) == 0 {
            return self.take().ok_or(TryRecvError::Closed);
        }
        Err(TryRecvError::Empty)
    }
}

/// The sending half of a [`channel`]. Clone it for each producer.
///
/// When the last `Sender` is dropped, the receiver gets the values still queued and
/// then `None`.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full.
    ///
    /// The returned future completes once `value` is queued. If it is dropped before
    /// that, `value` is dropped unsent (and, if a slot had just been promised to it,
    /// the next waiting sender is woken instead).
    ///
    /// # Errors
    ///
    /// [`Closed`] with `value` inside if the [`Receiver`] is gone (before or while
    /// waiting): nobody will ever receive it; stop sending.
    pub fn send(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            shared: &self.shared,
            value: Some(value),
            waiter: None,
        }
    }

    /// Queues `value` if there is room now, without waiting.
    ///
    /// Does not queue behind senders already waiting: if a slot is free, it is taken.
    ///
    /// # Errors
    ///
    /// - [`TrySendError::Full`] with `value` if all `capacity` slots are taken: retry
    ///   after the receiver has caught up, or await [`send`](Self::send).
    /// - [`TrySendError::Closed`] with `value` if the [`Receiver`] is gone.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.shared.try_send(value)
    }

    /// Whether the [`Receiver`] is gone (every send will fail).
    pub fn is_closed(&self) -> bool {
        self.shared.receiver_gone.load(SeqCst)
    }

    /// How many values the channel holds at most.
    pub fn capacity(&self) -> usize {
        self.shared.queue.capacity()
    }

    /// How many values are queued now (a snapshot: other cores move it).
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// Whether no value is queued now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed: cloning needs a live sender, so the count cannot reach zero here.
        self.shared.senders.fetch_add(1, Relaxed);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // AcqRel: publishes this sender's pushes to the receiver's load of zero.
        if self.shared.senders.fetch_sub(1, AcqRel) == 1 {
            self.shared.receiver_waker.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Future returned by [`Sender::send`].
///
/// # Panics
///
/// Polling it again after it completed panics.
#[must_use = "futures do nothing unless awaited"]
pub struct SendFuture<'a, T> {
    shared: &'a Shared<T>,
    /// `None` once the future has completed.
    value: Option<T>,
    /// `Some` from the first time the channel was found full until completion.
    waiter: Option<Arc<Waiter>>,
}

// No pinning needed: the value is only ever moved, never borrowed across polls.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> SendFuture<'_, T> {
    /// Puts this send in the waiting list (again, if it was woken) with `waker`.
    fn wait(&mut self, waker: &Waker) {
        let waiter = self.waiter.get_or_insert_with(|| {
            Arc::new(Waiter {
                state: AtomicU8::new(NOTIFIED), // not in the list yet
                waker: AtomicWaker::new(),
            })
        });
        // The waker first, so that a notification right after the push finds it.
        waiter.waker.register(waker);
        if waiter.state.load(SeqCst) != QUEUED {
            // Not in the list, so nobody else changes the state: plain store.
            waiter.state.store(QUEUED, SeqCst);
            self.shared.waiting_senders.push(waiter.clone());
        }
    }

    /// Leaves the waiting list for good; returns whether a slot had been promised to
    /// this send (it was `NOTIFIED`).
    fn leave(&mut self) -> bool {
        self.waiter
            .take()
            .is_some_and(|waiter| waiter.state.swap(CANCELLED, SeqCst) == NOTIFIED)
    }
}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), Closed<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(mut value) = this.value.take() else {
            panic!("`SendFuture` polled after it completed");
        };
        let mut waiting = false;
        loop {
            match this.shared.try_send(value) {
                Ok(()) => {
                    // A promised slot was used: whoever freed it has nothing to pass on.
                    this.leave();
                    return Poll::Ready(Ok(()));
                }
                Err(TrySendError::Closed(value)) => {
                    this.leave();
                    return Poll::Ready(Err(Closed(value)));
                }
                Err(TrySendError::Full(back)) => value = back,
            }
            // Full. Wait if the waiter queued on the previous turn is still queued. If
            // it was notified meanwhile, the wake may have gone to an older waker (the
            // future moved tasks), so queue again rather than risk sleeping unqueued.
            if waiting
                && let Some(waiter) = &this.waiter
                && waiter.state.load(SeqCst) == QUEUED
            {
                this.value = Some(value);
                return Poll::Pending;
            }
            this.wait(cx.waker());
            // Pairs with the fence in `Shared::take` (and `Receiver::drop`): either the
            // retry above sees the slot freed (receiver gone), or the receiver side
            // sees this waiter in the list and wakes it.
            fence(SeqCst);
            waiting = true;
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        if self.leave() {
            // Dropped after a slot was promised to it: pass the promise on.
            self.shared.notify_one_sender();
        }
    }
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("completed", &self.value.is_none())
            .field("waiting", &self.waiter.is_some())
            .finish()
    }
}

/// The receiving half of a [`channel`].
///
/// Dropping it closes the channel: waiting senders are woken and every send fails
/// with [`Closed`]; the values still queued are dropped.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// Receives the next value, waiting while the channel is empty.
    ///
    /// Completes with `None` once every [`Sender`] is gone and no value is left.
    /// Dropping the future before it completes loses nothing.
    pub fn recv(&mut self) -> RecvFuture<'_, T> {
        RecvFuture { receiver: self }
    }

    /// Takes the next value if one is queued, without waiting.
    ///
    /// # Errors
    ///
    /// - [`TryRecvError::Empty`] if no value is queued but a sender remains: retry
    ///   later or await [`recv`](Self::recv).
    /// - [`TryRecvError::Closed`] if every sender is gone and no value is left: the
    ///   stream has ended.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.shared.try_recv()
    }

    /// Polls for the next value; the building block of [`recv`](Self::recv) for
    /// hand-written futures. `Ready(None)` means the stream has ended.
    ///
    /// Only the waker of the latest call is woken.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.shared.try_recv() {
            Ok(value) => return Poll::Ready(Some(value)),
            Err(TryRecvError::Closed) => return Poll::Ready(None),
            Err(TryRecvError::Empty) => {}
        }
        self.shared.receiver_waker.register(cx.waker());
        // Checked again after registering: a value (or the last sender's drop) that
        // came before the registration did not see the waker.
        match self.shared.try_recv() {
            Ok(value) => Poll::Ready(Some(value)),
            Err(TryRecvError::Closed) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }

    /// How many values the channel holds at most.
    pub fn capacity(&self) -> usize {
        self.shared.queue.capacity()
    }

    /// How many values are queued now (a snapshot: senders move it).
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// Whether no value is queued now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, SeqCst);
        // Pairs with the fence in `SendFuture::poll`: a sender that queued a waiter
        // without seeing `receiver_gone` is in the list popped below.
        fence(SeqCst);
        self.shared.notify_all_senders();
        while let Some(value) = self.shared.queue.pop() {
            drop(value);
        }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Future returned by [`Receiver::recv`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct RecvFuture<'a, T> {
    receiver: &'a mut Receiver<T>,
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}

/// The error of [`Sender::send`]: the receiver is gone. Carries the value back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Closed<T>(pub T);

impl<T> Closed<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Closed(..)")
    }
}

impl<T> fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiver is gone, so the value was not sent; stop sending")
    }
}

impl<T> core::error::Error for Closed<T> {}

/// The error of [`Sender::try_send`]. Carries the value back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// All slots are taken.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value) | TrySendError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => {
                "the channel is full; retry after the receiver catches up, or await `send`"
            }
            TrySendError::Closed(_) => {
                "the receiver is gone, so the value was not sent; stop sending"
            }
        })
    }
}

impl<T> core::error::Error for TrySendError<T> {}

impl<T> From<Closed<T>> for TrySendError<T> {
    fn from(closed: Closed<T>) -> Self {
        TrySendError::Closed(closed.0)
    }
}

/// The error of [`Receiver::try_recv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// No value is queued, but a sender remains.
    Empty,
    /// Every sender is gone and no value is left: the stream has ended.
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "no value is queued yet; retry later, or await `recv`",
            TryRecvError::Closed => "every sender is gone and no value is left",
        })
    }
}

impl core::error::Error for TryRecvError {}
