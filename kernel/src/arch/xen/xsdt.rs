//! The one firmware table the kernel writes: the XSDT Xen 4.17 gives its PVH dom0 with
//! a broken signature (`torito_boot::xen::repair_xsdt` says how and why).

use crate::arch::boot_token::Boot;
use torito_boot::{BootInfo, MemoryKind};

/// The boot page tables map the first 1 GiB writable; the repair runs before the
/// kernel's own tables replace them.
const BOOT_MAPPED: u64 = 1 << 30;

/// Repairs the XSDT in place when it is Xen's broken one; returns whether it did.
///
/// Only a table wholly inside an ACPI-reclaimable region of the memory map (memory the
/// firmware gave this domain, used by nothing else) and below 1 GiB is touched.
pub(super) fn repair(_boot_only: &Boot, info: &BootInfo) -> bool {
    let Some(address) = info.acpi.and_then(|root| root.xsdt) else {
        return false;
    };
    let Some(region) = info.memory_map().iter().find(|region| {
        region.kind == MemoryKind::AcpiReclaimable
            && region.start <= address
            && address.saturating_add(8) <= region.end()
    }) else {
        return false;
    };
    let end = region.end().min(BOOT_MAPPED);
    if address.saturating_add(8) > end {
        return false;
    }
    // SAFETY: the 8 bytes lie in an ACPI-reclaimable region (no Rust object lives
    // there) below 1 GiB, which the boot page tables map (boot/src/entry.rs).
    let header = unsafe { core::ptr::read_unaligned((address + 4) as *const u32) };
    let length = u64::from(header);
    if address.saturating_add(length) > end {
        return false;
    }
    // SAFETY: `[address, address + length)` lies in the same region, checked just above;
    // the boot is single-threaded here and nothing else refers to the table's bytes.
    let table = unsafe { core::slice::from_raw_parts_mut(address as *mut u8, length as usize) };
    torito_boot::xen::repair_xsdt(table)
}
