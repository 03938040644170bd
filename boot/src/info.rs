//! `BootInfo`: what the boot loader told us, copied out of its memory.
//!
//! Everything is copied into fixed-capacity storage so that the kernel may reuse the
//! loader's memory (and so that parsing needs no heap: it runs before one exists).

/// Which boot protocol started the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Xen PVH (`XEN_ELFNOTE_PHYS32_ENTRY`): QEMU `-kernel`, Firecracker, Cloud Hypervisor, Xen.
    Pvh,
    /// Multiboot2: GRUB, real hardware.
    Multiboot2,
}

impl Protocol {
    /// Its usual name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pvh => "PVH",
            Self::Multiboot2 => "multiboot2",
        }
    }
}

/// The kind of a physical memory region, in E820 terms (PVH and multiboot2 both use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM the kernel may use.
    Usable,
    /// Firmware-reserved or device memory.
    Reserved,
    /// ACPI tables; usable once the tables have been read.
    AcpiReclaimable,
    /// ACPI non-volatile storage; never usable.
    AcpiNvs,
    /// Defective RAM.
    Bad,
    /// A type this kernel does not know; treated as reserved.
    Other(u32),
}

impl MemoryKind {
    /// Maps an E820 type number (shared by PVH and multiboot2) to a kind.
    pub fn from_e820(kind: u32) -> Self {
        match kind {
            1 => Self::Usable,
            2 => Self::Reserved,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Bad,
            other => Self::Other(other),
        }
    }
}

/// One physical memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte.
    pub start: u64,
    /// Length in bytes (never zero in a parsed map).
    pub len: u64,
    /// What the region is.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// The validated ACPI root pointer (RSDP), reduced to what the kernel needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiRoot {
    /// ACPI revision from the RSDP (0 = ACPI 1.0, only an RSDT; 2 = has an XSDT).
    pub revision: u8,
    /// Physical address of the RSDT.
    pub rsdt: u32,
    /// Physical address of the XSDT, when revision >= 2 and non-zero.
    pub xsdt: Option<u64>,
}

/// Most memory regions kept; a longer map is an error (`BootError::TooManyMemoryRegions`).
pub const MAX_MEMORY_REGIONS: usize = 64;
/// Longest command line kept, in bytes; a longer one is an error (`BootError::CmdlineTooLong`).
pub const MAX_CMDLINE: usize = 1024;

/// Everything the kernel learns from the boot loader, owned.
#[derive(Clone)]
pub struct BootInfo {
    /// The protocol that started us.
    pub protocol: Protocol,
    regions: [MemoryRegion; MAX_MEMORY_REGIONS],
    region_count: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    /// The ACPI root, when the loader gave one (Firecracker does not).
    pub acpi: Option<AcpiRoot>,
    /// The loader's RSDP address when the parser could not read it (past the boot page
    /// tables' reach): the kernel reads it once its own tables map it.
    pub rsdp_unread: Option<u64>,
    /// PVH `hvm_start_info.flags`: Xen's `SIF_*` bits (`SIF_INITDOMAIN` for its dom0);
    /// 0 from every other loader and for multiboot2.
    pub start_flags: u32,
}

impl BootInfo {
    /// An empty `BootInfo` for `protocol`; parsers fill it.
    pub const fn empty(protocol: Protocol) -> Self {
        Self {
            protocol,
            regions: [MemoryRegion {
                start: 0,
                len: 0,
                kind: MemoryKind::Reserved,
            }; MAX_MEMORY_REGIONS],
            region_count: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            acpi: None,
            rsdp_unread: None,
            start_flags: 0,
        }
    }

    /// The memory map, in the order the loader gave it.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// The kernel command line (possibly empty).
    pub fn cmdline(&self) -> &str {
        // The parsers only store validated UTF-8 (see `set_cmdline`).
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Appends a region. Zero-length regions are skipped.
    ///
    /// # Errors
    /// `MemoryRegionOverflow` when `start + len` does not fit in 64 bits,
    /// `TooManyMemoryRegions` when the map is full.
    pub fn push_region(&mut self, region: MemoryRegion) -> Result<(), crate::BootError> {
        if region.len == 0 {
            return Ok(());
        }
        if region.start.checked_add(region.len).is_none() {
            return Err(crate::BootError::MemoryRegionOverflow {
                start: region.start,
                len: region.len,
            });
        }
        if self.region_count == MAX_MEMORY_REGIONS {
            return Err(crate::BootError::TooManyMemoryRegions {
                max: MAX_MEMORY_REGIONS,
            });
        }
        self.regions[self.region_count] = region;
        self.region_count += 1;
        Ok(())
    }

    /// Stores the command line.
    ///
    /// # Errors
    /// `CmdlineTooLong` past `MAX_CMDLINE` bytes, `CmdlineNotUtf8` for invalid UTF-8.
    pub fn set_cmdline(&mut self, bytes: &[u8]) -> Result<(), crate::BootError> {
        if bytes.len() > MAX_CMDLINE {
            return Err(crate::BootError::CmdlineTooLong {
                len: bytes.len(),
                max: MAX_CMDLINE,
            });
        }
        if let Err(error) = core::str::from_utf8(bytes) {
            return Err(crate::BootError::CmdlineNotUtf8 {
                valid_up_to: error.valid_up_to(),
            });
        }
        self.cmdline[..bytes.len()].copy_from_slice(bytes);
        self.cmdline_len = bytes.len();
        Ok(())
    }

    /// Checks that the memory map is usable: not empty, with at least one `Usable` region.
    ///
    /// # Errors
    /// `EmptyMemoryMap`, `NoUsableMemory`.
    pub fn check_memory_map(&self) -> Result<(), crate::BootError> {
        if self.memory_map().is_empty() {
            return Err(crate::BootError::EmptyMemoryMap);
        }
        if !self
            .memory_map()
            .iter()
            .any(|region| region.kind == MemoryKind::Usable)
        {
            return Err(crate::BootError::NoUsableMemory);
        }
        Ok(())
    }
}

impl core::fmt::Debug for BootInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BootInfo")
            .field("protocol", &self.protocol)
            .field("memory_map", &self.memory_map())
            .field("cmdline", &self.cmdline())
            .field("acpi", &self.acpi)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BootError;

    fn region(start: u64, len: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion { start, len, kind }
    }

    #[test]
    fn e820_kinds() {
        assert_eq!(MemoryKind::from_e820(1), MemoryKind::Usable);
        assert_eq!(MemoryKind::from_e820(3), MemoryKind::AcpiReclaimable);
        assert_eq!(MemoryKind::from_e820(4), MemoryKind::AcpiNvs);
        assert_eq!(MemoryKind::from_e820(5), MemoryKind::Bad);
        assert_eq!(MemoryKind::from_e820(12), MemoryKind::Other(12));
    }

    #[test]
    fn regions_fill_up_and_skip_empty_ones() {
        let mut info = BootInfo::empty(Protocol::Pvh);
        info.push_region(region(0, 0, MemoryKind::Usable)).unwrap();
        assert!(info.memory_map().is_empty());
        for i in 0..MAX_MEMORY_REGIONS as u64 {
            info.push_region(region(i * 0x1000, 0x1000, MemoryKind::Usable))
                .unwrap();
        }
        assert_eq!(info.memory_map().len(), MAX_MEMORY_REGIONS);
        assert_eq!(
            info.push_region(region(0x100_0000, 1, MemoryKind::Usable)),
            Err(BootError::TooManyMemoryRegions {
                max: MAX_MEMORY_REGIONS
            })
        );
        // Zero-length regions are skipped even when full.
        info.push_region(region(0x100_0000, 0, MemoryKind::Usable))
            .unwrap();
    }

    #[test]
    fn overflowing_region_is_refused() {
        let mut info = BootInfo::empty(Protocol::Pvh);
        assert_eq!(
            info.push_region(region(u64::MAX, 2, MemoryKind::Reserved)),
            Err(BootError::MemoryRegionOverflow {
                start: u64::MAX,
                len: 2
            })
        );
        info.push_region(region(u64::MAX - 1, 1, MemoryKind::Reserved))
            .unwrap();
        assert_eq!(info.memory_map()[0].end(), u64::MAX);
    }

    #[test]
    fn memory_map_checks() {
        let mut info = BootInfo::empty(Protocol::Multiboot2);
        assert_eq!(info.check_memory_map(), Err(BootError::EmptyMemoryMap));
        info.push_region(region(0, 0x1000, MemoryKind::Reserved))
            .unwrap();
        assert_eq!(info.check_memory_map(), Err(BootError::NoUsableMemory));
        info.push_region(region(0x1000, 0x1000, MemoryKind::Usable))
            .unwrap();
        assert_eq!(info.check_memory_map(), Ok(()));
    }

    #[test]
    fn cmdline_storage() {
        let mut info = BootInfo::empty(Protocol::Pvh);
        assert_eq!(info.cmdline(), "");
        info.set_cmdline(b"log=debug").unwrap();
        assert_eq!(info.cmdline(), "log=debug");
        assert_eq!(
            info.set_cmdline(b"ab\xffcd"),
            Err(BootError::CmdlineNotUtf8 { valid_up_to: 2 })
        );
        assert_eq!(
            info.cmdline(),
            "log=debug",
            "a refused command line leaves the old one"
        );
        let long = [b'a'; MAX_CMDLINE + 1];
        assert_eq!(
            info.set_cmdline(&long),
            Err(BootError::CmdlineTooLong {
                len: MAX_CMDLINE + 1,
                max: MAX_CMDLINE
            })
        );
        info.set_cmdline(&long[..MAX_CMDLINE]).unwrap();
        assert_eq!(info.cmdline().len(), MAX_CMDLINE);
    }
}
