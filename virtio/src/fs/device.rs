//! The virtio-fs device (virtio spec 1.2, section 5.11): FUSE requests posted on the
//! first request queue, many in flight, completed by the device's interrupt.
//!
//! A request is two descriptors: the encoded request (device-readable) and a reply
//! buffer of the size the opcode's reply can have (device-writable); FORGET, which gets
//! no reply, is the first alone. The hiprio queue (queue 0) is set up, as the device
//! expects, and left empty: Torito never interrupts a request, and FORGET goes on the
//! request queue (virtiofsd serves every queue alike and returns a FORGET with length 0).
//!
//! DMA ownership and hostile used entries are handled by the request table the block
//! driver uses too (`requests.rs`): both buffers live in the table as `Lent` allocations
//! no Rust owner claims while the device holds them; an unknown used token takes the
//! device out of service (its buffers leaked, never freed under it); a used length past
//! the reply buffer, a short reply, a header that disagrees with the used length or a
//! reply to another request fails that request alone (`protocol::check_reply`).

use super::error::FuseError;
use super::protocol::{self, Message, Opcode, Reply};
use crate::features::{self, VIRTIO_F_VERSION_1};
use crate::requests::{Posting, Protocol, RequestTable, Requests, Returned};

use alloc::string::String;
use alloc::vec::Vec;

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

pub use crate::requests::Ticket;

/// What [`FsDevice::submit`] did with a request: posted (wait with
/// [`FsDevice::complete`]), handed back with every entry in use, or refused without
/// reaching the device.
pub type Submission = crate::requests::Submission<Message, Outcome>;

/// What [`FsDevice::complete`] found.
pub type Completion = crate::requests::Completion<Outcome>;

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

/// FUSE requests for the shared request table: the encoded request (device-readable)
/// and the reply buffer (device-writable), no header or trailer of the table's own.
struct Fuse;

impl Protocol for Fuse {
    /// The opcode and the `unique` the reply must carry.
    type Posted = (Opcode, u64);
    type Outcome = Outcome;
    const HEADER: usize = 0;
    const TRAILER: usize = 0;

    fn seal(_: &(Opcode, u64), _: &mut [u8], _: &mut [u8]) {}

    fn finish(returned: Returned<'_, (Opcode, u64)>) -> (Outcome, bool) {
        let (opcode, unique) = returned.posted;
        let outcome = match (returned.writable, returned.length) {
            (_, Err(past)) => Err(FuseError::Oversized {
                length: past.length,
                capacity: past.limit,
            }),
            (Some(reply), Ok(length)) => {
                protocol::check_reply(opcode, unique, reply.into_vec(), length)
            }
            // FORGET: no reply buffer, nothing written.
            (None, Ok(_)) => Ok(Reply {
                opcode,
                body: Vec::new(),
            }),
        };
        let untrusted = matches!(
            outcome,
            Err(FuseError::Short { .. }
                | FuseError::LengthMismatch { .. }
                | FuseError::UniqueMismatch { .. }
                | FuseError::BadErrno { .. })
        );
        (outcome, untrusted)
    }

    fn broken() -> Outcome {
        Err(FuseError::Broken)
    }

    fn refused() -> Outcome {
        Err(FuseError::Setup {
            what: "the request queue is full",
        })
    }
}

/// A virtio-fs device: a request table over one request queue.
pub struct FsDevice<H: Hal, T: Transport> {
    transport: T,
    // Set up for the device's sake, never used (see the module's docs).
    _hiprio: VirtQueue<H, HIPRIO_SIZE>,
    requests: RequestTable<H, Fuse, QUEUE>,
    tag: String,
    next_unique: u64,
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
        // Two descriptors a request.
        let requests =
            RequestTable::new(&mut transport, REQUEST_QUEUE, false, QUEUE / 2, interrupt).map_err(
                |_| FuseError::Setup {
                    what: "virtio-drivers refused the request queue (fewer than 128 descriptors?)",
                },
            )?;
        transport.finish_init();
        Ok(Self {
            transport,
            _hiprio: hiprio,
            requests,
            tag,
            next_unique: 2,
        })
    }

    /// The share's tag (what the VMM was told, e.g. `tag=share`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The counters.
    pub fn stats(&self) -> FsStats {
        let stats = self.requests.stats();
        FsStats {
            posted: stats.posted,
            completed: stats.completed,
            bad_replies: stats.bad_used,
            notifications: stats.notifications,
            full: stats.full,
        }
    }

    /// Posts `message` and notifies the device. `waker` is woken when an entry frees, if
    /// there is none now.
    pub fn submit(&mut self, message: Message, waker: &Waker) -> Submission {
        if self.requests.broken() {
            return Submission::Finished(Err(FuseError::Broken));
        }
        if message.bytes().len() > MAX_REQUEST {
            return Submission::Finished(Err(FuseError::TooLarge {
                length: message.bytes().len(),
            }));
        }
        let next_unique = &mut self.next_unique;
        self.requests
            .submit(message, waker, &mut self.transport, |message| {
                let opcode = message.opcode();
                let unique = *next_unique;
                // Even numbers: FUSE keeps odd ones for interrupts.
                *next_unique = unique.wrapping_add(2);
                let capacity = message.reply_capacity();
                Posting {
                    posted: (opcode, unique),
                    readable: Some(message.seal(unique).into_boxed_slice()),
                    writable: (capacity > 0).then(|| alloc::vec![0; capacity].into_boxed_slice()),
                }
            })
    }

    /// The outcome of the request `ticket` names, or the ticket back (with `waker`
    /// registered) while the device has it.
    pub fn complete(&mut self, ticket: Ticket, waker: &Waker) -> Completion {
        self.requests.complete(ticket, waker)
    }

    /// Gives up waiting for `ticket`'s request: its buffers are freed when the device
    /// returns them, never before.
    pub fn abandon(&mut self, ticket: Ticket) {
        self.requests.abandon(ticket);
    }

    /// For the kernel's completion task: registers `cx`'s waker with the interrupt, then
    /// finishes every request the device returned. `Ready` once the device is out of
    /// service.
    pub fn poll_completions(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.requests.poll_completions(cx)
    }
}

impl<H: Hal, T: Transport> Requests for FsDevice<H, T> {
    type Request = Message;
    type Outcome = Outcome;

    fn submit(&mut self, message: Message, waker: &Waker) -> Submission {
        FsDevice::submit(self, message, waker)
    }

    fn complete(&mut self, ticket: Ticket, waker: &Waker) -> Completion {
        FsDevice::complete(self, ticket, waker)
    }

    fn abandon(&mut self, ticket: Ticket) {
        FsDevice::abandon(self, ticket);
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
