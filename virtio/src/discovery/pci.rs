//! virtio-pci devices (virtio spec 4.1): bus enumeration, BAR sizing, the capability
//! list, the virtio structures and the MSI-X table, all through [`ConfigSpace`].
//!
//! * **Enumeration** starts at the first bus and follows PCI-to-PCI bridges to their
//!   secondary buses, each bus at most once (a bridge that names a bus already seen, or
//!   itself, cannot make it loop).
//! * **BAR sizing** writes all-ones and reads the mask back, with memory and I/O decoding
//!   off in the command register, and restores each BAR low half first, then high half.
//!   The order matters: Cloud Hypervisor treats a write to a 64-bit BAR's high half as
//!   the moment the BAR moves, comparing against whatever the low half holds then;
//!   restoring the high half while the low half still holds the all-ones probe (as
//!   virtio-drivers 0.13 does) made it print `Failed moving device BAR ... keeping old
//!   BAR` at every boot (cloud-hypervisor pci/src/configuration.rs,
//!   `detect_bar_reprogramming`). Each device is sized once; virtio-drivers then reads a
//!   [`ConfigSnapshot`] that answers its own sizing from the recorded masks, so it never
//!   writes a BAR either.
//! * **Capability lists** are walked with every offset remembered: a list that visits an
//!   offset twice, or points outside 0x40-0xfc, skips the device.
//! * **Ranges**: every memory BAR must lie below 128 TiB and clear of the claims (RAM,
//!   kernel, null page, other devices); every virtio structure and the MSI-X table and
//!   PBA must fit inside their BAR.

use super::claims::{Owner, Span};
use super::error::{DiscoveryError, Site};
use super::mmio::ADDRESS_LIMIT;
use super::pci_glue::ConfigSnapshot;
use super::{Device, Discovery, Interrupt, Kind, Registers, Transport};
use alloc::vec::Vec;
use core::fmt;
use core::ops::RangeInclusive;

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

const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;
const STATUS_CAPABILITIES: u32 = 1 << (16 + 4);

const VIRTIO_VENDOR: u16 = 0x1af4;
const CAP_VENDOR: u8 = 0x09;
const CAP_MSIX: u8 = 0x11;
/// virtio structure types (spec 4.1.4).
const COMMON_CFG: u8 = 1;
const NOTIFY_CFG: u8 = 2;
const ISR_CFG: u8 = 3;
const DEVICE_CFG: u8 = 4;
/// The common configuration's size (spec 4.1.4.3, without the optional fields).
const COMMON_CFG_SIZE: u64 = 0x38;

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

/// A structure inside a BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// The BAR index.
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Physical address (BAR address + offset).
    pub address: u64,
}

/// The MSI-X capability (PCI Local Bus 3.0, 6.8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msix {
    /// The capability's offset in configuration space.
    pub capability: u8,
    /// Table entries.
    pub entries: u16,
    /// The table: 16 bytes per entry.
    pub table: Region,
    /// The pending-bit array.
    pub pba: Region,
}

/// A virtio-pci function that passed every check.
#[derive(Debug, Clone)]
pub struct PciDevice {
    /// Where it is.
    pub function: Function,
    /// Its BARs, sized (the upper half of a 64-bit BAR is `None`).
    pub bars: [Option<Bar>; 6],
    /// The common configuration (spec 4.1.4.3).
    pub common: Region,
    /// The notification area (spec 4.1.4.4).
    pub notify: Region,
    /// The ISR status byte (spec 4.1.4.5).
    pub isr: Region,
    /// The device-specific configuration (spec 4.1.4.6), when it has one.
    pub device_config: Option<Region>,
    /// MSI-X, when the function has it.
    pub msix: Option<Msix>,
    /// The INTx line the firmware routed, when it did.
    pub intx_line: Option<u8>,
    /// Configuration space as it was read, for virtio-drivers' `PciTransport`.
    pub snapshot: ConfigSnapshot,
}

/// Every function on the buses reachable from `buses.start()` through bridges (staying
/// inside `buses`), each bus scanned at most once.
pub fn functions(config: &mut impl ConfigSpace, buses: RangeInclusive<u8>) -> Vec<Function> {
    let mut seen = [false; 256];
    let mut pending = alloc::vec![*buses.start()];
    let mut found = Vec::new();
    while let Some(bus) = pending.pop() {
        if core::mem::replace(&mut seen[usize::from(bus)], true) {
            continue;
        }
        for device in 0..32 {
            let first = Function {
                bus,
                device,
                function: 0,
            };
            if config.read32(first, VENDOR_DEVICE) as u16 == 0xffff {
                continue;
            }
            let multi = config.read32(first, HEADER) & (1 << 23) != 0;
            for function in 0..if multi { 8 } else { 1 } {
                let here = Function {
                    bus,
                    device,
                    function,
                };
                if config.read32(here, VENDOR_DEVICE) as u16 == 0xffff {
                    continue;
                }
                found.push(here);
                if (config.read32(here, HEADER) >> 16) & 0x7f == 1 {
                    let secondary = (config.read32(here, BRIDGE_BUSES) >> 8) as u8;
                    if buses.contains(&secondary) && !seen[usize::from(secondary)] {
                        pending.push(secondary);
                    }
                }
            }
        }
    }
    found
}

/// The virtio device type of a PCI device id (spec 4.1.2.1), or `None`.
pub fn virtio_kind(vendor: u16, device: u16) -> Option<Kind> {
    if vendor != VIRTIO_VENDOR {
        return None;
    }
    match device {
        // Transitional devices (spec 4.1.2.3).
        0x1000 => Some(Kind(1)),
        0x1001 => Some(Kind(2)),
        0x1002 => Some(Kind(5)),
        0x1003 => Some(Kind(3)),
        0x1004 => Some(Kind(8)),
        0x1005 => Some(Kind(4)),
        0x1009 => Some(Kind(9)),
        0x1041..=0x107f => Some(Kind(u32::from(device - 0x1040))),
        _ => None,
    }
}

/// Sizes the six BARs of `function`, with decoding off while they hold all-ones, then
/// restores every register (a 64-bit BAR's low half before its high half) and the
/// command register. The exact write sequence is in the module docs and under test.
///
/// # Errors
/// [`DiscoveryError::BadBar`] for a 64-bit BAR in the last slot (it is restored first).
pub fn size_bars(
    config: &mut impl ConfigSpace,
    function: Function,
) -> Result<[Option<Bar>; 6], DiscoveryError> {
    let command = config.read32(function, COMMAND_STATUS) & 0xffff;
    let decoding = command & (COMMAND_IO | COMMAND_MEMORY);
    if decoding != 0 {
        // Writing zeros to the status half leaves it alone (its bits clear on a 1).
        config.write32(function, COMMAND_STATUS, command & !decoding);
    }
    let result = size_bars_decoding_off(config, function);
    if decoding != 0 {
        config.write32(function, COMMAND_STATUS, command);
    }
    result
}

fn size_bars_decoding_off(
    config: &mut impl ConfigSpace,
    function: Function,
) -> Result<[Option<Bar>; 6], DiscoveryError> {
    let mut bars = [None; 6];
    let mut index = 0u8;
    while index < 6 {
        let low_offset = BAR0 + 4 * index;
        let low = config.read32(function, low_offset);
        config.write32(function, low_offset, 0xffff_ffff);
        let low_mask = config.read32(function, low_offset);
        if low & 1 == 1 {
            config.write32(function, low_offset, low);
            let mask = low_mask & 0xffff_fffc;
            if mask != 0 {
                bars[usize::from(index)] = Some(Bar {
                    address: u64::from(low & 0xffff_fffc),
                    size: u64::from((!mask).wrapping_add(1)),
                    kind: BarKind::Io,
                });
            }
            index += 1;
        } else if low & 0b110 == 0b100 {
            if index == 5 {
                config.write32(function, low_offset, low);
                return Err(DiscoveryError::BadBar {
                    function,
                    bar: index,
                });
            }
            let high_offset = low_offset + 4;
            let high = config.read32(function, high_offset);
            config.write32(function, high_offset, 0xffff_ffff);
            let high_mask = config.read32(function, high_offset);
            // Low half first, then high half: see the module docs.
            config.write32(function, low_offset, low);
            config.write32(function, high_offset, high);
            let mask = u64::from(high_mask) << 32 | u64::from(low_mask & 0xffff_fff0);
            if mask != 0 {
                bars[usize::from(index)] = Some(Bar {
                    address: u64::from(high) << 32 | u64::from(low & 0xffff_fff0),
                    size: (!mask).wrapping_add(1),
                    kind: BarKind::Memory64,
                });
            }
            index += 2;
        } else {
            config.write32(function, low_offset, low);
            let mask = low_mask & 0xffff_fff0;
            if mask != 0 {
                bars[usize::from(index)] = Some(Bar {
                    address: u64::from(low & 0xffff_fff0),
                    size: u64::from((!mask).wrapping_add(1)),
                    kind: BarKind::Memory32,
                });
            }
            index += 1;
        }
    }
    Ok(bars)
}

/// One entry of a capability list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID (0x09 vendor-specific, 0x11 MSI-X, ...).
    pub id: u8,
    /// Its offset in configuration space.
    pub offset: u8,
}

/// The capability list of `function`, walked with every offset remembered.
///
/// # Errors
/// [`DiscoveryError::CapabilityLoop`] when an offset comes back,
/// [`DiscoveryError::CapabilityOutOfRange`] for a pointer below 0x40.
pub fn capabilities(
    config: &mut impl ConfigSpace,
    function: Function,
) -> Result<Vec<Capability>, DiscoveryError> {
    let mut list = Vec::new();
    if config.read32(function, COMMAND_STATUS) & STATUS_CAPABILITIES == 0 {
        return Ok(list);
    }
    // Bits 0-1 are reserved (PCI 3.0, 6.7): pointers are 4-byte aligned.
    let mut pointer = config.read32(function, CAPABILITIES) as u8 & 0xfc;
    let mut seen = [false; 64];
    while pointer != 0 {
        if pointer < 0x40 {
            return Err(DiscoveryError::CapabilityOutOfRange {
                function,
                offset: pointer,
            });
        }
        if core::mem::replace(&mut seen[usize::from(pointer / 4)], true) {
            return Err(DiscoveryError::CapabilityLoop {
                function,
                offset: pointer,
            });
        }
        let header = config.read32(function, pointer);
        list.push(Capability {
            id: header as u8,
            offset: pointer,
        });
        pointer = (header >> 8) as u8 & 0xfc;
    }
    Ok(list)
}

/// Reads the `count` 32-bit words that follow capability `capability`'s header (the
/// rest of the array stays 0), or refuses the device when they would reach past the 256
/// bytes of configuration space.
fn capability_words(
    config: &mut impl ConfigSpace,
    function: Function,
    capability: u8,
    count: u8,
) -> Result<[u32; 3], DiscoveryError> {
    if u16::from(capability) + 4 * u16::from(count) > 0xfc {
        return Err(DiscoveryError::CapabilityOutOfRange {
            function,
            offset: capability,
        });
    }
    let mut words = [0; 3];
    for (index, word) in (1..=count).zip(&mut words) {
        *word = config.read32(function, capability + 4 * index);
    }
    Ok(words)
}

/// `[offset, offset + length)` of BAR `bar`, checked to fit a memory BAR the firmware
/// assigned.
fn region(
    function: Function,
    bars: &[Option<Bar>; 6],
    what: &'static str,
    bar: u8,
    offset: u64,
    length: u64,
) -> Result<Region, DiscoveryError> {
    let memory = bars
        .get(usize::from(bar))
        .copied()
        .flatten()
        .filter(|bar| bar.kind != BarKind::Io && bar.address != 0);
    let bar_size = memory.map_or(0, |bar| bar.size);
    let fits = offset
        .checked_add(length)
        .is_some_and(|end| end <= bar_size);
    match memory {
        Some(memory) if fits => Ok(Region {
            bar,
            offset,
            length,
            address: memory.address + offset,
        }),
        _ => Err(DiscoveryError::OutsideBar {
            function,
            what,
            bar,
            offset,
            length,
            bar_size,
        }),
    }
}

impl Discovery {
    /// Adds every virtio-pci function on `buses` (see [`functions`]) that passes the
    /// checks; the others are recorded in `skipped`. Accepted functions get memory
    /// decoding and bus mastering turned on, and their BARs are claimed.
    pub fn scan_pci(&mut self, config: &mut impl ConfigSpace, buses: RangeInclusive<u8>) {
        for function in functions(config, buses) {
            let ids = config.read32(function, VENDOR_DEVICE);
            let Some(kind) = virtio_kind(ids as u16, (ids >> 16) as u16) else {
                continue;
            };
            match self.check_pci(config, function) {
                Ok(device) => {
                    for bar in device.bars.iter().flatten() {
                        if bar.kind != BarKind::Io && bar.address != 0 {
                            self.claims.add(
                                Span {
                                    start: bar.address,
                                    end: bar.address + bar.size,
                                },
                                Owner::Device,
                            );
                        }
                    }
                    let interrupt = match (device.msix, device.intx_line) {
                        (Some(msix), _) => Interrupt::Msix {
                            entries: msix.entries,
                        },
                        (None, Some(line)) => Interrupt::Intx { line },
                        (None, None) => Interrupt::None,
                    };
                    self.devices.push(Device {
                        kind,
                        transport: Transport::Pci(alloc::boxed::Box::new(device)),
                        interrupt,
                    });
                }
                Err(error) => self.skipped.push(error),
            }
        }
    }

    /// Checks `function`; when it passes, turns its memory decoding and bus mastering on
    /// and takes the configuration snapshot virtio-drivers will read.
    //
    // Out of line although called once: inlined into the scan, its large result
    // (`PciDevice`, or an error) is copied through the caller's frame at every `?`;
    // out of line it is written in place (450 bytes less code, measured).
    #[inline(never)]
    fn check_pci(
        &self,
        config: &mut impl ConfigSpace,
        function: Function,
    ) -> Result<PciDevice, DiscoveryError> {
        let bars = size_bars(config, function)?;
        for (index, bar) in bars.iter().enumerate() {
            let Some(bar) = bar.filter(|bar| bar.kind != BarKind::Io && bar.address != 0) else {
                continue;
            };
            let site = Site::PciBar {
                function,
                bar: index as u8,
            };
            let span = Span::new(bar.address, bar.size)
                .filter(|span| span.end <= ADDRESS_LIMIT)
                .ok_or(DiscoveryError::OutOfReach {
                    site,
                    address: bar.address,
                    size: bar.size,
                })?;
            if let Some((owned, owner)) = self.claims.conflict(span) {
                return Err(DiscoveryError::Overlaps {
                    site,
                    span,
                    owner,
                    owned,
                });
            }
        }
        let (mut common, mut notify, mut isr, mut device_config, mut msix) =
            (None, None, None, None, None);
        for capability in capabilities(config, function)? {
            // The header lies inside configuration space: `capabilities` checked it.
            let header = config.read32(function, capability.offset);
            match capability.id {
                CAP_VENDOR => {
                    let (length_field, cfg_type) = ((header >> 16) as u8, (header >> 24) as u8);
                    if length_field < 16 {
                        continue;
                    }
                    let [bar, offset, length] =
                        capability_words(config, function, capability.offset, 3)?;
                    let (bar, offset, length) = (bar as u8, u64::from(offset), u64::from(length));
                    let (slot, what, minimum) = match cfg_type {
                        COMMON_CFG => (&mut common, "common configuration", COMMON_CFG_SIZE),
                        NOTIFY_CFG => (&mut notify, "notification area", 2),
                        ISR_CFG => (&mut isr, "ISR status", 1),
                        DEVICE_CFG => (&mut device_config, "device configuration", 0),
                        _ => continue,
                    };
                    if slot.is_some() {
                        continue; // the first of each type is the one to use (4.1.4.1)
                    }
                    let found = region(function, &bars, what, bar, offset, length)?;
                    if length < minimum {
                        return Err(DiscoveryError::MissingStructure { function, what });
                    }
                    *slot = Some(found);
                }
                CAP_MSIX if msix.is_none() => {
                    let entries = (header >> 16 & 0x7ff) as u16 + 1;
                    let [table, pba, _] = capability_words(config, function, capability.offset, 2)?;
                    msix = Some(Msix {
                        capability: capability.offset,
                        entries,
                        table: region(
                            function,
                            &bars,
                            "MSI-X table",
                            (table & 7) as u8,
                            u64::from(table & !7),
                            16 * u64::from(entries),
                        )?,
                        pba: region(
                            function,
                            &bars,
                            "MSI-X pending-bit array",
                            (pba & 7) as u8,
                            u64::from(pba & !7),
                            u64::from(entries).div_ceil(64) * 8,
                        )?,
                    });
                }
                _ => {}
            }
        }
        let (Some(common), Some(notify), Some(isr)) = (common, notify, isr) else {
            let what = match (common, notify) {
                (None, _) => "common configuration",
                (_, None) => "notification area",
                _ => "ISR status",
            };
            return Err(DiscoveryError::MissingStructure { function, what });
        };
        let interrupt = config.read32(function, INTERRUPT);
        let (line, pin) = (interrupt as u8, (interrupt >> 8) as u8);
        let command = config.read32(function, COMMAND_STATUS) & 0xffff;
        config.write32(
            function,
            COMMAND_STATUS,
            command | COMMAND_MEMORY | COMMAND_BUS_MASTER,
        );
        Ok(PciDevice {
            function,
            bars,
            common,
            notify,
            isr,
            device_config,
            msix,
            intx_line: (pin != 0 && line != 0xff).then_some(line),
            snapshot: ConfigSnapshot::read(config, function, &bars),
        })
    }
}

/// One MSI-X message: where the device writes, and what (the platform composes it:
/// on x86 an address in the local APIC's window naming the CPU, data naming the vector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// Message address.
    pub address: u64,
    /// Message data.
    pub data: u32,
}

/// Message-control bits (PCI 3.0, 6.8.2.3), in the capability's first word.
const MSIX_ENABLE: u32 = 1 << 31;
const MSIX_FUNCTION_MASK: u32 = 1 << 30;

/// Programs `messages` into the first table entries and enables MSI-X: enable with the
/// whole function masked, write each entry (address, data, then unmask), then lift the
/// function mask, so no half-written entry can fire. `table` maps `msix.table`.
pub fn enable_msix(
    config: &mut impl ConfigSpace,
    function: Function,
    msix: &Msix,
    table: &impl Registers,
    messages: &[Message],
) {
    let control = config.read32(function, msix.capability);
    config.write32(
        function,
        msix.capability,
        control | MSIX_ENABLE | MSIX_FUNCTION_MASK,
    );
    for (entry, message) in messages.iter().take(usize::from(msix.entries)).enumerate() {
        let at = 16 * entry as u64;
        table.write32(at, message.address as u32);
        table.write32(at + 4, (message.address >> 32) as u32);
        table.write32(at + 8, message.data);
        table.write32(at + 12, 0); // vector control: unmasked
    }
    config.write32(
        function,
        msix.capability,
        (control | MSIX_ENABLE) & !MSIX_FUNCTION_MASK,
    );
}

/// virtio common configuration registers (spec 4.1.4.3).
const NUM_QUEUES: u64 = 0x12;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;
/// The most queues given a vector (a hostile `num_queues` cannot make this loop long).
const MAX_QUEUES: u16 = 64;

/// Points every queue of the device at MSI-X table entry `entry`, through the common
/// configuration `common`. Call it after the driver set the queues up: a device reset
/// puts every queue back to NO_VECTOR, and a queue without a vector never interrupts
/// while MSI-X is enabled.
///
/// # Errors
/// [`DiscoveryError::VectorRefused`] when a queue reads back another vector.
pub fn assign_queue_vectors(common: &impl Registers, entry: u16) -> Result<(), DiscoveryError> {
    let queues = common.read16(NUM_QUEUES).min(MAX_QUEUES);
    for queue in 0..queues {
        common.write16(QUEUE_SELECT, queue);
        common.write16(QUEUE_MSIX_VECTOR, entry);
        let read_back = common.read16(QUEUE_MSIX_VECTOR);
        if read_back != entry {
            return Err(DiscoveryError::VectorRefused { queue, read_back });
        }
    }
    Ok(())
}

/// The ECAM window of PCI segment 0 from an ACPI MCFG table (PCI Firmware 3.2, 4.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecam {
    /// Physical address of bus 0's configuration space (`start_bus` is at
    /// `base + start_bus << 20`).
    pub base: u64,
    /// First bus decoded.
    pub start_bus: u8,
    /// Last bus decoded.
    pub end_bus: u8,
}

impl Ecam {
    /// The physical address of `function`'s 4 KiB configuration space.
    pub fn address(&self, function: Function) -> u64 {
        self.base
            + (u64::from(function.bus) << 20
                | u64::from(function.device & 31) << 15
                | u64::from(function.function & 7) << 12)
    }
}

/// The first MCFG allocation for segment 0, if the table has one (the table's header and
/// checksum are the caller's to check).
pub fn parse_mcfg(table: &[u8]) -> Option<Ecam> {
    // 36-byte header, 8 reserved bytes, then 16-byte entries.
    table.get(44..)?.chunks_exact(16).find_map(|entry| {
        let base = u64::from_le_bytes(entry[0..8].try_into().ok()?);
        let segment = u16::from_le_bytes([entry[8], entry[9]]);
        let (start_bus, end_bus) = (entry[10], entry[11]);
        (segment == 0 && base != 0 && start_bus <= end_bus).then_some(Ecam {
            base,
            start_bus,
            end_bus,
        })
    })
}

#[cfg(test)]
mod tests;
