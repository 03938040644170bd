//! Discovery: which virtio devices a VM has, where their registers are and how they
//! interrupt, found without trusting anything the VMM or a device says.
//!
//! Everything here is plain code over two small register-access traits that the kernel
//! implements with ports and volatile memory accesses, and these tests with fakes:
//!
//! * [`Registers`]: a device's memory-mapped registers, already mapped;
//! * [`pci::ConfigSpace`]: PCI configuration space (ports 0xcf8/0xcfc or ECAM).
//!
//! Why a layer of its own: a VM hands the kernel addresses (command-line entries, BARs,
//! capability offsets, MSI-X table locations) that the kernel then maps and writes to.
//! A wrong one (a VMM bug, a typo in `virtio_mmio.device=`, a hostile device) pointed at
//! RAM, the kernel image or the null page would corrupt the kernel silently. So every
//! range is checked against [`Claims`] (RAM, the kernel, the null page, the devices
//! already accepted) *before* the kernel maps it, every list walk is bounded, and a device
//! that fails a check is skipped with a [`DiscoveryError`] that says why; the boot goes on.
//!
//! Sources, all collected into one [`Discovery`]: `virtio_mmio.device=` entries
//! ([`mmio::parse_entry`], Firecracker and QEMU microvm with `acpi=off`), QEMU microvm's
//! fixed slots when its DSDT lists them ([`mmio::MICROVM_SLOTS`]), and virtio-pci functions
//! on every bus reachable from bus 0 ([`pci`]). Drivers then take the devices they serve
//! by [`Kind`]; nothing here knows about "the one device".

mod claims;
mod config;
mod error;
pub mod mmio;
pub mod pci;
mod pci_glue;

pub use claims::{Claims, Owner, Span};
pub use error::DiscoveryError;
pub use pci_glue::ConfigSnapshot;

use alloc::vec::Vec;
use core::fmt;

/// A device's memory-mapped registers (already mapped by the kernel), at byte offsets
/// from the start of the window. Accesses use the width named, as virtio requires
/// (spec 4.1.3.1: "the driver MUST access each field using the natural width").
pub trait Registers {
    /// Reads the 16-bit register at `offset`.
    fn read16(&self, offset: u64) -> u16;
    /// Writes the 16-bit register at `offset`.
    fn write16(&self, offset: u64, value: u16);
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, offset: u64) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&self, offset: u64, value: u32);
}

/// A virtio device type (virtio spec 5: 1 = network, 2 = block, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind(pub u32);

impl Kind {
    /// virtio-net.
    pub const NETWORK: Kind = Kind(1);
    /// virtio-blk.
    pub const BLOCK: Kind = Kind(2);
    /// virtio-console.
    pub const CONSOLE: Kind = Kind(3);
    /// virtio-rng.
    pub const ENTROPY: Kind = Kind(4);
    /// virtio-vsock.
    pub const SOCKET: Kind = Kind(19);
    /// virtio-fs (a shared host directory).
    pub const FILESYSTEM: Kind = Kind(26);

    /// The spec's name for the kind, or `"unknown"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "net",
            2 => "block",
            3 => "console",
            4 => "rng",
            5 => "balloon",
            8 => "scsi",
            9 => "9p",
            16 => "gpu",
            18 => "input",
            19 => "vsock",
            26 => "fs",
            _ => "unknown",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (type {})", self.name(), self.0)
    }
}

/// How a device interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// A level-triggered line into the I/O APIC (virtio-mmio).
    Gsi(u32),
    /// MSI-X, with this many table entries (PCI).
    Msix {
        /// Entries in the device's MSI-X table.
        entries: u16,
    },
    /// Legacy INTx through the I/O APIC: the firmware's interrupt line.
    Intx {
        /// The interrupt line register (the I/O APIC input the firmware routed it to).
        line: u8,
    },
    /// Neither MSI-X nor a usable INTx line: the device can only be polled.
    None,
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupt::Gsi(gsi) => write!(f, "GSI {gsi}"),
            Interrupt::Msix { entries } => write!(f, "MSI-X ({entries} entries)"),
            Interrupt::Intx { line } => write!(f, "INTx line {line}"),
            Interrupt::None => f.write_str("no interrupt"),
        }
    }
}

/// Where a device's registers are.
#[derive(Debug, Clone)]
pub enum Transport {
    /// virtio-mmio: one register window (virtio spec 4.2).
    Mmio(mmio::MmioDevice),
    /// virtio-pci: a PCI function whose BARs hold the virtio structures (spec 4.1).
    Pci(alloc::boxed::Box<pci::PciDevice>),
}

/// One device that passed every check.
#[derive(Debug, Clone)]
pub struct Device {
    /// What it is.
    pub kind: Kind,
    /// Where its registers are.
    pub transport: Transport,
    /// How it interrupts.
    pub interrupt: Interrupt,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.transport {
            Transport::Mmio(device) => write!(
                f,
                "{}: virtio-mmio v{} at {:#x} ({:#x} bytes), {}",
                self.kind, device.version, device.slot.address, device.slot.size, self.interrupt
            ),
            Transport::Pci(device) => write!(
                f,
                "{}: virtio-pci {} at {:#x}, {}",
                self.kind, device.function, device.common.address, self.interrupt
            ),
        }
    }
}

/// Everything discovery found, and everything it refused (with the reason).
#[derive(Debug)]
pub struct Discovery {
    /// Devices that passed every check, in the order found.
    pub devices: Vec<Device>,
    /// Devices and entries refused, with why: the kernel logs each one.
    pub skipped: Vec<DiscoveryError>,
    /// What is taken: the kernel's memory, and the accepted devices' ranges.
    pub claims: Claims,
}

impl Discovery {
    /// Starts with `claims`: RAM, the kernel image, the null page (the kernel fills them
    /// in; devices are added as they are accepted).
    pub fn new(claims: Claims) -> Self {
        Self {
            devices: Vec::new(),
            skipped: Vec::new(),
            claims,
        }
    }

    /// Takes (removes and returns) every device of `kind`, in the order found.
    pub fn take(&mut self, kind: Kind) -> Vec<Device> {
        let (taken, kept) = core::mem::take(&mut self.devices)
            .into_iter()
            .partition(|device| device.kind == kind);
        self.devices = kept;
        taken
    }
}

#[cfg(test)]
pub(crate) mod fake;
