//! The PV console ring (`io/console.h`, `struct xencons_interface`).
//!
//! Why: a domU has no COM1 of its own; xenconsoled in dom0 reads what the guest writes
//! to this page and writes keyboard input into it. The kernel's log and exit lines go
//! through it.
//!
//! Layout: `in[1024]` at 0 (dom0 -> guest), `out[2048]` at 1024 (guest -> dom0), then
//! `in_cons`, `in_prod`, `out_cons`, `out_prod` (`u32` each) at 3072, 3076, 3080, 3084.
//! Indices are free-running and masked by the (power-of-two) ring sizes.
//!
//! What it trusts: `out_cons` and `in_prod` are the console daemon's. An `out` ring that
//! claims more than 2048 bytes unread, or an `in` ring more than 1024 unread, is
//! corrupt: nothing is written or read ([`ConsoleError::Corrupt`]). Every offset is
//! masked, and every copy is split at the ring's end, so nothing lands outside its ring.
//!
//! It does not notify: after a write or read that moved bytes, the caller signals the
//! console's event channel (the kernel batches a line into one notification).

use super::SharedPage;

/// Size of the input ring (`in`).
pub const IN_SIZE: u32 = 1024;
/// Size of the output ring (`out`).
pub const OUT_SIZE: u32 = 2048;
const IN: usize = 0;
const OUT: usize = 1024;
const IN_CONS: usize = 3072;
const IN_PROD: usize = 3076;
const OUT_CONS: usize = 3080;
const OUT_PROD: usize = 3084;

/// The console page's indices say the other side is confused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleError {
    /// A ring claims more unread bytes than it holds.
    Corrupt {
        /// `"in"` or `"out"`.
        ring: &'static str,
        /// Its producer index.
        prod: u32,
        /// Its consumer index.
        cons: u32,
    },
}

impl core::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Corrupt { ring, prod, cons } => write!(
                f,
                "console {ring} ring is corrupt (prod {prod}, cons {cons}): \
                 nothing was moved; the console daemon wrote a bad index"
            ),
        }
    }
}

impl core::error::Error for ConsoleError {}

/// The guest's side of a `xencons_interface` page.
pub struct Console<P> {
    page: P,
}

impl<P: SharedPage> Console<P> {
    /// The console on `page`, as the toolstack left it (indices are not reset: the
    /// daemon may already have consumed or produced bytes).
    pub fn new(page: P) -> Self {
        Self { page }
    }

    /// The shared page.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Writes as much of `bytes` as fits in `out` and returns how much that was (0 when
    /// the ring is full: the daemon has not caught up). Notify the console's port if
    /// it is not 0.
    ///
    /// # Errors
    ///
    /// [`ConsoleError::Corrupt`] if the daemon's `out_cons` is impossible.
    pub fn write(&self, bytes: &[u8]) -> Result<usize, ConsoleError> {
        let (prod, used) = self.output()?;
        let count = bytes.len().min((OUT_SIZE - used) as usize);
        copy_in(&self.page, OUT, OUT_SIZE, prod, &bytes[..count]);
        // The bytes are in the ring before the index that publishes them.
        self.page.fence();
        self.page
            .store_u32(OUT_PROD, prod.wrapping_add(count as u32));
        Ok(count)
    }

    /// Bytes written and not yet taken by the daemon.
    ///
    /// # Errors
    ///
    /// [`ConsoleError::Corrupt`] as for [`write`](Self::write).
    pub fn output_pending(&self) -> Result<u32, ConsoleError> {
        Ok(self.output()?.1)
    }

    /// The output ring's producer index and the bytes in it, checked against its size.
    fn output(&self) -> Result<(u32, u32), ConsoleError> {
        let cons = self.page.load_u32(OUT_CONS);
        let prod = self.page.load_u32(OUT_PROD);
        let used = prod.wrapping_sub(cons);
        if used > OUT_SIZE {
            return Err(ConsoleError::Corrupt {
                ring: "out",
                prod,
                cons,
            });
        }
        Ok((prod, used))
    }

    /// Reads input into `into` and returns how many bytes that was (0 if none is
    /// waiting). Notify the console's port if it is not 0 (the daemon may be waiting
    /// for room).
    ///
    /// # Errors
    ///
    /// [`ConsoleError::Corrupt`] if the daemon's `in_prod` is impossible.
    pub fn read(&self, into: &mut [u8]) -> Result<usize, ConsoleError> {
        let cons = self.page.load_u32(IN_CONS);
        let prod = self.page.load_u32(IN_PROD);
        let ready = prod.wrapping_sub(cons);
        if ready > IN_SIZE {
            return Err(ConsoleError::Corrupt {
                ring: "in",
                prod,
                cons,
            });
        }
        let count = into.len().min(ready as usize);
        copy_out(&self.page, IN, IN_SIZE, cons, &mut into[..count]);
        // The bytes are read before the index that gives their room back.
        self.page.fence();
        self.page
            .store_u32(IN_CONS, cons.wrapping_add(count as u32));
        Ok(count)
    }
}

/// Copies `bytes` into the ring of `size` bytes at `base`, starting at free-running
/// index `index`, in at most two pieces.
pub(crate) fn copy_in<P: SharedPage + ?Sized>(
    page: &P,
    base: usize,
    size: u32,
    index: u32,
    bytes: &[u8],
) {
    let start = (index & (size - 1)) as usize;
    let first = bytes.len().min(size as usize - start);
    page.write(base + start, &bytes[..first]);
    page.write(base, &bytes[first..]);
}

/// Copies from the ring of `size` bytes at `base`, starting at free-running index
/// `index`, into `into`, in at most two pieces.
pub(crate) fn copy_out<P: SharedPage + ?Sized>(
    page: &P,
    base: usize,
    size: u32,
    index: u32,
    into: &mut [u8],
) {
    let start = (index & (size - 1)) as usize;
    let first = into.len().min(size as usize - start);
    let (head, tail) = into.split_at_mut(first);
    page.read(base + start, head);
    page.read(base, tail);
}

#[cfg(test)]
mod tests;
