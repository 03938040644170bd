//! The virtio-vsock packet header (virtio spec 1.2, section 5.10.6): its fields, read
//! from and written to bytes, and the checks a received header must pass.
//!
//! Every field of a received header is the device's say (and, through it, the host
//! application's): [`Header::parse`] refuses a header whose length field disagrees with
//! the bytes the device wrote, or whose type or operation the driver does not know, so
//! the connection logic only ever sees packets it can act on.
#![deny(unsafe_code)]

/// `struct virtio_vsock_hdr`: 44 bytes, little-endian, packed.
pub const HEADER: usize = 44;

/// The host's CID (spec 5.10.4): the only peer a guest talks to.
pub const HOST_CID: u64 = 2;

/// `VIRTIO_VSOCK_TYPE_STREAM`, the only socket type this driver negotiates.
const TYPE_STREAM: u16 = 1;

/// `VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE` / `_SEND`: the sender will receive / send no more.
pub const SHUTDOWN_RECEIVE: u32 = 1;
/// See [`SHUTDOWN_RECEIVE`].
pub const SHUTDOWN_SEND: u32 = 2;

/// The operations of spec 5.10.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Connection request.
    Request = 1,
    /// Connection accepted.
    Response = 2,
    /// Connection refused or ended at once.
    Rst = 3,
    /// The sender will send and/or receive no more (flags say which).
    Shutdown = 4,
    /// Payload.
    Rw = 5,
    /// The sender's credit (`buf_alloc`, `fwd_cnt`), unasked or answering a request.
    CreditUpdate = 6,
    /// Asks for a `CreditUpdate`.
    CreditRequest = 7,
}

impl Op {
    fn from_u16(value: u16) -> Option<Op> {
        Some(match value {
            1 => Op::Request,
            2 => Op::Response,
            3 => Op::Rst,
            4 => Op::Shutdown,
            5 => Op::Rw,
            6 => Op::CreditUpdate,
            7 => Op::CreditRequest,
            _ => return None,
        })
    }
}

/// One packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Sender's CID.
    pub src_cid: u64,
    /// Receiver's CID.
    pub dst_cid: u64,
    /// Sender's port.
    pub src_port: u32,
    /// Receiver's port.
    pub dst_port: u32,
    /// Payload bytes after the header.
    pub len: u32,
    /// The operation.
    pub op: Op,
    /// Shutdown flags.
    pub flags: u32,
    /// The sender's receive buffer for this connection, in bytes.
    pub buf_alloc: u32,
    /// Payload bytes the sender has consumed so far (free-running, wraps).
    pub fwd_cnt: u32,
}

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer bytes than a header.
    Short {
        /// Bytes the device wrote.
        written: usize,
    },
    /// The length field promises more payload than the device wrote, or payload on an
    /// operation that carries none.
    Length {
        /// The header's length field.
        claimed: u32,
        /// Payload bytes actually written.
        written: usize,
    },
    /// A socket type other than stream.
    Type(u16),
    /// An operation the spec does not define (or `INVALID`).
    Op(u16),
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from(u32_at(bytes, at)) | u64::from(u32_at(bytes, at + 4)) << 32
}

impl Header {
    /// Splits `bytes` (what the device wrote) into a checked header and its payload.
    ///
    /// # Errors
    /// [`Malformed`] names the first check that failed.
    pub fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), Malformed> {
        if bytes.len() < HEADER {
            return Err(Malformed::Short {
                written: bytes.len(),
            });
        }
        let body = &bytes[HEADER..];
        let len = u32_at(bytes, 24);
        let kind = u16_at(bytes, 28);
        if kind != TYPE_STREAM {
            return Err(Malformed::Type(kind));
        }
        let op_value = u16_at(bytes, 30);
        let op = Op::from_u16(op_value).ok_or(Malformed::Op(op_value))?;
        // Only RW carries payload (spec 5.10.6.3); any other length is a device error.
        let expected = if op == Op::Rw { len as usize } else { 0 };
        if len as usize != expected || body.len() < expected {
            return Err(Malformed::Length {
                claimed: len,
                written: body.len(),
            });
        }
        let header = Header {
            src_cid: u64_at(bytes, 0),
            dst_cid: u64_at(bytes, 8),
            src_port: u32_at(bytes, 16),
            dst_port: u32_at(bytes, 20),
            len,
            op,
            flags: u32_at(bytes, 32),
            buf_alloc: u32_at(bytes, 36),
            fwd_cnt: u32_at(bytes, 40),
        };
        Ok((header, &body[..expected]))
    }

    /// Writes the header into the first [`HEADER`] bytes of `out`.
    ///
    /// # Panics
    /// When `out` is shorter than [`HEADER`] (the driver's buffers never are).
    pub fn write(&self, out: &mut [u8]) {
        let out = &mut out[..HEADER];
        out[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        out[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        out[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        out[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        out[24..28].copy_from_slice(&self.len.to_le_bytes());
        out[28..30].copy_from_slice(&TYPE_STREAM.to_le_bytes());
        out[30..32].copy_from_slice(&(self.op as u16).to_le_bytes());
        out[32..36].copy_from_slice(&self.flags.to_le_bytes());
        out[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        out[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
    }
}

impl core::fmt::Display for Malformed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Malformed::Short { written } => {
                write!(f, "{written} bytes, shorter than a {HEADER}-byte header")
            }
            Malformed::Length { claimed, written } => write!(
                f,
                "length field {claimed} against {written} payload bytes written"
            ),
            Malformed::Type(kind) => write!(f, "socket type {kind} (only stream, 1, is used)"),
            Malformed::Op(op) => write!(f, "unknown operation {op}"),
        }
    }
}
