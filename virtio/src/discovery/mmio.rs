//! virtio-mmio devices (virtio spec 4.2): `virtio_mmio.device=` entries and QEMU
//! microvm's fixed slots, checked, mapped, then probed for the magic value and type.
//!
//! This is the kernel's one parser of `virtio_mmio.device=` (Linux's syntax, which
//! Firecracker and QEMU microvm with `acpi=off` write): `SIZE@ADDRESS:GSI[:ID]`, numbers
//! in decimal or `0x` hexadecimal, SIZE and ADDRESS with an optional `K`, `M` or `G`
//! suffix (binary multiples, as Linux's `memparse`; a leading 0 is not octal here). The
//! platform-device ID is accepted and ignored.

use super::claims::{Owner, Span};
use super::error::{DiscoveryError, Site};
use super::{Device, Discovery, Interrupt, Kind, Registers, Transport};
use alloc::string::ToString;

/// The virtio-mmio registers this layer reads (spec 4.2.2).
const MAGIC: u64 = 0x000;
const VERSION: u64 = 0x004;
const DEVICE_ID: u64 = 0x008;
/// "virt", little-endian.
const MAGIC_VALUE: u32 = 0x7472_6976;
/// The register block a window must hold at least (device configuration starts here).
pub const MIN_SIZE: u64 = 0x100;
/// Addresses the kernel's identity map reaches: the lower half of a 48-bit space.
pub const ADDRESS_LIMIT: u64 = 1 << 47;

/// One virtio-mmio window and its interrupt line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioSlot {
    /// Physical address of the registers.
    pub address: u64,
    /// Size of the window in bytes.
    pub size: u64,
    /// Global system interrupt (I/O APIC input), level-triggered.
    pub gsi: u32,
}

/// QEMU microvm with ACPI: 24 slots of 0x200 bytes from 0xfeb00000, GSI 24 + i; the
/// DSDT lists the populated ones (`LNRO0005`). The first `-device` lands in the last
/// slot, so they are listed from the last: devices come out in command-line order.
pub const MICROVM_SLOTS: MicrovmSlots = MicrovmSlots;

/// The iterator type behind [`MICROVM_SLOTS`].
#[derive(Debug, Clone, Copy)]
pub struct MicrovmSlots;

impl IntoIterator for MicrovmSlots {
    type Item = MmioSlot;
    type IntoIter = core::iter::Map<core::iter::Rev<core::ops::Range<u32>>, fn(u32) -> MmioSlot>;

    fn into_iter(self) -> Self::IntoIter {
        (0..24u32).rev().map(|index| MmioSlot {
            address: 0xfeb0_0000 + 0x200 * u64::from(index),
            size: 0x200,
            gsi: 24 + index,
        })
    }
}

/// A virtio-mmio device that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioDevice {
    /// Its window and line.
    pub slot: MmioSlot,
    /// 1 (legacy) or 2.
    pub version: u32,
}

/// A number: `0x` hexadecimal or decimal, with `K`/`M`/`G` allowed when `suffix`.
fn number(text: &str, suffix: bool) -> Option<u64> {
    let scale = match text.as_bytes().last() {
        Some(b'K' | b'k') if suffix => 1u64 << 10,
        Some(b'M' | b'm') if suffix => 1 << 20,
        Some(b'G' | b'g') if suffix => 1 << 30,
        _ => 1,
    };
    // The suffix is one ASCII byte, so this cut is on a character boundary.
    let digits = if scale == 1 {
        text
    } else {
        text.get(..text.len() - 1).unwrap_or_default()
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()?
        }
        Some(_) => return None,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok()?
        }
        None => return None,
    };
    value.checked_mul(scale)
}

/// Parses one `virtio_mmio.device=` value: `SIZE@ADDRESS:GSI[:ID]`.
///
/// # Errors
/// [`DiscoveryError::BadEntry`] naming the part that is wrong: a missing `@` or `:`, a
/// part that is not a number, a size below the 0x100-byte register block, a range that
/// wraps past 2^64.
///
/// # Examples
///
/// ```
/// use torito_virtio::discovery::mmio::{parse_entry, MmioSlot};
///
/// let slot = parse_entry("4K@0xd0000000:5").unwrap();
/// assert_eq!(slot, MmioSlot { address: 0xd000_0000, size: 4096, gsi: 5 });
/// assert!(parse_entry("512@0xfeb00e00").is_err());
/// ```
pub fn parse_entry(entry: &str) -> Result<MmioSlot, DiscoveryError> {
    parse_slot(entry).map_err(|problem| DiscoveryError::BadEntry {
        entry: entry.to_string(),
        problem,
    })
}

/// [`parse_entry`] with the problem alone: the entry is copied into the error in one
/// place, not at each check.
fn parse_slot(entry: &str) -> Result<MmioSlot, &'static str> {
    let (size, rest) = entry
        .split_once('@')
        .ok_or("no '@' between size and address")?;
    let (address, rest) = rest
        .split_once(':')
        .ok_or("no ':' before the interrupt number")?;
    let (gsi, id) = match rest.split_once(':') {
        Some((gsi, id)) => (gsi, Some(id)),
        None => (rest, None),
    };
    let size = number(size, true).ok_or("the size is not a number")?;
    let address = number(address, true).ok_or("the address is not a number")?;
    let gsi = number(gsi, false)
        .and_then(|gsi| u32::try_from(gsi).ok())
        .ok_or("the interrupt is not a 32-bit number")?;
    if id.is_some_and(|id| number(id, false).is_none()) {
        return Err("the device ID after the interrupt is not a number");
    }
    if size < MIN_SIZE {
        return Err("the size is below the 0x100 bytes of virtio-mmio registers");
    }
    if address.checked_add(size).is_none() {
        return Err("the range wraps past the end of the address space");
    }
    Ok(MmioSlot { address, size, gsi })
}

/// Where a slot came from: an entry must hold a device, a microvm slot may be empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `virtio_mmio.device=` entry.
    Entry,
    /// One of QEMU microvm's fixed slots.
    MicrovmSlot,
}

impl Discovery {
    /// Parses a `virtio_mmio.device=` value and adds its device (see [`Self::add_mmio`]);
    /// a value that does not parse is recorded in `skipped`.
    pub fn add_mmio_entry<W: Registers>(
        &mut self,
        entry: &str,
        map: impl FnMut(Span) -> Option<W>,
    ) {
        match parse_entry(entry) {
            Ok(slot) => self.add_mmio(slot, Source::Entry, map),
            Err(error) => self.skipped.push(error),
        }
    }

    /// Checks `slot` against the claims, maps it with `map` (only then), and probes it:
    /// a device is added to `devices` and claimed; an empty microvm slot is left alone;
    /// anything else is recorded in `skipped`.
    pub fn add_mmio<W: Registers>(
        &mut self,
        slot: MmioSlot,
        source: Source,
        mut map: impl FnMut(Span) -> Option<W>,
    ) {
        match self.check_mmio(slot, &mut map) {
            Ok(Some(device)) => {
                let span = Span {
                    start: slot.address,
                    end: slot.address + slot.size,
                };
                self.claims.add(span, Owner::Device);
                self.devices.push(device);
            }
            // A microvm slot may be empty, or (another VMM) not there at all.
            Ok(None) | Err(DiscoveryError::NotVirtio { .. }) if source == Source::MicrovmSlot => {}
            Ok(None) => log::debug!(
                "discovery: virtio_mmio.device entry at {:#x}: no device (type 0)",
                slot.address
            ),
            Err(error) => self.skipped.push(error),
        }
    }

    fn check_mmio<W: Registers>(
        &self,
        slot: MmioSlot,
        map: &mut impl FnMut(Span) -> Option<W>,
    ) -> Result<Option<Device>, DiscoveryError> {
        let site = Site::Mmio {
            address: slot.address,
        };
        let span = Span::new(slot.address, slot.size)
            .filter(|span| span.end <= ADDRESS_LIMIT)
            .ok_or(DiscoveryError::OutOfReach {
                site,
                address: slot.address,
                size: slot.size,
            })?;
        if let Some((owned, owner)) = self.claims.conflict(span) {
            return Err(DiscoveryError::Overlaps {
                site,
                span,
                owner,
                owned,
            });
        }
        let window = map(span).ok_or(DiscoveryError::Unmappable { site, span })?;
        let magic = window.read32(MAGIC);
        if magic != MAGIC_VALUE {
            return Err(DiscoveryError::NotVirtio {
                address: slot.address,
                magic,
            });
        }
        let version = window.read32(VERSION);
        if !(1..=2).contains(&version) {
            return Err(DiscoveryError::BadVersion {
                address: slot.address,
                version,
            });
        }
        let kind = window.read32(DEVICE_ID);
        Ok((kind != 0).then_some(Device {
            kind: Kind(kind),
            transport: Transport::Mmio(MmioDevice { slot, version }),
            interrupt: Interrupt::Gsi(slot.gsi),
        }))
    }
}

#[cfg(test)]
mod tests;
