//! The one error type of `torito::fs`: the path, what went wrong, what to do.

use super::path::PathError;
use alloc::string::String;
use torito_virtio::FuseError;

/// What went wrong with a file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such file or directory.
    NotFound,
    /// The host refused access.
    PermissionDenied,
    /// The file or directory exists already.
    AlreadyExists,
    /// A component of the path is not a directory.
    NotADirectory,
    /// The path names a directory where a file was needed.
    IsADirectory,
    /// A directory to remove is not empty.
    DirectoryNotEmpty,
    /// The filesystem is read-only.
    ReadOnly,
    /// The filesystem is full.
    NoSpace,
    /// The path is not valid (too long, a component too long, a NUL).
    InvalidPath(PathError),
    /// Nothing is mounted at or above the path.
    NoMount,
    /// The file was not opened for reading (or for writing).
    NotOpenedFor(&'static str),
    /// The host failed with this errno.
    Host(i32),
    /// The device broke the protocol, or could not be set up.
    Device(FuseError),
    /// A blocking call outside a blocking task.
    WouldBlockCore,
    /// The filesystem on a disk failed (its words), or its server stopped.
    Disk(String),
}

/// A failed file operation: the path it was on and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The path, as the caller gave it.
    pub path: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(path: &str, kind: ErrorKind) -> Self {
        Error {
            path: path.into(),
            kind,
        }
    }

    pub(crate) fn fuse(path: &str, error: FuseError) -> Self {
        let kind = match error {
            FuseError::Errno { errno, .. } => match errno {
                2 => ErrorKind::NotFound,
                1 | 13 => ErrorKind::PermissionDenied,
                17 => ErrorKind::AlreadyExists,
                20 => ErrorKind::NotADirectory,
                21 => ErrorKind::IsADirectory,
                28 => ErrorKind::NoSpace,
                30 => ErrorKind::ReadOnly,
                36 => ErrorKind::InvalidPath(PathError::NameTooLong { length: 0 }),
                39 => ErrorKind::DirectoryNotEmpty,
                errno => ErrorKind::Host(errno),
            },
            FuseError::NoNode => ErrorKind::NotFound,
            FuseError::BadName { length } => {
                ErrorKind::InvalidPath(PathError::NameTooLong { length })
            }
            other => ErrorKind::Device(other),
        };
        Error::new(path, kind)
    }

    pub(crate) fn path(path: &str, error: PathError) -> Self {
        let kind = match error {
            PathError::NoMount => ErrorKind::NoMount,
            other => ErrorKind::InvalidPath(other),
        };
        Error::new(path, kind)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let path = &self.path;
        match &self.kind {
            ErrorKind::NotFound => write!(f, "{path}: no such file or directory; check the name"),
            ErrorKind::PermissionDenied => write!(
                f,
                "{path}: permission denied by the host; check the file's owner and mode on \
                 the host"
            ),
            ErrorKind::AlreadyExists => {
                write!(
                    f,
                    "{path}: exists already; remove it first or pick another name"
                )
            }
            ErrorKind::NotADirectory => {
                write!(f, "{path}: a component of the path is not a directory")
            }
            ErrorKind::IsADirectory => {
                write!(f, "{path}: is a directory; use read_dir, or name a file")
            }
            ErrorKind::DirectoryNotEmpty => {
                write!(
                    f,
                    "{path}: the directory is not empty; remove its entries first"
                )
            }
            ErrorKind::ReadOnly => write!(
                f,
                "{path}: the filesystem is read-only; mount a writable share or disk"
            ),
            ErrorKind::NoSpace => write!(f, "{path}: the filesystem is full; free some space"),
            ErrorKind::InvalidPath(PathError::NameTooLong { .. }) => write!(
                f,
                "{path}: a name is longer than 255 bytes; use shorter names"
            ),
            ErrorKind::InvalidPath(PathError::PathTooLong { length }) => write!(
                f,
                "a path of {length} bytes is longer than 4096; use a shorter path"
            ),
            ErrorKind::InvalidPath(PathError::Nul) => {
                write!(f, "{path}: a path cannot hold a NUL byte")
            }
            ErrorKind::InvalidPath(PathError::NoMount) | ErrorKind::NoMount => write!(
                f,
                "{path}: no filesystem is mounted there; mount one with fs.share=TAG:/PATH or \
                 fs.disk=INDEX:/PATH on the command line (torito::fs::mounts lists them)"
            ),
            ErrorKind::NotOpenedFor(what) => write!(
                f,
                "{path}: the file was not opened for {what}; open it with OpenOptions::{what}"
            ),
            ErrorKind::Host(errno) => {
                write!(
                    f,
                    "{path}: the host failed the operation with errno {errno}"
                )
            }
            ErrorKind::Device(error) => write!(f, "{path}: {error}"),
            ErrorKind::Disk(why) => write!(
                f,
                "{path}: the disk's filesystem failed: {why}; check the disk image (e2fsck)"
            ),
            ErrorKind::WouldBlockCore => write!(
                f,
                "{path}: a blocking file call outside a blocking task; call it from \
                 torito::task::spawn_blocking, or use the async call"
            ),
        }
    }
}

impl core::error::Error for Error {}
