//! Who owns which physical addresses: the ranges a device must not overlap.
//!
//! The kernel fills [`Claims`] with its own memory before discovery starts (the null
//! page, the kernel image with its stacks and static page tables, every RAM range of the
//! memory map, which holds the heap, the other page tables and the other cores' stacks),
//! and discovery adds each device it accepts, so two devices cannot share a window either.

use alloc::vec::Vec;
use core::fmt;

/// A physical range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Span {
    /// `[start, start + size)`, or `None` when that wraps past 2^64.
    pub fn new(start: u64, size: u64) -> Option<Span> {
        Some(Span {
            start,
            end: start.checked_add(size)?,
        })
    }

    /// Whether the two ranges share a byte.
    pub fn overlaps(self, other: Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

/// What owns a claimed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Page 0: left unmapped so that a null dereference faults.
    NullPage,
    /// The kernel image (text, data, boot stacks, static page tables).
    Kernel,
    /// RAM from the memory map (heap, page tables, stacks, DMA buffers).
    Ram,
    /// Low memory the kernel maps itself (real-mode structures, firmware areas).
    LowMemory,
    /// Another device's registers.
    Device,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Owner::NullPage => "the null page",
            Owner::Kernel => "the kernel image",
            Owner::Ram => "RAM",
            Owner::LowMemory => "the kernel's low memory (first 2 MiB)",
            Owner::Device => "another device",
        })
    }
}

/// Claimed ranges, checked in the order they were added (so the most specific owner,
/// added first, is the one an error names).
#[derive(Debug, Clone, Default)]
pub struct Claims {
    ranges: Vec<(Span, Owner)>,
}

impl Claims {
    /// No claims.
    pub fn new() -> Self {
        Self::default()
    }

    /// Claims `span` for `owner`.
    pub fn add(&mut self, span: Span, owner: Owner) {
        self.ranges.push((span, owner));
    }

    /// The first claim that `span` overlaps, if any.
    pub fn conflict(&self, span: Span) -> Option<(Span, Owner)> {
        self.ranges
            .iter()
            .copied()
            .find(|(claimed, _)| claimed.overlaps(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_ranges_do_not_overlap() {
        let a = Span::new(0x1000, 0x1000).unwrap();
        assert!(!a.overlaps(Span::new(0x2000, 1).unwrap()));
        assert!(!a.overlaps(Span::new(0, 0x1000).unwrap()));
        assert!(a.overlaps(Span::new(0x1fff, 1).unwrap()));
        assert!(a.overlaps(Span::new(0, 0x1001).unwrap()));
        assert!(Span::new(u64::MAX, 2).is_none());
    }

    #[test]
    fn the_first_claim_added_is_named() {
        let mut claims = Claims::new();
        claims.add(Span::new(0x10_0000, 0x5_0000).unwrap(), Owner::Kernel);
        claims.add(Span::new(0, 0x20_0000).unwrap(), Owner::LowMemory);
        let (span, owner) = claims
            .conflict(Span::new(0x10_0000, 0x10_0000).unwrap())
            .unwrap();
        assert_eq!(owner, Owner::Kernel);
        assert_eq!(span.start, 0x10_0000);
        assert_eq!(
            claims.conflict(Span::new(0x18_0000, 1).unwrap()).unwrap().1,
            Owner::LowMemory
        );
        assert!(claims.conflict(Span::new(0x20_0000, 1).unwrap()).is_none());
    }
}
