//! The FUSE messages virtio-fs carries (FUSE protocol 7.31, as Linux's
//! `include/uapi/linux/fuse.h` defines them): requests encoded little-endian into one
//! device-readable buffer, replies checked field by field before anything is read from
//! them.
//!
//! A reply is untrusted input: [`check_reply`] refuses one the device claims longer than
//! the buffer it was given, shorter than a header, whose header disagrees with the used
//! length, or that answers another request (`unique`); the typed parsers below refuse a
//! body whose size is not the one the opcode's reply has, and a directory entry that runs
//! past its buffer. Every refusal is a [`FuseError`], never a panic.

use super::error::FuseError;
use alloc::string::String;
use alloc::vec::Vec;

/// The node id of the share's root directory (FUSE_ROOT_ID).
pub const ROOT: u64 = 1;
/// `fuse_in_header`'s size.
pub const IN_HEADER: usize = 40;
/// `fuse_out_header`'s size.
pub const OUT_HEADER: usize = 16;
/// The longest name a FUSE server takes (Linux's NAME_MAX).
pub const NAME_MAX: usize = 255;
/// The protocol version asked for in FUSE_INIT.
pub const MAJOR: u32 = 7;
/// See [`MAJOR`].
pub const MINOR: u32 = 31;

const ATTR: usize = 88;
const ENTRY_OUT: usize = 40 + ATTR;
const ATTR_OUT: usize = 16 + ATTR;
const OPEN_OUT: usize = 16;
const WRITE_OUT: usize = 8;
/// `fuse_init_out` of protocol 7.23 and later (24 bytes before 7.23).
const INIT_OUT_MIN: usize = 24;
const DIRENT_HEADER: usize = 24;

/// Open flags (Linux `O_*`) for FUSE_OPEN and FUSE_CREATE.
pub mod flags {
    /// Read only.
    pub const O_RDONLY: u32 = 0;
    /// Write only.
    pub const O_WRONLY: u32 = 1;
    /// Read and write.
    pub const O_RDWR: u32 = 2;
    /// Create if missing (FUSE_CREATE carries it).
    pub const O_CREAT: u32 = 0o100;
    /// Fail if it exists (with `O_CREAT`).
    pub const O_EXCL: u32 = 0o200;
    /// Truncate to 0 on open.
    pub const O_TRUNC: u32 = 0o1000;
    /// Every write at the end.
    pub const O_APPEND: u32 = 0o2000;
    /// The node must be a directory.
    pub const O_DIRECTORY: u32 = 0o200000;
}

/// `st_mode`'s file type bits.
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// A FUSE request opcode (the ones Torito sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Opcode {
    /// Look a name up in a directory.
    Lookup = 1,
    /// Drop lookups of a node (no reply).
    Forget = 2,
    /// A node's attributes.
    Getattr = 3,
    /// Change attributes (here: the size, to truncate).
    Setattr = 4,
    /// Make a directory.
    Mkdir = 9,
    /// Remove a file.
    Unlink = 10,
    /// Remove an empty directory.
    Rmdir = 11,
    /// Rename.
    Rename = 12,
    /// Open a file.
    Open = 14,
    /// Read from an open file.
    Read = 15,
    /// Write to an open file.
    Write = 16,
    /// Close an open file.
    Release = 18,
    /// Make a file's data durable.
    Fsync = 20,
    /// The session's first message.
    Init = 26,
    /// Open a directory.
    Opendir = 27,
    /// Read a directory's entries.
    Readdir = 28,
    /// Close an open directory.
    Releasedir = 29,
    /// Create and open a file.
    Create = 35,
}

impl Opcode {
    /// The opcode's name, as FUSE spells it.
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Lookup => "LOOKUP",
            Opcode::Forget => "FORGET",
            Opcode::Getattr => "GETATTR",
            Opcode::Setattr => "SETATTR",
            Opcode::Mkdir => "MKDIR",
            Opcode::Unlink => "UNLINK",
            Opcode::Rmdir => "RMDIR",
            Opcode::Rename => "RENAME",
            Opcode::Open => "OPEN",
            Opcode::Read => "READ",
            Opcode::Write => "WRITE",
            Opcode::Release => "RELEASE",
            Opcode::Fsync => "FSYNC",
            Opcode::Init => "INIT",
            Opcode::Opendir => "OPENDIR",
            Opcode::Readdir => "READDIR",
            Opcode::Releasedir => "RELEASEDIR",
            Opcode::Create => "CREATE",
        }
    }

    /// Whether the server answers it (FORGET gets no reply).
    pub fn has_reply(self) -> bool {
        self != Opcode::Forget
    }
}

/// One request, encoded: the `fuse_in_header` (its `len` and `unique` filled in by the
/// driver when it posts the request) and the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    opcode: Opcode,
    bytes: Vec<u8>,
    /// Bytes of reply body the request lets the device write.
    reply_body: usize,
}

impl Message {
    fn new(opcode: Opcode, nodeid: u64, reply_body: usize) -> Self {
        let mut bytes = Vec::with_capacity(IN_HEADER + 64);
        bytes.extend_from_slice(&0u32.to_le_bytes()); // len: set by `seal`
        bytes.extend_from_slice(&(opcode as u32).to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes()); // unique: set by `seal`
        bytes.extend_from_slice(&nodeid.to_le_bytes());
        // uid, gid, pid: 0 (the daemon acts with its own credentials).
        bytes.extend_from_slice(&[0; 12]);
        bytes.extend_from_slice(&[0; 4]); // total_extlen, padding
        Message {
            opcode,
            bytes,
            reply_body,
        }
    }

    fn u32(mut self, value: u32) -> Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    fn u64(mut self, value: u64) -> Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A name, NUL-terminated.
    fn name(mut self, name: &str) -> Self {
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self
    }

    /// Its opcode.
    pub fn opcode(&self) -> Opcode {
        self.opcode
    }

    /// The bytes of reply (header included) the device may write.
    pub fn reply_capacity(&self) -> usize {
        if self.opcode.has_reply() {
            OUT_HEADER + self.reply_body
        } else {
            0
        }
    }

    /// Fills in `len` and `unique` and returns the bytes to post.
    pub fn seal(mut self, unique: u64) -> Vec<u8> {
        let length = self.bytes.len() as u32;
        self.bytes[0..4].copy_from_slice(&length.to_le_bytes());
        self.bytes[8..16].copy_from_slice(&unique.to_le_bytes());
        self.bytes
    }

    /// The encoded request so far (header with `len` and `unique` still 0).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Why a name cannot go into a request.
fn check_name(name: &str) -> Result<(), FuseError> {
    if name.is_empty() || name.len() > NAME_MAX || name.contains(['/', '\0']) {
        return Err(FuseError::BadName { length: name.len() });
    }
    Ok(())
}

/// FUSE_INIT: protocol 7.31, no optional features, `max_readahead` 0.
pub fn init() -> Message {
    Message::new(Opcode::Init, 0, 64)
        .u32(MAJOR)
        .u32(MINOR)
        .u32(0)
        .u32(0)
}

/// FUSE_LOOKUP of `name` in directory `parent`.
///
/// # Errors
/// [`FuseError::BadName`] for an empty name, one longer than [`NAME_MAX`] bytes, or one
/// with `/` or NUL in it.
pub fn lookup(parent: u64, name: &str) -> Result<Message, FuseError> {
    check_name(name)?;
    Ok(Message::new(Opcode::Lookup, parent, ENTRY_OUT).name(name))
}

/// FUSE_FORGET: the caller drops `lookups` lookups of `node`.
pub fn forget(node: u64, lookups: u64) -> Message {
    Message::new(Opcode::Forget, node, 0).u64(lookups)
}

/// FUSE_GETATTR of `node`.
pub fn getattr(node: u64) -> Message {
    Message::new(Opcode::Getattr, node, ATTR_OUT)
        .u32(0)
        .u32(0)
        .u64(0)
}

/// FUSE_SETATTR of `node`'s size (truncate or extend), through open file `handle`.
pub fn truncate(node: u64, handle: u64, size: u64) -> Message {
    const FATTR_SIZE: u32 = 1 << 3;
    const FATTR_FH: u32 = 1 << 6;
    let mut message = Message::new(Opcode::Setattr, node, ATTR_OUT)
        .u32(FATTR_SIZE | FATTR_FH)
        .u32(0)
        .u64(handle)
        .u64(size);
    // lock_owner, atime, mtime, ctime; their nanoseconds, mode, unused, uid, gid, unused.
    message.bytes.extend_from_slice(&[0; 8 * 4 + 4 * 8]);
    message
}

/// FUSE_MKDIR of `name` in `parent` with permissions `mode`.
///
/// # Errors
/// As [`lookup`].
pub fn mkdir(parent: u64, name: &str, mode: u32) -> Result<Message, FuseError> {
    check_name(name)?;
    Ok(Message::new(Opcode::Mkdir, parent, ENTRY_OUT)
        .u32(mode)
        .u32(0)
        .name(name))
}

/// FUSE_UNLINK (a file) or FUSE_RMDIR (an empty directory) of `name` in `parent`.
///
/// # Errors
/// As [`lookup`].
pub fn remove(parent: u64, name: &str, directory: bool) -> Result<Message, FuseError> {
    check_name(name)?;
    let opcode = if directory {
        Opcode::Rmdir
    } else {
        Opcode::Unlink
    };
    Ok(Message::new(opcode, parent, 0).name(name))
}

/// FUSE_RENAME of `name` in `parent` to `new_name` in `new_parent`.
///
/// # Errors
/// As [`lookup`], for either name.
pub fn rename(
    parent: u64,
    name: &str,
    new_parent: u64,
    new_name: &str,
) -> Result<Message, FuseError> {
    check_name(name)?;
    check_name(new_name)?;
    Ok(Message::new(Opcode::Rename, parent, 0)
        .u64(new_parent)
        .name(name)
        .name(new_name))
}

/// FUSE_OPEN of file `node`, or FUSE_OPENDIR of a directory, with `flags` ([`flags`]).
pub fn open(node: u64, flags: u32, directory: bool) -> Message {
    let opcode = if directory {
        Opcode::Opendir
    } else {
        Opcode::Open
    };
    Message::new(opcode, node, OPEN_OUT).u32(flags).u32(0)
}

/// FUSE_CREATE of `name` in `parent`: creates and opens a file with `flags` and `mode`.
///
/// # Errors
/// As [`lookup`].
pub fn create(parent: u64, name: &str, flags: u32, mode: u32) -> Result<Message, FuseError> {
    check_name(name)?;
    Ok(Message::new(Opcode::Create, parent, ENTRY_OUT + OPEN_OUT)
        .u32(flags)
        .u32(mode)
        .u32(0)
        .u32(0)
        .name(name))
}

/// FUSE_READ of up to `size` bytes at `offset` of open file `handle`, or FUSE_READDIR of
/// up to `size` bytes of entries from directory position `offset`.
pub fn read(node: u64, handle: u64, offset: u64, size: u32, directory: bool) -> Message {
    let opcode = if directory {
        Opcode::Readdir
    } else {
        Opcode::Read
    };
    Message::new(opcode, node, size as usize)
        .u64(handle)
        .u64(offset)
        .u32(size)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
}

/// FUSE_WRITE of `data` at `offset` of open file `handle`.
pub fn write(node: u64, handle: u64, offset: u64, data: &[u8]) -> Message {
    let mut message = Message::new(Opcode::Write, node, WRITE_OUT)
        .u64(handle)
        .u64(offset)
        .u32(data.len() as u32)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0);
    message.bytes.extend_from_slice(data);
    message
}

/// FUSE_RELEASE (a file) or FUSE_RELEASEDIR (a directory) of `handle`.
pub fn release(node: u64, handle: u64, flags: u32, directory: bool) -> Message {
    let opcode = if directory {
        Opcode::Releasedir
    } else {
        Opcode::Release
    };
    Message::new(opcode, node, 0)
        .u64(handle)
        .u32(flags)
        .u32(0)
        .u64(0)
}

/// FUSE_FSYNC of open file `handle` (data and metadata).
pub fn fsync(node: u64, handle: u64) -> Message {
    Message::new(Opcode::Fsync, node, 0)
        .u64(handle)
        .u32(0)
        .u32(0)
}

/// A reply that passed [`check_reply`]: the body after the header, for `opcode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request's opcode.
    pub opcode: Opcode,
    /// The body (no header).
    pub body: Vec<u8>,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// Checks the reply the device wrote into `buffer` (of `capacity` bytes: the request's
/// [`Message::reply_capacity`]) under used length `used`, for the request with `opcode`
/// and `unique`, and returns its body.
///
/// # Errors
/// [`FuseError::Oversized`] when `used` is past the buffer, [`FuseError::Short`] when it
/// is shorter than a header, [`FuseError::LengthMismatch`] when the header's `len` is not
/// `used`, [`FuseError::UniqueMismatch`] for another request's reply,
/// [`FuseError::BadErrno`] for an error field that is no negative errno, and
/// [`FuseError::Errno`] for the server's error answer.
pub fn check_reply(
    opcode: Opcode,
    unique: u64,
    mut buffer: Vec<u8>,
    used: u32,
) -> Result<Reply, FuseError> {
    let used_bytes = used as usize;
    if used_bytes > buffer.len() {
        return Err(FuseError::Oversized {
            length: used,
            capacity: buffer.len() as u32,
        });
    }
    if used_bytes < OUT_HEADER {
        return Err(FuseError::Short {
            opcode: opcode.name(),
            length: used,
        });
    }
    let length = u32_at(&buffer, 0);
    if length != used {
        return Err(FuseError::LengthMismatch {
            header: length,
            used,
        });
    }
    let got = u64_at(&buffer, 8);
    if got != unique {
        return Err(FuseError::UniqueMismatch {
            expected: unique,
            got,
        });
    }
    let error = u32_at(&buffer, 4) as i32;
    if error != 0 {
        // Linux's errnos are 1..=4095, sent negated.
        return Err(if (-4095..0).contains(&error) {
            FuseError::Errno {
                opcode: opcode.name(),
                errno: -error,
            }
        } else {
            FuseError::BadErrno { error }
        });
    }
    buffer.truncate(used_bytes);
    buffer.drain(..OUT_HEADER);
    Ok(Reply {
        opcode,
        body: buffer,
    })
}

fn expect_size(reply: &Reply, expected: usize) -> Result<(), FuseError> {
    if reply.body.len() != expected {
        return Err(FuseError::BodySize {
            opcode: reply.opcode.name(),
            expected: expected as u32,
            got: reply.body.len() as u32,
        });
    }
    Ok(())
}

/// What kind of node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, pipe, socket).
    Other,
}

impl NodeKind {
    fn from_mode(mode: u32) -> Self {
        match mode & S_IFMT {
            S_IFREG => NodeKind::File,
            S_IFDIR => NodeKind::Directory,
            S_IFLNK => NodeKind::Symlink,
            _ => NodeKind::Other,
        }
    }
}

/// A node's attributes (`fuse_attr`, the fields Torito uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// The inode number on the host.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since 1970.
    pub mtime: u64,
    /// File type and permission bits.
    pub mode: u32,
    /// What kind of node.
    pub kind: NodeKind,
}

fn attributes(bytes: &[u8]) -> Attributes {
    let mode = u32_at(bytes, 60);
    Attributes {
        ino: u64_at(bytes, 0),
        size: u64_at(bytes, 8),
        mtime: u64_at(bytes, 32),
        mode,
        kind: NodeKind::from_mode(mode),
    }
}

/// A looked-up (or created) node: its id (one lookup the caller must FORGET) and
/// attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The node id for later requests.
    pub node: u64,
    /// Its attributes.
    pub attributes: Attributes,
}

/// The server's answer to FUSE_INIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Init {
    /// Protocol major version.
    pub major: u32,
    /// Protocol minor version.
    pub minor: u32,
    /// The largest WRITE payload the server takes.
    pub max_write: u32,
}

/// The reply to [`init`].
///
/// # Errors
/// [`FuseError::BodySize`] for a body shorter than `fuse_init_out` of 7.23;
/// [`FuseError::Version`] for a major version other than 7.
pub fn parse_init(reply: &Reply) -> Result<Init, FuseError> {
    if reply.body.len() < INIT_OUT_MIN || reply.body.len() > 64 {
        return Err(FuseError::BodySize {
            opcode: reply.opcode.name(),
            expected: INIT_OUT_MIN as u32,
            got: reply.body.len() as u32,
        });
    }
    let init = Init {
        major: u32_at(&reply.body, 0),
        minor: u32_at(&reply.body, 4),
        max_write: u32_at(&reply.body, 20),
    };
    if init.major != MAJOR {
        return Err(FuseError::Version {
            major: init.major,
            minor: init.minor,
        });
    }
    Ok(init)
}

/// The reply to [`lookup`] or [`mkdir`] (`fuse_entry_out`).
///
/// # Errors
/// [`FuseError::BodySize`] unless the body is exactly a `fuse_entry_out`;
/// [`FuseError::NoNode`] for node id 0 (a negative entry, which means "not found").
pub fn parse_entry(reply: &Reply) -> Result<Entry, FuseError> {
    expect_size(reply, ENTRY_OUT)?;
    entry(&reply.body)
}

fn entry(bytes: &[u8]) -> Result<Entry, FuseError> {
    let node = u64_at(bytes, 0);
    if node == 0 {
        return Err(FuseError::NoNode);
    }
    Ok(Entry {
        node,
        attributes: attributes(&bytes[40..40 + ATTR]),
    })
}

/// The reply to [`getattr`] or [`truncate`] (`fuse_attr_out`).
///
/// # Errors
/// [`FuseError::BodySize`] unless the body is exactly a `fuse_attr_out`.
pub fn parse_attributes(reply: &Reply) -> Result<Attributes, FuseError> {
    expect_size(reply, ATTR_OUT)?;
    Ok(attributes(&reply.body[16..]))
}

/// The reply to [`open`]: the file handle.
///
/// # Errors
/// [`FuseError::BodySize`] unless the body is exactly a `fuse_open_out`.
pub fn parse_open(reply: &Reply) -> Result<u64, FuseError> {
    expect_size(reply, OPEN_OUT)?;
    Ok(u64_at(&reply.body, 0))
}

/// The reply to [`create`]: the new node and its file handle.
///
/// # Errors
/// [`FuseError::BodySize`] unless the body is a `fuse_entry_out` and a `fuse_open_out`;
/// [`FuseError::NoNode`] as [`parse_entry`].
pub fn parse_create(reply: &Reply) -> Result<(Entry, u64), FuseError> {
    expect_size(reply, ENTRY_OUT + OPEN_OUT)?;
    Ok((entry(&reply.body)?, u64_at(&reply.body, ENTRY_OUT)))
}

/// The reply to [`write()`]: how many bytes the server wrote (at most `asked`).
///
/// # Errors
/// [`FuseError::BodySize`] unless the body is a `fuse_write_out`;
/// [`FuseError::Overcount`] for a count larger than the write.
pub fn parse_write(reply: &Reply, asked: usize) -> Result<usize, FuseError> {
    expect_size(reply, WRITE_OUT)?;
    let written = u32_at(&reply.body, 0);
    if written as usize > asked {
        return Err(FuseError::Overcount {
            claimed: written,
            asked: asked as u32,
        });
    }
    Ok(written as usize)
}

/// The reply to a request that answers with a header only (UNLINK, RMDIR, RENAME,
/// RELEASE, FSYNC).
///
/// # Errors
/// [`FuseError::BodySize`] for a body.
pub fn parse_empty(reply: &Reply) -> Result<(), FuseError> {
    expect_size(reply, 0)
}

/// One entry of a directory listing (`fuse_dirent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The inode number on the host.
    pub ino: u64,
    /// The position to continue the listing after this entry.
    pub next: u64,
    /// Its kind (from the entry's `type`, a `DT_*` value).
    pub kind: NodeKind,
    /// Its name (bytes that are not UTF-8 replaced by U+FFFD).
    pub name: String,
}

/// The reply to a READDIR: its entries, in order. An empty list means the end.
///
/// # Errors
/// [`FuseError::BadDirent`] when an entry's header or name runs past the body, or its
/// name is empty or longer than [`NAME_MAX`].
pub fn parse_dirents(reply: &Reply) -> Result<Vec<DirEntry>, FuseError> {
    const DT_DIR: u32 = 4;
    const DT_REG: u32 = 8;
    const DT_LNK: u32 = 10;
    let body = &reply.body;
    let mut entries = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let bad = FuseError::BadDirent { offset: at as u32 };
        if body.len() - at < DIRENT_HEADER {
            return Err(bad);
        }
        let name_length = u32_at(body, at + 16) as usize;
        if name_length == 0 || name_length > NAME_MAX {
            return Err(bad);
        }
        let name_start = at + DIRENT_HEADER;
        let Some(name) = body.get(name_start..name_start + name_length) else {
            return Err(bad);
        };
        let kind = match u32_at(body, at + 20) {
            DT_DIR => NodeKind::Directory,
            DT_REG => NodeKind::File,
            DT_LNK => NodeKind::Symlink,
            _ => NodeKind::Other,
        };
        entries.push(DirEntry {
            ino: u64_at(body, at),
            next: u64_at(body, at + 8),
            kind,
            name: String::from_utf8_lossy(name).into_owned(),
        });
        // Each entry is padded to 8 bytes; the last one's padding may be missing.
        at = (name_start + name_length).next_multiple_of(8);
    }
    Ok(entries)
}
