//! virtio-blk (virtio spec 1.2, section 5.2) on virtio-drivers' `VirtQueue`: sectors read,
//! written and flushed with many requests in flight, completed by the device's interrupt.
//!
//! A request is three descriptors (spec 5.2.6): a 16-byte header the device reads (type,
//! sector), the data (read by the device for a write, written for a read; none for a
//! flush), and one status byte the device writes. With `VIRTIO_F_INDIRECT_DESC` (QEMU
//! offers it) the three go into an indirect table and take one ring descriptor, so up to
//! [`QUEUE`] requests are in flight; without it, a third of that.
//!
//! Why not virtio-drivers' `VirtIOBlk`: its queue is fixed at 16 descriptors, its flush
//! waits for the device in a loop (and no request type other than read and write can be
//! posted without waiting), and it notifies the device on every request whatever the
//! device asked. This driver keeps the crate's queue (rings, descriptors, DMA sharing) and
//! owns the rest, as the net and rng drivers do.
//!
//! # DMA ownership
//!
//! The data travels as a [`Buffer`], moved into [`BlockDevice::submit`] with its
//! [`Request`]. From the moment it is posted until the device returns it in the used ring,
//! the buffer (and the request's header and status byte) lives in this driver's request
//! table, not with the caller: the caller holds only a [`Ticket`], which names a table
//! entry and owns no memory. The table is the one virtio-fs uses too (`requests.rs`,
//! where the unsafe hand-over to the virtqueue lives); in it the buffer is a `Lent`, a
//! raw allocation no Rust owner claims (`crate::lent`: a `Box` would assert unique access
//! while the device writes), turned back into a `Buffer` only after the used ring
//! returned it. So
//!
//! * dropping the caller's future mid-flight ([`BlockDevice::abandon`]) cannot free memory
//!   the device still writes: the entry is marked abandoned, and the buffer is freed when
//!   the device gives it back;
//! * the caller gets the buffer back only from [`BlockDevice::complete`], after the used
//!   ring returned it under the token it was posted with;
//! * a device that breaks the ring (see below) never gets its buffers freed: they are
//!   leaked, since it may still write them.
//!
//! # Untrusted device memory
//!
//! A used entry whose token names no request in flight is counted
//! ([`BlockStats::bad_used`]) and ends the device's service: virtio-drivers' queue cannot
//! step past an entry it cannot pop, so every request in flight fails with
//! [`BlockError::Broken`] (its buffer leaked, never freed under the device) and so does
//! every later one. A used entry claiming more bytes than the request let the device write
//! is counted and fails that request alone ([`BlockError::Untrusted`]); its data is not
//! handed out. A status byte the device did not write, or wrote with a value the spec does
//! not define, is a [`BlockError::Device`]. None of these panics.
//!
//! This protects the kernel from a confused or buggy device; a malicious one with DMA and
//! no IOMMU can write anywhere regardless.

use crate::features::{self, VIRTIO_F_VERSION_1};
use crate::requests::{PastBuffer, Posting, Protocol, RequestTable, Requests, Returned};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::task::{Context, Poll, Waker};
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
use virtio_drivers::transport::Transport;

/// Bytes in a sector: every offset and length on a virtio-blk device counts in these
/// (spec 5.2.6, whatever the device's preferred block size).
pub const SECTOR_SIZE: usize = 512;
/// Descriptors in the request queue (a power of two; QEMU offers 256, Cloud Hypervisor
/// 128, Firecracker 256).
pub const QUEUE: usize = 128;
/// Queue index of requestq (spec 5.2.2).
const REQUEST_QUEUE: u16 = 0;
/// Feature bits (spec 5.2.3 and 6).
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
/// Request types (spec 5.2.6).
const TYPE_IN: u32 = 0;
const TYPE_OUT: u32 = 1;
const TYPE_FLUSH: u32 = 4;
/// Status values (spec 5.2.6).
const STATUS_OK: u8 = 0;
/// What the status byte holds until the device writes it (the spec defines 0 to 2).
const STATUS_UNWRITTEN: u8 = 0xff;

/// Why a block request (or the device's set-up) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// A buffer's length is not a non-zero multiple of [`SECTOR_SIZE`] within
    /// [`Buffer::MAX_SECTORS`].
    BadBufferSize {
        /// The length asked for, in bytes.
        length: usize,
    },
    /// The request reaches past the end of the disk.
    OutOfRange {
        /// The first sector asked for.
        sector: u64,
        /// How many sectors the request covers.
        sectors: u64,
        /// The disk's size in sectors.
        capacity: u64,
    },
    /// A write to a read-only disk.
    ReadOnly {
        /// The sector the write was for.
        sector: u64,
    },
    /// The device answered the request with an error status (1: I/O error, 2:
    /// unsupported; 255: it wrote no status at all).
    Device {
        /// The status byte.
        status: u8,
        /// The request's first sector.
        sector: u64,
    },
    /// The device claimed to have written more bytes than the request let it (its used
    /// entry's length); the request's data is not handed out.
    Untrusted {
        /// The length the device claimed.
        length: u32,
        /// The most it could have written.
        limit: u32,
    },
    /// The device returned a request it was never given: it is no longer used, and
    /// every request fails with this.
    Broken,
    /// The device could not be set up (virtio-drivers refused the queue, or the device
    /// refused the features).
    Setup {
        /// What failed.
        what: &'static str,
    },
    /// No disk with this index (see `torito::block::disks`).
    NoDisk {
        /// The index asked for.
        index: usize,
        /// How many disks there are.
        count: usize,
    },
    /// A blocking call outside a blocking task (`torito::task::spawn_blocking`), where it
    /// would stall the whole core.
    WouldBlockCore,
}

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            BlockError::BadBufferSize { length } => write!(
                f,
                "a block buffer of {length} bytes: it must be a non-zero multiple of \
                 {SECTOR_SIZE} bytes, at most {} sectors; make it with Buffer::new(sectors)",
                Buffer::MAX_SECTORS
            ),
            BlockError::OutOfRange {
                sector,
                sectors,
                capacity,
            } => write!(
                f,
                "sectors {sector}..{} are past the end of the disk ({capacity} sectors); \
                 check the offset against Disk::capacity",
                sector.saturating_add(sectors)
            ),
            BlockError::ReadOnly { sector } => write!(
                f,
                "write at sector {sector} to a read-only disk; attach the disk writable \
                 (qemu/run.sh --disk FILE, without ,ro)"
            ),
            BlockError::Device { status, sector } => write!(
                f,
                "the disk failed the request at sector {sector} with status {status} \
                 (1: I/O error, 2: unsupported, 255: no status); check the host's disk image \
                 and the VMM's log"
            ),
            BlockError::Untrusted { length, limit } => write!(
                f,
                "the disk claimed {length} bytes written where at most {limit} could be; the \
                 request's data was dropped; check the VMM"
            ),
            BlockError::Broken => f.write_str(
                "the disk returned a request it was never given and is out of service; \
                 restart the VM and check the VMM",
            ),
            BlockError::Setup { what } => write!(
                f,
                "the virtio-blk device could not be set up ({what}); check the VMM's \
                 virtio-blk options"
            ),
            BlockError::NoDisk { index, count } => write!(
                f,
                "no disk {index}: the VM has {count} (numbered from 0); attach one with \
                 qemu/run.sh --disk FILE"
            ),
            BlockError::WouldBlockCore => f.write_str(
                "a blocking disk call outside a blocking task; call it from \
                 torito::task::spawn_blocking, or use the async call",
            ),
        }
    }
}

impl core::error::Error for BlockError {}

/// Sectors of data, owned by whoever holds the value: the caller, or the disk while a
/// request is in flight (then the caller has only a [`Ticket`]).
///
/// Its length is always a non-zero multiple of [`SECTOR_SIZE`].
#[derive(Clone, PartialEq, Eq)]
pub struct Buffer(Box<[u8]>);

impl core::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The size, not the bytes: a buffer may be megabytes.
        f.debug_struct("Buffer")
            .field("sectors", &self.sectors())
            .finish()
    }
}

impl Buffer {
    /// The most sectors one buffer holds: a descriptor's length is 32-bit.
    pub const MAX_SECTORS: usize = (u32::MAX as usize) / SECTOR_SIZE;

    /// A zeroed buffer of `sectors` sectors.
    ///
    /// # Errors
    /// [`BlockError::BadBufferSize`] for 0 sectors or more than [`Self::MAX_SECTORS`].
    pub fn new(sectors: usize) -> Result<Self, BlockError> {
        if sectors == 0 || sectors > Self::MAX_SECTORS {
            return Err(BlockError::BadBufferSize {
                length: sectors.saturating_mul(SECTOR_SIZE),
            });
        }
        Ok(Buffer(
            alloc::vec![0; sectors * SECTOR_SIZE].into_boxed_slice(),
        ))
    }

    /// `bytes` as a buffer.
    ///
    /// # Errors
    /// [`BlockError::BadBufferSize`] when its length is not a non-zero multiple of
    /// [`SECTOR_SIZE`] within [`Self::MAX_SECTORS`].
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self, BlockError> {
        let length = bytes.len();
        if length == 0
            || !length.is_multiple_of(SECTOR_SIZE)
            || length / SECTOR_SIZE > Self::MAX_SECTORS
        {
            return Err(BlockError::BadBufferSize { length });
        }
        Ok(Buffer(bytes.into_boxed_slice()))
    }

    /// How many sectors it holds.
    pub fn sectors(&self) -> usize {
        self.0.len() / SECTOR_SIZE
    }

    /// The bytes, as a vector.
    pub fn into_vec(self) -> Vec<u8> {
        self.0.into_vec()
    }
}

impl core::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl core::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Read,
    Write,
    Flush,
}

/// A request not yet posted: the operation, where, and the data.
#[derive(Debug)]
pub struct Request {
    operation: Operation,
    sector: u64,
    buffer: Option<Buffer>,
}

impl Request {
    /// Read `buffer.sectors()` sectors from `sector` into `buffer`.
    pub fn read(sector: u64, buffer: Buffer) -> Self {
        Request {
            operation: Operation::Read,
            sector,
            buffer: Some(buffer),
        }
    }

    /// Write `buffer` at `sector`.
    pub fn write(sector: u64, buffer: Buffer) -> Self {
        Request {
            operation: Operation::Write,
            sector,
            buffer: Some(buffer),
        }
    }

    /// Make every completed write durable (a no-op on a device without a write cache,
    /// one that does not offer `VIRTIO_BLK_F_FLUSH`).
    pub fn flush() -> Self {
        Request {
            operation: Operation::Flush,
            sector: 0,
            buffer: None,
        }
    }
}

/// What a finished request gives back: the buffer for a read or write, `None` for a flush.
/// What a finished request gives back: the buffer for a read or write, `None` for a flush.
pub type Outcome = Result<Option<Buffer>, BlockError>;

pub use crate::requests::Ticket;

/// What [`BlockDevice::submit`] did with a request: posted (wait with
/// [`BlockDevice::complete`]), handed back with every entry in use, or finished without
/// reaching the device (a refused request, or a flush of a device without a write cache).
pub type Submission = crate::requests::Submission<Request, Outcome>;

/// What [`BlockDevice::complete`] found.
pub type Completion = crate::requests::Completion<Outcome>;

/// Counters of what the driver did and what it refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    /// Requests posted to the device.
    pub posted: u64,
    /// Requests the device returned.
    pub completed: u64,
    /// Used entries with a token or length the driver cannot trust (dropped).
    pub bad_used: u64,
    /// Queue notifications written to the device (each a VM exit).
    pub notifications: u64,
    /// Submissions that found every request entry in use.
    pub full: u64,
    /// The most requests the device held at once.
    pub peak_in_flight: u64,
}

/// virtio-blk's requests for the shared request table: a 16-byte header the device
/// reads (type, sector) and a status byte it writes, around the data (spec 5.2.6).
struct Blk;

impl Protocol for Blk {
    /// The operation and its first sector.
    type Posted = (Operation, u64);
    type Outcome = Outcome;
    const HEADER: usize = 16;
    const TRAILER: usize = 1;

    fn seal(&(operation, sector): &(Operation, u64), header: &mut [u8], status: &mut [u8]) {
        let kind = match operation {
            Operation::Read => TYPE_IN,
            Operation::Write => TYPE_OUT,
            Operation::Flush => TYPE_FLUSH,
        };
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[4..8].fill(0);
        header[8..].copy_from_slice(&sector.to_le_bytes());
        status.fill(STATUS_UNWRITTEN);
    }

    fn finish(returned: Returned<'_, (Operation, u64)>) -> (Outcome, bool) {
        let (_, sector) = returned.posted;
        // The data is the readable buffer of a write, the writable one of a read.
        let buffer = returned.readable.or(returned.writable).map(Buffer);
        let status = returned.trailer[0];
        let outcome = match returned.length {
            Err(PastBuffer { length, limit }) => Err(BlockError::Untrusted { length, limit }),
            Ok(_) if status == STATUS_OK => Ok(buffer),
            Ok(_) => Err(BlockError::Device { status, sector }),
        };
        (outcome, false)
    }

    fn broken() -> Outcome {
        Err(BlockError::Broken)
    }

    fn refused() -> Outcome {
        Err(BlockError::Setup {
            what: "the request queue is full",
        })
    }
}

/// A virtio-blk device: a request table over one request queue.
pub struct BlockDevice<H: Hal, T: Transport> {
    transport: T,
    requests: RequestTable<H, Blk, QUEUE>,
    capacity: u64,
    read_only: bool,
    flush: bool,
}

impl<H: Hal, T: Transport> BlockDevice<H, T> {
    /// Initializes the device (spec 3.1.1) with its interrupts on; `interrupt` is what the
    /// kernel's interrupt handler wakes.
    ///
    /// # Errors
    /// [`BlockError::Setup`] when the device refuses the features or the queue cannot be
    /// set up.
    pub fn new(mut transport: T, interrupt: &'static AtomicWaker) -> Result<Self, BlockError> {
        let features = features::negotiate(
            &mut transport,
            VIRTIO_BLK_F_RO | VIRTIO_BLK_F_FLUSH | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_VERSION_1,
        )
        .map_err(|_| BlockError::Setup {
            what: "the device refused the features",
        })?;
        transport.set_guest_page_size(4096);
        // Spec 5.2.4: `capacity` is the first field of the configuration space, a 64-bit
        // count of sectors, read as two halves (a legacy transport may not do 64 bits).
        let capacity = transport
            .read_consistent(|| {
                let low = transport.read_config_space::<u32>(0)?;
                let high = transport.read_config_space::<u32>(4)?;
                Ok(u64::from(high) << 32 | u64::from(low))
            })
            .map_err(|_| BlockError::Setup {
                what: "its configuration space cannot be read",
            })?;
        let indirect = features & VIRTIO_F_INDIRECT_DESC != 0;
        // Three descriptors a request, or one indirect descriptor.
        let limit = if indirect { QUEUE } else { QUEUE / 3 };
        let requests = RequestTable::new(&mut transport, REQUEST_QUEUE, indirect, limit, interrupt)
            .map_err(|_| BlockError::Setup {
                what: "virtio-drivers refused the request queue (fewer than 128 descriptors?)",
            })?;
        transport.finish_init();
        Ok(Self {
            transport,
            requests,
            capacity,
            read_only: features & VIRTIO_BLK_F_RO != 0,
            flush: features & VIRTIO_BLK_F_FLUSH != 0,
        })
    }

    /// The disk's size in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether the device refuses writes (`VIRTIO_BLK_F_RO`).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// How many requests may be in flight at once.
    pub fn in_flight_limit(&self) -> usize {
        self.requests.limit()
    }

    /// The counters.
    pub fn stats(&self) -> BlockStats {
        let stats = self.requests.stats();
        BlockStats {
            posted: stats.posted,
            completed: stats.completed,
            bad_used: stats.bad_used,
            notifications: stats.notifications,
            full: stats.full,
            peak_in_flight: stats.peak_in_flight,
        }
    }

    /// Posts `request` and notifies the device (unless it suppressed notifications).
    /// `waker` is woken when an entry frees, if there is none now.
    pub fn submit(&mut self, request: Request, waker: &Waker) -> Submission {
        if let Err(error) = self.check(&request) {
            return Submission::Finished(Err(error));
        }
        if request.operation == Operation::Flush && !self.flush {
            return Submission::Finished(Ok(None));
        }
        self.requests
            .submit(request, waker, &mut self.transport, |request| {
                let Request {
                    operation,
                    sector,
                    buffer,
                } = request;
                let data = buffer.map(|buffer| buffer.0);
                let (readable, writable) = match operation {
                    Operation::Write => (data, None),
                    Operation::Read | Operation::Flush => (None, data),
                };
                Posting {
                    posted: (operation, sector),
                    readable,
                    writable,
                }
            })
    }

    /// Why `request` cannot be posted, if it cannot.
    fn check(&self, request: &Request) -> Result<(), BlockError> {
        if self.requests.broken() {
            return Err(BlockError::Broken);
        }
        let Some(buffer) = &request.buffer else {
            return Ok(());
        };
        let sectors = buffer.sectors() as u64;
        if request
            .sector
            .checked_add(sectors)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(BlockError::OutOfRange {
                sector: request.sector,
                sectors,
                capacity: self.capacity,
            });
        }
        if request.operation == Operation::Write && self.read_only {
            return Err(BlockError::ReadOnly {
                sector: request.sector,
            });
        }
        Ok(())
    }

    /// The outcome of the request `ticket` names, or the ticket back (with `waker`
    /// registered) while the device has it. Takes what the device returned first.
    pub fn complete(&mut self, ticket: Ticket, waker: &Waker) -> Completion {
        self.requests.complete(ticket, waker)
    }

    /// Gives up waiting for `ticket`'s request: its buffer is freed when the device
    /// returns it (at once if it already has), never before.
    pub fn abandon(&mut self, ticket: Ticket) {
        self.requests.abandon(ticket);
    }

    /// For the kernel's completion task: registers `cx`'s waker with the interrupt, then
    /// finishes every request the device returned (waking their callers). `Ready` once the
    /// device is out of service (nothing will complete any more).
    pub fn poll_completions(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.requests.poll_completions(cx)
    }
}

impl<H: Hal, T: Transport> Requests for BlockDevice<H, T> {
    type Request = Request;
    type Outcome = Outcome;

    fn submit(&mut self, request: Request, waker: &Waker) -> Submission {
        BlockDevice::submit(self, request, waker)
    }

    fn complete(&mut self, ticket: Ticket, waker: &Waker) -> Completion {
        BlockDevice::complete(self, ticket, waker)
    }

    fn abandon(&mut self, ticket: Ticket) {
        BlockDevice::abandon(self, ticket);
    }
}

impl<H: Hal, T: Transport> Drop for BlockDevice<H, T> {
    fn drop(&mut self) {
        // The device must stop using the queue before its memory and the buffers are
        // freed (the fields drop after this).
        self.transport.queue_unset(REQUEST_QUEUE);
    }
}

#[cfg(test)]
mod tests;
