//! The legacy 8259 PICs: remapped away from the exception vectors and masked.
//!
//! Torito takes interrupts through the local APIC (and, later, the IOAPIC or MSI-X).
//! But at reset the PICs deliver IRQs 0-7 on vectors 8-15, the CPU exception vectors,
//! and QEMU's PIT runs from reset: an unmasked PIC turns its tick into a bogus "double
//! fault". Remapping to `BASE..BASE+16` and masking every line makes the PICs harmless;
//! a spurious IRQ 7/15 they may still raise lands on an unregistered vector and is
//! acknowledged and ignored.

use x86_64::instructions::port::Port;

/// First vector of the (masked) PIC range.
pub const BASE: u8 = 0xe0;

/// Remaps both PICs to `BASE` and masks all their lines.
pub fn disable() {
    for &(port, value) in &INIT_AND_MASK {
        // SAFETY: ports 0x20/0x21/0xa0/0xa1 are the PICs, owned by this module; the
        // sequence is the standard initialization and leaves every line masked.
        unsafe { Port::<u8>::new(port).write(value) };
    }
}

/// (port, value) writes, in order: one table loop is fewer emulated blocks at boot than
/// chained iterators.
const INIT_AND_MASK: [(u16, u8); 10] = [
    (0x20, 0x11),
    (0xa0, 0x11), // ICW1: edge, cascade, ICW4 follows
    (0x21, BASE),
    (0xa1, BASE + 8), // ICW2: vector offsets
    (0x21, 0x04),
    (0xa1, 0x02), // ICW3: slave on IRQ 2
    (0x21, 0x01),
    (0xa1, 0x01), // ICW4: 8086 mode
    (0x21, 0xff),
    (0xa1, 0xff), // OCW1: mask everything
];
