//! PCI configuration space's vocabulary (PCI Local Bus 3.0, 6.1): the register-access
//! trait, a function's address, the header registers and a sized BAR. Below `pci`,
//! `pci_glue` and `error`, which all speak it, so none of them imports another for it.

use core::fmt;

/// PCI configuration space, one 32-bit register at a time (offsets are 4-byte aligned).
///
/// The kernel implements it with ports 0xcf8/0xcfc or ECAM; tests with fakes.
pub trait ConfigSpace {
    /// Reads the 32-bit register at `offset` of `function`.
    fn read32(&mut self, function: Function, offset: u8) -> u32;
    /// Writes the 32-bit register at `offset` of `function`.
    fn write32(&mut self, function: Function, offset: u8, value: u32);
}

/// A PCI function: bus, device (0-31), function (0-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Function {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0-31.
    pub device: u8,
    /// Function number, 0-7.
    pub function: u8,
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Configuration-space registers (PCI Local Bus 3.0, 6.1; header type 0).
pub const VENDOR_DEVICE: u8 = 0x00;
/// Command (low 16 bits) and status (high 16 bits).
pub const COMMAND_STATUS: u8 = 0x04;
/// Header type in bits 16-23 (bit 23: multi-function).
pub const HEADER: u8 = 0x0c;
/// BAR 0; BAR n is at `BAR0 + 4 * n`.
pub const BAR0: u8 = 0x10;
/// Bridges (header type 1): primary, secondary, subordinate bus numbers.
pub const BRIDGE_BUSES: u8 = 0x18;
/// Pointer to the first capability.
pub const CAPABILITIES: u8 = 0x34;
/// Interrupt line (bits 0-7) and pin (bits 8-15).
pub const INTERRUPT: u8 = 0x3c;

/// One BAR, sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Its base address (0: the firmware left it unassigned).
    pub address: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Memory (32- or 64-bit) or I/O.
    pub kind: BarKind,
}

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// Memory, 32-bit address.
    Memory32,
    /// Memory, 64-bit address (this BAR and the next register).
    Memory64,
    /// I/O ports.
    Io,
}
