//! PVH boot: parse Xen's `hvm_start_info` into a [`BootInfo`].
//!
//! QEMU `-kernel`, Firecracker, Cloud Hypervisor and Xen enter the kernel through its PVH
//! note with `ebx` = the physical address of an `hvm_start_info`
//! (xen/include/public/arch-x86/hvm/start_info.h):
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `magic: u32` | [`PVH_MAGIC`] |
//! | 4 | `version: u32` | memory map fields from version 1 (Xen gives dom0 version 0) |
//! | 8 | `flags: u32` | [`BootInfo::start_flags`] (Xen's `SIF_*`: dom0 or domU) |
//! | 12 | `nr_modules: u32` | ignored (no modules) |
//! | 16 | `modlist_paddr: u64` | ignored |
//! | 24 | `cmdline_paddr: u64` | NUL-terminated; 0 = none |
//! | 32 | `rsdp_paddr: u64` | 0 = no ACPI (Firecracker) |
//! | 40 | `memmap_paddr: u64` | array of `hvm_memmap_table_entry` |
//! | 48 | `memmap_entries: u32` | |
//! | 52 | `reserved: u32` | |
//!
//! A memory map entry is `addr: u64, size: u64, type: u32 (E820), reserved: u32`.

use crate::info::{MAX_CMDLINE, MAX_MEMORY_REGIONS};
use crate::phys::{PhysMemory, le, read_array, read_exact};
use crate::{BootError, BootInfo, MemoryKind, MemoryRegion, Protocol};

/// `hvm_start_info.magic` (`XEN_HVM_START_MAGIC_VALUE`).
pub const PVH_MAGIC: u32 = 0x336E_C578;

/// Size of `hvm_start_info` from version 1 on.
const START_INFO_SIZE: usize = 56;
/// Size of a version-0 `hvm_start_info` (no memory map fields).
const START_INFO_V0_SIZE: usize = 40;
/// Size of one `hvm_memmap_table_entry`.
const MEMMAP_ENTRY_SIZE: usize = 24;
/// The command line is scanned for its NUL in pieces of at most this many bytes, so a
/// short command line near the end of memory needs nothing past it to be readable.
const CMDLINE_CHUNK: usize = 64;

/// Parses the `hvm_start_info` at physical address `start_info`.
///
/// Everything is copied out: the result does not borrow the loader's memory.
///
/// A version-0 `start_info` (what Xen hands its PVH dom0) has no memory map fields: the
/// result then has an empty [`BootInfo::memory_map`], which the caller fills from
/// elsewhere (on Xen, the `XENMEM_memory_map` hypercall: [`crate::xen::fill_memory_map`])
/// or refuses (`PvhNoMemoryMap`). Every later version must carry a non-empty map.
///
/// # Errors
/// - `OutOfBounds` when `start_info`, the memory map, the command line or the RSDP is
///   not readable through `mem`;
/// - `BadPvhMagic`;
/// - `EmptyMemoryMap` (no entries), `TooManyMemoryRegions` (checked before reading),
///   `MemoryRegionOverflow`, `NoUsableMemory`;
/// - `CmdlineTooLong`, `CmdlineNotUtf8`, `CmdlineUnterminated`;
/// - any RSDP error of [`parse_rsdp`](crate::parse_rsdp) when `rsdp_paddr` is not 0 and
///   the RSDP's first 20 bytes are readable through `mem` (when they are not, the
///   address is kept in [`BootInfo::rsdp_unread`] for a later read).
pub fn parse_pvh(mem: &dyn PhysMemory, start_info: u64) -> Result<BootInfo, BootError> {
    const WHAT: &str = "PVH start_info";
    // Magic and version first: a version-0 start_info is only 48 bytes long.
    let head = read_array::<8>(mem, WHAT, start_info)?;
    let magic = le::u32_at::<0, 8>(head);
    if magic != PVH_MAGIC {
        return Err(BootError::BadPvhMagic { found: magic });
    }
    let version = le::u32_at::<4, 8>(head);
    let mut info = BootInfo::empty(Protocol::Pvh);
    let (cmdline_paddr, rsdp_paddr) = if version == 0 {
        let fields = read_array::<START_INFO_V0_SIZE>(mem, WHAT, start_info)?;
        info.start_flags = le::u32_at::<8, START_INFO_V0_SIZE>(fields);
        (
            le::u64_at::<24, START_INFO_V0_SIZE>(fields),
            le::u64_at::<32, START_INFO_V0_SIZE>(fields),
        )
    } else {
        let fields = read_array::<START_INFO_SIZE>(mem, WHAT, start_info)?;
        info.start_flags = le::u32_at::<8, START_INFO_SIZE>(fields);
        let memmap_paddr = le::u64_at::<40, START_INFO_SIZE>(fields);
        let memmap_entries = le::u32_at::<48, START_INFO_SIZE>(fields);
        read_memory_map(mem, &mut info, memmap_paddr, memmap_entries)?;
        (
            le::u64_at::<24, START_INFO_SIZE>(fields),
            le::u64_at::<32, START_INFO_SIZE>(fields),
        )
    };
    if cmdline_paddr != 0 {
        let len = cmdline_length(mem, cmdline_paddr)?;
        info.set_cmdline(read_exact(mem, "command line", cmdline_paddr, len)?)?;
    }
    if rsdp_paddr != 0 {
        if mem.read(rsdp_paddr, crate::rsdp::RSDP_V1_LENGTH).is_none() {
            // Past what `mem` shows (a Xen domU's RSDP is at 0xfc008000, beyond the 1 GiB
            // the kernel's boot tables map): read later, through the kernel's own tables.
            info.rsdp_unread = Some(rsdp_paddr);
        } else {
            info.acpi = Some(crate::rsdp::read_rsdp(mem, rsdp_paddr)?);
        }
    }
    Ok(info)
}

/// Copies the E820-style memory map into `info` and checks it has usable RAM.
fn read_memory_map(
    mem: &dyn PhysMemory,
    info: &mut BootInfo,
    addr: u64,
    entries: u32,
) -> Result<(), BootError> {
    let entries = entries as usize;
    if entries == 0 {
        return Err(BootError::EmptyMemoryMap);
    }
    if entries > MAX_MEMORY_REGIONS {
        return Err(BootError::TooManyMemoryRegions {
            max: MAX_MEMORY_REGIONS,
        });
    }
    let table = read_exact(mem, "PVH memory map", addr, entries * MEMMAP_ENTRY_SIZE)?;
    let (entries, _) = table.as_chunks::<MEMMAP_ENTRY_SIZE>();
    for entry in entries {
        info.push_region(MemoryRegion {
            start: le::u64_at::<0, MEMMAP_ENTRY_SIZE>(entry),
            len: le::u64_at::<8, MEMMAP_ENTRY_SIZE>(entry),
            kind: MemoryKind::from_e820(le::u32_at::<16, MEMMAP_ENTRY_SIZE>(entry)),
        })?;
    }
    info.check_memory_map()
}

/// Finds the length of the NUL-terminated command line at `addr` (at most `MAX_CMDLINE`).
///
/// Reads in chunks that end on `CMDLINE_CHUNK` boundaries; a chunk that is not wholly
/// readable is retried byte by byte, so the scan stops exactly where memory ends.
fn cmdline_length(mem: &dyn PhysMemory, addr: u64) -> Result<usize, BootError> {
    let mut scanned = 0;
    // One byte more than MAX_CMDLINE: a NUL there means the line is too long.
    while scanned <= MAX_CMDLINE {
        let Some(chunk_addr) = addr.checked_add(scanned as u64) else {
            return Err(BootError::CmdlineUnterminated { addr });
        };
        let to_boundary = CMDLINE_CHUNK - (chunk_addr % CMDLINE_CHUNK as u64) as usize;
        let want = to_boundary.min(MAX_CMDLINE + 1 - scanned);
        match mem.read(chunk_addr, want) {
            Some(chunk) if chunk.len() == want => {
                if let Some(nul) = chunk.iter().position(|&byte| byte == 0) {
                    return finish(scanned + nul);
                }
            }
            _ => {
                for offset in 0..want {
                    let byte = chunk_addr
                        .checked_add(offset as u64)
                        .and_then(|at| mem.read(at, 1));
                    match byte {
                        Some([0]) => return finish(scanned + offset),
                        Some([_]) => {}
                        _ if scanned + offset == 0 => {
                            return Err(BootError::OutOfBounds {
                                what: "command line",
                                addr,
                                len: 1,
                            });
                        }
                        _ => return Err(BootError::CmdlineUnterminated { addr }),
                    }
                }
            }
        }
        scanned += want;
    }
    Err(BootError::CmdlineTooLong {
        len: MAX_CMDLINE + 1,
        max: MAX_CMDLINE,
    })
}

/// A NUL found after `len` bytes: accept it unless the line is too long.
fn finish(len: usize) -> Result<usize, BootError> {
    if len > MAX_CMDLINE {
        return Err(BootError::CmdlineTooLong {
            len,
            max: MAX_CMDLINE,
        });
    }
    Ok(len)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rsdp::tests::{fix_checksums, rsdp};
    use crate::{AcpiRoot, SliceMemory};

    /// Physical address of the test image's first byte.
    pub(crate) const BASE: u64 = 0xf_0000;
    pub(crate) const START_INFO: u64 = BASE + 0x1e0;
    const MEMMAP: u64 = BASE + 0x300;
    const CMDLINE: u64 = BASE + 0x600;
    const RSDP: u64 = BASE + 0xe00;
    const IMAGE_SIZE: usize = 0x1000;

    /// A q35-like memory map.
    pub(crate) const REGIONS: [(u64, u64, u32); 5] = [
        (0, 0x9_fc00, 1),
        (0x9_fc00, 0x400, 2),
        (0xf_0000, 0x1_0000, 2),
        (0x10_0000, 0x7ef_0000, 1),
        (0xfeff_c000, 0x4000, 2),
    ];

    /// A fake physical memory image holding a valid `hvm_start_info` (version 1) with a
    /// memory map, a command line and an RSDP, which tests then corrupt.
    pub(crate) struct PvhImage {
        pub(crate) bytes: Vec<u8>,
    }

    impl PvhImage {
        pub(crate) fn new(rsdp_revision: u8) -> Self {
            let mut image = Self {
                bytes: vec![0; IMAGE_SIZE],
            };
            image.put_u32(START_INFO, PVH_MAGIC);
            image.put_u32(START_INFO + 4, 1);
            image.put_u64(START_INFO + 24, CMDLINE);
            image.put_u64(START_INFO + 32, RSDP);
            image.set_regions(&REGIONS);
            image.set_cmdline(b"log=debug app.msg=\"hi there\" -- a b\0");
            let rsdp = rsdp(rsdp_revision, 0x7fe_1000, 0x7fe_2000);
            image.put(RSDP, &rsdp);
            image
        }

        pub(crate) fn mem(&self) -> SliceMemory<'_> {
            SliceMemory {
                base: BASE,
                bytes: &self.bytes,
            }
        }

        pub(crate) fn parse(&self) -> Result<BootInfo, BootError> {
            parse_pvh(&self.mem(), START_INFO)
        }

        fn offset(addr: u64) -> usize {
            (addr - BASE) as usize
        }

        pub(crate) fn put(&mut self, addr: u64, bytes: &[u8]) {
            let at = Self::offset(addr);
            self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        }

        pub(crate) fn put_u32(&mut self, addr: u64, value: u32) {
            self.put(addr, &value.to_le_bytes());
        }

        pub(crate) fn put_u64(&mut self, addr: u64, value: u64) {
            self.put(addr, &value.to_le_bytes());
        }

        pub(crate) fn set_regions(&mut self, regions: &[(u64, u64, u32)]) {
            self.put_u64(START_INFO + 40, MEMMAP);
            self.put_u32(START_INFO + 48, regions.len() as u32);
            for (i, &(start, len, kind)) in regions.iter().enumerate() {
                let entry = MEMMAP + (i * MEMMAP_ENTRY_SIZE) as u64;
                self.put_u64(entry, start);
                self.put_u64(entry + 8, len);
                self.put_u32(entry + 16, kind);
            }
        }

        fn set_cmdline(&mut self, bytes: &[u8]) {
            self.put(CMDLINE, bytes);
        }
    }

    fn expected_regions() -> Vec<MemoryRegion> {
        REGIONS
            .iter()
            .map(|&(start, len, kind)| MemoryRegion {
                start,
                len,
                kind: MemoryKind::from_e820(kind),
            })
            .collect()
    }

    #[test]
    fn valid_start_info_with_rsdp_v0() {
        let info = PvhImage::new(0).parse().unwrap();
        assert_eq!(info.protocol, Protocol::Pvh);
        assert_eq!(info.memory_map(), expected_regions().as_slice());
        assert_eq!(info.cmdline(), "log=debug app.msg=\"hi there\" -- a b");
        assert_eq!(
            info.acpi,
            Some(AcpiRoot {
                revision: 0,
                rsdt: 0x7fe_1000,
                xsdt: None
            })
        );
    }

    #[test]
    fn valid_start_info_with_rsdp_v2() {
        let info = PvhImage::new(2).parse().unwrap();
        assert_eq!(
            info.acpi,
            Some(AcpiRoot {
                revision: 2,
                rsdt: 0x7fe_1000,
                xsdt: Some(0x7fe_2000)
            })
        );
        assert_eq!(info.memory_map().len(), REGIONS.len());
    }

    #[test]
    fn no_cmdline_and_no_acpi() {
        let mut image = PvhImage::new(0);
        image.put_u64(START_INFO + 24, 0);
        image.put_u64(START_INFO + 32, 0);
        let info = image.parse().unwrap();
        assert_eq!(info.cmdline(), "");
        assert_eq!(info.acpi, None);
    }

    #[test]
    fn later_versions_are_accepted() {
        let mut image = PvhImage::new(0);
        image.put_u32(START_INFO + 4, 7);
        assert!(image.parse().is_ok());
    }

    #[test]
    fn bad_magic() {
        let mut image = PvhImage::new(0);
        image.put_u32(START_INFO, 0x1bad_b002);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::BadPvhMagic { found: 0x1bad_b002 }
        );
    }

    #[test]
    fn start_flags_in_both_versions() {
        let mut image = PvhImage::new(0);
        assert_eq!(image.parse().unwrap().start_flags, 0); // libxl's domU
        image.put_u32(START_INFO + 8, 0b11); // Xen's dom0: SIF_PRIVILEGED | SIF_INITDOMAIN
        assert_eq!(image.parse().unwrap().start_flags, 0b11);
        image.put_u32(START_INFO + 4, 0);
        assert_eq!(image.parse().unwrap().start_flags, 0b11);
    }

    #[test]
    fn version_0_has_no_memory_map() {
        let mut image = PvhImage::new(0);
        image.put_u32(START_INFO + 4, 0);
        // The map fields are not read, whatever they hold.
        image.put_u32(START_INFO + 48, u32::MAX);
        let info = image.parse().unwrap();
        assert!(info.memory_map().is_empty());
        assert_eq!(info.cmdline(), "log=debug app.msg=\"hi there\" -- a b");
        assert!(info.acpi.is_some());
    }

    #[test]
    fn start_info_out_of_range() {
        let image = PvhImage::new(0);
        let end = BASE + IMAGE_SIZE as u64;
        assert_eq!(
            parse_pvh(&image.mem(), end - 4).unwrap_err(),
            BootError::OutOfBounds {
                what: "PVH start_info",
                addr: end - 4,
                len: 8
            }
        );
        // Magic and version readable, the rest not.
        let mut bytes = image.bytes.clone();
        let at = IMAGE_SIZE - 16;
        bytes[at..at + 4].copy_from_slice(&PVH_MAGIC.to_le_bytes());
        bytes[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
        let mem = SliceMemory {
            base: BASE,
            bytes: &bytes,
        };
        assert_eq!(
            parse_pvh(&mem, end - 16).unwrap_err(),
            BootError::OutOfBounds {
                what: "PVH start_info",
                addr: end - 16,
                len: 56
            }
        );
    }

    #[test]
    fn memmap_pointer_out_of_range() {
        let mut image = PvhImage::new(0);
        image.put_u64(START_INFO + 40, 0x4000_0000);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::OutOfBounds {
                what: "PVH memory map",
                addr: 0x4000_0000,
                len: 5 * 24
            }
        );
        // Starts inside memory but runs past its end.
        let mut image = PvhImage::new(0);
        let last = BASE + IMAGE_SIZE as u64 - 24;
        image.put_u64(START_INFO + 40, last);
        assert!(matches!(
            image.parse().unwrap_err(),
            BootError::OutOfBounds { what: "PVH memory map", addr, .. } if addr == last
        ));
    }

    #[test]
    fn memmap_entries_huge() {
        let mut image = PvhImage::new(0);
        image.put_u32(START_INFO + 48, u32::MAX);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::TooManyMemoryRegions {
                max: MAX_MEMORY_REGIONS
            }
        );
        image.put_u32(START_INFO + 48, MAX_MEMORY_REGIONS as u32 + 1);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::TooManyMemoryRegions {
                max: MAX_MEMORY_REGIONS
            }
        );
    }

    #[test]
    fn memmap_entries_zero() {
        let mut image = PvhImage::new(0);
        image.put_u32(START_INFO + 48, 0);
        assert_eq!(image.parse().unwrap_err(), BootError::EmptyMemoryMap);
        // Entries that are all empty are no map either.
        image.set_regions(&[(0x1000, 0, 1), (0x2000, 0, 1)]);
        assert_eq!(image.parse().unwrap_err(), BootError::EmptyMemoryMap);
    }

    #[test]
    fn zero_usable_memory() {
        let mut image = PvhImage::new(0);
        image.set_regions(&[
            (0, 0x9_fc00, 2),
            (0x10_0000, 0x100_0000, 3),
            (0x200_0000, 0x1000, 17),
        ]);
        assert_eq!(image.parse().unwrap_err(), BootError::NoUsableMemory);
    }

    #[test]
    fn region_past_the_address_space() {
        let mut image = PvhImage::new(0);
        image.set_regions(&[(0, 0x9_fc00, 1), (u64::MAX - 0xfff, 0x2000, 2)]);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::MemoryRegionOverflow {
                start: u64::MAX - 0xfff,
                len: 0x2000
            }
        );
    }

    #[test]
    fn cmdline_without_nul_before_memory_ends() {
        let mut image = PvhImage::new(0);
        let tail = BASE + IMAGE_SIZE as u64 - 100;
        image.put(tail, &[b'x'; 100]);
        image.put_u64(START_INFO + 24, tail);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::CmdlineUnterminated { addr: tail }
        );
    }

    #[test]
    fn short_cmdline_at_the_end_of_memory() {
        // Only "ok\0" is readable past the pointer: no MAX_CMDLINE-byte read may be needed.
        let mut image = PvhImage::new(0);
        let tail = BASE + IMAGE_SIZE as u64 - 3;
        image.put(tail, b"ok\0");
        image.put_u64(START_INFO + 24, tail);
        assert_eq!(image.parse().unwrap().cmdline(), "ok");
    }

    #[test]
    fn cmdline_where_memory_ends_off_a_chunk_boundary() {
        // Memory ends 30 bytes before a 64-byte boundary, so the chunk holding the command
        // line is not wholly readable: the scan must fall back to single bytes.
        let mut image = PvhImage::new(0);
        let visible = IMAGE_SIZE - 30;
        let at = BASE + visible as u64 - 10;
        image.put(at, b"hello\0");
        image.put_u64(START_INFO + 24, at);
        let mem = SliceMemory {
            base: BASE,
            bytes: &image.bytes[..visible],
        };
        assert_eq!(parse_pvh(&mem, START_INFO).unwrap().cmdline(), "hello");

        image.put(at, b"helloworld");
        let mem = SliceMemory {
            base: BASE,
            bytes: &image.bytes[..visible],
        };
        assert_eq!(
            parse_pvh(&mem, START_INFO).unwrap_err(),
            BootError::CmdlineUnterminated { addr: at }
        );
    }

    #[test]
    fn cmdline_pointer_out_of_range() {
        let mut image = PvhImage::new(0);
        image.put_u64(START_INFO + 24, 0x1234_5678);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::OutOfBounds {
                what: "command line",
                addr: 0x1234_5678,
                len: 1
            }
        );
        image.put_u64(START_INFO + 24, u64::MAX);
        assert!(matches!(
            image.parse().unwrap_err(),
            BootError::OutOfBounds { .. }
        ));
    }

    #[test]
    fn cmdline_too_long() {
        let mut image = PvhImage::new(0);
        image.put(CMDLINE, &[b'a'; MAX_CMDLINE + 10]);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::CmdlineTooLong {
                len: MAX_CMDLINE + 1,
                max: MAX_CMDLINE
            }
        );
        // A NUL right after MAX_CMDLINE + 1 bytes: still too long.
        image.put(CMDLINE + MAX_CMDLINE as u64 + 1, b"\0");
        assert!(matches!(
            image.parse().unwrap_err(),
            BootError::CmdlineTooLong { .. }
        ));
        // Exactly MAX_CMDLINE bytes fit.
        image.put(CMDLINE + MAX_CMDLINE as u64, b"\0");
        assert_eq!(image.parse().unwrap().cmdline().len(), MAX_CMDLINE);
    }

    #[test]
    fn cmdline_not_utf8() {
        let mut image = PvhImage::new(0);
        image.put(CMDLINE, b"log=\xc3\x28\0");
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::CmdlineNotUtf8 { valid_up_to: 4 }
        );
    }

    #[test]
    fn rsdp_bad_checksum() {
        let mut image = PvhImage::new(0);
        image.bytes[PvhImage::offset(RSDP) + 16] ^= 0xff;
        assert!(matches!(
            image.parse().unwrap_err(),
            BootError::BadRsdpChecksum { .. }
        ));

        let mut image = PvhImage::new(2);
        image.bytes[PvhImage::offset(RSDP) + 24] ^= 0x01;
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::BadRsdpExtendedChecksum { sum: 1 }
        );
    }

    #[test]
    fn rsdp_bad_signature() {
        let mut image = PvhImage::new(0);
        let mut bytes = rsdp(0, 1, 0);
        bytes[..8].copy_from_slice(b"RSD PTR?");
        fix_checksums(&mut bytes);
        image.put(RSDP, &bytes);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::BadRsdpSignature {
                found: *b"RSD PTR?"
            }
        );
    }

    #[test]
    fn rsdp_out_of_range_is_kept_for_later() {
        let mut image = PvhImage::new(0);
        image.put_u64(START_INFO + 32, 0xfc00_8000);
        let info = image.parse().unwrap();
        assert_eq!(info.acpi, None);
        assert_eq!(info.rsdp_unread, Some(0xfc00_8000));
    }

    #[test]
    fn rsdp_cut_short_is_an_error() {
        let mut image = PvhImage::new(2);
        let end = BASE + IMAGE_SIZE as u64;
        // The 20 bytes of revision 0 readable, the 36 of revision 2 not.
        let at = end - 24;
        let bytes = rsdp(2, 0x7fe_1000, 0x7fe_2000);
        image.put(at, &bytes[..24]);
        image.put_u64(START_INFO + 32, at);
        assert_eq!(
            image.parse().unwrap_err(),
            BootError::OutOfBounds {
                what: "ACPI RSDP",
                addr: at,
                len: 36
            }
        );
    }
}
