//! What can go wrong between the kernel and a virtio-fs device.

/// Why a virtio-fs request (or the device's set-up) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuseError {
    /// The server answered with an error (a Linux errno: 2 ENOENT, 13 EACCES, 17 EEXIST,
    /// 20 ENOTDIR, 21 EISDIR, 28 ENOSPC, 30 EROFS, 39 ENOTEMPTY, ...).
    Errno {
        /// The request's opcode.
        opcode: &'static str,
        /// The errno, positive.
        errno: i32,
    },
    /// A name that cannot go into a request: empty, longer than 255 bytes, or with `/` or
    /// NUL in it.
    BadName {
        /// Its length in bytes.
        length: usize,
    },
    /// The device claimed a reply longer than the buffer it was given.
    Oversized {
        /// The used length it claimed.
        length: u32,
        /// The buffer's size.
        capacity: u32,
    },
    /// A reply shorter than the 16-byte `fuse_out_header`.
    Short {
        /// The request's opcode.
        opcode: &'static str,
        /// The used length.
        length: u32,
    },
    /// The reply header's `len` is not the used length the device reported.
    LengthMismatch {
        /// The header's `len`.
        header: u32,
        /// The used length.
        used: u32,
    },
    /// The reply answers another request (its `unique` is not the request's).
    UniqueMismatch {
        /// The request's `unique`.
        expected: u64,
        /// The reply's.
        got: u64,
    },
    /// The reply's error field is no negative errno.
    BadErrno {
        /// The field's value.
        error: i32,
    },
    /// The reply's body is not the size the opcode's reply has.
    BodySize {
        /// The request's opcode.
        opcode: &'static str,
        /// The size its reply has.
        expected: u32,
        /// The size the device wrote.
        got: u32,
    },
    /// A directory entry that runs past the reply, or has an impossible name length.
    BadDirent {
        /// Where in the reply body.
        offset: u32,
    },
    /// A WRITE reply claiming more bytes than were sent.
    Overcount {
        /// The count claimed.
        claimed: u32,
        /// The bytes sent.
        asked: u32,
    },
    /// A lookup answered with node id 0 (a "negative entry": not found).
    NoNode,
    /// The server speaks another FUSE major version.
    Version {
        /// Its major version.
        major: u32,
        /// Its minor version.
        minor: u32,
    },
    /// A request larger than the device takes.
    TooLarge {
        /// The request's size in bytes.
        length: usize,
    },
    /// The device returned a request it was never given: it is out of service, and every
    /// request fails with this.
    Broken,
    /// The device could not be set up.
    Setup {
        /// What failed.
        what: &'static str,
    },
}

impl core::fmt::Display for FuseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FuseError::Errno { opcode, errno } => {
                write!(f, "the host answered {opcode} with errno {errno}")
            }
            FuseError::BadName { length } => write!(
                f,
                "a name of {length} bytes cannot be sent (1 to 255 bytes, no '/' or NUL)"
            ),
            FuseError::Oversized { length, capacity } => write!(
                f,
                "the device claimed a {length}-byte reply in a {capacity}-byte buffer; the \
                 reply was dropped; check virtiofsd"
            ),
            FuseError::Short { opcode, length } => write!(
                f,
                "the device answered {opcode} with {length} bytes, shorter than a FUSE \
                 header; check virtiofsd"
            ),
            FuseError::LengthMismatch { header, used } => write!(
                f,
                "a FUSE reply says it is {header} bytes but the device wrote {used}; check \
                 virtiofsd"
            ),
            FuseError::UniqueMismatch { expected, got } => write!(
                f,
                "a FUSE reply for request {got} came back for request {expected}; check \
                 virtiofsd"
            ),
            FuseError::BadErrno { error } => write!(
                f,
                "a FUSE reply carries error {error}, which is no errno; check virtiofsd"
            ),
            FuseError::BodySize {
                opcode,
                expected,
                got,
            } => write!(
                f,
                "the reply to {opcode} has {got} bytes where it should have {expected}; \
                 check virtiofsd's FUSE version"
            ),
            FuseError::BadDirent { offset } => write!(
                f,
                "a directory entry at byte {offset} of a READDIR reply is malformed; check \
                 virtiofsd"
            ),
            FuseError::Overcount { claimed, asked } => write!(
                f,
                "the host claimed {claimed} bytes written of {asked}; check virtiofsd"
            ),
            FuseError::NoNode => f.write_str("the host answered a lookup with no node"),
            FuseError::Version { major, minor } => write!(
                f,
                "the virtio-fs server speaks FUSE {major}.{minor}; Torito needs 7.x"
            ),
            FuseError::TooLarge { length } => write!(
                f,
                "a FUSE request of {length} bytes is larger than the device takes; write \
                 in smaller pieces"
            ),
            FuseError::Broken => f.write_str(
                "the virtio-fs device returned a request it was never given and is out of \
                 service; restart the VM and check virtiofsd",
            ),
            FuseError::Setup { what } => write!(
                f,
                "the virtio-fs device could not be set up ({what}); check the VMM's \
                 vhost-user-fs options and virtiofsd"
            ),
        }
    }
}

impl core::error::Error for FuseError {}
