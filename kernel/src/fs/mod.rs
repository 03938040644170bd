//! Files: host directories shared through virtio-fs, mounted into one path space, read
//! and written asynchronously (and, for fibers, blocking: [`blocking`]).
//!
//! # Mounts
//!
//! The command line says where each filesystem appears: `fs.share=TAG:/PATH` mounts the
//! virtio-fs share whose tag is TAG (QEMU's `vhost-user-fs-*,tag=TAG`; `qemu/run.sh
//! --share DIR` uses the tag `share`) at `/PATH`, as often as there are shares. With no
//! `fs.` key, every share is mounted at `/TAG`. `fs.disk=INDEX:/PATH` mounts the ext2/3/4
//! filesystem on virtio-blk disk INDEX, read-only (`ext4-view`, on blocking tasks of its
//! own, over a cache of the disk's chunks: docs/files.md); `fs.cache=SIZE` (e.g. `32M`)
//! sizes each disk's cache, and `disk_cache_stats` reads its counters. A value that
//! does not parse stops the boot with a message saying what is wrong.
//!
//! Mounting happens on the first call of this module (discovery, device set-up, one
//! FUSE_INIT per share); an application that never asks pays nothing. Paths are
//! resolved by [`path`]: `.`, `..` and empty components are taken out before a path is
//! routed to the filesystem mounted at its longest prefix, so `..` never leaves a mount's
//! root. Names are UTF-8, up to 255 bytes each.
//!
//! # What each call costs
//!
//! Every path operation walks the path from the share's root with one FUSE LOOKUP per
//! component (and forgets each node it passes), then does its work; an open file keeps
//! its node and handle until it is closed. Reads and writes are one request each, of
//! up to 128 KiB; many may be in flight (from any task on any core), up to 64 per share.
//!
//! # Errors
//!
//! Every error is an [`Error`]: the path, what went wrong ([`ErrorKind`]) and what to
//! do. A reply the device (virtiofsd) gets wrong is an [`ErrorKind::Device`] for that
//! request, never a crash.
//!
//! # Examples
//!
//! ```ignore
//! use torito::fs::{self, File, OpenOptions};
//! let mut file = OpenOptions::new().write(true).create(true).truncate(true)
//!     .open("/srv/hello.txt").await?;
//! file.write_all(b"hello\n").await?;
//! file.close().await?;
//! let bytes = fs::read("/srv/hello.txt").await?;
//! let mut entries = fs::read_dir("/srv").await?;
//! while let Some(entry) = entries.next().await {
//!     torito::println!("{}", entry?.name);
//! }
//! ```

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod cache;
#[cfg(target_os = "none")]
mod disk;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod error;
pub mod path;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod recent;
#[cfg(target_os = "none")]
mod virtiofs;

pub use cache::CacheStats;
pub use error::{Error, ErrorKind};

#[cfg(target_os = "none")]
mod api;
#[cfg(target_os = "none")]
pub mod blocking;
#[cfg(target_os = "none")]
pub use api::*;
