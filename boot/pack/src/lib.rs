//! torito-pack: turns a linked Torito kernel into a smaller image that unpacks itself.
//!
//! A linked kernel starts with its boot stub (the multiboot2 header and the 32-bit entry
//! code, up to `__boot_stub_end`); the rest is code and data the stub does not need until
//! it has unpacked it. [`pack`] LZ4-compresses that rest and writes a new ELF:
//!
//! | segment | memory | in the file |
//! |---|---|---|
//! | the stub, with its descriptor filled in | where the kernel put it | yes |
//! | the stub's padding and the unpacked kernel's place | up to the end of `.data`, and 16 bytes more | no: reserved |
//! | the packed kernel | right after that, usually where `.bss` will be | yes |
//! | the rest of `.bss` | as in the kernel | no: reserved |
//! | the PVH note | (not loaded) | yes |
//!
//! Every byte of memory the kernel or the unpacker will write is still claimed by a
//! segment, so no loader puts its boot information there. The packed bytes go where
//! `.bss` will be; when `.bss` is smaller than they are, they run past the kernel's end,
//! and loading needs that much more memory than the kernel (not so for Torito's
//! examples: their `.bss` holds the stacks). The stub unpacks (boot/src/entry.rs), checks
//! the checksums, and boots on as if the loader had loaded the kernel itself.
//!
//! The format contract (descriptor, checksums) is `torito_boot::pack`; [`unpack`] is the
//! stub's algorithm in Rust, used to check every image before it is written.

mod elf;
mod lz4;

use std::fmt;
use std::ops::Range;
use torito_boot::pack::{
    DESCRIPTOR_SYMBOL, Descriptor, OVERRUN, STUB_END_SYMBOL, STUB_USED_SYMBOL, UNPACKED_ALIGN,
    checksums,
};

pub use lz4::{UnpackError, compress, unpack};

/// Where the packed bytes start: the stub reads them from a 16-byte boundary.
const PACKED_ALIGN: u64 = 16;

/// What went wrong, and what to do about it.
#[derive(Debug, PartialEq, Eq)]
pub enum PackError {
    /// The input is not a 64-bit little-endian x86-64 ELF executable.
    NotKernel(String),
    /// The input has no symbol table: it was stripped, or it is a packed image (which
    /// carries none). Pack the kernel cargo built (target/x86_64-unknown-none/release/NAME).
    NoSymbols,
    /// A linker symbol the stub defines is missing: the input was not linked with
    /// Torito's linker script (kernel/torito.ld) and boot crate.
    MissingSymbol(&'static str),
    /// A loadable segment is not identity-mapped or not below 4 GiB; the stub unpacks
    /// with paging off, in 32-bit mode.
    BadSegment {
        /// The segment's virtual address.
        vaddr: u64,
        /// Its physical address.
        paddr: u64,
        /// Its size in memory.
        len: u64,
    },
    /// A segment's file bytes lie outside the file: the input is truncated.
    Truncated,
    /// Two loadable segments overlap in memory.
    Overlap,
    /// The stub (from the first segment's start to `__boot_stub_end`) is not all file
    /// bytes of the first segment, or the descriptor is not inside its contents (up to
    /// `__boot_stub_used`).
    BadStub,
    /// An entry point (the ELF entry, for multiboot2, or a PVH note's) lies outside the
    /// stub, in code that is packed when the loader jumps there: entry code belongs in
    /// `.boot.text` (boot/src/entry.rs).
    EntryOutsideStub {
        /// The entry address.
        entry: u64,
    },
    /// The descriptor is already filled in: the input is a packed image. Pack the
    /// kernel cargo built (target/x86_64-unknown-none/release/NAME), not its output.
    AlreadyPacked,
    /// Nothing follows the stub.
    Empty,
    /// The packed image failed its own check before being written (a packer bug).
    SelfCheck(UnpackError),
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotKernel(why) => write!(f, "not an x86-64 ELF executable: {why}"),
            Self::NoSymbols => write!(
                f,
                "no symbol table (stripped, or already packed); pack the kernel cargo built, \
                 target/x86_64-unknown-none/release/NAME"
            ),
            Self::MissingSymbol(name) => write!(
                f,
                "no symbol `{name}`: link the kernel with torito.ld and the torito-boot crate"
            ),
            Self::BadSegment { vaddr, paddr, len } => write!(
                f,
                "segment at {vaddr:#x} (physical {paddr:#x}, {len:#x} bytes) is not \
                 identity-mapped below 4 GiB; the unpacker runs with paging off"
            ),
            Self::Truncated => write!(f, "a segment's bytes lie past the end of the file"),
            Self::Overlap => write!(f, "two loadable segments overlap"),
            Self::BadStub => write!(
                f,
                "the boot stub (up to `{STUB_END_SYMBOL}`) and `{DESCRIPTOR_SYMBOL}` are not \
                 in the first segment's file bytes"
            ),
            Self::EntryOutsideStub { entry } => write!(
                f,
                "entry point {entry:#x} is outside the boot stub; entry code belongs in \
                 .boot.text, which is not packed"
            ),
            Self::AlreadyPacked => write!(
                f,
                "this image is already packed; pack the kernel cargo built instead"
            ),
            Self::Empty => write!(f, "nothing follows the boot stub"),
            Self::SelfCheck(error) => write!(f, "the packed kernel does not unpack ({error})"),
        }
    }
}

impl std::error::Error for PackError {}

/// A packed image and what went into it.
#[derive(Debug)]
pub struct Packed {
    /// The bootable ELF file.
    pub image: Vec<u8>,
    /// The descriptor written into the stub.
    pub descriptor: Descriptor,
    /// The descriptor's address (it is in the stub, the first loadable segment).
    pub descriptor_at: u64,
    /// Bytes of the stub, which stays uncompressed.
    pub stub_len: usize,
}

/// Packs a linked kernel (the ELF file's bytes). See the crate documentation.
pub fn pack(kernel: &[u8]) -> Result<Packed, PackError> {
    let input = elf::Input::parse(kernel)?;
    for segment in &input.loads {
        let end = segment.paddr.checked_add(segment.mem_len);
        if segment.vaddr != segment.paddr || end.is_none_or(|end| end > 1 << 32) {
            return Err(PackError::BadSegment {
                vaddr: segment.vaddr,
                paddr: segment.paddr,
                len: segment.mem_len,
            });
        }
    }
    let mut loads: Vec<&elf::InSegment<'_>> = input.loads.iter().collect();
    loads.sort_by_key(|load| load.paddr);
    if loads
        .windows(2)
        .any(|pair| pair[0].memory().end > pair[1].paddr)
    {
        return Err(PackError::Overlap);
    }

    let stub_used = input.symbol(STUB_USED_SYMBOL)?;
    let stub_end = input.symbol(STUB_END_SYMBOL)?;
    let descriptor_at = input.symbol(DESCRIPTOR_SYMBOL)?;
    let first = loads.first().ok_or(PackError::Empty)?;
    // The stub's contents; from `stub_used` to `stub.end` is padding.
    let stub = first.paddr..stub_end;
    let descriptor_range = descriptor_at..descriptor_at + Descriptor::SIZE as u64;
    if !(stub.start <= descriptor_range.start
        && descriptor_range.end <= stub_used
        && stub_used <= stub.end
        && stub.end <= first.paddr + first.bytes.len() as u64)
    {
        return Err(PackError::BadStub);
    }
    // Loaders jump into the stub: anything else is not unpacked yet when they do.
    for &entry in std::iter::once(&input.entry).chain(&input.pvh_entries) {
        if !(stub.start..stub_used).contains(&entry) {
            return Err(PackError::EntryOutsideStub { entry });
        }
    }
    let mut stub_bytes = first.bytes[..(stub_used - stub.start) as usize].to_vec();
    let descriptor_in_stub = (descriptor_range.start - stub.start) as usize;
    let descriptor_bytes = &mut stub_bytes[descriptor_in_stub..][..Descriptor::SIZE];
    if descriptor_bytes.iter().any(|&byte| byte != 0) {
        return Err(PackError::AlreadyPacked);
    }

    // Everything the loader would have written after the stub, as one flat range: gaps
    // and zero-filled tails inside it become zeros, which is what they hold at run time.
    let files_end = loads
        .iter()
        .filter(|load| !load.bytes.is_empty())
        .map(|load| load.paddr + load.bytes.len() as u64)
        .max();
    let files_end = files_end.unwrap_or(stub.end);
    if files_end <= stub.end {
        return Err(PackError::Empty);
    }
    let unpacked_range =
        stub.end..stub.end + (files_end - stub.end).next_multiple_of(UNPACKED_ALIGN as u64);
    let mut unpacked = vec![0u8; (unpacked_range.end - unpacked_range.start) as usize];
    for load in &loads {
        let from = load.paddr.max(unpacked_range.start);
        let to = (load.paddr + load.bytes.len() as u64).min(unpacked_range.end);
        if from < to {
            let source = &load.bytes[(from - load.paddr) as usize..(to - load.paddr) as usize];
            unpacked[(from - unpacked_range.start) as usize..(to - unpacked_range.start) as usize]
                .copy_from_slice(source);
        }
    }
    let packed = compress(&unpacked);
    let checked = unpack(&packed, unpacked.len()).map_err(PackError::SelfCheck)?;
    if checked != unpacked {
        return Err(PackError::SelfCheck(UnpackError::Mismatch));
    }
    // What the unpacker writes: the kernel, and up to OVERRUN bytes past it.
    let written = unpacked_range.start..unpacked_range.end + u64::from(OVERRUN);
    let packed_at = written.end.next_multiple_of(PACKED_ALIGN);
    let packed_range = packed_at..packed_at + packed.len() as u64;
    let (sum, sum_of_sums) = checksums(&unpacked);
    let descriptor = Descriptor {
        source: packed_range.start as u32,
        source_len: packed.len() as u32,
        dest: unpacked_range.start as u32,
        dest_len: unpacked.len() as u32,
        sum,
        sum_of_sums,
    };
    if packed_range.end > 1 << 32 {
        return Err(PackError::BadSegment {
            vaddr: packed_range.start,
            paddr: packed_range.start,
            len: packed.len() as u64,
        });
    }
    stub_bytes[descriptor_in_stub..][..Descriptor::SIZE].copy_from_slice(&descriptor.to_bytes());

    // The memory the kernel claims beyond the unpacked range (its .bss), minus where the
    // packed bytes go: reserved, so loaders keep their boot information out of it.
    let mut segments = vec![
        elf::Segment::file(stub.start, stub_bytes, elf::RWX),
        // Claimed up to what the unpacker may write (OVERRUN past the end), so that no
        // loader puts its boot information there (GRUB did, in the gap before .bss).
        elf::Segment::reserve(stub_used..written.end, elf::RWX),
        elf::Segment::file(packed_range.start, packed, elf::R),
    ];
    for load in &loads {
        let memory = load.memory();
        let beyond = memory.start.max(written.end)..memory.end;
        for piece in subtract(beyond, &packed_range) {
            segments.push(elf::Segment::reserve(piece, elf::RW));
        }
    }
    segments.retain(|segment| segment.mem_len() > 0);
    segments.sort_by_key(|segment| segment.addr);
    let segments = elf::coalesce(segments);

    let image = elf::write(&input, &segments);
    Ok(Packed {
        image,
        descriptor,
        descriptor_at,
        stub_len: (stub_used - stub.start) as usize,
    })
}

/// `range` without the part inside `hole`: zero, one or two ranges.
fn subtract(range: Range<u64>, hole: &Range<u64>) -> Vec<Range<u64>> {
    let mut pieces = Vec::new();
    if range.start < range.end.min(hole.start) {
        pieces.push(range.start..range.end.min(hole.start));
    }
    if range.start.max(hole.end) < range.end {
        pieces.push(range.start.max(hole.end)..range.end);
    }
    pieces
}

#[cfg(test)]
mod tests;
