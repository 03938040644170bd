//! The file API over the mount table (the module's docs say what it promises).

use super::cache::CacheStats;
use super::disk::{DiskError, DiskFile, DiskFs, Stat};
use super::error::{Error, ErrorKind};
use super::path::{self, MountSpec, Mounts};
use super::virtiofs::{self, MAX_READ, Node, Share};
use crate::stop_signal::StopSignal;
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};
use futures_util::Stream;
use torito_virtio::FuseError;
use torito_virtio::fs::protocol::{self, NodeKind, flags};

/// A mounted filesystem.
#[derive(Clone)]
enum Filesystem {
    Share(Arc<Share>),
    Disk(Arc<DiskFs>),
}

impl Filesystem {
    fn describe(&self) -> String {
        match self {
            Filesystem::Share(share) => alloc::format!("virtio-fs share `{}`", share.tag()),
            Filesystem::Disk(disk) => disk.describe(),
        }
    }
}

static MOUNTS: spin::Once<Mounts<Filesystem>> = spin::Once::new();
/// Raised once the set-up task has set [`MOUNTS`]: every caller waits on it.
static READY: StopSignal = StopSignal::new();
/// Whether the first caller started the set-up task.
static STARTED: AtomicBool = AtomicBool::new(false);

/// The mount table, set up on the first call (every caller waits for it).
///
/// The set-up runs as a task of its own, not in the caller: a blocking task's small
/// stack (a fiber) could not hold device set-up, and its state is large.
async fn mounts_table() -> &'static Mounts<Filesystem> {
    if !STARTED.swap(true, Ordering::AcqRel) {
        crate::task::spawn(async {
            let mounts = set_up().await;
            MOUNTS.call_once(|| mounts);
            for waker in READY.raise().1 {
                waker.wake();
            }
        })
        .detach();
    }
    READY.wait().await;
    MOUNTS.get().expect("READY is raised after MOUNTS is set")
}

/// Opens every share and mounts what the command line says.
async fn set_up() -> Mounts<Filesystem> {
    let shares = virtiofs::open_all().await;
    let mut mounts = Mounts::new();
    let line = torito_boot::Cmdline::parse(crate::boot::cmdline()).ok();
    let specs: Vec<_> = line
        .iter()
        .flat_map(|line| line.args())
        .filter(|arg| path::KEYS.contains(&arg.key))
        .filter_map(|arg| path::parse_spec(arg.key, arg.value.unwrap_or("")).ok())
        .collect();
    if specs.is_empty() {
        for share in &shares {
            let point = alloc::format!("/{}", share.tag());
            mount(&mut mounts, &point, Filesystem::Share(share.clone()));
        }
    }
    for spec in specs {
        match spec {
            MountSpec::Share { tag, point } => {
                match shares.iter().find(|share| share.tag() == tag) {
                    Some(share) => mount(&mut mounts, point, Filesystem::Share(share.clone())),
                    None => log::error!(
                        "fs: fs.share={}:{}: no virtio-fs share has the tag `{}` (the VM has {}); \
                         check the VMM's tag= (qemu/run.sh --share uses `share`)",
                        tag,
                        point,
                        tag,
                        shares.len()
                    ),
                }
            }
            MountSpec::Disk { index, point } => match DiskFs::start(index).await {
                Ok(disk) => mount(&mut mounts, point, Filesystem::Disk(Arc::new(disk))),
                Err(why) => log::error!(
                    "fs: fs.disk={}:{}: disk {} not mounted: {}; attach a disk with an ext2/3/4 \
                     filesystem (qemu/run.sh --disk FILE; mke2fs -d DIR FILE SIZE makes one)",
                    index,
                    point,
                    index,
                    why
                ),
            },
        }
    }
    mounts
}

fn mount(mounts: &mut Mounts<Filesystem>, point: &str, filesystem: Filesystem) {
    let description = filesystem.describe();
    match mounts.mount(point, filesystem) {
        Ok(()) => log::info!("fs: {} mounted at {}", description, point),
        Err(error) => log::error!("fs: {} not mounted at {}: {:?}", description, point, error),
    }
}

/// The mount points and what is mounted at each (setting the mounts up on the first
/// call).
pub async fn mounts() -> Vec<(String, String)> {
    mounts_table()
        .await
        .iter()
        .map(|(point, filesystem)| (point, filesystem.describe()))
        .collect()
}

/// The counters of the cache of the disk `path` is on (hits, misses, evictions, ...;
/// sized by `fs.cache=SIZE`), or `None` when `path` is on a virtio-fs share.
///
/// # Errors
/// As [`metadata`], for a path outside every mount.
pub async fn disk_cache_stats(path: &str) -> Result<Option<CacheStats>, Error> {
    Ok(match locate(path).await? {
        (Filesystem::Disk(disk), _) => Some(disk.cache_stats()),
        (Filesystem::Share(_), _) => None,
    })
}

/// The filesystem `path` is on and its components there.
async fn locate(path: &str) -> Result<(Filesystem, Vec<&str>), Error> {
    let (filesystem, parts) = mounts_table()
        .await
        .resolve(path)
        .map_err(|error| Error::path(path, error))?;
    Ok((filesystem.clone(), parts))
}

/// The path within a disk's filesystem: absolute, `/`-joined.
fn disk_path(parts: &[&str]) -> String {
    let mut out = String::from("/");
    out.push_str(&parts.join("/"));
    out
}

fn disk_error(path: &str, error: DiskError) -> Error {
    let kind = match error {
        DiskError::NotFound => ErrorKind::NotFound,
        DiskError::NotADirectory => ErrorKind::NotADirectory,
        DiskError::IsADirectory => ErrorKind::IsADirectory,
        DiskError::Gone => ErrorKind::Disk("its filesystem server stopped".into()),
        DiskError::Other(why) => ErrorKind::Disk(why),
    };
    Error::new(path, kind)
}

/// A share's root-relative components of `path`, or [`ErrorKind::ReadOnly`] for a path on
/// a (read-only) disk.
async fn on_share(path: &str) -> Result<(Arc<Share>, Vec<&str>), Error> {
    match locate(path).await? {
        (Filesystem::Share(share), parts) => Ok((share, parts)),
        (Filesystem::Disk(_), _) => Err(Error::new(path, ErrorKind::ReadOnly)),
    }
}

/// The parent's node and the last name of `path` (which must have one).
async fn parent_of(path: &str) -> Result<(Arc<Share>, Node, &str), Error> {
    let (share, parts) = on_share(path).await?;
    let Some((name, parent)) = parts.split_last() else {
        // The mount point itself has no name in a parent of this filesystem.
        return Err(Error::new(path, ErrorKind::PermissionDenied));
    };
    let node = share
        .walk(parent)
        .await
        .map_err(|error| Error::fuse(path, error))?;
    Ok((share, node, name))
}

/// What kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, pipe, socket).
    Other,
}

impl From<NodeKind> for FileType {
    fn from(kind: NodeKind) -> Self {
        match kind {
            NodeKind::File => FileType::File,
            NodeKind::Directory => FileType::Directory,
            NodeKind::Symlink => FileType::Symlink,
            NodeKind::Other => FileType::Other,
        }
    }
}

/// A file's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// What kind of file.
    pub file_type: FileType,
    /// Its size in bytes.
    pub len: u64,
    /// Last modification, seconds since 1970 (UTC).
    pub modified: u64,
    /// Permission bits (`0o755`, ...).
    pub permissions: u32,
}

impl Metadata {
    fn from_stat(stat: Stat) -> Self {
        Metadata {
            file_type: if stat.directory {
                FileType::Directory
            } else if stat.symlink {
                FileType::Symlink
            } else {
                FileType::File
            },
            len: stat.size,
            modified: stat.modified,
            permissions: stat.mode & 0o7777,
        }
    }

    fn from(attributes: protocol::Attributes) -> Self {
        Metadata {
            file_type: attributes.kind.into(),
            len: attributes.size,
            modified: attributes.mtime,
            permissions: attributes.mode & 0o7777,
        }
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }

    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type == FileType::File
    }
}

/// The metadata of the file or directory at `path`.
///
/// # Errors
/// [`ErrorKind::NotFound`] and the others of [`Error`].
pub async fn metadata(path: &str) -> Result<Metadata, Error> {
    let (share, parts) = match locate(path).await? {
        (Filesystem::Share(share), parts) => (share, parts),
        (Filesystem::Disk(disk), parts) => {
            return disk
                .stat(disk_path(&parts))
                .await
                .map(Metadata::from_stat)
                .map_err(|error| disk_error(path, error));
        }
    };
    let node = share
        .walk(&parts)
        .await
        .map_err(|error| Error::fuse(path, error))?;
    let attributes = match node.attributes {
        Some(attributes) => Ok(attributes),
        None => share.getattr(node.id).await,
    };
    share.forget(node);
    attributes
        .map(Metadata::from)
        .map_err(|error| Error::fuse(path, error))
}

/// Where [`File::seek`] moves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekFrom {
    /// From the start.
    Start(u64),
    /// From the end (the size now).
    End(i64),
    /// From the current position.
    Current(i64),
}

/// How to open a file: read, write, create, truncate, append (as `std`'s).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    create: bool,
    truncate: bool,
    append: bool,
}

impl OpenOptions {
    /// Nothing set: set at least `read` or `write`.
    pub fn new() -> Self {
        Self::default()
    }
    /// Open for reading.
    pub fn read(&mut self, read: bool) -> &mut Self {
        self.read = read;
        self
    }
    /// Open for writing.
    pub fn write(&mut self, write: bool) -> &mut Self {
        self.write = write;
        self
    }
    /// Create the file if it does not exist (needs `write` or `append`).
    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }
    /// Cut the file to 0 bytes on open (needs `write`).
    pub fn truncate(&mut self, truncate: bool) -> &mut Self {
        self.truncate = truncate;
        self
    }
    /// Every write goes to the end of the file (implies `write`).
    pub fn append(&mut self, append: bool) -> &mut Self {
        self.append = append;
        self
    }

    fn flags(&self) -> u32 {
        let writes = self.write || self.append;
        let mut flags = match (self.read, writes) {
            (true, true) => flags::O_RDWR,
            (false, true) => flags::O_WRONLY,
            _ => flags::O_RDONLY,
        };
        if self.truncate && writes {
            flags |= flags::O_TRUNC;
        }
        flags
    }

    /// Opens the file at `path` as these options say.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] without `create` for a missing file,
    /// [`ErrorKind::IsADirectory`] for a directory, and the others of [`Error`].
    pub async fn open(&self, path: &str) -> Result<File, Error> {
        let fail = |error| Error::fuse(path, error);
        let writes = self.write || self.append;
        if let (Filesystem::Disk(disk), parts) = locate(path).await? {
            if writes {
                return Err(Error::new(path, ErrorKind::ReadOnly));
            }
            let (file, stat) = disk
                .open(disk_path(&parts))
                .await
                .map_err(|error| disk_error(path, error))?;
            return Ok(File {
                backend: Backend::Disk { disk, file, stat },
                path: path.to_string(),
                position: 0,
                read: self.read,
                write: false,
                append: false,
                open: true,
            });
        }
        let (share, parent, name) = parent_of(path).await?;
        let looked_up = share
            .call(protocol::lookup(parent.id, name).map_err(fail)?)
            .await;
        let existing = match looked_up.and_then(|reply| protocol::parse_entry(&reply)) {
            Ok(entry) => Some(Node {
                id: entry.node,
                attributes: Some(entry.attributes),
            }),
            Err(error) if is_not_found(&error) && self.create && writes => None,
            Err(error) => {
                share.forget(parent);
                return Err(fail(error));
            }
        };
        let opened = match existing {
            Some(node) => {
                share.forget(parent);
                if node
                    .attributes
                    .is_some_and(|a| a.kind == NodeKind::Directory)
                {
                    share.forget(node);
                    return Err(Error::new(path, ErrorKind::IsADirectory));
                }
                match share.open(node.id, self.flags(), false).await {
                    Ok(handle) => (node, handle),
                    Err(error) => {
                        share.forget(node);
                        return Err(fail(error));
                    }
                }
            }
            None => {
                let created = share
                    .create(parent.id, name, self.flags() | flags::O_CREAT)
                    .await;
                share.forget(parent);
                created.map_err(fail)?
            }
        };
        let (node, handle) = opened;
        let file = File {
            backend: Backend::Share {
                share: share.clone(),
                node,
                handle,
            },
            path: path.to_string(),
            position: 0,
            read: self.read,
            write: writes,
            append: self.append,
            open: true,
        };
        // O_TRUNC on open is the server's to honour; an explicit truncate makes it so on
        // every server.
        if self.truncate && writes && node.attributes.is_some_and(|a| a.size > 0) {
            share
                .truncate(node.id, handle, 0)
                .await
                .map_err(|error| Error::fuse(path, error))?;
        }
        Ok(file)
    }
}

fn is_not_found(error: &torito_virtio::FuseError) -> bool {
    matches!(
        error,
        torito_virtio::FuseError::Errno { errno: 2, .. } | torito_virtio::FuseError::NoNode
    )
}

/// Where an open file lives.
enum Backend {
    /// On a share: the node (one lookup held) and the host's handle.
    Share {
        share: Arc<Share>,
        node: Node,
        handle: u64,
    },
    /// On a disk: the server's file (or a small file's bytes) and the metadata at open.
    Disk {
        disk: Arc<DiskFs>,
        file: DiskFile,
        stat: Stat,
    },
}

/// An open file: a position, and the host's handle until [`File::close`] (or drop).
pub struct File {
    backend: Backend,
    path: String,
    position: u64,
    read: bool,
    write: bool,
    append: bool,
    open: bool,
}

impl core::fmt::Debug for File {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl File {
    /// Opens `path` for reading.
    ///
    /// # Errors
    /// As [`OpenOptions::open`].
    pub async fn open(path: &str) -> Result<File, Error> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Creates `path` (or truncates it) and opens it for writing.
    ///
    /// # Errors
    /// As [`OpenOptions::open`].
    pub async fn create(path: &str) -> Result<File, Error> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// The path it was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn error(&self, error: torito_virtio::FuseError) -> Error {
        Error::fuse(&self.path, error)
    }

    /// Reads up to `buffer.len()` bytes (at most 128 KiB, one request) at `offset`;
    /// returns how many, 0 at the end of the file. The position does not move.
    ///
    /// # Errors
    /// [`ErrorKind::NotOpenedFor`] when not opened for reading; the host's errors.
    pub async fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<usize, Error> {
        if !self.read {
            return Err(Error::new(&self.path, ErrorKind::NotOpenedFor("read")));
        }
        if buffer.is_empty() {
            return Ok(0);
        }
        match &self.backend {
            Backend::Share {
                share,
                node,
                handle,
            } => share
                .read(node.id, *handle, offset, buffer)
                .await
                .map_err(|error| self.error(error)),
            Backend::Disk { disk, file, .. } => {
                let length = buffer.len().min(MAX_READ);
                disk.read(file, offset, &mut buffer[..length])
                    .await
                    .map_err(|error| disk_error(&self.path, error))
            }
        }
    }

    /// The share, node and handle, or [`ErrorKind::ReadOnly`] on a disk.
    fn writable(&self) -> Result<(&Share, u64, u64), Error> {
        match &self.backend {
            Backend::Share {
                share,
                node,
                handle,
            } => Ok((share, node.id, *handle)),
            Backend::Disk { .. } => Err(Error::new(&self.path, ErrorKind::ReadOnly)),
        }
    }

    /// Writes all of `data` at `offset` (in requests of up to 128 KiB). The position
    /// does not move.
    ///
    /// # Errors
    /// [`ErrorKind::NotOpenedFor`] when not opened for writing; the host's errors
    /// (a short write by the host is [`ErrorKind::NoSpace`]).
    pub async fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), Error> {
        if !self.write {
            return Err(Error::new(&self.path, ErrorKind::NotOpenedFor("write")));
        }
        let (share, node, handle) = self.writable()?;
        let mut done = 0;
        while done < data.len() {
            let written = share
                .write(node, handle, offset + done as u64, &data[done..])
                .await
                .map_err(|error| self.error(error))?;
            if written == 0 {
                return Err(Error::new(&self.path, ErrorKind::NoSpace));
            }
            done += written;
        }
        Ok(())
    }

    /// Reads at the position and moves it past what was read.
    ///
    /// # Errors
    /// As [`File::read_at`].
    pub async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        let read = self.read_at(self.position, buffer).await?;
        self.position += read as u64;
        Ok(read)
    }

    /// Reads from the position to the end of the file.
    ///
    /// # Errors
    /// As [`File::read_at`].
    pub async fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<usize, Error> {
        let start = out.len();
        let mut chunk = alloc::vec![0u8; MAX_READ];
        loop {
            let read = self.read(&mut chunk).await?;
            if read == 0 {
                return Ok(out.len() - start);
            }
            out.extend_from_slice(&chunk[..read]);
        }
    }

    /// Writes all of `data` at the position (at the end, when opened to append) and
    /// moves the position past it.
    ///
    /// # Errors
    /// As [`File::write_at`].
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.append {
            self.position = self.metadata().await?.len;
        }
        self.write_at(self.position, data).await?;
        self.position += data.len() as u64;
        Ok(())
    }

    /// Moves the position; returns the new one.
    ///
    /// # Errors
    /// The host's errors (for [`SeekFrom::End`], which asks for the size); a position
    /// before 0 is [`ErrorKind::Host`] with EINVAL (22).
    pub async fn seek(&mut self, to: SeekFrom) -> Result<u64, Error> {
        let (base, delta) = match to {
            SeekFrom::Start(position) => (position, 0),
            SeekFrom::Current(delta) => (self.position, delta),
            SeekFrom::End(delta) => (self.metadata().await?.len, delta),
        };
        self.position = base
            .checked_add_signed(delta)
            .ok_or(Error::new(&self.path, ErrorKind::Host(22)))?;
        Ok(self.position)
    }

    /// The file's metadata now.
    ///
    /// # Errors
    /// The host's errors.
    pub async fn metadata(&self) -> Result<Metadata, Error> {
        match &self.backend {
            Backend::Share { share, node, .. } => share
                .getattr(node.id)
                .await
                .map(Metadata::from)
                .map_err(|error| self.error(error)),
            // A read-only filesystem: what it was at open it still is.
            Backend::Disk { stat, .. } => Ok(Metadata::from_stat(*stat)),
        }
    }

    /// Cuts (or extends with zeros) the file to `size` bytes.
    ///
    /// # Errors
    /// [`ErrorKind::NotOpenedFor`] when not opened for writing; the host's errors.
    pub async fn set_len(&self, size: u64) -> Result<(), Error> {
        if !self.write {
            return Err(Error::new(&self.path, ErrorKind::NotOpenedFor("write")));
        }
        let (share, node, handle) = self.writable()?;
        share
            .truncate(node, handle, size)
            .await
            .map(drop)
            .map_err(|error| self.error(error))
    }

    /// Makes the file's data and metadata durable on the host.
    ///
    /// # Errors
    /// The host's errors.
    pub async fn sync(&self) -> Result<(), Error> {
        match &self.backend {
            Backend::Share {
                share,
                node,
                handle,
            } => share
                .fsync(node.id, *handle)
                .await
                .map_err(|error| self.error(error)),
            // Nothing was written.
            Backend::Disk { .. } => Ok(()),
        }
    }

    /// Closes the file (FUSE RELEASE) and waits for the host to have done so.
    ///
    /// # Errors
    /// None today; the signature leaves room for a host that fails the close.
    pub async fn close(mut self) -> Result<(), Error> {
        self.open = false;
        match &self.backend {
            Backend::Share {
                share,
                node,
                handle,
            } => share.release(*node, *handle, false).await,
            Backend::Disk { disk, file, .. } => disk.close(file),
        }
        Ok(())
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        match &self.backend {
            Backend::Share {
                share,
                node,
                handle,
            } => {
                // Closed in the background: a drop cannot wait.
                let share = share.clone();
                let (node, handle) = (*node, *handle);
                crate::task::spawn(async move { share.release(node, handle, false).await })
                    .detach();
            }
            Backend::Disk { disk, file, .. } => disk.close(file),
        }
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name (not the whole path).
    pub name: String,
    /// What kind of file.
    pub file_type: FileType,
}

/// A batch of entries on its way from the host.
type Batch = Pin<Box<dyn Future<Output = Result<Vec<protocol::DirEntry>, FuseError>> + Send>>;

/// A directory's entries, a [`Stream`] fetched from the host a batch at a time; `.` and
/// `..` are left out. [`ReadDir::next`] is the stream's `next`, without importing
/// `StreamExt`.
pub struct ReadDir {
    /// The share's directory, while it is open on the host (`None` for a disk, whose
    /// listing comes whole).
    share: Option<(Arc<Share>, Node, u64)>,
    path: String,
    offset: u64,
    batch: alloc::collections::VecDeque<DirEntry>,
    open: bool,
    pending: Option<Batch>,
}

impl Stream for ReadDir {
    type Item = Result<DirEntry, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(entry) = this.batch.pop_front() {
                return Poll::Ready(Some(Ok(entry)));
            }
            if !this.open {
                return Poll::Ready(None);
            }
            let Some((share, node, handle)) = &this.share else {
                return Poll::Ready(None);
            };
            let offset = this.offset;
            let pending = this.pending.get_or_insert_with(|| {
                let (share, node, handle) = (share.clone(), node.id, *handle);
                Box::pin(async move { share.read_dir(node, handle, offset).await })
            });
            let Poll::Ready(fetched) = pending.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            this.pending = None;
            let entries = match fetched {
                Ok(entries) => entries,
                Err(error) => {
                    this.close();
                    return Poll::Ready(Some(Err(Error::fuse(&this.path, error))));
                }
            };
            // The end; or a server that does not move on, which would list the same
            // batch for ever.
            match entries.last() {
                Some(last) if last.next != this.offset => this.offset = last.next,
                _ => {
                    this.close();
                    return Poll::Ready(None);
                }
            }
            this.batch.extend(
                entries
                    .into_iter()
                    .filter(|entry| entry.name != "." && entry.name != "..")
                    .map(|entry| DirEntry {
                        name: entry.name,
                        file_type: entry.kind.into(),
                    }),
            );
        }
    }
}

impl ReadDir {
    /// The next entry; `None` at the end (the directory is closed then).
    pub async fn next(&mut self) -> Option<Result<DirEntry, Error>> {
        core::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Every remaining entry.
    ///
    /// # Errors
    /// The first error the listing met.
    pub async fn collect(mut self) -> Result<Vec<DirEntry>, Error> {
        let mut out = Vec::new();
        while let Some(entry) = self.next().await {
            out.push(entry?);
        }
        Ok(out)
    }

    /// Closes the directory on the host, in the background.
    fn close(&mut self) {
        if self.open {
            self.open = false;
            self.pending = None;
            if let Some((share, node, handle)) = self.share.take() {
                crate::task::spawn(async move { share.release(node, handle, true).await }).detach();
            }
        }
    }
}

impl Drop for ReadDir {
    fn drop(&mut self) {
        self.close();
    }
}

/// Lists the directory at `path`.
///
/// # Errors
/// [`ErrorKind::NotFound`], [`ErrorKind::NotADirectory`] and the others of [`Error`].
pub async fn read_dir(path: &str) -> Result<ReadDir, Error> {
    let (share, parts) = match locate(path).await? {
        (Filesystem::Share(share), parts) => (share, parts),
        (Filesystem::Disk(disk), parts) => {
            let entries = disk
                .list(disk_path(&parts))
                .await
                .map_err(|error| disk_error(path, error))?;
            return Ok(ReadDir {
                share: None,
                path: path.to_string(),
                offset: 0,
                batch: entries
                    .into_iter()
                    .map(|(name, directory)| DirEntry {
                        name,
                        file_type: if directory {
                            FileType::Directory
                        } else {
                            FileType::File
                        },
                    })
                    .collect(),
                open: false,
                pending: None,
            });
        }
    };
    let node = share
        .walk(&parts)
        .await
        .map_err(|error| Error::fuse(path, error))?;
    if node
        .attributes
        .is_some_and(|attributes| attributes.kind != NodeKind::Directory)
    {
        share.forget(node);
        return Err(Error::new(path, ErrorKind::NotADirectory));
    }
    let handle = match share.open(node.id, flags::O_RDONLY, true).await {
        Ok(handle) => handle,
        Err(error) => {
            share.forget(node);
            return Err(Error::fuse(path, error));
        }
    };
    Ok(ReadDir {
        share: Some((share, node, handle)),
        path: path.to_string(),
        offset: 0,
        batch: Default::default(),
        open: true,
        pending: None,
    })
}

/// The whole file at `path`.
///
/// # Errors
/// As [`File::open`] and [`File::read`].
pub async fn read(path: &str) -> Result<Vec<u8>, Error> {
    let mut file = File::open(path).await?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).await?;
    file.close().await?;
    Ok(out)
}

/// Writes `data` as the whole file at `path` (created or truncated).
///
/// # Errors
/// As [`File::create`] and [`File::write_all`].
pub async fn write(path: &str, data: &[u8]) -> Result<(), Error> {
    let mut file = File::create(path).await?;
    file.write_all(data).await?;
    file.close().await
}

/// Makes a directory at `path` (its parent must exist).
///
/// # Errors
/// [`ErrorKind::AlreadyExists`], [`ErrorKind::NotFound`] for a missing parent, and the
/// others of [`Error`].
pub async fn create_dir(path: &str) -> Result<(), Error> {
    let (share, parent, name) = parent_of(path).await?;
    let made = share.mkdir(parent.id, name).await;
    share.forget(parent);
    share.forget(made.map_err(|error| Error::fuse(path, error))?);
    Ok(())
}

/// Removes the empty directory at `path`.
///
/// # Errors
/// [`ErrorKind::DirectoryNotEmpty`], [`ErrorKind::NotFound`], and the others.
pub async fn remove_dir(path: &str) -> Result<(), Error> {
    let (share, parent, name) = parent_of(path).await?;
    let removed = share.remove(parent.id, name, true).await;
    share.forget(parent);
    removed.map_err(|error| Error::fuse(path, error))
}

/// Removes the file at `path`.
///
/// # Errors
/// [`ErrorKind::NotFound`], [`ErrorKind::IsADirectory`], and the others.
pub async fn remove_file(path: &str) -> Result<(), Error> {
    let (share, parent, name) = parent_of(path).await?;
    let removed = share.remove(parent.id, name, false).await;
    share.forget(parent);
    removed.map_err(|error| Error::fuse(path, error))
}

/// Renames `from` to `to` (replacing a file at `to`); both on the same filesystem.
///
/// # Errors
/// [`ErrorKind::NotFound`]; [`ErrorKind::Host`] with EXDEV (18) across filesystems; the
/// others of [`Error`].
pub async fn rename(from: &str, to: &str) -> Result<(), Error> {
    let (share, parent, name) = parent_of(from).await?;
    let (to_share, to_parent, to_name) = match parent_of(to).await {
        Ok(found) => found,
        Err(error) => {
            share.forget(parent);
            return Err(error);
        }
    };
    let renamed = if Arc::ptr_eq(&share, &to_share) {
        share
            .rename(parent.id, name, to_parent.id, to_name)
            .await
            .map_err(|error| Error::fuse(from, error))
    } else {
        Err(Error::new(from, ErrorKind::Host(18)))
    };
    share.forget(parent);
    to_share.forget(to_parent);
    renamed
}
