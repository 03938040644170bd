//! Multiboot2 boot: parse GRUB's boot information (MBI) into a [`BootInfo`].
//!
//! GRUB (and other multiboot2 loaders) enter with `eax` = [`MULTIBOOT2_MAGIC`] and
//! `ebx` = the physical address of the MBI: `total_size: u32, reserved: u32`, then
//! 8-byte-aligned tags `type: u32, size: u32, ...` ending with an end tag (type 0,
//! size 8). We bound `total_size` ourselves and hand exactly those bytes to the
//! `multiboot2` crate, which validates the tag chain. The tags are then read here, each
//! through checked slices: the crate's own iterator and casts unwrap and assert (sound
//! after its validation, but they link `Debug` formatting of its error types, about
//! 2 KiB of the image, for panics that cannot happen).
//!
//! Tags used: command line (1, optional), memory map (6, required, E820 types), ACPI new
//! RSDP (15) and old RSDP (14), both optional; the new one wins when both are present.
//! They carry a copy of the RSDP, validated by [`parse_rsdp`]. For each type only the
//! first tag counts. This is the only module besides `entry` allowed `unsafe` code: one
//! block, the call to `BootInformation::load`.

use ::multiboot2::{BootInformation, BootInformationHeader, LoadError, TagType};
use multiboot2_common::MemoryError;

use crate::phys::{PhysMemory, le, read_array, read_exact};
use crate::rsdp::{parse_rsdp, parse_v1};
use crate::{BootError, BootInfo, MemoryKind, MemoryRegion, Protocol};

/// The value a multiboot2 loader leaves in `eax`.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// Smallest valid MBI: the 8-byte header and the 8-byte end tag.
pub const MULTIBOOT2_MIN_SIZE: u32 = 16;
/// Largest MBI accepted. GRUB's are a few KiB (more with a framebuffer palette or EFI
/// memory map); anything larger is taken for corruption.
pub const MULTIBOOT2_MAX_SIZE: u32 = 1 << 20;

/// Size of the memory map tag before its entries (header, `entry_size`, `entry_version`).
const MMAP_TAG_HEADER: u32 = 16;
/// The only memory map entry size understood (`base_addr`, `length`, `type`, reserved).
const MMAP_ENTRY_SIZE: u32 = 24;

/// `BootError::Multiboot2` reasons, one per `multiboot2` crate error.
pub mod reason {
    /// The MBI is not 8-byte aligned in the memory it was read from.
    pub const MISALIGNED: &str = "it is not 8-byte aligned in memory";
    /// `total_size` is not a multiple of 8.
    pub const SIZE_NOT_PADDED: &str = "total_size is not a multiple of 8";
    /// A tag header (8 bytes) does not fit before `total_size`.
    pub const TAG_HEADER_PAST_END: &str = "a tag header runs past total_size";
    /// A tag's `size` is below its own 8-byte header.
    pub const TAG_TOO_SMALL: &str = "a tag's size is smaller than the 8-byte tag header";
    /// A tag's `size` runs past `total_size`, or the end tag is followed by more bytes.
    pub const TAG_PAST_END: &str =
        "a tag's size runs past total_size, or bytes follow the end tag within total_size";
    /// A null pointer (cannot happen through `PhysMemory`).
    pub const NULL: &str = "it is at a null pointer";
}

/// Parses the multiboot2 boot information at physical address `info`, given the `magic`
/// the loader left in `eax`.
///
/// Everything is copied out: the result does not borrow the loader's memory.
///
/// # Errors
/// - `BadMultiboot2Magic`, `MisalignedMultiboot2`;
/// - `Multiboot2TooSmall`, `Multiboot2TooLarge`, `OutOfBounds` for `total_size`;
/// - `Multiboot2 { reason }` (see [`reason`]) and `Multiboot2NoEndTag` for a malformed tag
///   sequence;
/// - `Multiboot2NoMemoryMap`, `Multiboot2BadTagSize`, `Multiboot2BadMemoryMapEntrySize`,
///   and the memory map errors (`TooManyMemoryRegions`, `MemoryRegionOverflow`,
///   `EmptyMemoryMap`, `NoUsableMemory`);
/// - `CmdlineUnterminated`, `CmdlineNotUtf8`, `CmdlineTooLong`;
/// - any error of [`parse_rsdp`] for the RSDP copy in an ACPI tag.
pub fn parse_multiboot2(
    mem: &dyn PhysMemory,
    magic: u32,
    info: u64,
) -> Result<BootInfo, BootError> {
    const WHAT: &str = "multiboot2 boot information";
    if magic != MULTIBOOT2_MAGIC {
        return Err(BootError::BadMultiboot2Magic { found: magic });
    }
    if !info.is_multiple_of(8) {
        return Err(BootError::MisalignedMultiboot2 { addr: info });
    }
    let header = read_array::<8>(mem, WHAT, info)?;
    let size = le::u32_at::<0, 8>(header);
    if size < MULTIBOOT2_MIN_SIZE {
        return Err(BootError::Multiboot2TooSmall {
            size,
            min: MULTIBOOT2_MIN_SIZE,
        });
    }
    if size > MULTIBOOT2_MAX_SIZE {
        return Err(BootError::Multiboot2TooLarge {
            size,
            max: MULTIBOOT2_MAX_SIZE,
        });
    }
    let bytes = read_exact(mem, WHAT, info, size as usize)?;
    load(bytes).map_err(map_load_error)?;

    let mut out = BootInfo::empty(Protocol::Multiboot2);
    let mut memory_map_seen = false;
    let mut cmdline_seen = false;
    let mut rsdp_old = None;
    let mut rsdp_new = None;
    for Tag {
        typ,
        size,
        offset,
        payload,
    } in tags(bytes)
    {
        if typ == TagType::Cmdline.val() && !cmdline_seen {
            cmdline_seen = true;
            // Address of the string, for the error message.
            let addr = info + offset as u64 + 8;
            let line = core::ffi::CStr::from_bytes_until_nul(payload)
                .map_err(|_| BootError::CmdlineUnterminated { addr })?;
            match line.to_str() {
                Ok(line) => out.set_cmdline(line.as_bytes())?,
                Err(error) => {
                    return Err(BootError::CmdlineNotUtf8 {
                        valid_up_to: error.valid_up_to(),
                    });
                }
            }
        } else if typ == TagType::Mmap.val() && !memory_map_seen {
            memory_map_seen = true;
            // entry_size and entry_version follow the tag header.
            let entry_size = match payload.first_chunk::<8>() {
                Some(fields) if size >= MMAP_TAG_HEADER => le::u32_at::<0, 8>(fields),
                _ => return Err(BootError::Multiboot2BadTagSize { tag: typ, size }),
            };
            if entry_size != MMAP_ENTRY_SIZE {
                return Err(BootError::Multiboot2BadMemoryMapEntrySize { entry_size });
            }
            if !(size - MMAP_TAG_HEADER).is_multiple_of(MMAP_ENTRY_SIZE) {
                return Err(BootError::Multiboot2BadTagSize { tag: typ, size });
            }
            // So the payload after those 8 bytes is whole entries: base u64, length u64,
            // type u32 (E820 numbering), reserved u32.
            let entries = payload
                .get(8..)
                .unwrap_or_default()
                .chunks_exact(MMAP_ENTRY_SIZE as usize);
            for entry in entries.filter_map(|entry| entry.first_chunk::<20>()) {
                out.push_region(MemoryRegion {
                    start: le::u64_at::<0, 20>(entry),
                    len: le::u64_at::<8, 20>(entry),
                    kind: MemoryKind::from_e820(le::u32_at::<16, 20>(entry)),
                })?;
            }
        } else if typ == TagType::AcpiV1.val() && rsdp_old.is_none() {
            rsdp_old = Some(payload);
        } else if typ == TagType::AcpiV2.val() && rsdp_new.is_none() {
            rsdp_new = Some(payload);
        }
    }
    if !memory_map_seen {
        return Err(BootError::Multiboot2NoMemoryMap);
    }
    out.check_memory_map()?;
    out.acpi = match (rsdp_new, rsdp_old) {
        (Some(copy), _) => Some(parse_rsdp(copy)?),
        // The old tag holds only the 20-byte ACPI 1.0 part, whatever the revision says.
        (None, Some(copy)) => Some(parse_v1(copy)?),
        (None, None) => None,
    };
    Ok(out)
}

/// Hands `bytes` to the `multiboot2` crate, which validates the header and tag chain.
#[allow(unsafe_code)]
fn load(bytes: &[u8]) -> Result<BootInformation<'_>, LoadError> {
    // SAFETY: `load` needs `ptr` readable for the whole reported total size and unchanged
    // while the result lives. `bytes` is a shared slice, so it is readable for
    // `bytes.len()` bytes and immutable while borrowed; the result borrows `bytes` (see
    // the signature). `bytes.len()` is the `total_size` read from the same header (the
    // caller reads exactly that many), and the crate checks alignment and re-checks the
    // size itself.
    unsafe { BootInformation::load(bytes.as_ptr().cast::<BootInformationHeader>()) }
}

/// Maps a `multiboot2` crate error to a `BootError`.
fn map_load_error(error: LoadError) -> BootError {
    let reason = match error {
        LoadError::NoEndTag => return BootError::Multiboot2NoEndTag,
        LoadError::Memory(MemoryError::Null) => reason::NULL,
        LoadError::Memory(MemoryError::WrongAlignment) => reason::MISALIGNED,
        LoadError::Memory(MemoryError::ShorterThanHeader) => reason::TAG_HEADER_PAST_END,
        LoadError::Memory(MemoryError::SizeInsufficient(..)) => reason::TAG_TOO_SMALL,
        LoadError::Memory(MemoryError::MissingPadding) => reason::SIZE_NOT_PADDED,
        LoadError::Memory(MemoryError::InvalidReportedTotalSize(..)) => reason::TAG_PAST_END,
    };
    BootError::Multiboot2 { reason }
}

/// One tag of the MBI.
struct Tag<'a> {
    typ: u32,
    /// The tag's `size` field: header (8 bytes) and payload.
    size: u32,
    /// Where the tag starts in the MBI.
    offset: usize,
    payload: &'a [u8],
}

/// The tags of an MBI that `load` accepted, up to the end tag: each starts 8-byte
/// aligned after the one before. `load` checked that every tag fits in `bytes` and that
/// an end tag closes the chain; the walk still stops, rather than panics, at a tag
/// that would not fit.
fn tags(bytes: &[u8]) -> impl Iterator<Item = Tag<'_>> {
    let mut offset = 8;
    core::iter::from_fn(move || {
        let header = bytes.get(offset..)?.first_chunk::<8>()?;
        let (typ, size) = (le::u32_at::<0, 8>(header), le::u32_at::<4, 8>(header));
        let payload = bytes.get(offset.checked_add(8)?..offset.checked_add(size as usize)?)?;
        if typ == TagType::End.val() {
            return None;
        }
        let tag = Tag {
            typ,
            size,
            offset,
            payload,
        };
        offset = offset.checked_add((size as usize).next_multiple_of(8))?;
        Some(tag)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rsdp::tests::rsdp;
    use crate::{AcpiRoot, SliceMemory};

    /// Physical address of the test images' first byte (8-aligned).
    pub(crate) const BASE: u64 = 0x1_0000;
    /// Where the MBI sits in the image.
    pub(crate) const MBI: u64 = BASE + 0x100;

    /// A byte buffer whose contents start 8-aligned in host memory, as the crate requires.
    pub(crate) struct Aligned {
        storage: Vec<u8>,
        start: usize,
        len: usize,
    }

    impl Aligned {
        pub(crate) fn new(bytes: &[u8]) -> Self {
            let mut storage = vec![0u8; bytes.len() + 8];
            let start = storage.as_ptr().align_offset(8);
            storage[start..start + bytes.len()].copy_from_slice(bytes);
            Self {
                storage,
                start,
                len: bytes.len(),
            }
        }

        pub(crate) fn bytes(&self) -> &[u8] {
            &self.storage[self.start..self.start + self.len]
        }
    }

    /// A tag: type, payload, and optionally a `size` field that lies.
    #[derive(Clone)]
    pub(crate) struct RawTag {
        pub(crate) typ: u32,
        pub(crate) payload: Vec<u8>,
        pub(crate) size: Option<u32>,
    }

    pub(crate) fn tag(typ: u32, payload: &[u8]) -> RawTag {
        RawTag {
            typ,
            payload: payload.to_vec(),
            size: None,
        }
    }

    pub(crate) fn cmdline_tag(line: &[u8]) -> RawTag {
        tag(1, line)
    }

    pub(crate) fn mmap_tag(regions: &[(u64, u64, u32)]) -> RawTag {
        let mut payload = Vec::new();
        payload.extend_from_slice(&24u32.to_le_bytes());
        payload.extend_from_slice(&0u32.to_le_bytes());
        for &(start, len, kind) in regions {
            payload.extend_from_slice(&start.to_le_bytes());
            payload.extend_from_slice(&len.to_le_bytes());
            payload.extend_from_slice(&kind.to_le_bytes());
            payload.extend_from_slice(&0u32.to_le_bytes());
        }
        tag(6, &payload)
    }

    pub(crate) fn end_tag() -> RawTag {
        tag(0, &[])
    }

    /// Lays out an MBI: header, then each tag padded to 8 bytes. `total_size` is the
    /// real size unless `total_size` is given.
    pub(crate) fn mbi(tags: &[RawTag], total_size: Option<u32>) -> Vec<u8> {
        let mut bytes = vec![0u8; 8];
        for tag in tags {
            let size = tag.size.unwrap_or(8 + tag.payload.len() as u32);
            bytes.extend_from_slice(&tag.typ.to_le_bytes());
            bytes.extend_from_slice(&size.to_le_bytes());
            bytes.extend_from_slice(&tag.payload);
            bytes.resize(bytes.len().next_multiple_of(8), 0);
        }
        let total = total_size.unwrap_or(bytes.len() as u32);
        bytes[..4].copy_from_slice(&total.to_le_bytes());
        bytes
    }

    /// A q35-like memory map.
    pub(crate) const REGIONS: [(u64, u64, u32); 4] = [
        (0, 0x9_fc00, 1),
        (0x9_fc00, 0x400, 2),
        (0x10_0000, 0x7ef_0000, 1),
        (0x7ff_0000, 0x1_0000, 3),
    ];

    /// The tags of a valid MBI as GRUB would pass it on a machine with ACPI 2.0.
    pub(crate) fn valid_tags() -> Vec<RawTag> {
        vec![
            cmdline_tag(b"log=trace -- x\0"),
            tag(2, b"GRUB 2.06\0"), // boot loader name: ignored
            mmap_tag(&REGIONS),
            tag(14, &rsdp(0, 0x7fe_0000, 0)),
            tag(15, &rsdp(2, 0x7fe_1000, 0x7fe_2000)),
            end_tag(),
        ]
    }

    /// A memory image of `mbi` at `MBI`, with `slack` readable bytes after it.
    pub(crate) fn image(mbi: &[u8], slack: usize) -> Aligned {
        let mut bytes = vec![0u8; (MBI - BASE) as usize];
        bytes.extend_from_slice(mbi);
        bytes.resize(bytes.len() + slack, 0);
        Aligned::new(&bytes)
    }

    pub(crate) fn parse_image(image: &Aligned) -> Result<BootInfo, BootError> {
        parse_multiboot2(
            &SliceMemory {
                base: BASE,
                bytes: image.bytes(),
            },
            MULTIBOOT2_MAGIC,
            MBI,
        )
    }

    fn parse_tags(tags: &[RawTag]) -> Result<BootInfo, BootError> {
        parse_image(&image(&mbi(tags, None), 64))
    }

    fn without(typ: u32) -> Vec<RawTag> {
        valid_tags()
            .into_iter()
            .filter(|tag| tag.typ != typ)
            .collect()
    }

    #[test]
    fn magic_matches_the_crate() {
        assert_eq!(MULTIBOOT2_MAGIC, ::multiboot2::MAGIC);
    }

    #[test]
    fn valid_mbi_prefers_the_new_rsdp() {
        let info = parse_tags(&valid_tags()).unwrap();
        assert_eq!(info.protocol, Protocol::Multiboot2);
        assert_eq!(info.cmdline(), "log=trace -- x");
        let expected: Vec<MemoryRegion> = REGIONS
            .iter()
            .map(|&(start, len, kind)| MemoryRegion {
                start,
                len,
                kind: MemoryKind::from_e820(kind),
            })
            .collect();
        assert_eq!(info.memory_map(), expected.as_slice());
        assert_eq!(info.memory_map()[3].kind, MemoryKind::AcpiReclaimable);
        assert_eq!(
            info.acpi,
            Some(AcpiRoot {
                revision: 2,
                rsdt: 0x7fe_1000,
                xsdt: Some(0x7fe_2000)
            })
        );
    }

    #[test]
    fn old_rsdp_alone() {
        let info = parse_tags(&without(15)).unwrap();
        assert_eq!(
            info.acpi,
            Some(AcpiRoot {
                revision: 0,
                rsdt: 0x7fe_0000,
                xsdt: None
            })
        );
    }

    #[test]
    fn old_rsdp_tag_with_a_revision_2_rsdp_prefix() {
        // Some loaders copy only the first 20 bytes of an ACPI 2.0 RSDP into tag 14.
        let mut tags = without(15);
        tags[3] = tag(14, &rsdp(2, 0x7fe_1000, 0x7fe_2000)[..20]);
        let info = parse_tags(&tags).unwrap();
        assert_eq!(
            info.acpi,
            Some(AcpiRoot {
                revision: 2,
                rsdt: 0x7fe_1000,
                xsdt: None
            })
        );
    }

    #[test]
    fn no_acpi_no_cmdline() {
        let tags: Vec<RawTag> = valid_tags()
            .into_iter()
            .filter(|tag| ![1, 14, 15].contains(&tag.typ))
            .collect();
        let info = parse_tags(&tags).unwrap();
        assert_eq!(info.acpi, None);
        assert_eq!(info.cmdline(), "");
    }

    #[test]
    fn unknown_tags_are_skipped() {
        let mut tags = valid_tags();
        tags.insert(1, tag(0x1337, &[0xff; 13]));
        assert!(parse_tags(&tags).is_ok());
    }

    #[test]
    fn wrong_magic() {
        let image = image(&mbi(&valid_tags(), None), 0);
        let mem = SliceMemory {
            base: BASE,
            bytes: image.bytes(),
        };
        assert_eq!(
            parse_multiboot2(&mem, 0x2bad_b002, MBI).unwrap_err(),
            BootError::BadMultiboot2Magic { found: 0x2bad_b002 }
        );
    }

    #[test]
    fn misaligned_address() {
        let image = image(&mbi(&valid_tags(), None), 0);
        let mem = SliceMemory {
            base: BASE,
            bytes: image.bytes(),
        };
        assert_eq!(
            parse_multiboot2(&mem, MULTIBOOT2_MAGIC, MBI + 4).unwrap_err(),
            BootError::MisalignedMultiboot2 { addr: MBI + 4 }
        );
    }

    #[test]
    fn misaligned_in_host_memory_is_caught_by_the_crate() {
        // Physically aligned, but the memory behind it is not: a broken PhysMemory.
        let bytes = mbi(&valid_tags(), None);
        let mut shifted = vec![0u8; 4];
        shifted.extend_from_slice(&bytes);
        let holder = Aligned::new(&shifted);
        let mem = SliceMemory {
            base: MBI - 4,
            bytes: holder.bytes(),
        };
        assert_eq!(
            parse_multiboot2(&mem, MULTIBOOT2_MAGIC, MBI).unwrap_err(),
            BootError::Multiboot2 {
                reason: reason::MISALIGNED
            }
        );
    }

    #[test]
    fn info_out_of_range() {
        let image = image(&mbi(&valid_tags(), None), 0);
        let mem = SliceMemory {
            base: BASE,
            bytes: image.bytes(),
        };
        assert_eq!(
            parse_multiboot2(&mem, MULTIBOOT2_MAGIC, 0x800_0000).unwrap_err(),
            BootError::OutOfBounds {
                what: "multiboot2 boot information",
                addr: 0x800_0000,
                len: 8
            }
        );
    }

    #[test]
    fn total_size_too_small() {
        for size in [0, 8, 15] {
            assert_eq!(
                parse_image(&image(&mbi(&valid_tags(), Some(size)), 0)).unwrap_err(),
                BootError::Multiboot2TooSmall { size, min: 16 }
            );
        }
    }

    #[test]
    fn total_size_too_large() {
        let size = MULTIBOOT2_MAX_SIZE + 8;
        assert_eq!(
            parse_image(&image(&mbi(&valid_tags(), Some(size)), 0)).unwrap_err(),
            BootError::Multiboot2TooLarge {
                size,
                max: MULTIBOOT2_MAX_SIZE
            }
        );
    }

    #[test]
    fn total_size_past_memory() {
        let bytes = mbi(&valid_tags(), None);
        let size = bytes.len() as u32 + 64;
        let image = image(&mbi(&valid_tags(), Some(size)), 32);
        assert_eq!(
            parse_image(&image).unwrap_err(),
            BootError::OutOfBounds {
                what: "multiboot2 boot information",
                addr: MBI,
                len: u64::from(size)
            }
        );
    }

    #[test]
    fn total_size_not_a_multiple_of_8() {
        let bytes = mbi(&valid_tags(), None);
        let image = image(&mbi(&valid_tags(), Some(bytes.len() as u32 + 4)), 64);
        assert_eq!(
            parse_image(&image).unwrap_err(),
            BootError::Multiboot2 {
                reason: reason::SIZE_NOT_PADDED
            }
        );
    }

    #[test]
    fn tag_running_past_the_end() {
        let mut tags = valid_tags();
        tags[2].size = Some(0x1_0000);
        assert_eq!(
            parse_tags(&tags).unwrap_err(),
            BootError::Multiboot2 {
                reason: reason::TAG_PAST_END
            }
        );
    }

    #[test]
    fn tag_smaller_than_its_header() {
        let mut tags = valid_tags();
        tags[1].size = Some(4);
        assert_eq!(
            parse_tags(&tags).unwrap_err(),
            BootError::Multiboot2 {
                reason: reason::TAG_TOO_SMALL
            }
        );
    }

    #[test]
    fn missing_end_tag() {
        assert_eq!(
            parse_tags(&without(0)).unwrap_err(),
            BootError::Multiboot2NoEndTag
        );
    }

    #[test]
    fn bytes_after_the_end_tag() {
        let bytes = mbi(&valid_tags(), None);
        let image = image(&mbi(&valid_tags(), Some(bytes.len() as u32 + 16)), 64);
        assert_eq!(
            parse_image(&image).unwrap_err(),
            BootError::Multiboot2 {
                reason: reason::TAG_PAST_END
            }
        );
    }

    #[test]
    fn missing_memory_map() {
        assert_eq!(
            parse_tags(&without(6)).unwrap_err(),
            BootError::Multiboot2NoMemoryMap
        );
    }

    #[test]
    fn memory_map_with_odd_entries() {
        let mut tags = valid_tags();
        tags[2].payload[..4].copy_from_slice(&20u32.to_le_bytes());
        assert_eq!(
            parse_tags(&tags).unwrap_err(),
            BootError::Multiboot2BadMemoryMapEntrySize { entry_size: 20 }
        );

        // A size that is not 16 + n * 24.
        let mut tags = valid_tags();
        tags[2].payload.truncate(8 + 24 + 8);
        assert_eq!(
            parse_tags(&tags).unwrap_err(),
            BootError::Multiboot2BadTagSize {
                tag: 6,
                size: 8 + 8 + 24 + 8
            }
        );

        // Too short for entry_size and entry_version.
        let mut tags = valid_tags();
        tags[2].payload.truncate(4);
        assert_eq!(
            parse_tags(&tags).unwrap_err(),
            BootError::Multiboot2BadTagSize { tag: 6, size: 12 }
        );
    }

    #[test]
    fn memory_map_without_usable_ram() {
        let mut tags = valid_tags();
        tags[2] = mmap_tag(&[(0, 0x9_fc00, 2), (0x10_0000, 0x1000, 5)]);
        assert_eq!(parse_tags(&tags).unwrap_err(), BootError::NoUsableMemory);
        tags[2] = mmap_tag(&[]);
        assert_eq!(parse_tags(&tags).unwrap_err(), BootError::EmptyMemoryMap);
    }

    #[test]
    fn bad_rsdp_in_the_tags() {
        let mut tags = valid_tags();
        tags[4].payload[24] ^= 0x80; // XSDT address, under the extended checksum
        assert_eq!(
            parse_tags(&tags).unwrap_err(),
            BootError::BadRsdpExtendedChecksum { sum: 0x80 }
        );

        let mut tags = without(15);
        tags[3].payload[0] = b'r';
        assert!(matches!(
            parse_tags(&tags).unwrap_err(),
            BootError::BadRsdpSignature { .. }
        ));

        let mut tags = without(15);
        tags[3].payload.truncate(12);
        assert_eq!(
            parse_tags(&tags).unwrap_err(),
            BootError::RsdpTruncated {
                len: 12,
                needed: 20
            }
        );
    }

    #[test]
    fn bad_cmdline_tags() {
        let mut tags = valid_tags();
        tags[0] = cmdline_tag(b"no terminator");
        // The cmdline tag is the first one: the string starts after the MBI header and the
        // tag header.
        assert_eq!(
            parse_tags(&tags).unwrap_err(),
            BootError::CmdlineUnterminated { addr: MBI + 16 }
        );
        tags[0] = cmdline_tag(b"ok\xff\0");
        assert_eq!(
            parse_tags(&tags).unwrap_err(),
            BootError::CmdlineNotUtf8 { valid_up_to: 2 }
        );
        let mut long = vec![b'a'; crate::MAX_CMDLINE + 1];
        long.push(0);
        tags[0] = cmdline_tag(&long);
        assert!(matches!(
            parse_tags(&tags).unwrap_err(),
            BootError::CmdlineTooLong { .. }
        ));
    }
}
