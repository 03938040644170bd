//! PCI configuration space, raw: ports 0xcf8/0xcfc (every PC chipset: q35, pc, Cloud
//! Hypervisor) and ECAM (memory-mapped, from the MCFG table; q35 has it at 0xb0000000).
//!
//! Nothing here interprets what it reads: enumeration, BAR sizing and capability walks
//! live in `torito_virtio::discovery::pci`, over the `ConfigSpace` trait these implement.

use super::paging;
use torito_virtio::discovery::pci::{ConfigSpace, Ecam, Function};
use x86_64::instructions::port::Port;

/// CONFIG_ADDRESS and CONFIG_DATA (PCI Local Bus 3.0, 3.2.2.3.2).
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Configuration space through ports 0xcf8/0xcfc: 256 bytes per function.
#[derive(Debug)]
pub struct PortConfig;

impl PortConfig {
    fn select(function: Function, offset: u8) {
        let address = 0x8000_0000
            | u32::from(function.bus) << 16
            | u32::from(function.device & 31) << 11
            | u32::from(function.function & 7) << 8
            | u32::from(offset & 0xfc);
        // SAFETY: CONFIG_ADDRESS only selects a register; the `&mut self` of the callers
        // (the one `Config` lives behind a lock in `crate::devices`) keeps the select and
        // the data access that follows together, and no interrupt handler touches them.
        unsafe { Port::<u32>::new(CONFIG_ADDRESS).write(address) };
    }
}

impl ConfigSpace for PortConfig {
    fn read32(&mut self, function: Function, offset: u8) -> u32 {
        Self::select(function, offset);
        // SAFETY: as in `select`; reading CONFIG_DATA has no side effect beyond the read
        // of the selected register.
        unsafe { Port::<u32>::new(CONFIG_DATA).read() }
    }

    fn write32(&mut self, function: Function, offset: u8, value: u32) {
        Self::select(function, offset);
        // SAFETY: as in `select`; the caller (discovery) decides what to write.
        unsafe { Port::<u32>::new(CONFIG_DATA).write(value) }
    }
}

/// Configuration space through ECAM: each bus's 1 MiB window is mapped (uncached) the
/// first time one of its functions is read.
#[derive(Debug)]
pub struct EcamConfig {
    ecam: Ecam,
    /// One bit per bus whose window is mapped.
    mapped: [u64; 4],
}

impl EcamConfig {
    /// ECAM at `ecam`; the caller checked that its window overlaps no RAM or kernel memory.
    pub fn new(ecam: Ecam) -> Self {
        Self {
            ecam,
            mapped: [0; 4],
        }
    }

    /// The register's address, with its bus mapped; `None` outside the ECAM's buses or
    /// when the bus cannot be mapped.
    fn register(&mut self, function: Function, offset: u8) -> Option<u64> {
        if !(self.ecam.start_bus..=self.ecam.end_bus).contains(&function.bus) {
            return None;
        }
        let (word, bit) = (usize::from(function.bus / 64), 1u64 << (function.bus % 64));
        if self.mapped[word] & bit == 0 {
            let base = self.ecam.base + (u64::from(function.bus) << 20);
            paging::map_device(base, 1 << 20)?;
            self.mapped[word] |= bit;
        }
        Some(self.ecam.address(function) + u64::from(offset & 0xfc))
    }
}

impl ConfigSpace for EcamConfig {
    fn read32(&mut self, function: Function, offset: u8) -> u32 {
        match self.register(function, offset) {
            // SAFETY: `register` mapped the bus's window uncached; the address is 4-byte
            // aligned and inside it (device, function and offset are masked).
            Some(register) => unsafe { core::ptr::read_volatile(register as *const u32) },
            None => 0xffff_ffff,
        }
    }

    fn write32(&mut self, function: Function, offset: u8, value: u32) {
        if let Some(register) = self.register(function, offset) {
            // SAFETY: as in `read32`.
            unsafe { core::ptr::write_volatile(register as *mut u32, value) }
        }
    }
}

/// Whichever access the platform has.
#[derive(Debug)]
pub enum Config {
    /// Ports 0xcf8/0xcfc.
    Ports(PortConfig),
    /// ECAM.
    Ecam(EcamConfig),
}

impl ConfigSpace for Config {
    fn read32(&mut self, function: Function, offset: u8) -> u32 {
        match self {
            Config::Ports(ports) => ports.read32(function, offset),
            Config::Ecam(ecam) => ecam.read32(function, offset),
        }
    }

    fn write32(&mut self, function: Function, offset: u8, value: u32) {
        match self {
            Config::Ports(ports) => ports.write32(function, offset, value),
            Config::Ecam(ecam) => ecam.write32(function, offset, value),
        }
    }
}
