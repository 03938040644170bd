//! The physical frame allocator: 4 KiB frames carved from the boot memory map.
//!
//! It serves page tables (and, later, anything that needs whole frames below the heap);
//! the heap takes the largest region whole at boot (`take_largest`). Frames are handed
//! out lowest address first, so early page tables land in memory the boot page tables
//! already map, and are never returned: page tables live as long as the kernel, and
//! everything that comes and goes uses the heap. Pure bookkeeping over numbers, so it is
//! tested on the host.

use torito_boot::{MemoryKind, MemoryRegion};

/// Frame size.
pub const FRAME: u64 = 4096;
const MAX_RANGES: usize = 64;

/// A half-open physical range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Range {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

/// Free physical memory, as sorted, disjoint, frame-aligned ranges.
pub struct FrameAllocator {
    ranges: [Range; MAX_RANGES],
    count: usize,
}

impl FrameAllocator {
    /// Free memory: the usable regions of `map`, shrunk to whole frames, minus every
    /// range in `reserved` (the kernel image, low memory, ...). Overlapping or unsorted
    /// map entries are tolerated; ranges past capacity are dropped (and counted in the
    /// return value's `dropped`).
    pub fn new(map: &[MemoryRegion], reserved: &[Range]) -> (Self, usize) {
        let mut allocator = Self {
            ranges: [Range { start: 0, end: 0 }; MAX_RANGES],
            count: 0,
        };
        let mut dropped = 0;
        for region in map
            .iter()
            .filter(|region| region.kind == MemoryKind::Usable)
        {
            let start = region.start.div_ceil(FRAME).saturating_mul(FRAME);
            let end = region.end() / FRAME * FRAME;
            if start < end && !allocator.insert(Range { start, end }) {
                dropped += 1;
            }
        }
        for hole in reserved {
            dropped += allocator.remove(*hole);
        }
        (allocator, dropped)
    }

    /// The free ranges.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges[..self.count]
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.ranges().iter().map(Range::len).sum()
    }

    /// `frames` contiguous frames from the lowest range that has them; `None` when no
    /// range is large enough.
    pub fn allocate(&mut self, frames: u64) -> Option<u64> {
        let bytes = frames.checked_mul(FRAME)?;
        let index = self
            .ranges()
            .iter()
            .position(|range| range.len() >= bytes)?;
        let start = self.ranges[index].start;
        self.ranges[index].start += bytes;
        if self.ranges[index].is_empty() {
            self.delete(index);
        }
        Some(start)
    }

    /// Removes and returns the largest free range, leaving at least `keep` bytes to the
    /// allocator: when the largest range is the only memory, its first `keep` bytes stay.
    pub fn take_largest(&mut self, keep: u64) -> Option<Range> {
        let index = (0..self.count).max_by_key(|index| self.ranges[*index].len())?;
        let largest = self.ranges[index];
        let others = self.free_bytes() - largest.len();
        if others >= keep {
            self.delete(index);
            return Some(largest);
        }
        let kept = (keep - others).div_ceil(FRAME) * FRAME;
        if kept >= largest.len() {
            return None;
        }
        self.ranges[index].end = largest.start + kept;
        Some(Range {
            start: largest.start + kept,
            end: largest.end,
        })
    }

    fn insert(&mut self, range: Range) -> bool {
        // Merge with anything it overlaps or touches, then insert sorted.
        let mut merged = range;
        let mut index = 0;
        while index < self.count {
            let other = self.ranges[index];
            if other.start <= merged.end && merged.start <= other.end {
                merged = Range {
                    start: merged.start.min(other.start),
                    end: merged.end.max(other.end),
                };
                self.delete(index);
            } else {
                index += 1;
            }
        }
        if self.count == MAX_RANGES {
            return false;
        }
        let at = self
            .ranges()
            .iter()
            .position(|other| other.start > merged.start)
            .unwrap_or(self.count);
        self.ranges.copy_within(at..self.count, at + 1);
        self.ranges[at] = merged;
        self.count += 1;
        true
    }

    /// Cuts `hole` out of every range; returns how many pieces were lost for lack of room.
    fn remove(&mut self, hole: Range) -> usize {
        let mut lost = 0;
        let mut index = 0;
        while index < self.count {
            let range = self.ranges[index];
            if hole.end <= range.start || range.end <= hole.start {
                index += 1;
                continue;
            }
            let below = Range {
                start: range.start,
                end: hole.start.max(range.start) / FRAME * FRAME,
            };
            let above = Range {
                start: hole.end.min(range.end).div_ceil(FRAME) * FRAME,
                end: range.end,
            };
            self.delete(index);
            for piece in [below, above] {
                if piece.start < piece.end && !self.insert(piece) {
                    lost += 1;
                }
            }
            // Restart: insertion may have reordered the ranges.
            index = 0;
        }
        lost
    }

    fn delete(&mut self, index: usize) {
        self.ranges.copy_within(index + 1..self.count, index);
        self.count -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable(start: u64, end: u64) -> MemoryRegion {
        MemoryRegion {
            start,
            len: end - start,
            kind: MemoryKind::Usable,
        }
    }

    #[test]
    fn only_usable_whole_frames_minus_reserved() {
        let map = [
            usable(0, 0x9fc00),
            MemoryRegion {
                start: 0x9fc00,
                len: 0x400,
                kind: MemoryKind::Reserved,
            },
            usable(0x100000, 0x800000),
        ];
        let reserved = [
            Range {
                start: 0,
                end: 0x10000,
            },
            Range {
                start: 0x100000,
                end: 0x123456,
            },
        ];
        let (frames, dropped) = FrameAllocator::new(&map, &reserved);
        assert_eq!(dropped, 0);
        assert_eq!(
            frames.ranges(),
            &[
                Range {
                    start: 0x10000,
                    end: 0x9f000
                },
                Range {
                    start: 0x124000,
                    end: 0x800000
                }
            ]
        );
    }

    #[test]
    fn overlapping_and_unsorted_entries_merge() {
        let map = [
            usable(0x300000, 0x500000),
            usable(0x100000, 0x200000),
            usable(0x1ff000, 0x380000),
        ];
        let (frames, _) = FrameAllocator::new(&map, &[]);
        assert_eq!(
            frames.ranges(),
            &[Range {
                start: 0x100000,
                end: 0x500000
            }]
        );
    }

    #[test]
    fn allocates_lowest_first_and_contiguous() {
        let map = [usable(0x10000, 0x12000), usable(0x100000, 0x200000)];
        let (mut frames, _) = FrameAllocator::new(&map, &[]);
        assert_eq!(frames.allocate(1), Some(0x10000));
        // Two contiguous frames do not fit in what is left of the first range.
        assert_eq!(frames.allocate(2), Some(0x100000));
        assert_eq!(frames.allocate(1), Some(0x11000));
        assert_eq!(frames.allocate(1), Some(0x102000));
        assert_eq!(frames.allocate(1 << 40), None);
        assert_eq!(frames.free_bytes(), 0x100000 - 0x3000);
    }

    #[test]
    fn largest_goes_to_the_heap_but_frames_are_kept() {
        let map = [usable(0x10000, 0x20000), usable(0x100000, 0x400000)];
        let (mut frames, _) = FrameAllocator::new(&map, &[]);
        assert_eq!(
            frames.take_largest(0x8000),
            Some(Range {
                start: 0x100000,
                end: 0x400000
            })
        );
        assert_eq!(frames.free_bytes(), 0x10000);

        let (mut single, _) = FrameAllocator::new(&[usable(0x100000, 0x200000)], &[]);
        let heap = single.take_largest(0x10000).expect("room for both");
        assert_eq!(
            heap,
            Range {
                start: 0x110000,
                end: 0x200000
            }
        );
        assert_eq!(single.free_bytes(), 0x10000);

        let (mut tiny, _) = FrameAllocator::new(&[usable(0x100000, 0x104000)], &[]);
        assert_eq!(tiny.take_largest(0x10000), None);
    }

    #[test]
    fn too_many_ranges_are_counted_not_lost_silently() {
        let map: Vec<_> = (0..100u64)
            .map(|i| usable(i * 0x10000, i * 0x10000 + 0x1000))
            .collect();
        let (frames, dropped) = FrameAllocator::new(&map, &[]);
        assert_eq!(frames.ranges().len(), MAX_RANGES);
        assert_eq!(dropped, 100 - MAX_RANGES);
    }
}
