//! I/O APICs: route a global system interrupt (GSI) to a vector on this core.
//!
//! The I/O APICs come from the MADT; without ACPI (QEMU microvm `acpi=off`, Firecracker)
//! the one at the architectural address 0xfec00000 with GSI base 0 is assumed.

use super::{acpi, lapic, paging};

const DEFAULT_ADDRESS: u64 = 0xfec0_0000;

/// Trigger mode and polarity of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Level-triggered, active-high (virtio-mmio, QEMU's PCI INTx, QEMU's SCI).
    LevelHigh,
    /// Level-triggered, active-low (the SCI without a MADT override).
    LevelLow,
    /// Edge-triggered, active-high (ISA interrupts: the i8042 keyboard).
    EdgeHigh,
    /// Edge-triggered, active-low.
    EdgeLow,
}

impl Trigger {
    /// The trigger for a line `mode` (from the MADT's overrides, `torito_boot::acpi`).
    pub fn of(mode: torito_boot::acpi::LineMode) -> Self {
        match (mode.level, mode.active_low) {
            (true, false) => Self::LevelHigh,
            (true, true) => Self::LevelLow,
            (false, false) => Self::EdgeHigh,
            (false, true) => Self::EdgeLow,
        }
    }
}

fn read(base: u64, register: u32) -> u32 {
    // SAFETY: `base` is an I/O APIC register window mapped uncached by `route`; IOREGSEL
    // (offset 0) selects and IOWIN (offset 0x10) reads the register.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, register);
        core::ptr::read_volatile((base + 0x10) as *const u32)
    }
}

fn write(base: u64, register: u32, value: u32) {
    // SAFETY: as in `read`.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, register);
        core::ptr::write_volatile((base + 0x10) as *mut u32, value);
    }
}

/// Routes `gsi` to `vector` on this core's local APIC, unmasked.
///
/// # Errors
/// A message when no I/O APIC serves `gsi` or its registers cannot be mapped.
pub fn route(gsi: u32, vector: u8, trigger: Trigger) -> Result<(), &'static str> {
    let madt = acpi::madt();
    let fallback = acpi::IoApicEntry {
        address: DEFAULT_ADDRESS,
        gsi_base: 0,
    };
    let candidates = madt
        .into_iter()
        .flat_map(acpi::Madt::io_apics)
        .chain(madt.is_none().then_some(fallback));
    for entry in candidates {
        let base = paging::map_device(entry.address, 0x20).ok_or("cannot map an I/O APIC")?;
        let pins = ((read(base, 1) >> 16) & 0xff) + 1;
        if gsi < entry.gsi_base || gsi >= entry.gsi_base + pins {
            continue;
        }
        let pin = gsi - entry.gsi_base;
        // Redirection entry: bit 13 polarity (1 = active low), bit 15 trigger mode
        // (1 = level); fixed delivery, physical destination, unmasked.
        let mut low = u32::from(vector);
        if matches!(trigger, Trigger::LevelHigh | Trigger::LevelLow) {
            low |= 1 << 15;
        }
        if matches!(trigger, Trigger::LevelLow | Trigger::EdgeLow) {
            low |= 1 << 13;
        }
        write(base, 0x11 + 2 * pin, lapic::id() << 24);
        write(base, 0x10 + 2 * pin, low);
        return Ok(());
    }
    Err("no I/O APIC serves this interrupt line")
}
