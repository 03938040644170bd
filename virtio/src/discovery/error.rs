//! Why a device or an entry was refused.

use super::claims::{Owner, Span};
use super::config::Function;
use alloc::string::String;
use core::fmt;

/// Which device (or which part of it) an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// A virtio-mmio window at this address.
    Mmio {
        /// Its first byte.
        address: u64,
    },
    /// One BAR of a PCI function.
    PciBar {
        /// The function.
        function: Function,
        /// The BAR index (0-5).
        bar: u8,
    },
    /// A PCI function's ECAM configuration window or something else not in a BAR.
    Pci {
        /// The function.
        function: Function,
    },
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Mmio { address } => write!(f, "virtio-mmio device at {address:#x}"),
            Site::PciBar { function, bar } => write!(f, "PCI {function} BAR {bar}"),
            Site::Pci { function } => write!(f, "PCI {function}"),
        }
    }
}

/// Why discovery skipped a device or a `virtio_mmio.device=` entry. The boot goes on
/// without it; the message says what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// A `virtio_mmio.device=` value that does not parse.
    BadEntry {
        /// The value, as given.
        entry: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A device range overlaps memory the kernel (or another device) owns.
    Overlaps {
        /// The device.
        site: Site,
        /// The device's range.
        span: Span,
        /// Who owns what it overlaps.
        owner: Owner,
        /// The owned range.
        owned: Span,
    },
    /// A device range ends beyond 2^64 or above the 128 TiB the kernel can map.
    OutOfReach {
        /// The device.
        site: Site,
        /// Its first byte.
        address: u64,
        /// Its size.
        size: u64,
    },
    /// The kernel could not map a device range (no frame left for a page table).
    Unmappable {
        /// The device.
        site: Site,
        /// The range.
        span: Span,
    },
    /// No virtio-mmio magic ("virt") at the address.
    NotVirtio {
        /// The window's address.
        address: u64,
        /// What the magic register read.
        magic: u32,
    },
    /// A virtio-mmio version other than 1 (legacy) or 2.
    BadVersion {
        /// The window's address.
        address: u64,
        /// The version register.
        version: u32,
    },
    /// A PCI capability list that visits an offset twice (it would loop forever).
    CapabilityLoop {
        /// The function.
        function: Function,
        /// The offset seen again.
        offset: u8,
    },
    /// A PCI capability pointer outside the capability area (0x40-0xfc) or too close to
    /// its end for the capability to fit.
    CapabilityOutOfRange {
        /// The function.
        function: Function,
        /// The pointer.
        offset: u8,
    },
    /// A virtio-pci device without a structure the driver needs.
    MissingStructure {
        /// The function.
        function: Function,
        /// Which structure (spec 4.1.4).
        what: &'static str,
    },
    /// A virtio structure or the MSI-X table or PBA names a BAR that does not hold it.
    OutsideBar {
        /// The function.
        function: Function,
        /// Which structure.
        what: &'static str,
        /// The BAR index given.
        bar: u8,
        /// Offset in the BAR.
        offset: u64,
        /// Length of the structure.
        length: u64,
        /// The BAR's size (0 when it is absent, unassigned or an I/O BAR).
        bar_size: u64,
    },
    /// A 64-bit BAR in the last slot, which has no upper half.
    BadBar {
        /// The function.
        function: Function,
        /// The BAR index.
        bar: u8,
    },
    /// The device did not keep the MSI-X vector written to a queue (it reads back
    /// another value: the device is out of vectors, spec 4.1.4.3).
    VectorRefused {
        /// The queue.
        queue: u16,
        /// What it read back.
        read_back: u16,
    },
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::BadEntry { entry, problem } => write!(
                f,
                "virtio_mmio.device={entry}: {problem}; the form is SIZE@ADDRESS:GSI \
                 (for example 512@0xfeb00e00:12); entry ignored"
            ),
            DiscoveryError::Overlaps {
                site,
                span,
                owner,
                owned,
            } => write!(
                f,
                "{site} ({span}) overlaps {owner} ({owned}): refused, the boot goes on \
                 without it; check the VMM's device addresses"
            ),
            DiscoveryError::OutOfReach {
                site,
                address,
                size,
            } => write!(
                f,
                "{site}: {size:#x} bytes at {address:#x} end beyond the 128 TiB the kernel \
                 can map: refused; check the VMM's device addresses"
            ),
            DiscoveryError::Unmappable { site, span } => write!(
                f,
                "{site} ({span}) could not be mapped (no frame for a page table): refused; \
                 give the VM more memory"
            ),
            DiscoveryError::NotVirtio { address, magic } => write!(
                f,
                "no virtio-mmio device at {address:#x} (magic {magic:#010x}, expected \
                 0x74726976 \"virt\"): skipped; check the entry's address"
            ),
            DiscoveryError::BadVersion { address, version } => write!(
                f,
                "virtio-mmio device at {address:#x} has version {version} (1 or 2 \
                 expected): skipped"
            ),
            DiscoveryError::CapabilityLoop { function, offset } => write!(
                f,
                "PCI {function}: the capability list comes back to offset {offset:#x} (a \
                 loop): device skipped"
            ),
            DiscoveryError::CapabilityOutOfRange { function, offset } => write!(
                f,
                "PCI {function}: a capability pointer ({offset:#x}) lies outside \
                 0x40-0xfc: device skipped"
            ),
            DiscoveryError::MissingStructure { function, what } => write!(
                f,
                "PCI {function}: no {what} capability (virtio spec 4.1.4): device skipped; \
                 a legacy-only virtio-pci device needs `disable-legacy=off,\
                 disable-modern=off` in QEMU"
            ),
            DiscoveryError::OutsideBar {
                function,
                what,
                bar,
                offset,
                length,
                bar_size,
            } => write!(
                f,
                "PCI {function}: the {what} ({length:#x} bytes at offset {offset:#x} of BAR \
                 {bar}) does not fit that BAR (size {bar_size:#x}, 0 = absent, unassigned or \
                 I/O): device skipped"
            ),
            DiscoveryError::BadBar { function, bar } => write!(
                f,
                "PCI {function}: BAR {bar} claims 64 bits but has no upper half: device skipped"
            ),
            DiscoveryError::VectorRefused { queue, read_back } => write!(
                f,
                "the device did not take an MSI-X vector for queue {queue} (reads back \
                 {read_back:#x}); the queue will not interrupt"
            ),
        }
    }
}

impl core::error::Error for DiscoveryError {}
