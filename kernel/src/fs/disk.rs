//! An ext2/3/4 filesystem on a virtio-blk disk, read-only, through the `ext4-view` crate.
//!
//! `ext4-view` is blocking (its `Ext4Read` reads bytes and returns) and single-threaded
//! (an `Ext4` is `Rc`-based, not `Send`). So each disk gets one blocking task (a fiber,
//! `torito::task::spawn_blocking`) that owns its `Ext4` and reads the disk through
//! `torito::block::blocking`: the fiber parks while a sector request is in flight, its
//! core keeps running. Async callers send it requests on a channel and await the answer
//! on a channel of their own; files it opened stay open in its table until closed.

use crate::block::{Buffer, SECTOR_SIZE, blocking};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
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
    Open(String, Sender<Result<(u64, Stat), DiskError>>),
    Read {
        file: u64,
        offset: u64,
        length: usize,
        reply: Sender<Result<Vec<u8>, DiskError>>,
    },
    Close(u64),
}

/// A handle to one disk's filesystem server.
pub(crate) struct DiskFs {
    index: usize,
    requests: Sender<Request>,
}

/// Bytes per cache window: `ext4-view` asks for one filesystem block (1 to 4 KiB) at a
/// time, and one virtio request per block makes a large file's read a long string of
/// round trips (bench/files: about 12 MiB/s for a 64 MiB file before, against 19 for
/// Linux in the same run).
const WINDOW: u64 = 128 * 1024;
/// Windows kept (2 MiB): the metadata a small-file request walks (inode tables,
/// directory blocks, extent trees) stays in memory after the first request.
const WINDOWS: usize = 16;

/// `Ext4Read` over a disk, through a small cache of aligned [`WINDOW`]-byte windows,
/// the least recently used one dropped first.
struct DiskReader {
    disk: blocking::Disk,
    /// Window index (byte offset / WINDOW) and its bytes, most recently used last.
    windows: alloc::collections::VecDeque<(u64, Buffer)>,
}

impl DiskReader {
    fn new(disk: blocking::Disk) -> Self {
        DiskReader {
            disk,
            windows: alloc::collections::VecDeque::with_capacity(WINDOWS),
        }
    }

    /// Window `index`, read from the disk unless cached; moved to the back (most recent).
    fn window(
        &mut self,
        index: u64,
    ) -> Result<&Buffer, Box<dyn core::error::Error + Send + Sync + 'static>> {
        if let Some(at) = self.windows.iter().position(|(cached, _)| *cached == index) {
            let window = self
                .windows
                .remove(at)
                .ok_or(crate::block::BlockError::Broken)?;
            self.windows.push_back(window);
        } else {
            let sector_size = SECTOR_SIZE as u64;
            let first = index * WINDOW / sector_size;
            let sectors = (WINDOW / sector_size).min(self.disk.capacity().saturating_sub(first));
            // The least recently used window's buffer is reused when it is the same size.
            let buffer = match self.windows.len() >= WINDOWS {
                true => match self.windows.pop_front() {
                    Some((_, buffer)) if buffer.sectors() as u64 == sectors => buffer,
                    _ => Buffer::new(sectors as usize).map_err(Box::new)?,
                },
                false => Buffer::new(sectors as usize).map_err(Box::new)?,
            };
            let buffer = self.disk.read(first, buffer).map_err(Box::new)?;
            self.windows.push_back((index, buffer));
        }
        match self.windows.back() {
            Some((_, buffer)) => Ok(buffer),
            None => Err(Box::new(crate::block::BlockError::Broken)),
        }
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
            let window = self.window(at / WINDOW)?;
            let skip = (at % WINDOW) as usize;
            let take = (dst.len() - done).min(window.len().saturating_sub(skip));
            if take == 0 {
                // Past the end of the disk.
                return Err(Box::new(crate::block::BlockError::OutOfRange {
                    sector: at / SECTOR_SIZE as u64,
                    sectors: 1,
                    capacity: self.disk.capacity(),
                }));
            }
            dst[done..done + take].copy_from_slice(&window[skip..skip + take]);
            done += take;
        }
        Ok(())
    }
}

impl DiskFs {
    /// Starts the server for disk `index`; fails when the disk is missing or holds no
    /// ext2/3/4 filesystem.
    pub(crate) async fn start(index: usize) -> Result<DiskFs, String> {
        let disk = blocking::Disk::open(index).map_err(|error| error.to_string())?;
        let (requests, receiver) = channel::<Request>(64);
        let (ready, mut started) = channel::<Result<(), String>>(1);
        crate::task::try_spawn_blocking(move || serve(disk, receiver, ready))
            .map_err(|error| error.to_string())?
            .detach();
        match started.recv().await {
            Some(Ok(())) => Ok(DiskFs { index, requests }),
            Some(Err(why)) => Err(why),
            None => Err("its filesystem server stopped".into()),
        }
    }

    pub(crate) fn describe(&self) -> String {
        alloc::format!("ext4 on disk {} (read-only)", self.index)
    }

    async fn ask<T: Send>(
        &self,
        make: impl FnOnce(Sender<Result<T, DiskError>>) -> Request,
    ) -> Result<T, DiskError> {
        let (reply, mut answer) = channel(1);
        if self.requests.send(make(reply)).await.is_err() {
            return Err(DiskError::Gone);
        }
        answer.recv().await.unwrap_or(Err(DiskError::Gone))
    }

    pub(crate) async fn stat(&self, path: String) -> Result<Stat, DiskError> {
        self.ask(|reply| Request::Stat(path, reply)).await
    }

    pub(crate) async fn list(&self, path: String) -> Result<Vec<(String, bool)>, DiskError> {
        self.ask(|reply| Request::List(path, reply)).await
    }

    pub(crate) async fn open(&self, path: String) -> Result<(u64, Stat), DiskError> {
        self.ask(|reply| Request::Open(path, reply)).await
    }

    pub(crate) async fn read(
        &self,
        file: u64,
        offset: u64,
        length: usize,
    ) -> Result<Vec<u8>, DiskError> {
        self.ask(|reply| Request::Read {
            file,
            offset,
            length,
            reply,
        })
        .await
    }

    /// Closes `file` (without waiting).
    pub(crate) fn close(&self, file: u64) {
        let _ = self.requests.try_send(Request::Close(file));
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

/// The server: loads the filesystem, then answers requests until every handle is gone.
fn serve(disk: blocking::Disk, mut requests: Receiver<Request>, ready: Sender<Result<(), String>>) {
    let reader = DiskReader::new(disk);
    let filesystem = match Ext4::load(Box::new(reader)) {
        Ok(filesystem) => filesystem,
        Err(why) => {
            let _ = ready.try_send(Err(alloc::format!("no ext2/3/4 filesystem: {why}")));
            return;
        }
    };
    let _ = ready.try_send(Ok(()));
    drop(ready);
    let mut files: BTreeMap<u64, ext4_view::File> = BTreeMap::new();
    let mut next_file = 1u64;
    loop {
        let Ok(Some(request)) = crate::task::block_on(requests.recv()) else {
            return;
        };
        match request {
            Request::Stat(path, reply) => {
                let _ = reply.try_send(
                    filesystem
                        .metadata(path.as_str())
                        .map(|m| stat(&m))
                        .map_err(error),
                );
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
                let opened = filesystem.open(path.as_str()).map_err(error).map(|file| {
                    let id = next_file;
                    next_file += 1;
                    let status = stat(file.metadata());
                    files.insert(id, file);
                    (id, status)
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
                    Some(file) => read_at(file, offset, length),
                };
                let _ = reply.try_send(read);
            }
            Request::Close(file) => {
                files.remove(&file);
            }
        }
    }
}

fn read_at(file: &mut ext4_view::File, offset: u64, length: usize) -> Result<Vec<u8>, DiskError> {
    if offset >= file.metadata().len() {
        return Ok(Vec::new());
    }
    file.seek_to(offset).map_err(error)?;
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
