//! `PhysMemory`: how the parsers read physical memory, without touching it directly.
//!
//! The parsers follow physical addresses handed over by the loader. They never turn those
//! into pointers themselves: they ask a `PhysMemory` for a byte slice, and a `None` answer
//! (the range is not readable) becomes [`BootError::OutOfBounds`]. The kernel implements
//! the trait over its identity-mapped RAM (the first 1 GiB is mapped at entry); tests and
//! fuzzers use [`SliceMemory`] over an ordinary buffer.

use crate::BootError;

/// Read access to physical memory.
///
/// Implementors promise (the type system already demands it of a `&[u8]`) that the
/// returned bytes stay valid and unchanged while borrowed. The parsers do not trust the
/// answer's length: a slice of the wrong length is treated like `None`.
pub trait PhysMemory {
    /// The `len` bytes starting at physical address `addr`, or `None` when any of them is
    /// not readable (not RAM, not mapped, or `addr + len` overflows).
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]>;
}

/// A `PhysMemory` over a byte slice that holds physical addresses `base..base + bytes.len()`.
///
/// # Examples
///
/// ```
/// use torito_boot::{PhysMemory, SliceMemory};
///
/// let image = [1u8, 2, 3, 4];
/// let mem = SliceMemory { base: 0x1000, bytes: &image };
/// assert_eq!(mem.read(0x1001, 2), Some(&[2u8, 3][..]));
/// assert_eq!(mem.read(0x1003, 2), None); // runs past the end
/// assert_eq!(mem.read(0xfff, 1), None); // below the base
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SliceMemory<'a> {
    /// Physical address of `bytes[0]`.
    pub base: u64,
    /// The memory contents.
    pub bytes: &'a [u8],
}

impl PhysMemory for SliceMemory<'_> {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let offset = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let end = offset.checked_add(len)?;
        self.bytes.get(offset..end)
    }
}

/// Reads exactly `len` bytes at `addr`, naming `what` in the error.
pub(crate) fn read_exact<'m>(
    mem: &'m dyn PhysMemory,
    what: &'static str,
    addr: u64,
    len: usize,
) -> Result<&'m [u8], BootError> {
    match mem.read(addr, len) {
        Some(bytes) if bytes.len() == len => Ok(bytes),
        _ => Err(BootError::OutOfBounds {
            what,
            addr,
            len: len as u64,
        }),
    }
}

/// Reads exactly `N` bytes at `addr` as an array reference.
pub(crate) fn read_array<'m, const N: usize>(
    mem: &'m dyn PhysMemory,
    what: &'static str,
    addr: u64,
) -> Result<&'m [u8; N], BootError> {
    read_exact(mem, what, addr, N)?
        .first_chunk::<N>()
        .ok_or(BootError::OutOfBounds {
            what,
            addr,
            len: N as u64,
        })
}

/// Little-endian field readers over fixed-size arrays.
///
/// The offset is a const parameter checked at compile time against the array length, so
/// a field read can never index out of bounds.
pub(crate) mod le {
    /// The `u32` at byte offset `OFF` of `bytes`.
    pub(crate) fn u32_at<const OFF: usize, const N: usize>(bytes: &[u8; N]) -> u32 {
        const { assert!(OFF + 4 <= N) };
        u32::from_le_bytes([bytes[OFF], bytes[OFF + 1], bytes[OFF + 2], bytes[OFF + 3]])
    }

    /// The `u64` at byte offset `OFF` of `bytes`.
    pub(crate) fn u64_at<const OFF: usize, const N: usize>(bytes: &[u8; N]) -> u64 {
        const { assert!(OFF + 8 <= N) };
        let mut field = [0u8; 8];
        field.copy_from_slice(&bytes[OFF..OFF + 8]);
        u64::from_le_bytes(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_memory_bounds() {
        let image = [0u8; 16];
        let mem = SliceMemory {
            base: 0x100,
            bytes: &image,
        };
        assert_eq!(mem.read(0x100, 16).map(<[u8]>::len), Some(16));
        assert_eq!(mem.read(0x110, 0).map(<[u8]>::len), Some(0));
        assert!(mem.read(0x100, 17).is_none());
        assert!(mem.read(0xff, 1).is_none());
        assert!(mem.read(u64::MAX, 2).is_none());
        assert!(mem.read(0x101, usize::MAX).is_none());
    }

    #[test]
    fn read_exact_names_the_structure() {
        let image = [0u8; 4];
        let mem = SliceMemory {
            base: 0,
            bytes: &image,
        };
        assert_eq!(
            read_exact(&mem, "thing", 2, 4),
            Err(BootError::OutOfBounds {
                what: "thing",
                addr: 2,
                len: 4
            })
        );
    }

    /// A dishonest implementation that returns fewer bytes than asked.
    struct Short;
    impl PhysMemory for Short {
        fn read(&self, _addr: u64, _len: usize) -> Option<&[u8]> {
            Some(&[1, 2])
        }
    }

    #[test]
    fn short_answers_are_out_of_bounds() {
        assert!(matches!(
            read_array::<8>(&Short, "x", 0),
            Err(BootError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn little_endian_fields() {
        let bytes = [0x78, 0x56, 0x34, 0x12, 0xf0, 0xde, 0xbc, 0x9a, 0xff];
        assert_eq!(le::u32_at::<0, 9>(&bytes), 0x1234_5678);
        assert_eq!(le::u64_at::<0, 9>(&bytes), 0x9abc_def0_1234_5678);
        assert_eq!(le::u32_at::<5, 9>(&bytes), 0xff9a_bcde);
    }
}
