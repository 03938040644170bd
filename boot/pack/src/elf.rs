//! Reading the linked kernel (through the `object` crate) and writing the packed ELF.
//!
//! The output is as plain as an ELF executable gets: the file header, program headers
//! sorted by address, then the segments' bytes. No section headers: loaders (QEMU,
//! Firecracker, Cloud Hypervisor, Xen, GRUB) only read program headers, and the symbols
//! stay in the unpacked kernel, which is what a debugger should be given.

use crate::PackError;
use object::elf::{EM_X86_64, ET_EXEC, PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol};
use std::ops::Range;

/// Segment permissions: what the loader is told (the kernel sets its own page tables).
pub const R: u32 = PF_R;
/// Read and write.
pub const RW: u32 = PF_R | PF_W;
/// Everything: the stub writes its saved registers next to its code, and the unpacked
/// range holds code and data alike.
pub const RWX: u32 = PF_R | PF_W | PF_X;

/// File offsets of loadable segments keep this alignment with their addresses, as the
/// kernel's own link does (`-zmax-page-size=16`).
const LOAD_ALIGN: u64 = 16;

/// A loadable segment of the input.
pub struct InSegment<'a> {
    pub vaddr: u64,
    pub paddr: u64,
    pub mem_len: u64,
    pub bytes: &'a [u8],
}

impl InSegment<'_> {
    /// Its memory, by physical address (where the loader puts it).
    pub fn memory(&self) -> Range<u64> {
        self.paddr..self.paddr + self.mem_len
    }
}

/// What the packer needs from the linked kernel.
pub struct Input<'a> {
    file: ElfFile64<'a, Endianness>,
    pub loads: Vec<InSegment<'a>>,
    /// Each PT_NOTE segment's bytes and alignment (the PVH entry note is one).
    pub notes: Vec<(&'a [u8], u64)>,
    /// The ELF entry (where multiboot2 loaders jump).
    pub entry: u64,
    /// The entry addresses of the PVH notes (`XEN_ELFNOTE_PHYS32_ENTRY`: type 18, owner
    /// "Xen", a 4- or 8-byte address).
    pub pvh_entries: Vec<u64>,
}

impl<'a> Input<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, PackError> {
        let file = ElfFile64::<Endianness>::parse(data)
            .map_err(|error| PackError::NotKernel(error.to_string()))?;
        let endian = file.endian();
        let header = file.elf_header();
        if header.e_machine(endian) != EM_X86_64
            || header.e_type(endian) != ET_EXEC
            || !file.is_little_endian()
        {
            return Err(PackError::NotKernel(
                "not a little-endian x86-64 executable".into(),
            ));
        }
        let mut loads = Vec::new();
        let mut notes = Vec::new();
        let mut pvh_entries = Vec::new();
        for segment in file.elf_program_headers() {
            let bytes = segment
                .data(endian, data)
                .map_err(|_| PackError::Truncated)?;
            match segment.p_type(endian) {
                PT_LOAD if segment.p_memsz(endian) > 0 => {
                    if segment.p_filesz(endian) > segment.p_memsz(endian) {
                        return Err(PackError::Truncated);
                    }
                    loads.push(InSegment {
                        vaddr: segment.p_vaddr(endian),
                        paddr: segment.p_paddr(endian),
                        mem_len: segment.p_memsz(endian),
                        bytes,
                    });
                }
                PT_NOTE => {
                    notes.push((bytes, segment.p_align(endian).max(1)));
                    let mut iter = segment.notes(endian, data).ok().flatten();
                    while let Some(Ok(Some(note))) = iter.as_mut().map(|notes| notes.next()) {
                        if note.n_type(endian) == 18 && note.name() == b"Xen" {
                            let mut address = [0u8; 8];
                            let used = note.desc().len().min(8);
                            address[..used].copy_from_slice(&note.desc()[..used]);
                            pvh_entries.push(u64::from_le_bytes(address));
                        }
                    }
                }
                _ => {}
            }
        }
        let entry = header.e_entry(endian);
        Ok(Self {
            file,
            loads,
            notes,
            entry,
            pvh_entries,
        })
    }

    /// The address of a symbol the boot crate or linker script defines.
    pub fn symbol(&self, name: &'static str) -> Result<u64, PackError> {
        if self.file.symbols().next().is_none() {
            return Err(PackError::NoSymbols);
        }
        let symbol = self.file.symbol_by_name(name);
        symbol
            .map(|symbol| symbol.address())
            .ok_or(PackError::MissingSymbol(name))
    }
}

/// A loadable segment of the output: file bytes, or only reserved memory.
pub struct Segment {
    pub addr: u64,
    bytes: Vec<u8>,
    mem_len: u64,
    flags: u32,
}

impl Segment {
    /// Memory the loader fills from the file.
    pub fn file(addr: u64, bytes: Vec<u8>, flags: u32) -> Self {
        let mem_len = bytes.len() as u64;
        Self {
            addr,
            bytes,
            mem_len,
            flags,
        }
    }

    /// Memory claimed but not written from the file.
    pub fn reserve(range: Range<u64>, flags: u32) -> Self {
        Self {
            addr: range.start,
            bytes: Vec::new(),
            mem_len: range.end - range.start,
            flags,
        }
    }

    pub fn mem_len(&self) -> u64 {
        self.mem_len
    }
}

/// Merges reserved segments that touch (sorted input), so the image carries fewer
/// program headers; the merged segment gets both sets of permissions.
pub fn coalesce(segments: Vec<Segment>) -> Vec<Segment> {
    let mut merged: Vec<Segment> = Vec::with_capacity(segments.len());
    for segment in segments {
        if let Some(last) = merged.last_mut()
            && last.bytes.is_empty()
            && segment.bytes.is_empty()
            && last.addr + last.mem_len == segment.addr
        {
            last.mem_len += segment.mem_len;
            last.flags |= segment.flags;
            continue;
        }
        merged.push(segment);
    }
    merged
}

const FILE_HEADER: u64 = 64;
const PROGRAM_HEADER: u64 = 56;

/// The packed ELF: `segments` (sorted by address) and the input's notes.
pub fn write(input: &Input<'_>, segments: &[Segment]) -> Vec<u8> {
    let count = segments.len() + input.notes.len();
    let mut headers = Vec::new();
    let mut body = Vec::new();
    let body_start = FILE_HEADER + PROGRAM_HEADER * count as u64;
    // Offset of the next byte written to `body`, placed so that offset == addr modulo `align`.
    let place = |body: &mut Vec<u8>, addr: u64, align: u64| {
        let mut offset = body_start + body.len() as u64;
        while offset % align != addr % align {
            body.push(0);
            offset += 1;
        }
        offset
    };
    for segment in segments {
        let offset = place(&mut body, segment.addr, LOAD_ALIGN);
        body.extend_from_slice(&segment.bytes);
        headers.push(program_header(
            PT_LOAD,
            segment.flags,
            offset,
            segment.addr,
            segment.bytes.len() as u64,
            segment.mem_len,
            LOAD_ALIGN,
        ));
    }
    for &(bytes, align) in &input.notes {
        let offset = place(&mut body, 0, align);
        body.extend_from_slice(bytes);
        headers.push(program_header(
            PT_NOTE,
            PF_R,
            offset,
            0,
            bytes.len() as u64,
            0,
            align,
        ));
    }

    let mut image = Vec::with_capacity((body_start as usize) + body.len());
    image.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, LE, v1, SysV
    image.extend_from_slice(&[0; 8]);
    image.extend_from_slice(&ET_EXEC.to_le_bytes());
    image.extend_from_slice(&EM_X86_64.to_le_bytes());
    image.extend_from_slice(&1u32.to_le_bytes()); // e_version
    image.extend_from_slice(&input.entry.to_le_bytes());
    image.extend_from_slice(&FILE_HEADER.to_le_bytes()); // e_phoff
    image.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no section headers
    image.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    image.extend_from_slice(&(FILE_HEADER as u16).to_le_bytes());
    image.extend_from_slice(&(PROGRAM_HEADER as u16).to_le_bytes());
    image.extend_from_slice(&(count as u16).to_le_bytes());
    image.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    image.extend_from_slice(&headers.concat());
    image.extend_from_slice(&body);
    image
}

fn program_header(
    kind: u32,
    flags: u32,
    offset: u64,
    addr: u64,
    file_len: u64,
    mem_len: u64,
    align: u64,
) -> Vec<u8> {
    [
        &kind.to_le_bytes()[..],
        &flags.to_le_bytes(),
        &offset.to_le_bytes(),
        &addr.to_le_bytes(), // p_vaddr
        &addr.to_le_bytes(), // p_paddr
        &file_len.to_le_bytes(),
        &mem_len.to_le_bytes(),
        &align.to_le_bytes(),
    ]
    .concat()
}
