//! A virtio-fs share: the device, its FUSE session, and the requests the file API needs
//! (walk a path, open, read, write, list, ...), each one FUSE round trip.

use crate::arch::virtio::{KernelHal, Window};
use crate::device_call::DeviceCall;
use crate::devices;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::sync::atomic::{AtomicUsize, Ordering};
use torito_virtio::DeviceTransport;
use torito_virtio::StepwiseStatus;
use torito_virtio::discovery::{Device, Kind, Transport};
use torito_virtio::fs::mmio::{Either, MmioRegisters};
use torito_virtio::fs::protocol::{self, Attributes, DirEntry, Entry, Message};
use torito_virtio::fs::{FsDevice, FuseError, Submission};

type FsDev = FsDevice<KernelHal, StepwiseStatus<Either<DeviceTransport, MmioRegisters<Window>>>>;

/// The most bytes one READ asks for (FUSE's default limit of 32 pages).
pub(crate) const MAX_READ: usize = 128 * 1024;

/// One share, shared by every open file on it.
pub(crate) struct Share {
    device: spin::Mutex<FsDev>,
    tag: String,
    max_write: AtomicUsize,
}

/// Sets up every virtio-fs device discovery found and starts its FUSE session.
pub(crate) async fn open_all() -> Vec<Arc<Share>> {
    let mut shares = Vec::new();
    for found in devices::take(Kind::FILESYSTEM) {
        let device = match open_device(&found) {
            Ok(device) => device,
            Err(error) => {
                log::error!("fs: {}: {}", found, error);
                continue;
            }
        };
        let tag = String::from(device.tag());
        let share = Arc::new(Share {
            device: spin::Mutex::new(device),
            tag,
            max_write: AtomicUsize::new(MAX_READ),
        });
        // Before the first request: its interrupt wakes this task, which finishes it.
        crate::task::spawn(complete(share.clone())).detach();
        if let Err(error) = share.init().await {
            log::error!("fs: share `{}`: FUSE_INIT: {}", share.tag, error);
            continue;
        }
        log::info!(
            "fs: share `{}`: FUSE session up, writes of {} KiB at most",
            share.tag,
            share.max_write() / 1024
        );
        shares.push(share);
    }
    shares
}

/// Sets up the virtio-fs `found`: over PCI through virtio-drivers' transport; over
/// virtio-mmio through ours (`MmioRegisters`), which takes device type 26.
fn open_device(found: &Device) -> Result<FsDev, String> {
    use alloc::string::ToString;
    if matches!(found.transport, Transport::Mmio(_)) {
        let (window, size, interrupt) =
            devices::open_mmio_registers(found).map_err(|error| error.to_string())?;
        let transport = MmioRegisters::new(window, size).map_err(|error| error.to_string())?;
        return FsDev::new(StepwiseStatus(Either::B(transport)), interrupt.waker())
            .map_err(|error| error.to_string());
    }
    let opened = devices::open(found).map_err(|error| error.to_string())?;
    let device = FsDev::new(
        StepwiseStatus(Either::A(opened.transport)),
        opened.interrupt.waker(),
    )
    .map_err(|error| error.to_string())?;
    // Only after the driver set up the queues: a reset clears their MSI-X vectors.
    if let Err(error) = opened.queues.assign() {
        log::error!("fs: {}: {}", found, error);
    }
    Ok(device)
}

/// A share's completion task: woken by its interrupt, finishes what the device returned.
async fn complete(share: Arc<Share>) {
    core::future::poll_fn(|cx| share.device.lock().poll_completions(cx)).await;
    log::error!("fs: share `{}` stopped: {}", share.tag, FuseError::Broken);
}

/// A node the caller holds one lookup of (forgotten by [`Share::forget`]), or the root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub id: u64,
    pub attributes: Option<Attributes>,
}

impl Node {
    const ROOT: Node = Node {
        id: protocol::ROOT,
        attributes: None,
    };
}

impl Share {
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// FUSE_INIT: the session's first request.
    async fn init(&self) -> Result<(), FuseError> {
        let reply = self.call(protocol::init()).await?;
        let init = protocol::parse_init(&reply)?;
        if init.max_write > 0 {
            self.max_write
                .store((init.max_write as usize).min(MAX_READ), Ordering::Relaxed);
        }
        Ok(())
    }

    /// The largest write one request carries.
    pub(crate) fn max_write(&self) -> usize {
        self.max_write.load(Ordering::Relaxed)
    }

    /// Sends `message` and waits for its checked reply.
    pub(crate) fn call(&self, message: Message) -> DeviceCall<'_, FsDev> {
        DeviceCall::new(&self.device, message)
    }

    /// Drops one lookup of `node` on the host, without waiting (a FORGET gets no reply;
    /// the driver frees its buffer when the device returns it).
    pub(crate) fn forget(&self, node: Node) {
        if node.id == protocol::ROOT {
            return;
        }
        let waker = futures_util::task::noop_waker();
        let mut device = self.device.lock();
        match device.submit(protocol::forget(node.id, 1), &waker) {
            Submission::Posted(ticket) => device.abandon(ticket),
            // A full table: the host keeps the inode a while longer; nothing breaks.
            Submission::Full(_) | Submission::Finished(_) => {}
        }
    }

    /// The node `components` names (one lookup held, unless it is the root).
    pub(crate) async fn walk(&self, components: &[&str]) -> Result<Node, FuseError> {
        let mut node = Node::ROOT;
        for name in components {
            let looked_up = self.call(protocol::lookup(node.id, name)?).await;
            self.forget(node);
            let entry: Entry = protocol::parse_entry(&looked_up?)?;
            node = Node {
                id: entry.node,
                attributes: Some(entry.attributes),
            };
        }
        Ok(node)
    }

    pub(crate) async fn getattr(&self, node: u64) -> Result<Attributes, FuseError> {
        protocol::parse_attributes(&self.call(protocol::getattr(node)).await?)
    }

    pub(crate) async fn open(
        &self,
        node: u64,
        flags: u32,
        directory: bool,
    ) -> Result<u64, FuseError> {
        protocol::parse_open(&self.call(protocol::open(node, flags, directory)).await?)
    }

    pub(crate) async fn create(
        &self,
        parent: u64,
        name: &str,
        flags: u32,
    ) -> Result<(Node, u64), FuseError> {
        let reply = self
            .call(protocol::create(parent, name, flags, 0o644)?)
            .await?;
        let (entry, handle) = protocol::parse_create(&reply)?;
        Ok((
            Node {
                id: entry.node,
                attributes: Some(entry.attributes),
            },
            handle,
        ))
    }

    pub(crate) async fn truncate(
        &self,
        node: u64,
        handle: u64,
        size: u64,
    ) -> Result<Attributes, FuseError> {
        protocol::parse_attributes(&self.call(protocol::truncate(node, handle, size)).await?)
    }

    /// Reads up to `buffer.len()` (at most [`MAX_READ`]) bytes at `offset`.
    pub(crate) async fn read(
        &self,
        node: u64,
        handle: u64,
        offset: u64,
        buffer: &mut [u8],
    ) -> Result<usize, FuseError> {
        let size = buffer.len().min(MAX_READ) as u32;
        let reply = self
            .call(protocol::read(node, handle, offset, size, false))
            .await?;
        // The reply cannot be longer than asked: its buffer was `size` bytes.
        let length = reply.body.len().min(buffer.len());
        buffer[..length].copy_from_slice(&reply.body[..length]);
        Ok(length)
    }

    /// Writes up to [`Share::max_write`] bytes of `data` at `offset`.
    pub(crate) async fn write(
        &self,
        node: u64,
        handle: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, FuseError> {
        let data = &data[..data.len().min(self.max_write())];
        let reply = self
            .call(protocol::write(node, handle, offset, data))
            .await?;
        protocol::parse_write(&reply, data.len())
    }

    pub(crate) async fn read_dir(
        &self,
        node: u64,
        handle: u64,
        offset: u64,
    ) -> Result<Vec<DirEntry>, FuseError> {
        let reply = self
            .call(protocol::read(node, handle, offset, 16 * 1024, true))
            .await?;
        protocol::parse_dirents(&reply)
    }

    pub(crate) async fn release(&self, node: Node, handle: u64, directory: bool) {
        let _ = self
            .call(protocol::release(node.id, handle, 0, directory))
            .await;
        self.forget(node);
    }

    pub(crate) async fn fsync(&self, node: u64, handle: u64) -> Result<(), FuseError> {
        protocol::parse_empty(&self.call(protocol::fsync(node, handle)).await?)
    }

    pub(crate) async fn mkdir(&self, parent: u64, name: &str) -> Result<Node, FuseError> {
        let entry =
            protocol::parse_entry(&self.call(protocol::mkdir(parent, name, 0o755)?).await?)?;
        Ok(Node {
            id: entry.node,
            attributes: Some(entry.attributes),
        })
    }

    /// Looks `name` up in `parent` and holds the lookup while `operation` runs.
    ///
    /// virtiofsd finds the node of an UNLINK, RMDIR or RENAME in its table of nodes the
    /// guest holds lookups of, and answers EIO when it is not there (a Linux guest always
    /// holds a dentry for what it removes or renames).
    async fn holding<T>(
        &self,
        parent: u64,
        name: &str,
        operation: impl Future<Output = Result<T, FuseError>>,
    ) -> Result<T, FuseError> {
        let entry = protocol::parse_entry(&self.call(protocol::lookup(parent, name)?).await?)?;
        let result = operation.await;
        self.forget(Node {
            id: entry.node,
            attributes: None,
        });
        result
    }

    pub(crate) async fn remove(
        &self,
        parent: u64,
        name: &str,
        directory: bool,
    ) -> Result<(), FuseError> {
        let message = protocol::remove(parent, name, directory)?;
        self.holding(parent, name, async {
            protocol::parse_empty(&self.call(message).await?)
        })
        .await
    }

    pub(crate) async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
    ) -> Result<(), FuseError> {
        let message = protocol::rename(parent, name, new_parent, new_name)?;
        self.holding(parent, name, async {
            protocol::parse_empty(&self.call(message).await?)
        })
        .await
    }
}
