//! The request table: requests posted on one virtqueue, many in flight, finished by the
//! device in any order, for the drivers whose caller waits for an answer (blk, fs).
//!
//! Why one place: the entries, their free list, the token → entry map, the submitters
//! waiting for a free entry, abandoned requests and hostile used entries are the same
//! for a disk and a virtio-fs share, and the DMA hand-over (virtio-drivers' unsafe
//! `add`/`pop_used` contract) is kept here alone. A driver says only what differs, as a
//! `Protocol`: what it remembers of a request, the fixed header and trailer each
//! request carries (blk's request header and status byte; none for virtio-fs), and how
//! it judges what the device returned.
//!
//! A request is up to four descriptors, in this order (empty ones left out): the entry's
//! header and the request's `Posting::readable` buffer, which the device reads; the
//! request's `Posting::writable` buffer and the entry's trailer, which it writes.
//!
//! # DMA ownership
//!
//! From the moment a request is posted until the used ring returns it under its token,
//! its buffers live in the table as `Lent`s (`crate::lent`: raw allocations no Rust owner
//! claims), not with the caller, who holds only a [`Ticket`] naming the entry. So
//! dropping the caller mid-flight (`RequestTable::abandon`) cannot free memory the
//! device still writes: the entry is marked abandoned and its buffers are freed when the
//! device gives them back.
//!
//! # Untrusted device memory
//!
//! A used entry whose token names no request in flight (never posted, or returned
//! twice) is counted (`TableStats::bad_used`) and takes the device out of service:
//! virtio-drivers' queue cannot step past an entry it cannot pop, so every request in
//! flight and every later one gets `Protocol::broken`, and the table (with every buffer
//! the device may still write) is leaked, never freed under it. A used length past the
//! bytes the request let the device write is counted and fails that request alone
//! (`Returned::length` is `Err`); its data is not handed out. None of these panics.
#![allow(unsafe_code)]

use crate::lent::Lent;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};
use core::task::{Context, Poll, Waker};
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;

/// A posted request: the entry of the driver's request table it occupies. It owns no
/// memory; give it back to the driver's `complete` or `abandon`.
#[derive(Debug)]
pub struct Ticket(u16);

/// What a driver's `submit` did with a request of type `R`.
#[derive(Debug)]
pub enum Submission<R, O> {
    /// Posted: wait with the driver's `complete`.
    Posted(Ticket),
    /// Every request entry is in use: the request comes back, and the waker is woken
    /// when one frees.
    Full(R),
    /// Finished without reaching the device (refused, or nothing to do).
    Finished(O),
}

/// What a driver's `complete` found.
#[derive(Debug)]
pub enum Completion<O> {
    /// The request finished.
    Finished(O),
    /// Still with the device: the ticket comes back, and the waker is woken when the
    /// request finishes.
    Pending(Ticket),
}

/// A device that takes requests and answers each one: what the kernel's request futures
/// drive (submit, wait for completion, abandon when dropped).
pub trait Requests {
    /// A request not yet posted.
    type Request;
    /// What a finished request gives.
    type Outcome;
    /// Posts `request`; `waker` is woken when an entry frees, if there is none now.
    fn submit(
        &mut self,
        request: Self::Request,
        waker: &Waker,
    ) -> Submission<Self::Request, Self::Outcome>;
    /// The outcome of `ticket`'s request, or the ticket back (with `waker` registered)
    /// while the device has it.
    fn complete(&mut self, ticket: Ticket, waker: &Waker) -> Completion<Self::Outcome>;
    /// Gives up waiting for `ticket`'s request: its buffers are freed when the device
    /// returns them, never before.
    fn abandon(&mut self, ticket: Ticket);
}

/// What differs between the drivers that use a [`RequestTable`].
pub(crate) trait Protocol {
    /// What the driver remembers of a request while the device has it.
    type Posted;
    /// What a finished request gives its caller.
    type Outcome;
    /// Bytes of the header the device reads first in every request (0 for none).
    const HEADER: usize;
    /// Bytes of the trailer the device writes last in every request (0 for none).
    const TRAILER: usize;
    /// Writes `posted`'s header and resets the trailer, before it is posted.
    fn seal(posted: &Self::Posted, header: &mut [u8], trailer: &mut [u8]);
    /// Judges what the device returned; `true` with an outcome that distrusts the device
    /// (counted in [`TableStats::bad_used`]).
    fn finish(returned: Returned<'_, Self::Posted>) -> (Self::Outcome, bool);
    /// The outcome of every request once the device is out of service.
    fn broken() -> Self::Outcome;
    /// The outcome of a request the virtqueue refused (no free descriptor: the table is
    /// sized so that this does not happen).
    fn refused() -> Self::Outcome;
}

/// A request to post: what the driver remembers of it and its buffers.
pub(crate) struct Posting<P> {
    pub(crate) posted: P,
    /// Bytes the device reads, after the header.
    pub(crate) readable: Option<Box<[u8]>>,
    /// Bytes the device writes, before the trailer.
    pub(crate) writable: Option<Box<[u8]>>,
}

/// A request the device returned, its buffers back.
pub(crate) struct Returned<'a, P> {
    pub(crate) posted: P,
    pub(crate) readable: Option<Box<[u8]>>,
    pub(crate) writable: Option<Box<[u8]>>,
    /// The trailer as the device left it.
    pub(crate) trailer: &'a [u8],
    /// The used entry's length, or [`PastBuffer`] when it claims more than the device
    /// could write (the writable buffer and the trailer).
    pub(crate) length: Result<u32, PastBuffer>,
}

/// A used length past the bytes the device could write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PastBuffer {
    /// The length the device claimed.
    pub(crate) length: u32,
    /// The most it could have written.
    pub(crate) limit: u32,
}

/// Counters of what the table did and refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableStats {
    /// Requests posted to the device.
    pub(crate) posted: u64,
    /// Requests the device returned.
    pub(crate) completed: u64,
    /// Used entries the table or the protocol could not trust.
    pub(crate) bad_used: u64,
    /// Queue notifications written to the device.
    pub(crate) notifications: u64,
    /// Submissions that found every entry in use.
    pub(crate) full: u64,
    /// The most requests the device held at once.
    pub(crate) peak_in_flight: u64,
}

enum State<P: Protocol> {
    Free,
    /// Posted under `token`: the device owns the buffers and the entry's envelope.
    InFlight {
        token: u16,
        posted: P::Posted,
        readable: Option<Lent>,
        writable: Option<Lent>,
        /// The caller is gone: free the buffers when the device returns them.
        abandoned: bool,
    },
    /// Returned by the device, not yet collected.
    Finished(P::Outcome),
}

struct Entry<P: Protocol> {
    state: State<P>,
    /// The header and trailer (`HEADER + TRAILER` bytes), reused by every request of
    /// the entry. Boxed, so their address holds while the device owns them.
    envelope: Box<[u8]>,
    waker: Option<Waker>,
}

/// A request table over one virtqueue of `SIZE` descriptors.
pub(crate) struct RequestTable<H: Hal, P: Protocol, const SIZE: usize> {
    queue: Box<VirtQueue<H, SIZE>>,
    /// The queue's index on the transport.
    index: u16,
    /// At most this many requests in flight.
    entries: Vec<Entry<P>>,
    /// Free entries.
    free: Vec<u16>,
    /// Token (head descriptor) -> entry in flight under it.
    tokens: Vec<Option<u16>>,
    /// Submitters waiting for a free entry.
    waiting: Vec<Waker>,
    /// What the interrupt handler wakes (the kernel's completion task).
    interrupt: &'static AtomicWaker,
    broken: bool,
    in_flight: u64,
    stats: TableStats,
}

/// Calls `body` with a request's descriptors, as `VirtQueue::add` and `pop_used` take
/// them (the same slices both times, or the crate would unshare the wrong memory).
fn descriptors<R>(
    envelope: &mut [u8],
    header: usize,
    readable: Option<&[u8]>,
    writable: Option<&mut [u8]>,
    body: impl for<'a> FnOnce(&'a [&'a [u8]], &'a mut [&'a mut [u8]]) -> R,
) -> R {
    let (header, trailer) = envelope.split_at_mut(header);
    let mut inputs: [&[u8]; 2] = [&[], &[]];
    let mut input_count = 0;
    for part in [Some(&*header), readable].into_iter().flatten() {
        if !part.is_empty() {
            inputs[input_count] = part;
            input_count += 1;
        }
    }
    let mut outputs: [&mut [u8]; 2] = [&mut [], &mut []];
    let mut output_count = 0;
    for part in [writable, Some(trailer)].into_iter().flatten() {
        if !part.is_empty() {
            outputs[output_count] = part;
            output_count += 1;
        }
    }
    body(&inputs[..input_count], &mut outputs[..output_count])
}

impl<H: Hal, P: Protocol, const SIZE: usize> RequestTable<H, P, SIZE> {
    /// Sets up queue `index` on `transport` (with indirect descriptors if `indirect`) and
    /// a table of `limit` entries (at most `SIZE`) over it; `interrupt` is what the
    /// device's interrupt handler wakes.
    ///
    /// The queue (over 4 KiB of shadow descriptors at 128) is boxed here, where
    /// virtio-drivers returns it by value: the table and the driver around it stay small,
    /// so they are not copied through the frames of their constructors (without the box,
    /// `FsDevice::new`'s frame grew from 9.0 to 11.7 KiB; with it, 9.1).
    ///
    /// # Errors
    /// virtio-drivers' error when the queue cannot be set up.
    pub(crate) fn new<T: Transport>(
        transport: &mut T,
        index: u16,
        indirect: bool,
        limit: usize,
        interrupt: &'static AtomicWaker,
    ) -> Result<Self, virtio_drivers::Error> {
        let queue = Box::new(VirtQueue::new(transport, index, indirect, false)?);
        let limit = limit.min(SIZE);
        Ok(Self {
            queue,
            index,
            entries: (0..limit)
                .map(|_| Entry {
                    state: State::Free,
                    envelope: alloc::vec![0; P::HEADER + P::TRAILER].into_boxed_slice(),
                    waker: None,
                })
                .collect(),
            free: (0..limit as u16).rev().collect(),
            tokens: alloc::vec![None; SIZE],
            waiting: Vec::with_capacity(limit),
            interrupt,
            broken: false,
            in_flight: 0,
            stats: TableStats::default(),
        })
    }

    /// How many requests may be in flight at once.
    pub(crate) fn limit(&self) -> usize {
        self.entries.len()
    }

    /// The counters.
    pub(crate) fn stats(&self) -> TableStats {
        self.stats
    }

    /// Whether the device is out of service.
    pub(crate) fn broken(&self) -> bool {
        self.broken
    }

    /// Whether every entry is in use.
    #[cfg(test)]
    pub(crate) fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Whether a request is in flight under `token`.
    #[cfg(test)]
    pub(crate) fn in_flight_under(&self, token: u16) -> bool {
        self.tokens
            .get(usize::from(token))
            .copied()
            .flatten()
            .is_some()
    }

    /// Posts `request` (made into a [`Posting`] by `prepare` once an entry is free) and
    /// notifies the device through `transport` unless it suppressed notifications.
    /// `waker` is woken when an entry frees, if there is none now.
    pub(crate) fn submit<R, T: Transport>(
        &mut self,
        request: R,
        waker: &Waker,
        transport: &mut T,
        prepare: impl FnOnce(R) -> Posting<P::Posted>,
    ) -> Submission<R, P::Outcome> {
        if self.broken {
            return Submission::Finished(P::broken());
        }
        let Some(index) = self.free.pop() else {
            self.stats.full += 1;
            if !self.waiting.iter().any(|waiting| waiting.will_wake(waker)) {
                self.waiting.push(waker.clone());
            }
            return Submission::Full(request);
        };
        let Posting {
            posted,
            readable,
            writable,
        } = prepare(request);
        let mut readable = readable.map(Lent::new);
        let mut writable = writable.map(Lent::new);
        let entry = &mut self.entries[usize::from(index)];
        let (header, trailer) = entry.envelope.split_at_mut(P::HEADER);
        P::seal(&posted, header, trailer);
        let queue = &mut self.queue;
        // SAFETY: not posted yet: the device does not know these bytes.
        let (readable_bytes, writable_bytes) = unsafe {
            (
                readable.as_mut().map(|lent| &*lent.bytes()),
                writable.as_mut().map(|lent| lent.bytes()),
            )
        };
        let added = descriptors(
            &mut entry.envelope,
            P::HEADER,
            readable_bytes,
            writable_bytes,
            // SAFETY: the envelope (boxed, so it does not move) and the buffers (lent: no
            // owner asserts access to them) stay in this entry, `InFlight` from right
            // below, untouched until `drain` pops them under the same token with the
            // same slices (`descriptors`); on error the queue kept nothing.
            |inputs, outputs| unsafe { queue.add(inputs, outputs) },
        );
        let token = match added {
            Ok(token) if usize::from(token) < SIZE => token,
            Ok(_) => {
                // A token outside the queue: a broken invariant of virtio-drivers. The
                // device may own the buffers: the `Lent`s go out of scope (leaked).
                self.stop();
                return Submission::Finished(P::broken());
            }
            Err(_) => {
                // The table is never larger than the queue can take; refuse the request
                // rather than lose it.
                // SAFETY: the queue refused the buffers: the device never saw them.
                drop(readable.map(|lent| unsafe { lent.take_back() }));
                // SAFETY: as above.
                drop(writable.map(|lent| unsafe { lent.take_back() }));
                self.free.push(index);
                return Submission::Finished(P::refused());
            }
        };
        entry.state = State::InFlight {
            token,
            posted,
            readable,
            writable,
            abandoned: false,
        };
        entry.waker = Some(waker.clone());
        self.tokens[usize::from(token)] = Some(index);
        self.stats.posted += 1;
        self.in_flight += 1;
        self.stats.peak_in_flight = self.stats.peak_in_flight.max(self.in_flight);
        // The avail index is published; the device's flag is read after it.
        fence(Ordering::SeqCst);
        if self.queue.should_notify() {
            self.stats.notifications += 1;
            transport.notify(self.index);
        }
        Submission::Posted(Ticket(index))
    }

    /// The outcome of the request `ticket` names, or the ticket back (with `waker`
    /// registered) while the device has it. Takes what the device returned first.
    pub(crate) fn complete(&mut self, ticket: Ticket, waker: &Waker) -> Completion<P::Outcome> {
        self.drain();
        if self.broken {
            return Completion::Finished(P::broken());
        }
        let index = ticket.0;
        let Some(entry) = self.entries.get_mut(usize::from(index)) else {
            return Completion::Finished(P::broken());
        };
        match core::mem::replace(&mut entry.state, State::Free) {
            State::Finished(outcome) => {
                self.release(index);
                Completion::Finished(outcome)
            }
            // Only a ticket this table never issued (another device's) finds a free entry.
            State::Free => Completion::Finished(P::broken()),
            in_flight => {
                entry.state = in_flight;
                match &entry.waker {
                    Some(registered) if registered.will_wake(waker) => {}
                    _ => entry.waker = Some(waker.clone()),
                }
                Completion::Pending(ticket)
            }
        }
    }

    /// Gives up waiting for `ticket`'s request: its buffers are freed when the device
    /// returns them (at once if it already has), never before.
    pub(crate) fn abandon(&mut self, ticket: Ticket) {
        if self.broken {
            return;
        }
        let index = ticket.0;
        let Some(entry) = self.entries.get_mut(usize::from(index)) else {
            return;
        };
        entry.waker = None;
        match &mut entry.state {
            State::InFlight { abandoned, .. } => *abandoned = true,
            State::Finished(_) => {
                entry.state = State::Free;
                self.release(index);
            }
            State::Free => {}
        }
    }

    /// For the kernel's completion task: registers `cx`'s waker with the interrupt, then
    /// finishes every request the device returned (waking their callers). `Ready` once the
    /// device is out of service (nothing will complete any more).
    pub(crate) fn poll_completions(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Register before looking, so a completion between the look and `Pending` wakes.
        self.interrupt.register(cx.waker());
        self.drain();
        if self.broken {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Returns entry `index` to the free list and wakes the submitters waiting for one.
    fn release(&mut self, index: u16) {
        self.free.push(index);
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }

    /// Takes every used entry the device returned.
    fn drain(&mut self) {
        while !self.broken {
            let Some(token) = self.queue.peek_used() else {
                return;
            };
            let Some(index) = self.tokens.get(usize::from(token)).copied().flatten() else {
                // A token with no request in flight: the device is misbehaving, and the
                // queue cannot step past the entry.
                self.stats.bad_used += 1;
                self.stop();
                return;
            };
            let entry = &mut self.entries[usize::from(index)];
            let State::InFlight {
                token: posted_under,
                posted,
                mut readable,
                mut writable,
                abandoned,
            } = core::mem::replace(&mut entry.state, State::Free)
            else {
                // `tokens` names only entries in flight: a broken invariant here.
                self.stats.bad_used += 1;
                self.stop();
                return;
            };
            debug_assert_eq!(posted_under, token);
            let queue = &mut self.queue;
            // SAFETY: the used ring returned this request (`peek_used` named its token).
            let (readable_bytes, writable_bytes) = unsafe {
                (
                    readable.as_mut().map(|lent| &*lent.bytes()),
                    writable.as_mut().map(|lent| lent.bytes()),
                )
            };
            let popped = descriptors(
                &mut entry.envelope,
                P::HEADER,
                readable_bytes,
                writable_bytes,
                // SAFETY: the envelope and buffers are the ones posted under `token` (the
                // table says so), passed as the same slices in the same directions.
                |inputs, outputs| unsafe { queue.pop_used(token, inputs, outputs) },
            );
            let Ok(length) = popped else {
                // Cannot happen after `peek_used` returned this token; if it does, the
                // device still owns the buffers: the `Lent`s go out of scope (leaked).
                self.stats.bad_used += 1;
                self.stop();
                return;
            };
            self.tokens[usize::from(token)] = None;
            self.stats.completed += 1;
            self.in_flight -= 1;
            let limit = (writable.as_ref().map_or(0, Lent::len) + P::TRAILER) as u32;
            let length = if length > limit {
                Err(PastBuffer { length, limit })
            } else {
                Ok(length)
            };
            let (outcome, distrusted) = P::finish(Returned {
                posted,
                // SAFETY: popped: the device returned the request and its buffers.
                readable: readable.map(|lent| unsafe { lent.take_back() }),
                // SAFETY: as above.
                writable: writable.map(|lent| unsafe { lent.take_back() }),
                trailer: &entry.envelope[P::HEADER..],
                length,
            });
            if distrusted || length.is_err() {
                self.stats.bad_used += 1;
            }
            if abandoned {
                // Nobody waits: the buffers (back from the device) are freed here.
                drop(outcome);
                self.release(index);
            } else {
                entry.state = State::Finished(outcome);
                if let Some(waker) = entry.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    /// Takes the device out of service: every caller is woken to find
    /// [`Protocol::broken`], and the table (with every buffer the device may still
    /// write) is leaked, never freed under it.
    fn stop(&mut self) {
        self.broken = true;
        let mut entries = core::mem::take(&mut self.entries);
        for entry in &mut entries {
            if let Some(waker) = entry.waker.take() {
                waker.wake();
            }
        }
        core::mem::forget(entries);
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests;
