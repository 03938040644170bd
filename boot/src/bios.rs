//! The BIOS areas: one scan for the ACPI RSDP and the MP floating pointer, and the MP
//! configuration table it leads to.
//!
//! A loader that passes no RSDP (Firecracker's PVH start info) still leaves the firmware
//! structures where BIOS-era software looks for them, on 16-byte boundaries: the RSDP in
//! the first KiB of the EBDA or in 0xe0000-0xfffff (ACPI 6.5, 5.2.5.1), the MP floating
//! pointer in the first KiB of the EBDA, the last KiB of base memory or 0xf0000-0xfffff
//! (Intel MP spec 1.4, 4.1). [`scan_bios_areas`] walks the union of those areas once and
//! picks up both. The MP configuration table (chapter 4) lists the CPUs where there is no
//! MADT (Firecracker, QEMU microvm with `acpi=off`).
//!
//! Everything is read through [`PhysMemory`] and bounded; a candidate that fails its
//! checksum is skipped, as firmware-writing software expects.

use crate::acpi::{u16_at, u32_at};
use crate::phys::{PhysMemory, read_exact};
use crate::rsdp::{RSDP_SIGNATURE, checksum, parse_rsdp};
use crate::{AcpiRoot, BootError};

/// Where the BIOS data area keeps the EBDA's segment (a `u16`).
pub const EBDA_SEGMENT_POINTER: u64 = 0x40e;
/// The last KiB of 640 KiB base memory, where the EBDA usually is.
const BASE_MEMORY_LAST_KIB: u64 = 0x9fc00;
/// The BIOS read-only area searched for the RSDP (and, from 0xf0000, the MP pointer).
const BIOS_AREA: (u64, u64) = (0xe0000, 0x20000);
/// Areas are read a page at a time, so a hole in one does not hide the rest.
const PIECE: u64 = 4096;

/// The EBDA's address from the BIOS data area; `None` when the word there is not a
/// plausible EBDA (below 512 KiB or at 640 KiB and above, as in a VM without a BIOS,
/// where it is 0).
///
/// Read it through the loader's identity map before the kernel unmaps page 0.
pub fn ebda_address(mem: &dyn PhysMemory) -> Option<u64> {
    let address = u64::from(u16_at(mem.read(EBDA_SEGMENT_POINTER, 2)?, 0)?) << 4;
    (0x80000..0xa0000).contains(&address).then_some(address)
}

/// What [`scan_bios_areas`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BiosPointers {
    /// The first valid RSDP.
    pub rsdp: Option<AcpiRoot>,
    /// The MP configuration table's address, from the first valid MP floating pointer.
    pub mp_table: Option<u64>,
}

/// Scans the first KiB of the EBDA (`ebda`, from [`ebda_address`]), the last KiB of base
/// memory and 0xe0000-0xfffff once, on 16-byte boundaries, for a valid RSDP and a valid
/// MP floating pointer, stopping when it has both.
pub fn scan_bios_areas(mem: &dyn PhysMemory, ebda: Option<u64>) -> BiosPointers {
    let mut found = BiosPointers::default();
    let base_memory = Some(BASE_MEMORY_LAST_KIB).filter(|start| Some(*start) != ebda);
    let areas = [
        ebda.map(|start| (start, 1024)),
        base_memory.map(|start| (start, 1024)),
        Some(BIOS_AREA),
    ];
    for (start, len) in areas.into_iter().flatten() {
        let mut piece = start;
        while piece < start + len {
            let piece_len = PIECE.min(start + len - piece);
            if let Some(bytes) = mem.read(piece, piece_len as usize) {
                scan(bytes, &mut found);
            }
            if found.rsdp.is_some() && found.mp_table.is_some() {
                return found;
            }
            piece += piece_len;
        }
    }
    found
}

/// Looks at every 16-byte boundary of `bytes` (which starts on one).
fn scan(bytes: &[u8], found: &mut BiosPointers) {
    for offset in (0..bytes.len()).step_by(16) {
        let candidate = &bytes[offset..];
        if found.rsdp.is_none() && candidate.starts_with(&RSDP_SIGNATURE) {
            found.rsdp = parse_rsdp(candidate).ok();
        }
        if found.mp_table.is_none() && candidate.starts_with(b"_MP_") {
            found.mp_table = mp_floating_pointer(candidate);
        }
    }
}

/// The configuration table address of the MP floating pointer at the start of `bytes`,
/// if its 16 bytes sum to 0 and the address is not 0.
fn mp_floating_pointer(bytes: &[u8]) -> Option<u64> {
    let pointer = bytes.get(..16)?;
    if checksum(pointer) != 0 {
        return None;
    }
    u32_at(pointer, 4)
        .filter(|address| *address != 0)
        .map(u64::from)
}

/// The MP configuration table's signature.
const MP_SIGNATURE: &[u8; 4] = b"PCMP";
/// Size of the MP configuration table header (MP spec 1.4, table 4-2).
const MP_HEADER_LENGTH: usize = 44;

/// An MP configuration table (MP spec 1.4, chapter 4), validated by [`read_mp_table`].
#[derive(Debug, Clone, Copy)]
pub struct MpTable<'m>(&'m [u8]);

/// Reads the MP configuration table at `addr` and checks its signature (`PCMP`), base
/// table length (at least its 44-byte header) and checksum.
///
/// # Errors
/// `OutOfBounds`, `TableSignature`, `TableLength`, `TableChecksum` (signature `PCMP`).
pub fn read_mp_table(mem: &dyn PhysMemory, addr: u64) -> Result<MpTable<'_>, BootError> {
    const WHAT: &str = "MP configuration table";
    let header = read_exact(mem, WHAT, addr, MP_HEADER_LENGTH)?;
    let found: [u8; 4] = [header[0], header[1], header[2], header[3]];
    if &found != MP_SIGNATURE {
        return Err(BootError::TableSignature {
            expected: *MP_SIGNATURE,
            found,
            addr,
        });
    }
    let length = u16_at(header, 4).unwrap_or(0);
    if usize::from(length) < MP_HEADER_LENGTH {
        return Err(BootError::TableLength {
            signature: *MP_SIGNATURE,
            addr,
            length: u32::from(length),
        });
    }
    let table = read_exact(mem, WHAT, addr, usize::from(length))?;
    let sum = checksum(table);
    if sum != 0 {
        return Err(BootError::TableChecksum {
            signature: *MP_SIGNATURE,
            addr,
            sum,
        });
    }
    Ok(MpTable(table))
}

impl<'m> MpTable<'m> {
    /// The local APIC ids of the enabled processors.
    ///
    /// Walks the entries to the end of the base table rather than trusting the entry
    /// count (QEMU microvm's firmware writes 0 there), and stops at an unknown entry type,
    /// whose length the spec does not give, or at an entry cut off by the table's end.
    pub fn processors(self) -> impl Iterator<Item = u32> + 'm {
        let table = self.0;
        let mut offset = MP_HEADER_LENGTH;
        core::iter::from_fn(move || {
            // Processor entries are 20 bytes; bus, I/O APIC and interrupt entries 8 (MP
            // spec table 4-3).
            let length = match *table.get(offset)? {
                0 => 20,
                1..=4 => 8,
                _ => return None,
            };
            let entry = table.get(offset..offset + length)?;
            offset += length;
            Some((entry[0] == 0 && entry[3] & 1 != 0).then(|| u32::from(entry[1])))
        })
        .flatten()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::acpi::tests::{Pieces, RSDT, XSDT};
    use crate::rsdp::tests::rsdp;

    pub(crate) const MP_TABLE: u64 = 0x9fc40;

    /// An MP floating pointer to `table`.
    pub(crate) fn mp_pointer(table: u32) -> Vec<u8> {
        let mut pointer = vec![0u8; 16];
        pointer[..4].copy_from_slice(b"_MP_");
        pointer[4..8].copy_from_slice(&table.to_le_bytes());
        pointer[8] = 1;
        pointer[9] = 4;
        pointer[10] = checksum(&pointer).wrapping_neg();
        pointer
    }

    /// An MP table with processors 0 (enabled), 1 (disabled), 2 (enabled), a bus and an
    /// I/O APIC entry.
    pub(crate) fn mp_table() -> Vec<u8> {
        let mut table = vec![0u8; MP_HEADER_LENGTH];
        table[..4].copy_from_slice(b"PCMP");
        table[6] = 4;
        let processor = |id: u8, enabled: bool| {
            let mut entry = vec![0u8; 20];
            entry[1] = id;
            entry[3] = u8::from(enabled) | if id == 0 { 2 } else { 0 };
            entry
        };
        table.extend(processor(0, true));
        table.extend(processor(1, false));
        table.extend(processor(2, true));
        table.extend([1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
        table.extend([2, 3, 0x11, 1, 0, 0, 0xc0, 0xfe]);
        fix_mp_checksum(&mut table);
        table
    }

    pub(crate) fn fix_mp_checksum(table: &mut [u8]) {
        let length = table.len() as u16;
        table[4..6].copy_from_slice(&length.to_le_bytes());
        table[7] = 0;
        table[7] = checksum(table).wrapping_neg();
    }

    /// Firecracker's layout: MP pointer and table in the last KiB of base memory, the
    /// RSDP at 0xe0000, no EBDA pointer.
    pub(crate) fn bios_memory() -> Pieces {
        let mut low = vec![0u8; 1024];
        low[..16].copy_from_slice(&mp_pointer(MP_TABLE as u32));
        let table = mp_table();
        low[0x40..0x40 + table.len()].copy_from_slice(&table);
        let mut rom = vec![0u8; 4096];
        rom[0x20..0x20 + 36].copy_from_slice(&rsdp(2, RSDT, XSDT));
        let mut memory = Pieces::default();
        memory.put(BASE_MEMORY_LAST_KIB, low);
        memory.put(0xe0000, rom);
        memory
    }

    #[test]
    fn one_scan_finds_both() {
        let memory = bios_memory();
        let found = scan_bios_areas(&memory, None);
        assert_eq!(
            found,
            BiosPointers {
                rsdp: Some(AcpiRoot {
                    revision: 2,
                    rsdt: RSDT,
                    xsdt: Some(XSDT)
                }),
                mp_table: Some(MP_TABLE),
            }
        );
        let table = read_mp_table(&memory, MP_TABLE).unwrap();
        assert_eq!(table.processors().collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn bad_candidates_are_skipped() {
        let mut memory = bios_memory();
        // A first RSDP with a bad checksum, then a good one further on.
        let rom = &mut memory.0[1].1;
        let mut bad = rsdp(0, 1, 0);
        bad[16] ^= 1;
        rom[..20].copy_from_slice(&bad);
        // A bad MP pointer; no other.
        memory.0[0].1[10] ^= 1;
        let found = scan_bios_areas(&memory, None);
        assert_eq!(found.rsdp.map(|root| root.rsdt), Some(RSDT));
        assert_eq!(found.mp_table, None);
        // Nothing off the 16-byte grid counts.
        let mut memory = Pieces::default();
        let mut rom = vec![0u8; 64];
        rom[8..28].copy_from_slice(&rsdp(0, 1, 0));
        memory.put(0xe0000, rom);
        assert_eq!(scan_bios_areas(&memory, None), BiosPointers::default());
    }

    #[test]
    fn ebda_is_read_from_the_bios_data_area() {
        let mut memory = Pieces::default();
        memory.put(EBDA_SEGMENT_POINTER, 0x9fc0u16.to_le_bytes().to_vec());
        assert_eq!(ebda_address(&memory), Some(0x9fc00));
        for segment in [0u16, 0x1000, 0xa000, 0xffff] {
            let mut memory = Pieces::default();
            memory.put(EBDA_SEGMENT_POINTER, segment.to_le_bytes().to_vec());
            assert_eq!(ebda_address(&memory), None, "segment {segment:#x}");
        }
        // An EBDA elsewhere is scanned first.
        let mut memory = bios_memory();
        let mut ebda = vec![0u8; 1024];
        ebda[0x10..0x20].copy_from_slice(&mp_pointer(0x1234));
        memory.put(0x8_0000, ebda);
        assert_eq!(
            scan_bios_areas(&memory, Some(0x8_0000)).mp_table,
            Some(0x1234)
        );
    }

    #[test]
    fn hostile_mp_tables() {
        let memory = |table: Vec<u8>| {
            let mut memory = Pieces::default();
            memory.put(MP_TABLE, table);
            memory
        };
        let mut table = mp_table();
        table[0] = b'X';
        assert_eq!(
            read_mp_table(&memory(table), MP_TABLE).err(),
            Some(BootError::TableSignature {
                expected: *b"PCMP",
                found: *b"XCMP",
                addr: MP_TABLE,
            })
        );
        let mut table = mp_table();
        table[30] ^= 0x20;
        assert_eq!(
            read_mp_table(&memory(table), MP_TABLE).err(),
            Some(BootError::TableChecksum {
                signature: *b"PCMP",
                addr: MP_TABLE,
                sum: 0x20
            })
        );
        let mut table = mp_table();
        table[4..6].copy_from_slice(&10u16.to_le_bytes());
        assert_eq!(
            read_mp_table(&memory(table), MP_TABLE).err(),
            Some(BootError::TableLength {
                signature: *b"PCMP",
                addr: MP_TABLE,
                length: 10
            })
        );
        // Length past the end of readable memory.
        let mut table = mp_table();
        let length = table.len() as u16 + 100;
        table[4..6].copy_from_slice(&length.to_le_bytes());
        assert_eq!(
            read_mp_table(&memory(table), MP_TABLE).err(),
            Some(BootError::OutOfBounds {
                what: "MP configuration table",
                addr: MP_TABLE,
                len: u64::from(length)
            })
        );
        // A processor entry cut off by the table's end, and an unknown entry type, end
        // the walk with what came before.
        let mut table = mp_table();
        table.truncate(MP_HEADER_LENGTH + 20 + 10);
        fix_mp_checksum(&mut table);
        let memory_cut = memory(table);
        let cut = read_mp_table(&memory_cut, MP_TABLE).unwrap();
        assert_eq!(cut.processors().collect::<Vec<_>>(), [0]);
        let mut table = mp_table();
        table[MP_HEADER_LENGTH + 20] = 0x80;
        fix_mp_checksum(&mut table);
        let memory_unknown = memory(table);
        let unknown = read_mp_table(&memory_unknown, MP_TABLE).unwrap();
        assert_eq!(unknown.processors().collect::<Vec<_>>(), [0]);
    }
}
