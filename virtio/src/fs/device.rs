//! The virtio-fs device (virtio spec 1.2, section 5.11): FUSE requests posted on the
//! first request queue, many in flight, completed by the device's interrupt.
//!
//! A request is two descriptors: the encoded request (device-readable) and a reply
//! buffer of the size the opcode's reply can have (device-writable); FORGET, which gets
//! no reply, is the first alone. The hiprio queue (queue 0) is set up, as the device
//! expects, and left empty: Torito never interrupts a request, and FORGET goes on the
//! request queue (virtiofsd serves every queue alike and returns a FORGET with length 0).
//!
//! DMA ownership and hostile used entries are handled as in the block driver
//! (`blk.rs`): both buffers live in the request table as `Lent` allocations no Rust
//! owner claims while the device holds them; an unknown used token takes the device out
//! of service (its buffers leaked, never freed under it); a used length past the reply
//! buffer, a short reply, a header that disagrees with the used length or a reply to
//! another request fails that request alone (`protocol::check_reply`).
#![allow(unsafe_code)]

use super::error::FuseError;
use super::protocol::{self, Message, Opcode, Reply};
use crate::features::{self, VIRTIO_F_VERSION_1};
use crate::lent::Lent;

use alloc::string::String;
use alloc::vec::Vec;

use core::sync::atomic::{Ordering, fence};
use core::task::{Context, Poll, Waker};
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;

/// Descriptors in the request queue (a power of two).
pub const QUEUE: usize = 128;
/// Descriptors in the hiprio queue.
const HIPRIO_SIZE: usize = 8;
const HIPRIO: u16 = 0;
/// The first request queue (spec 5.11.2).
const REQUEST_QUEUE: u16 = 1;
/// `tag` in the configuration space: 36 bytes, NUL-padded (spec 5.11.4).
const TAG_LENGTH: usize = 36;
/// The largest request the driver posts (a WRITE of 1 MiB and its header).
pub const MAX_REQUEST: usize = (1 << 20) + 128;

/// What a finished request gives: the checked reply (an empty body for FORGET).
pub type Outcome = Result<Reply, FuseError>;

/// A posted request: the entry of the driver's request table it occupies. It owns no
/// memory; give it back to [`FsDevice::complete`] or [`FsDevice::abandon`].
#[derive(Debug)]
pub struct Ticket(u16);

/// What [`FsDevice::submit`] did with a request.
#[derive(Debug)]
pub enum Submission {
    /// Posted: wait with [`FsDevice::complete`].
    Posted(Ticket),
    /// Every request entry is in use: the request comes back, and the waker is woken
    /// when one frees.
    Full(Message),
    /// Refused without reaching the device.
    Finished(Outcome),
}

/// What [`FsDevice::complete`] found.
#[derive(Debug)]
pub enum Completion {
    /// The request finished.
    Finished(Outcome),
    /// Still with the device: the ticket comes back, and the waker is woken when the
    /// request finishes.
    Pending(Ticket),
}

/// Counters of what the driver did and what it refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// Requests posted to the device.
    pub posted: u64,
    /// Requests the device returned.
    pub completed: u64,
    /// Replies refused as untrusted (unknown token, bad length, header or unique).
    pub bad_replies: u64,
    /// Queue notifications written to the device.
    pub notifications: u64,
    /// Submissions that found every request entry in use.
    pub full: u64,
}

enum State {
    Free,
    /// Posted under `token`: the device owns both buffers.
    InFlight {
        token: u16,
        opcode: Opcode,
        unique: u64,
        request: Lent,
        reply: Option<Lent>,
        /// The caller is gone: free the buffers when the device returns them.
        abandoned: bool,
    },
    /// Returned by the device, not yet collected.
    Finished(Outcome),
}

struct Entry {
    state: State,
    waker: Option<Waker>,
}

/// A virtio-fs device: a request table over one request queue.
pub struct FsDevice<H: Hal, T: Transport> {
    transport: T,
    // Set up for the device's sake, never used (see the module's docs).
    _hiprio: VirtQueue<H, HIPRIO_SIZE>,
    queue: VirtQueue<H, QUEUE>,
    tag: String,
    entries: Vec<Entry>,
    free: Vec<u16>,
    /// Token (head descriptor) -> entry in flight under it.
    tokens: Vec<Option<u16>>,
    waiting: Vec<Waker>,
    interrupt: &'static AtomicWaker,
    broken: bool,
    next_unique: u64,
    stats: FsStats,
}

impl<H: Hal, T: Transport> FsDevice<H, T> {
    /// Initializes the device (spec 3.1.1) with its interrupts on and reads its tag;
    /// `interrupt` is what the kernel's interrupt handler wakes. The FUSE session starts
    /// with the first request, FUSE_INIT ([`protocol::init`]), which the caller sends.
    ///
    /// # Errors
    /// [`FuseError::Setup`] when the device refuses the features, its tag is not UTF-8,
    /// it has no request queue, or a queue cannot be set up.
    pub fn new(mut transport: T, interrupt: &'static AtomicWaker) -> Result<Self, FuseError> {
        features::negotiate(&mut transport, VIRTIO_F_VERSION_1).map_err(|_| FuseError::Setup {
            what: "the device refused the features",
        })?;
        let (tag, queues) = transport
            .read_consistent(|| {
                let mut tag = [0u8; TAG_LENGTH];
                for (index, chunk) in tag.chunks_mut(4).enumerate() {
                    let word = transport.read_config_space::<u32>(index * 4)?;
                    chunk.copy_from_slice(&word.to_le_bytes());
                }
                let queues = transport.read_config_space::<u32>(TAG_LENGTH)?;
                Ok((tag, queues))
            })
            .map_err(|_| FuseError::Setup {
                what: "its configuration space cannot be read",
            })?;
        let end = tag.iter().position(|&byte| byte == 0).unwrap_or(TAG_LENGTH);
        let tag = core::str::from_utf8(&tag[..end])
            .map_err(|_| FuseError::Setup {
                what: "its tag is not UTF-8",
            })?
            .into();
        if queues == 0 {
            return Err(FuseError::Setup {
                what: "it has no request queue",
            });
        }
        let hiprio =
            VirtQueue::new(&mut transport, HIPRIO, false, false).map_err(|_| FuseError::Setup {
                what: "virtio-drivers refused the hiprio queue",
            })?;
        let queue = VirtQueue::new(&mut transport, REQUEST_QUEUE, false, false).map_err(|_| {
            FuseError::Setup {
                what: "virtio-drivers refused the request queue (fewer than 128 descriptors?)",
            }
        })?;
        transport.finish_init();
        // Two descriptors a request.
        let limit = QUEUE / 2;
        Ok(Self {
            transport,
            _hiprio: hiprio,
            queue,
            tag,
            entries: (0..limit)
                .map(|_| Entry {
                    state: State::Free,
                    waker: None,
                })
                .collect(),
            free: (0..limit as u16).rev().collect(),
            tokens: alloc::vec![None; QUEUE],
            waiting: Vec::with_capacity(limit),
            interrupt,
            broken: false,
            next_unique: 2,
            stats: FsStats::default(),
        })
    }

    /// The share's tag (what the VMM was told, e.g. `tag=share`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The counters.
    pub fn stats(&self) -> FsStats {
        self.stats
    }

    /// Posts `message` and notifies the device. `waker` is woken when an entry frees, if
    /// there is none now.
    pub fn submit(&mut self, message: Message, waker: &Waker) -> Submission {
        if self.broken {
            return Submission::Finished(Err(FuseError::Broken));
        }
        if message.bytes().len() > MAX_REQUEST {
            return Submission::Finished(Err(FuseError::TooLarge {
                length: message.bytes().len(),
            }));
        }
        let Some(index) = self.free.pop() else {
            self.stats.full += 1;
            if !self.waiting.iter().any(|waiting| waiting.will_wake(waker)) {
                self.waiting.push(waker.clone());
            }
            return Submission::Full(message);
        };
        let opcode = message.opcode();
        let unique = self.next_unique;
        // Even numbers: FUSE keeps odd ones for interrupts.
        self.next_unique = self.next_unique.wrapping_add(2);
        let capacity = message.reply_capacity();
        let mut request = Lent::new(message.seal(unique).into_boxed_slice());
        let mut reply =
            (capacity > 0).then(|| Lent::new(alloc::vec![0; capacity].into_boxed_slice()));
        // SAFETY: not posted yet: the device does not know these bytes.
        let (request_bytes, reply_bytes) = unsafe {
            (
                request.bytes() as &[u8],
                reply.as_mut().map(|lent| lent.bytes()),
            )
        };
        let added = match reply_bytes {
            // SAFETY: both buffers are lent (no owner asserts access) and move into this
            // entry as `InFlight` right below, untouched until `drain` pops them under
            // the same token with the same slices; on error the queue kept nothing.
            Some(reply_bytes) => unsafe { self.queue.add(&[request_bytes], &mut [reply_bytes]) },
            // SAFETY: as above, with no reply buffer.
            None => unsafe { self.queue.add(&[request_bytes], &mut []) },
        };
        let token = match added {
            Ok(token) if usize::from(token) < QUEUE => token,
            Ok(_) => {
                // A token outside the queue: a broken invariant of virtio-drivers. The
                // device may own the buffers: the `Lent`s go out of scope (leaked).
                self.stop();
                return Submission::Finished(Err(FuseError::Broken));
            }
            Err(_) => {
                // The table is never larger than the queue can take; refuse rather
                // than lose the request.
                // SAFETY: the queue refused the buffers: the device never saw them.
                drop(unsafe { request.take_back() });
                // SAFETY: as above.
                drop(reply.map(|lent| unsafe { lent.take_back() }));
                self.free.push(index);
                return Submission::Finished(Err(FuseError::Setup {
                    what: "the request queue is full",
                }));
            }
        };
        let entry = &mut self.entries[usize::from(index)];
        entry.state = State::InFlight {
            token,
            opcode,
            unique,
            request,
            reply,
            abandoned: false,
        };
        entry.waker = Some(waker.clone());
        self.tokens[usize::from(token)] = Some(index);
        self.stats.posted += 1;
        fence(Ordering::SeqCst);
        if self.queue.should_notify() {
            self.stats.notifications += 1;
            self.transport.notify(REQUEST_QUEUE);
        }
        Submission::Posted(Ticket(index))
    }

    /// The outcome of the request `ticket` names, or the ticket back (with `waker`
    /// registered) while the device has it.
    pub fn complete(&mut self, ticket: Ticket, waker: &Waker) -> Completion {
        self.drain();
        if self.broken {
            return Completion::Finished(Err(FuseError::Broken));
        }
        let index = ticket.0;
        let Some(entry) = self.entries.get_mut(usize::from(index)) else {
            return Completion::Finished(Err(FuseError::Broken));
        };
        match core::mem::replace(&mut entry.state, State::Free) {
            State::Finished(outcome) => {
                self.release(index);
                Completion::Finished(outcome)
            }
            State::Free => Completion::Finished(Err(FuseError::Broken)),
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
    /// returns them, never before.
    pub fn abandon(&mut self, ticket: Ticket) {
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
    /// finishes every request the device returned. `Ready` once the device is out of
    /// service.
    pub fn poll_completions(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.interrupt.register(cx.waker());
        self.drain();
        if self.broken {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

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
                self.stats.bad_replies += 1;
                self.stop();
                return;
            };
            let entry = &mut self.entries[usize::from(index)];
            let State::InFlight {
                token: posted,
                opcode,
                unique,
                mut request,
                mut reply,
                abandoned,
            } = core::mem::replace(&mut entry.state, State::Free)
            else {
                self.stats.bad_replies += 1;
                self.stop();
                return;
            };
            debug_assert_eq!(posted, token);
            // SAFETY: the used ring returned this request (`peek_used` named its token).
            let (request_bytes, reply_bytes) = unsafe {
                (
                    request.bytes() as &[u8],
                    reply.as_mut().map(|lent| lent.bytes()),
                )
            };
            let popped = match reply_bytes {
                // SAFETY: the buffers posted under `token` (the table says so), passed as
                // the same slices in the same directions.
                Some(reply_bytes) => unsafe {
                    self.queue
                        .pop_used(token, &[request_bytes], &mut [reply_bytes])
                },
                // SAFETY: as above.
                None => unsafe { self.queue.pop_used(token, &[request_bytes], &mut []) },
            };
            let Ok(length) = popped else {
                self.stats.bad_replies += 1;
                self.stop();
                return;
            };
            self.tokens[usize::from(token)] = None;
            self.stats.completed += 1;
            // SAFETY: popped: the device returned the request and its buffers.
            drop(unsafe { request.take_back() });
            // SAFETY: as above.
            let reply = reply.map(|lent| unsafe { lent.take_back() }.into_vec());
            let outcome = match reply {
                Some(reply) => protocol::check_reply(opcode, unique, reply, length),
                None => Ok(Reply {
                    opcode,
                    body: Vec::new(),
                }),
            };
            if matches!(
                outcome,
                Err(FuseError::Oversized { .. }
                    | FuseError::Short { .. }
                    | FuseError::LengthMismatch { .. }
                    | FuseError::UniqueMismatch { .. }
                    | FuseError::BadErrno { .. })
            ) {
                self.stats.bad_replies += 1;
            }
            if abandoned {
                drop(outcome);
                self.release(index);
            } else {
                let entry = &mut self.entries[usize::from(index)];
                entry.state = State::Finished(outcome);
                if let Some(waker) = entry.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    /// Takes the device out of service: every caller is woken to find
    /// [`FuseError::Broken`], and the table (with every buffer the device may still
    /// write) is leaked.
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

impl<H: Hal, T: Transport> Drop for FsDevice<H, T> {
    fn drop(&mut self) {
        // The device must stop using the queues before their memory and the buffers are
        // freed (the fields drop after this).
        self.transport.queue_unset(REQUEST_QUEUE);
        self.transport.queue_unset(HIPRIO);
    }
}
