//! An ext2/3/4 filesystem on a virtio-blk disk, read-only, through the `ext4-view` crate.
//!
//! `ext4-view` is blocking (its `Ext4Read` reads bytes and returns) and single-threaded
//! (an `Ext4` is `Rc`-based, not `Send`). So each disk gets blocking tasks (fibers,
//! `torito::task::spawn_blocking`), one per core up to [`MAX_SERVERS`], each owning an
//! `Ext4` of its own; async callers send them requests on channels and await the answer
//! on a channel of their own; files a server opened stay in its table until closed.
//!
//! Under every server's `Ext4` is one [`ChunkCache`] per disk (`fs/cache.rs`): 64 KiB
//! chunks, each one virtio-blk request, read ahead of sequential readers; a miss parks
//! the server's fiber, not its core. Since the disk is read-only, lookups are remembered
//! (a stat that was answered once is answered again without a server), small files are
//! read whole at open, and closed files stay open for the next open of their path.
//! docs/files.md says why each piece is there.

use super::cache::{CacheStats, ChunkCache, Lookup};
use super::recent::Recent;
use crate::block::{BlockError, Buffer, SECTOR_SIZE};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use ext4_view::{Ext4, Ext4Error, Ext4Read};
use torito_executor::{Receiver, Sender, channel};

/// What the filesystem said about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub directory: bool,
    pub symlink: bool,
    pub size: u64,
    pub modified: u64,
    pub mode: u32,
}

/// Why a disk request failed: the kind for the API, and the crate's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiskError {
    NotFound,
    NotADirectory,
    IsADirectory,
    /// The server fiber is gone (the disk failed to load, or stopped).
    Gone,
    Other(String),
}

fn error(error: Ext4Error) -> DiskError {
    match error {
        Ext4Error::NotFound => DiskError::NotFound,
        Ext4Error::NotADirectory => DiskError::NotADirectory,
        Ext4Error::IsADirectory => DiskError::IsADirectory,
        other => DiskError::Other(other.to_string()),
    }
}

enum Request {
    Stat(String, Sender<Result<Stat, DiskError>>),
    List(String, Sender<Result<Vec<(String, bool)>, DiskError>>),
    Open(String, Sender<Result<(Opened, Stat), DiskError>>),
    Read {
        file: u64,
        offset: u64,
        length: usize,
        reply: Sender<Result<Vec<u8>, DiskError>>,
    },
    Close(u64),
}

/// Files up to this size are read whole when opened: one trip to the server serves a
/// small file's open and its reads, and the server keeps no table entry for it.
const WHOLE: u64 = 64 * 1024;

/// An open file on a disk.
pub(crate) enum DiskFile {
    /// Its number in the table of the server that opened it (`server`, an index into
    /// [`DiskFs`]'s servers).
    Server { server: usize, file: u64 },
    /// A small file's bytes, all of them, read at open (the disk is read-only, so they
    /// cannot change).
    Whole(Vec<u8>),
}

/// What a server's open gives: a number in its table, or a small file's bytes.
enum Opened {
    Server(u64),
    Whole(Vec<u8>),
}

/// Servers per disk at most (one per core up to this): each holds its own `Ext4` (with
/// `ext4-view`'s own cache, about 300 KiB) and a fiber stack.
const MAX_SERVERS: usize = 4;

/// A handle to one disk's filesystem server.
pub(crate) struct DiskFs {
    index: usize,
    /// Each server's requests; a path's requests always go to the same one.
    servers: Vec<Sender<Request>>,
    shared: Arc<SharedDisk>,
}

/// Bytes per cache chunk: one virtio-blk request. `ext4-view` asks for 32 KiB (eight
/// 4 KiB blocks) at a time; one request per ask made a large file's read a long string
/// of round trips, while a 4 KiB file should not take much more room than it needs.
const CHUNK: u64 = 64 * 1024;
const CHUNK_SECTORS: u64 = CHUNK / SECTOR_SIZE as u64;
/// Chunks read ahead of a sequential reader (512 KiB): in flight while the reader
/// copies and sends the one it has.
const READ_AHEAD: u64 = 8;
/// The cache's default share of the heap (an eighth), and its default ceiling.
const DEFAULT_CACHE_DIVISOR: usize = 8;
const DEFAULT_CACHE_CEILING: u64 = 64 << 20;
/// The most of the heap `fs.cache=` may give one disk's cache (half); a larger value is
/// capped, with a warning: the network and the application need the rest.
const CACHE_LIMIT_DIVISOR: usize = 2;

/// What a disk's readers share: the async disk and the cache of its chunks.
struct SharedDisk {
    disk: crate::block::Disk,
    cache: spin::Mutex<ChunkCache<Buffer>>,
    /// Lookups remembered: a stat the server answered once is answered again here,
    /// without a trip to the server.
    known: spin::Mutex<Recent<Result<Stat, DiskError>>>,
}

/// Why a read under `ext4-view` failed.
#[derive(Debug)]
enum ReadError {
    /// The disk refused or failed the request.
    Block(BlockError),
    /// The heap had no room for the read's buffer, even after the cache gave back what
    /// it could.
    NoMemory { bytes: usize },
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReadError::Block(error) => write!(f, "{error}"),
            ReadError::NoMemory { bytes } => write!(
                f,
                "no memory for a {bytes}-byte disk read; give the VM more memory or the \
                 disk cache less (fs.cache=SIZE)"
            ),
        }
    }
}

impl core::error::Error for ReadError {}

impl From<BlockError> for ReadError {
    fn from(error: BlockError) -> Self {
        ReadError::Block(error)
    }
}

/// A zeroed buffer of `sectors`, or `None` when the heap has no room for it (a failed
/// allocation here is a cache that is too large for the heap, never a crash).
fn try_buffer(sectors: u64) -> Option<Buffer> {
    let bytes = usize::try_from(sectors).ok()?.checked_mul(SECTOR_SIZE)?;
    let mut bytes_vec = Vec::new();
    bytes_vec.try_reserve_exact(bytes).ok()?;
    bytes_vec.resize(bytes, 0);
    Buffer::from_vec(bytes_vec).ok()
}

/// How many chunks the cache of a disk may hold: `fs.cache=SIZE` (checked at boot) or
/// an eighth of the heap up to 64 MiB, never more than half the heap.
fn cache_chunks() -> usize {
    let heap = crate::memory::heap_stats().size;
    let limit = (heap / CACHE_LIMIT_DIVISOR) as u64;
    let asked = crate::boot::arg(super::path::CACHE_KEY)
        .and_then(|value| super::path::parse_cache_size(value).ok());
    let bytes = match asked {
        Some(bytes) if bytes > limit => {
            log::warn!(
                "fs: {}={} is more than half the heap ({} KiB); each disk's cache gets {} KiB",
                super::path::CACHE_KEY,
                bytes,
                heap / 1024,
                limit / 1024
            );
            limit
        }
        Some(bytes) => bytes,
        None => ((heap / DEFAULT_CACHE_DIVISOR) as u64).min(DEFAULT_CACHE_CEILING),
    };
    usize::try_from(bytes / CHUNK).unwrap_or(usize::MAX)
}

impl SharedDisk {
    /// Chunk `chunk`'s first sector and length in sectors (shorter at the disk's end).
    fn extent(&self, chunk: u64) -> (u64, u64) {
        let first = chunk * CHUNK_SECTORS;
        (
            first,
            CHUNK_SECTORS.min(self.disk.capacity().saturating_sub(first)),
        )
    }

    /// Starts a read-ahead of `chunk` (a task of its own, not waited for) unless it is
    /// cached or loading, past the disk's end, or there is no room or memory.
    fn read_ahead(self: &Arc<Self>, chunk: u64) {
        let (first, sectors) = self.extent(chunk);
        if sectors == 0 || !self.cache.lock().prefetch(chunk) {
            return;
        }
        let Some(buffer) = try_buffer(sectors) else {
            wake(self.cache.lock().fill(chunk, None));
            return;
        };
        let shared = self.clone();
        crate::task::spawn(async move {
            let read = shared.disk.read(first, buffer).await.ok();
            let waiters = shared.cache.lock().fill(chunk, read);
            wake(waiters);
        })
        .detach();
    }
}

fn wake(waiters: Vec<core::task::Waker>) {
    waiters.into_iter().for_each(core::task::Waker::wake);
}

/// What one try at a chunk came to.
enum Step {
    Copied,
    Load,
    Uncached,
}

/// `Ext4Read` over a disk, through the disk's shared [`ChunkCache`], reading ahead of
/// sequential readers. Used from the disk's blocking task: a miss parks it.
struct DiskReader {
    shared: Arc<SharedDisk>,
    /// The chunk of the last read, to tell a sequential reader.
    last: Option<u64>,
}

impl DiskReader {
    /// Copies `dst.len()` bytes at `skip` in `chunk` into `dst`, from the cache or, when
    /// the cache has no room, straight from the disk.
    fn read_chunk(&mut self, chunk: u64, skip: usize, dst: &mut [u8]) -> Result<(), ReadError> {
        let copy = |data: &Buffer, dst: &mut [u8]| match data.get(skip..skip + dst.len()) {
            Some(bytes) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        };
        loop {
            // The common case without parking: a hit (or a load to start).
            let mut copied = false;
            let step = {
                let mut cache = self.shared.cache.lock();
                match cache.lookup(chunk, core::task::Waker::noop()) {
                    Lookup::Hit(data) => {
                        copied = copy(data, dst);
                        Some(Step::Copied)
                    }
                    Lookup::Load => Some(Step::Load),
                    Lookup::Uncached => Some(Step::Uncached),
                    Lookup::Wait => None,
                }
            };
            // Another reader (or a read-ahead) is loading it: park until it is there.
            let step = match step {
                Some(step) => step,
                None => crate::task::block_on(core::future::poll_fn(|cx| {
                    let mut cache = self.shared.cache.lock();
                    match cache.lookup(chunk, cx.waker()) {
                        Lookup::Hit(data) => {
                            copied = copy(data, dst);
                            core::task::Poll::Ready(Step::Copied)
                        }
                        Lookup::Load => core::task::Poll::Ready(Step::Load),
                        Lookup::Uncached => core::task::Poll::Ready(Step::Uncached),
                        Lookup::Wait => core::task::Poll::Pending,
                    }
                }))
                .map_err(|_| BlockError::WouldBlockCore)?,
            };
            match step {
                Step::Copied if copied => return Ok(()),
                Step::Copied => return Err(self.past_end(chunk, skip)),
                Step::Load => self.load(chunk)?,
                Step::Uncached => return self.read_uncached(chunk, skip, dst),
            }
        }
    }

    /// Loads `chunk` into the cache (the caller got [`Lookup::Load`] for it): always
    /// fills it, with `None` on failure so that waiting readers try for themselves.
    fn load(&mut self, chunk: u64) -> Result<(), ReadError> {
        let (first, sectors) = self.shared.extent(chunk);
        let mut buffer = try_buffer(sectors);
        // Out of memory: the cache gives back chunks until the buffer fits, or it has
        // nothing left to give (then this read goes uncached, or fails).
        while buffer.is_none() && sectors > 0 && self.shared.cache.lock().shrink() {
            buffer = try_buffer(sectors);
        }
        let Some(buffer) = buffer else {
            wake(self.shared.cache.lock().fill(chunk, None));
            return Err(ReadError::NoMemory {
                bytes: sectors as usize * SECTOR_SIZE,
            });
        };
        let read = crate::task::block_on(self.shared.disk.read(first, buffer))
            .unwrap_or(Err(BlockError::WouldBlockCore));
        let (filled, outcome) = match read {
            Ok(buffer) => (Some(buffer), Ok(())),
            Err(error) => (None, Err(ReadError::Block(error))),
        };
        wake(self.shared.cache.lock().fill(chunk, filled));
        outcome
    }

    /// Reads the sectors under `dst` straight from the disk (no room in the cache).
    fn read_uncached(&mut self, chunk: u64, skip: usize, dst: &mut [u8]) -> Result<(), ReadError> {
        let sector_size = SECTOR_SIZE as u64;
        let (chunk_first, chunk_sectors) = self.shared.extent(chunk);
        let first = chunk_first + skip as u64 / sector_size;
        let end = chunk_first + ((skip + dst.len()) as u64).div_ceil(sector_size);
        let end = end.min(chunk_first + chunk_sectors);
        if end <= first {
            return Err(self.past_end(chunk, skip));
        }
        let buffer = try_buffer(end - first).ok_or(ReadError::NoMemory {
            bytes: (end - first) as usize * SECTOR_SIZE,
        })?;
        let buffer = crate::task::block_on(self.shared.disk.read(first, buffer))
            .unwrap_or(Err(BlockError::WouldBlockCore))?;
        let at = skip % SECTOR_SIZE;
        match buffer.get(at..at + dst.len()) {
            Some(bytes) => {
                dst.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(self.past_end(chunk, skip)),
        }
    }

    fn past_end(&self, chunk: u64, skip: usize) -> ReadError {
        ReadError::Block(BlockError::OutOfRange {
            sector: chunk * CHUNK_SECTORS + (skip / SECTOR_SIZE) as u64,
            sectors: 1,
            capacity: self.shared.disk.capacity(),
        })
    }
}

impl Ext4Read for DiskReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn core::error::Error + Send + Sync + 'static>> {
        let mut done = 0;
        while done < dst.len() {
            let at = start_byte + done as u64;
            let chunk = at / CHUNK;
            // A reader that moved on to the next chunk is sequential: keep the next
            // chunks coming while it works through this one.
            if self.last.is_some_and(|last| last + 1 == chunk) {
                for ahead in chunk + 1..=chunk + READ_AHEAD {
                    self.shared.read_ahead(ahead);
                }
            }
            self.last = Some(chunk);
            let skip = (at % CHUNK) as usize;
            let take = (dst.len() - done).min(CHUNK as usize - skip);
            self.read_chunk(chunk, skip, &mut dst[done..done + take])
                .map_err(Box::new)?;
            done += take;
        }
        Ok(())
    }
}

impl DiskFs {
    /// Starts the servers for disk `index` (one per core, up to [`MAX_SERVERS`]); fails
    /// when the disk is missing or holds no ext2/3/4 filesystem. A server that cannot
    /// start (no room for its fiber's stack) is logged and left out.
    pub(crate) async fn start(index: usize) -> Result<DiskFs, String> {
        let disk = crate::block::Disk::open(index).map_err(|error| error.to_string())?;
        let shared = Arc::new(SharedDisk {
            disk,
            cache: spin::Mutex::new(ChunkCache::new(cache_chunks())),
            known: spin::Mutex::new(Recent::new(KNOWN_PATHS)),
        });
        // One server per core (up to MAX_SERVERS), each a fiber on its core.
        let count = crate::task::cores().clamp(1, MAX_SERVERS);
        let (ready, mut started) = channel::<(usize, Result<(), String>)>(count);
        let mut senders = Vec::new();
        for core in 0..count {
            let (requests, receiver) = channel::<Request>(64);
            let reader = DiskReader {
                shared: shared.clone(),
                last: None,
            };
            let (shared, ready) = (shared.clone(), ready.clone());
            let spawned = crate::task::spawn_on(core, async move {
                crate::task::try_spawn_blocking(move || {
                    serve(core, reader, shared, receiver, ready)
                })
                .map(drop)
                .map_err(|error| error.to_string())
            });
            let spawned = match spawned {
                Ok(handle) => handle.await,
                Err(_) => Err(alloc::format!("no core {core}")),
            };
            match spawned {
                Ok(()) => senders.push(Some(requests)),
                Err(why) => {
                    log::warn!("fs: disk {index}: no filesystem server on core {core}: {why}");
                    senders.push(None);
                }
            }
        }
        drop(ready);
        // Every server that started says whether the filesystem loaded.
        let mut servers = Vec::new();
        let mut refused = None;
        while let Some((core, loaded)) = started.recv().await {
            match (loaded, senders.get_mut(core).and_then(Option::take)) {
                (Ok(()), Some(requests)) => servers.push(requests),
                (Err(why), _) => refused = Some(why),
                (Ok(()), None) => {}
            }
        }
        if servers.is_empty() {
            return Err(refused.unwrap_or_else(|| "its filesystem server stopped".into()));
        }
        Ok(DiskFs {
            index,
            servers,
            shared,
        })
    }

    pub(crate) fn describe(&self) -> String {
        let capacity = self.shared.cache.lock().stats().capacity as u64;
        alloc::format!(
            "ext4 on disk {} (read-only, {} KiB cache, {} server{})",
            self.index,
            capacity * CHUNK / 1024,
            self.servers.len(),
            if self.servers.len() == 1 { "" } else { "s" }
        )
    }

    /// The disk cache's counters.
    pub(crate) fn cache_stats(&self) -> CacheStats {
        self.shared.cache.lock().stats()
    }

    /// The server for `path` (FNV-1a of its bytes): always the same one, so that the
    /// file a stat opened, and the files closed after reading, are in the table of the
    /// server the next open of that path asks; different paths spread over the servers.
    fn server_for(&self, path: &str) -> usize {
        let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        (hash % self.servers.len().max(1) as u64) as usize
    }

    /// Sends a request to server `server`.
    async fn ask_server<T: Send>(
        &self,
        server: usize,
        make: impl FnOnce(Sender<Result<T, DiskError>>) -> Request,
    ) -> Result<T, DiskError> {
        let Some(requests) = self.servers.get(server) else {
            return Err(DiskError::Gone);
        };
        let (reply, mut answer) = channel(1);
        if requests.send(make(reply)).await.is_err() {
            return Err(DiskError::Gone);
        }
        answer.recv().await.unwrap_or(Err(DiskError::Gone))
    }

    pub(crate) async fn stat(&self, path: String) -> Result<Stat, DiskError> {
        if let Some(outcome) = self.shared.known.lock().get(&path) {
            return outcome.clone();
        }
        self.ask_server(self.server_for(&path), |reply| Request::Stat(path, reply))
            .await
    }

    pub(crate) async fn list(&self, path: String) -> Result<Vec<(String, bool)>, DiskError> {
        self.ask_server(self.server_for(&path), |reply| Request::List(path, reply))
            .await
    }

    pub(crate) async fn open(&self, path: String) -> Result<(DiskFile, Stat), DiskError> {
        let server = self.server_for(&path);
        let (opened, stat) = self
            .ask_server(server, |reply| Request::Open(path, reply))
            .await?;
        let file = match opened {
            Opened::Server(file) => DiskFile::Server { server, file },
            Opened::Whole(bytes) => DiskFile::Whole(bytes),
        };
        Ok((file, stat))
    }

    /// Reads up to `buffer.len()` bytes of `file` at `offset` into `buffer`; 0 at the end.
    pub(crate) async fn read(
        &self,
        file: &DiskFile,
        offset: u64,
        buffer: &mut [u8],
    ) -> Result<usize, DiskError> {
        let (server, file) = match file {
            DiskFile::Server { server, file } => (*server, *file),
            DiskFile::Whole(bytes) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let read = (bytes.len() - start).min(buffer.len());
                buffer[..read].copy_from_slice(&bytes[start..start + read]);
                return Ok(read);
            }
        };
        let bytes = self
            .ask_server(server, |reply| Request::Read {
                file,
                offset,
                length: buffer.len(),
                reply,
            })
            .await?;
        let read = bytes.len().min(buffer.len());
        buffer[..read].copy_from_slice(&bytes[..read]);
        Ok(read)
    }

    /// Closes `file` (without waiting).
    pub(crate) fn close(&self, file: &DiskFile) {
        if let DiskFile::Server { server, file } = file
            && let Some(requests) = self.servers.get(*server)
        {
            let _ = requests.try_send(Request::Close(*file));
        }
    }
}

fn stat(metadata: &ext4_view::Metadata) -> Stat {
    Stat {
        directory: metadata.is_dir(),
        symlink: metadata.is_symlink(),
        size: metadata.len(),
        modified: metadata.modified().seconds().max(0) as u64,
        mode: u32::from(metadata.mode()),
    }
}

/// Paths whose lookup is remembered, and closed files kept open for the next open of
/// their path. The filesystem is read-only, so neither goes stale; the bounds keep a
/// tree of many files from growing them without end.
const KNOWN_PATHS: usize = 1024;
const IDLE_FILES: usize = 1024;

/// A lookup's outcome worth remembering: the node's metadata, or that it is missing.
fn remembered(outcome: &Result<Stat, DiskError>) -> bool {
    matches!(
        outcome,
        Ok(_) | Err(DiskError::NotFound | DiskError::NotADirectory)
    )
}

/// The server: loads the filesystem, then answers requests until every handle is gone.
fn serve(
    core: usize,
    reader: DiskReader,
    shared: Arc<SharedDisk>,
    mut requests: Receiver<Request>,
    ready: Sender<(usize, Result<(), String>)>,
) {
    let filesystem = match Ext4::load(Box::new(reader)) {
        Ok(filesystem) => filesystem,
        Err(why) => {
            let _ = ready.try_send((core, Err(alloc::format!("no ext2/3/4 filesystem: {why}"))));
            return;
        }
    };
    let _ = ready.try_send((core, Ok(())));
    drop(ready);
    // Open files by number, with their paths (for the idle table when closed).
    let mut files: BTreeMap<u64, (String, ext4_view::File)> = BTreeMap::new();
    let mut next_file = 1u64;
    let mut idle: Recent<ext4_view::File> = Recent::new(IDLE_FILES);
    loop {
        let Ok(Some(request)) = crate::task::block_on(requests.recv()) else {
            return;
        };
        match request {
            Request::Stat(path, reply) => {
                // A regular file is opened rather than only looked up, and kept among the
                // idle files: a server stats a file and then opens it, and the second
                // path walk would cost as much as the first.
                let outcome = match filesystem.open(path.as_str()) {
                    Ok(file) => {
                        let status = stat(file.metadata());
                        idle.insert(path.clone(), file);
                        Ok(status)
                    }
                    Err(missing @ (Ext4Error::NotFound | Ext4Error::NotADirectory)) => {
                        Err(error(missing))
                    }
                    // A directory, a special file: its metadata.
                    Err(_) => filesystem
                        .metadata(path.as_str())
                        .map(|m| stat(&m))
                        .map_err(error),
                };
                if remembered(&outcome) {
                    shared.known.lock().insert(path, outcome.clone());
                }
                let _ = reply.try_send(outcome);
            }
            Request::List(path, reply) => {
                let listed =
                    filesystem
                        .read_dir(path.as_str())
                        .map_err(error)
                        .and_then(|entries| {
                            let mut out = Vec::new();
                            for entry in entries {
                                let entry = entry.map_err(error)?;
                                let name = entry.file_name();
                                let name = String::from_utf8_lossy(name.as_ref()).into_owned();
                                if name == "." || name == ".." {
                                    continue;
                                }
                                let directory = entry.file_type().map_err(error)?.is_dir();
                                out.push((name, directory));
                            }
                            Ok(out)
                        });
                let _ = reply.try_send(listed);
            }
            Request::Open(path, reply) => {
                let opened = match idle.take(&path) {
                    Some(file) => Ok(file),
                    None => filesystem.open(path.as_str()).map_err(error),
                };
                let opened = opened.and_then(|mut file| {
                    let status = stat(file.metadata());
                    let mut known = shared.known.lock();
                    if known.get(&path).is_none() {
                        known.insert(path.clone(), Ok(status));
                    }
                    drop(known);
                    if status.size <= WHOLE {
                        let bytes = read_at(&mut file, 0, status.size as usize)?;
                        idle.insert(path, file);
                        return Ok((Opened::Whole(bytes), status));
                    }
                    let id = next_file;
                    next_file += 1;
                    files.insert(id, (path, file));
                    Ok((Opened::Server(id), status))
                });
                let _ = reply.try_send(opened);
            }
            Request::Read {
                file,
                offset,
                length,
                reply,
            } => {
                let read = match files.get_mut(&file) {
                    None => Err(DiskError::Gone),
                    Some((_, file)) => read_at(file, offset, length),
                };
                let _ = reply.try_send(read);
            }
            Request::Close(file) => {
                if let Some((path, file)) = files.remove(&file) {
                    idle.insert(path, file);
                }
            }
        }
    }
}

fn read_at(file: &mut ext4_view::File, offset: u64, length: usize) -> Result<Vec<u8>, DiskError> {
    let size = file.metadata().len();
    if offset >= size {
        return Ok(Vec::new());
    }
    // No more than the file holds: a 4 KiB file read in 64 KiB chunks gets 4 KiB.
    let length = length.min(usize::try_from(size - offset).unwrap_or(usize::MAX));
    // `seek_to` walks the file's blocks from its start: a reader going on from where it
    // stopped (the common case) must not pay it on every read.
    if file.position() != offset {
        file.seek_to(offset).map_err(error)?;
    }
    let mut out = alloc::vec![0u8; length];
    let mut filled = 0;
    while filled < length {
        let read = file.read_bytes(&mut out[filled..]).map_err(error)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    out.truncate(filled);
    Ok(out)
}
