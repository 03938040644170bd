//! Disks: the virtio-blk devices discovery found, read, written and flushed by sector,
//! with many requests in flight.
//!
//! Disks are numbered from 0 in the order discovery found them (PCI order on q35 and pc,
//! the order of the `-device` options on QEMU microvm and of the `virtio_mmio.device=`
//! entries elsewhere); [`disks`] says how many there are and [`Disk::open`] opens one. The first call to either sets every disk up: a disk that fails to set up is
//! logged and left out of the numbering. An application that never asks pays nothing.
//!
//! Every call takes and returns a [`Buffer`]: the data moves into the request and comes
//! back with its outcome, so nothing else can touch it while the device may. A read or
//! write is one request; many futures (or tasks, on any core) may each have one in
//! flight, up to the device's limit ([`Disk::in_flight_limit`]); past it, a request waits
//! for a free entry instead of failing.
//!
//! # Dropping a request midway
//!
//! A request future that is dropped before its request finished gives up only its
//! *ticket*: the buffer is in the driver's request table while the device holds it, and
//! the driver frees it when the device returns it (`torito_virtio::BlockDevice::abandon`).
//! So cancelling (a timeout, a `select`) never frees memory the device still writes. A
//! dropped write may or may not have reached the disk; a flush afterwards does not wait
//! for it.
//!
//! # Interrupts
//!
//! Each disk has its own interrupt vector; its handler acknowledges and wakes the disk's
//! completion task (spawned on the core that first asked for disks), which takes the
//! finished requests from the used ring and wakes their callers. A caller that polls also
//! takes what finished, so completions are never waiting for that task alone.
//!
//! * async: [`Disk::read`], [`Disk::write`], [`Disk::flush`];
//! * blocking, for `torito::task::spawn_blocking`: [`blocking::Disk`].
//!
//! # Examples
//!
//! ```ignore
//! use torito::block::{Buffer, Disk};
//! let disk = Disk::open(0)?;
//! let mut buffer = Buffer::new(8)?;               // 8 sectors, 4 KiB
//! buffer.fill(0xa5);
//! let buffer = disk.write(0, buffer).await?;      // the buffer comes back
//! disk.flush().await?;
//! let buffer = disk.read(0, buffer).await?;
//! ```

use crate::arch::virtio::{DeviceInterrupt, KernelHal};
use crate::device_call::DeviceCall;
use crate::devices;
use alloc::sync::Arc;
use alloc::vec::Vec;
use torito_virtio::DeviceTransport;
use torito_virtio::StepwiseStatus;
use torito_virtio::blk::{BlockDevice, Outcome, Request};
pub use torito_virtio::blk::{BlockError, BlockStats, Buffer, SECTOR_SIZE};
use torito_virtio::discovery::Kind;

type Device = BlockDevice<KernelHal, StepwiseStatus<DeviceTransport>>;

/// One disk, shared by every handle to it.
struct Shared {
    device: spin::Mutex<Device>,
    capacity: u64,
    read_only: bool,
    in_flight_limit: usize,
    interrupt: &'static DeviceInterrupt,
}

static DISKS: spin::Once<Vec<Arc<Shared>>> = spin::Once::new();

fn all() -> &'static [Arc<Shared>] {
    DISKS.call_once(open_all)
}

/// Sets up every virtio-blk device discovery found (once).
fn open_all() -> Vec<Arc<Shared>> {
    let mut disks = Vec::new();
    for found in devices::take(Kind::BLOCK) {
        let opened = match devices::open(&found) {
            Ok(opened) => opened,
            Err(error) => {
                log::error!("block: {}: {}", found, error);
                continue;
            }
        };
        // Status bits one at a time, as Firecracker requires (StepwiseStatus).
        let device = match Device::new(StepwiseStatus(opened.transport), opened.interrupt.waker()) {
            Ok(device) => device,
            Err(error) => {
                log::error!("block: {}: {}", found, error);
                continue;
            }
        };
        // Only after the driver set up the queue: a reset clears its MSI-X vector.
        if let Err(error) = opened.queues.assign() {
            log::error!("block: {}: {}", found, error);
        }
        log::info!(
            "block: disk {}: {} sectors ({} KiB){}, {} requests in flight at most",
            disks.len(),
            device.capacity(),
            device.capacity() / 2,
            if device.read_only() {
                ", read-only"
            } else {
                ""
            },
            device.in_flight_limit()
        );
        let shared = Arc::new(Shared {
            capacity: device.capacity(),
            read_only: device.read_only(),
            in_flight_limit: device.in_flight_limit(),
            device: spin::Mutex::new(device),
            interrupt: opened.interrupt,
        });
        crate::task::spawn(complete(shared.clone())).detach();
        disks.push(shared);
    }
    disks
}

/// A disk's completion task: woken by its interrupt, finishes what the device returned.
async fn complete(disk: Arc<Shared>) {
    core::future::poll_fn(|cx| disk.device.lock().poll_completions(cx)).await;
    log::error!("block: a disk stopped: {}", BlockError::Broken);
}

/// How many disks the VM has (setting them up on the first call).
pub fn disks() -> usize {
    all().len()
}

/// A handle to one disk; clones share it (and its requests in flight).
#[derive(Clone)]
pub struct Disk {
    shared: Arc<Shared>,
    index: usize,
}

impl core::fmt::Debug for Disk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Disk")
            .field("index", &self.index)
            .field("capacity", &self.shared.capacity)
            .field("read_only", &self.shared.read_only)
            .finish()
    }
}

impl Disk {
    /// Disk `index` (from 0; see the module's docs for the order).
    ///
    /// # Errors
    /// [`BlockError::NoDisk`] when there is no such disk.
    pub fn open(index: usize) -> Result<Disk, BlockError> {
        let disks = all();
        let shared = disks.get(index).ok_or(BlockError::NoDisk {
            index,
            count: disks.len(),
        })?;
        Ok(Disk {
            shared: shared.clone(),
            index,
        })
    }

    /// Its index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its size in sectors of [`SECTOR_SIZE`] bytes.
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// Whether it refuses writes.
    pub fn read_only(&self) -> bool {
        self.shared.read_only
    }

    /// How many requests it takes in flight at once (more wait for a free entry).
    pub fn in_flight_limit(&self) -> usize {
        self.shared.in_flight_limit
    }

    /// The driver's counters (requests posted and completed, untrusted used entries
    /// dropped, notifications, backpressure).
    pub fn stats(&self) -> BlockStats {
        self.shared.device.lock().stats()
    }

    /// How many interrupts the disk raised.
    pub fn interrupts(&self) -> u64 {
        self.shared.interrupt.count()
    }

    /// Reads `buffer.sectors()` sectors from `sector` into `buffer` and returns it.
    ///
    /// # Errors
    /// [`BlockError::OutOfRange`] past the end of the disk (nothing is read), and
    /// [`BlockError::Device`], [`BlockError::Untrusted`] or [`BlockError::Broken`] when
    /// the device failed; the buffer is then dropped (or, if the device may still write
    /// it, kept from reuse for good).
    pub async fn read(&self, sector: u64, buffer: Buffer) -> Result<Buffer, BlockError> {
        with_buffer(self.request(Request::read(sector, buffer)).await)
    }

    /// Writes `buffer` at `sector` and returns it. The data is on the device when this
    /// returns, and durable after a [`flush`](Self::flush).
    ///
    /// # Errors
    /// [`BlockError::ReadOnly`] on a read-only disk and [`BlockError::OutOfRange`] past
    /// its end (nothing is written); the device's errors as for [`read`](Self::read).
    pub async fn write(&self, sector: u64, buffer: Buffer) -> Result<Buffer, BlockError> {
        with_buffer(self.request(Request::write(sector, buffer)).await)
    }

    /// Makes every write that completed before this call durable (a no-op on a disk
    /// without a write cache).
    ///
    /// # Errors
    /// The device's errors, as for [`read`](Self::read).
    pub async fn flush(&self) -> Result<(), BlockError> {
        self.request(Request::flush()).await.map(drop)
    }

    fn request(&self, request: Request) -> DeviceCall<'_, Device> {
        DeviceCall::new(&self.shared.device, request)
    }
}

/// A read or write always gives its buffer back when it succeeds.
fn with_buffer(outcome: Outcome) -> Result<Buffer, BlockError> {
    outcome?.ok_or(BlockError::Broken)
}

/// Blocking disks: the async calls, waited on by parking the calling blocking task.
///
/// Call them only from a task started with `torito::task::spawn_blocking`; anywhere else
/// they return [`BlockError::WouldBlockCore`] instead of stalling the core.
pub mod blocking {
    use super::{BlockError, Buffer};

    /// A blocking handle to a disk; see [`super::Disk`].
    #[derive(Clone, Debug)]
    pub struct Disk(super::Disk);

    fn park<T>(
        future: impl core::future::Future<Output = Result<T, BlockError>>,
    ) -> Result<T, BlockError> {
        crate::task::block_on(future).map_err(|_| BlockError::WouldBlockCore)?
    }

    impl Disk {
        /// See [`super::Disk::open`].
        ///
        /// # Errors
        /// As [`super::Disk::open`].
        pub fn open(index: usize) -> Result<Disk, BlockError> {
            super::Disk::open(index).map(Disk)
        }

        /// Its size in sectors.
        pub fn capacity(&self) -> u64 {
            self.0.capacity()
        }

        /// Whether it refuses writes.
        pub fn read_only(&self) -> bool {
            self.0.read_only()
        }

        /// Blocks until the read is done; see [`super::Disk::read`].
        ///
        /// # Errors
        /// As [`super::Disk::read`], and [`BlockError::WouldBlockCore`] outside a
        /// blocking task.
        pub fn read(&self, sector: u64, buffer: Buffer) -> Result<Buffer, BlockError> {
            park(self.0.read(sector, buffer))
        }

        /// Blocks until the write is done; see [`super::Disk::write`].
        ///
        /// # Errors
        /// As [`super::Disk::write`], and [`BlockError::WouldBlockCore`] outside a
        /// blocking task.
        pub fn write(&self, sector: u64, buffer: Buffer) -> Result<Buffer, BlockError> {
            park(self.0.write(sector, buffer))
        }

        /// Blocks until the flush is done; see [`super::Disk::flush`].
        ///
        /// # Errors
        /// As [`super::Disk::flush`], and [`BlockError::WouldBlockCore`] outside a
        /// blocking task.
        pub fn flush(&self) -> Result<(), BlockError> {
            park(self.0.flush())
        }

        /// The async handle underneath.
        pub fn as_async(&self) -> &super::Disk {
            &self.0
        }
    }
}
