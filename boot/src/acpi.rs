//! ACPI tables: found through the root pointer, validated, and parsed into what the
//! kernel uses (the FADT's power-off, power-button and PM timer registers, the MADT's
//! CPUs, I/O APICs and interrupt overrides, the DSDT's `\_S5` sleep type).
//!
//! Firmware tables are untrusted input like the boot information: every table is read
//! through [`PhysMemory`], its signature, length (36 bytes to [`MAX_TABLE_LENGTH`]) and
//! checksum are checked before any field is read, and every field read is bounded by the
//! table's length, so a hostile table gives an error or a shorter answer, never a panic or
//! a read past the table (the fuzz tests hold us to that). There is no AML interpreter:
//! `\_S5` is found with the usual byte-pattern scan of the DSDT.
//!
//! Offsets are those of ACPI 6.5, chapter 5.2.

use crate::phys::{PhysMemory, read_array, read_exact};
use crate::rsdp::checksum;
use crate::{AcpiRoot, BootError};

/// Size of the header every ACPI table starts with (signature, length, revision,
/// checksum, OEM fields).
pub const HEADER_LENGTH: usize = 36;
/// Largest table `length` accepted: QEMU's DSDT is about 8 KiB, a big server's a few
/// hundred; anything past 1 MiB is corrupt.
pub const MAX_TABLE_LENGTH: u32 = 1 << 20;

/// The `u16` at `offset`, if the bytes hold it.
pub(crate) fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(offset..offset.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The `u32` at `offset`, if the bytes hold it.
pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The `u64` at `offset`, if the bytes hold it.
pub(crate) fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Reads the table at `addr` that must carry `signature`, and validates its header
/// (signature, length) and checksum. The result is the whole table, header included.
///
/// # Errors
/// `OutOfBounds` when the table is not readable, `TableSignature`,
/// `TableLength`, `TableChecksum`.
pub fn read_table(mem: &dyn PhysMemory, addr: u64, signature: [u8; 4]) -> Result<&[u8], BootError> {
    const WHAT: &str = "ACPI table";
    let header = read_array::<8>(mem, WHAT, addr)?;
    let found: [u8; 4] = [header[0], header[1], header[2], header[3]];
    if found != signature {
        return Err(BootError::TableSignature {
            expected: signature,
            found,
            addr,
        });
    }
    let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(HEADER_LENGTH as u32..=MAX_TABLE_LENGTH).contains(&length) {
        return Err(BootError::TableLength {
            signature,
            addr,
            length,
        });
    }
    let table = read_exact(mem, WHAT, addr, length as usize)?;
    let sum = checksum(table);
    if sum != 0 {
        return Err(BootError::TableChecksum {
            signature,
            addr,
            sum,
        });
    }
    Ok(table)
}

/// Finds the table named `signature` among those the root table (the XSDT when the RSDP
/// gives one, else the RSDT) lists; `Ok(None)` when it is not listed.
///
/// A listed address that is not readable is skipped; a table that carries the signature
/// but fails validation is an error (it would have been the one).
///
/// # Errors
/// Any error of [`read_table`] for the root table or the table found.
pub fn find_table<'m>(
    mem: &'m dyn PhysMemory,
    root: &AcpiRoot,
    signature: [u8; 4],
) -> Result<Option<&'m [u8]>, BootError> {
    let (list, entry_size) = match root.xsdt {
        Some(xsdt) => (read_table(mem, xsdt, *b"XSDT")?, 8),
        None => (read_table(mem, u64::from(root.rsdt), *b"RSDT")?, 4),
    };
    for entry in list[HEADER_LENGTH..].chunks_exact(entry_size) {
        let mut address = [0u8; 8];
        address[..entry_size].copy_from_slice(entry);
        let address = u64::from_le_bytes(address);
        if mem.read(address, 4) == Some(&signature[..]) {
            return read_table(mem, address, signature).map(Some);
        }
    }
    Ok(None)
}

/// A register named by a generic address structure (ACPI 6.5, 5.2.3.2), reduced to the
/// two address spaces the kernel writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// An I/O port.
    Io(u16),
    /// A memory-mapped register at this physical address.
    Memory(u64),
}

impl Register {
    /// The generic address structure at `offset` of `bytes`; `None` when it is absent
    /// (address 0), out of the table, or in another address space.
    fn at(bytes: &[u8], offset: usize) -> Option<Self> {
        let gas = bytes.get(offset..offset.checked_add(12)?)?;
        let address = u64_at(gas, 4)?;
        if address == 0 {
            return None;
        }
        match gas[0] {
            0 => Some(Self::Memory(address)),
            1 => u16::try_from(address).ok().map(Self::Io),
            _ => None,
        }
    }
}

/// The ACPI PM timer: a free-running 3.579545 MHz counter in an I/O port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmTimer {
    /// Its I/O port.
    pub port: u16,
    /// Whether it counts 32 bits (else 24).
    pub bits32: bool,
}

/// What the kernel takes from the FADT (signature `FACP`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fadt {
    /// The PM1a control block's port (S5 on machines with fixed ACPI hardware).
    pub pm1a_control: Option<u16>,
    /// The sleep control register (S5 on hardware-reduced ACPI: Cloud Hypervisor).
    pub sleep_control: Option<Register>,
    /// The PM timer, except on hardware-reduced ACPI, which has none.
    pub pm_timer: Option<PmTimer>,
    /// The DSDT's physical address: the 64-bit field when set, else the 32-bit one.
    pub dsdt: Option<u64>,
    /// The SCI's interrupt (an ISA IRQ, to look up among the MADT's overrides); `None`
    /// on hardware-reduced ACPI, which has no SCI.
    pub sci_interrupt: Option<u8>,
    /// The PM1 event blocks, whose status and enable registers carry the fixed power
    /// button; `None` on hardware-reduced ACPI or when the table names none.
    pub pm1_events: Option<Pm1Events>,
    /// How to move the chipset into ACPI mode (SCI_EN set) when the firmware left it
    /// in legacy mode; `None` when the FADT names no SMI command port (always in ACPI
    /// mode).
    pub acpi_enable: Option<AcpiEnable>,
    /// Whether the power button is a fixed feature (PWRBTN_STS/PWRBTN_EN in PM1, FADT
    /// flag PWR_BUTTON clear); else it is a control-method device the DSDT describes.
    pub fixed_power_button: bool,
    /// The general-purpose event blocks GPE0 and GPE1, which the kernel handles none of:
    /// it disables them all, so that no GPE keeps a level-triggered SCI asserted.
    pub gpe_blocks: [Option<GpeBlock>; 2],
}

/// A general-purpose event register block (ACPI 6.5, 4.8.4.1): `length / 2` status bytes,
/// then as many enable bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpeBlock {
    /// Its I/O port.
    pub port: u16,
    /// GPEx_BLK_LEN: bytes in the block (even, 2 or more).
    pub length: u8,
}

/// The PM1 event register blocks (ACPI 6.5, 4.8.3.1): each block is a status register
/// followed by an enable register, each `length / 2` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pm1Events {
    /// PM1a_EVT_BLK's I/O port.
    pub a: u16,
    /// PM1b_EVT_BLK's I/O port, when the chipset splits the registers in two.
    pub b: Option<u16>,
    /// PM1_EVT_LEN: bytes per block (4 or more, even).
    pub length: u8,
}

impl Pm1Events {
    /// The enable register's port in the block at `block`: the second half.
    pub fn enable_port(&self, block: u16) -> u16 {
        block.wrapping_add(u16::from(self.length / 2))
    }
}

/// The SMI command that switches the chipset from legacy to ACPI mode (FADT SMI_CMD and
/// ACPI_ENABLE; ACPI 6.5, 4.8.2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiEnable {
    /// SMI_CMD's I/O port.
    pub smi_command: u16,
    /// The value that requests ACPI mode.
    pub value: u8,
}

/// PWRBTN_STS and PWRBTN_EN: bit 8 of the PM1 status and enable registers.
pub const PM1_POWER_BUTTON: u16 = 1 << 8;
/// Every fixed-event status bit of PM1 (timer, bus master, global lock, power and sleep
/// buttons, RTC, wake): written back to clear them all at once.
pub const PM1_ALL_STATUS: u16 = 0x8731;
/// SCI_EN: bit 0 of the PM1 control register, set in ACPI mode.
pub const PM1_SCI_ENABLED: u16 = 1;

// FADT field offsets (ACPI 6.5, table 5.9).
const FADT_DSDT: usize = 40;
const FADT_SCI_INT: usize = 46;
const FADT_SMI_CMD: usize = 48;
const FADT_ACPI_ENABLE: usize = 52;
const FADT_PM1A_EVENT: usize = 56;
const FADT_PM1B_EVENT: usize = 60;
const FADT_PM1A_CONTROL: usize = 64;
const FADT_PM_TIMER: usize = 76;
const FADT_GPE0: usize = 80;
const FADT_GPE1: usize = 84;
const FADT_PM1_EVENT_LENGTH: usize = 88;
const FADT_GPE0_LENGTH: usize = 92;
const FADT_GPE1_LENGTH: usize = 93;
const FADT_FLAGS: usize = 112;
const FADT_X_DSDT: usize = 140;
const FADT_X_PM1A_EVENT: usize = 148;
const FADT_X_PM1B_EVENT: usize = 160;
const FADT_SLEEP_CONTROL: usize = 244;
const FLAG_POWER_BUTTON_METHOD: u32 = 1 << 4;
const FLAG_TIMER_32BIT: u32 = 1 << 8;
const FLAG_HARDWARE_REDUCED: u32 = 1 << 20;

impl Fadt {
    /// Parses a FADT that [`read_table`] validated. Fields past the table's end (an older
    /// revision is shorter) are absent, as are zero ports and addresses.
    pub fn parse(table: &[u8]) -> Self {
        let flags = u32_at(table, FADT_FLAGS).unwrap_or(0);
        let port = |offset| {
            u32_at(table, offset)
                .and_then(|port| u16::try_from(port).ok())
                .filter(|port| *port != 0)
        };
        let pm_timer = if flags & FLAG_HARDWARE_REDUCED != 0 {
            None
        } else {
            port(FADT_PM_TIMER).map(|port| PmTimer {
                port,
                bits32: flags & FLAG_TIMER_32BIT != 0,
            })
        };
        let dsdt = u64_at(table, FADT_X_DSDT)
            .filter(|address| *address != 0)
            .or(u32_at(table, FADT_DSDT).map(u64::from))
            .filter(|address| *address != 0);
        let fixed_hardware = flags & FLAG_HARDWARE_REDUCED == 0;
        // A PM1 event block: the 32-bit port field, else the extended field when it names
        // an I/O port (the only space QEMU and real chipsets use for PM1).
        let event_block = |offset, extended| {
            port(offset).or(match Register::at(table, extended) {
                Some(Register::Io(port)) => Some(port),
                _ => None,
            })
        };
        let length = table.get(FADT_PM1_EVENT_LENGTH).copied().unwrap_or(0);
        let pm1_events = event_block(FADT_PM1A_EVENT, FADT_X_PM1A_EVENT)
            .filter(|_| fixed_hardware && length >= 4 && length % 2 == 0)
            .map(|a| Pm1Events {
                a,
                b: event_block(FADT_PM1B_EVENT, FADT_X_PM1B_EVENT),
                length,
            });
        let sci_interrupt = u16_at(table, FADT_SCI_INT)
            .and_then(|irq| u8::try_from(irq).ok())
            .filter(|_| fixed_hardware);
        let acpi_enable = port(FADT_SMI_CMD)
            .zip(table.get(FADT_ACPI_ENABLE).copied())
            .filter(|(_, value)| fixed_hardware && *value != 0)
            .map(|(smi_command, value)| AcpiEnable { smi_command, value });
        let gpe_block = |offset, length_offset: usize| {
            let length = table.get(length_offset).copied().unwrap_or(0);
            port(offset)
                .filter(|_| fixed_hardware && length >= 2 && length % 2 == 0)
                .map(|port| GpeBlock { port, length })
        };
        Self {
            gpe_blocks: [
                gpe_block(FADT_GPE0, FADT_GPE0_LENGTH),
                gpe_block(FADT_GPE1, FADT_GPE1_LENGTH),
            ],
            pm1a_control: port(FADT_PM1A_CONTROL),
            sleep_control: Register::at(table, FADT_SLEEP_CONTROL),
            pm_timer,
            dsdt,
            sci_interrupt,
            pm1_events,
            acpi_enable,
            fixed_power_button: pm1_events.is_some() && flags & FLAG_POWER_BUTTON_METHOD == 0,
        }
    }
}

/// The `\_S5` package's first element (SLP_TYPa), from a DSDT that [`read_table`]
/// validated; `None` when there is no `\_S5` object or it is not a plain package.
pub fn s5_sleep_type(dsdt: &[u8]) -> Option<u8> {
    let aml = dsdt.get(HEADER_LENGTH..)?;
    let at = aml.windows(4).position(|window| window == b"_S5_")?;
    let rest = aml.get(at + 4..)?;
    // NameOp "_S5_" PackageOp PkgLength NumElements first-element
    if *rest.first()? != 0x12 {
        return None;
    }
    let length_bytes = usize::from(rest.get(1)? >> 6);
    let element = rest.get(2 + length_bytes + 1..)?;
    match *element.first()? {
        0x0a => element.get(1).copied(), // BytePrefix
        0x00 => Some(0),                 // ZeroOp
        0x01 => Some(1),                 // OneOp
        0xff => None,                    // OnesOp: not a valid type
        value => Some(value),
    }
}

/// Whether a DSDT's AML mentions `name` (e.g. QEMU microvm's virtio-mmio
/// `_HID "LNRO0005"`). An empty `name` is mentioned nowhere.
pub fn mentions(dsdt: &[u8], name: &[u8]) -> bool {
    !name.is_empty()
        && dsdt
            .get(HEADER_LENGTH..)
            .is_some_and(|aml| aml.windows(name.len()).any(|window| window == name))
}

/// An I/O APIC from the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicEntry {
    /// Physical address of its registers.
    pub address: u64,
    /// First global system interrupt it serves.
    pub gsi_base: u32,
}

/// How an interrupt line signals: the MPS INTI flags (ACPI 6.5, table 5.50), with the
/// "conforms to the bus" values resolved by the caller's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineMode {
    /// Level-triggered (else edge).
    pub level: bool,
    /// Active low (else active high).
    pub active_low: bool,
}

/// An ISA interrupt's mode without an override: edge-triggered, active high.
pub const ISA_DEFAULT: LineMode = LineMode {
    level: false,
    active_low: false,
};
/// The SCI's mode without an override (ACPI 6.5, 5.2.9): level-triggered, active low.
pub const SCI_DEFAULT: LineMode = LineMode {
    level: true,
    active_low: true,
};

/// A MADT interrupt source override: ISA IRQ `source` arrives at `gsi`, signalled as
/// `flags` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptOverride {
    /// The global system interrupt the IRQ is wired to.
    pub gsi: u32,
    /// MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3.
    pub flags: u16,
}

impl InterruptOverride {
    /// The line's mode, where fields that "conform to the bus" take `default`'s value
    /// (ISA: edge, active high; the SCI: level, active low).
    pub fn mode(&self, default: LineMode) -> LineMode {
        LineMode {
            active_low: match self.flags & 0b11 {
                0b01 => false,
                0b11 => true,
                _ => default.active_low,
            },
            level: match (self.flags >> 2) & 0b11 {
                0b01 => false,
                0b11 => true,
                _ => default.level,
            },
        }
    }
}

/// Where the MADT's interrupt controller structures start: after the header, the local
/// APIC address (4) and the flags (4).
const MADT_ENTRIES: usize = HEADER_LENGTH + 8;

/// The MADT (signature `APIC`, ACPI 6.5, 5.2.12): its interrupt controller structures,
/// parsed as they are iterated, so nothing is copied.
///
/// [`Madt::new`] walks the structures once: if one is shorter than its 2-byte header or
/// runs past the table, the walk keeps the structures before it and records the defect
/// ([`Madt::defect`]), so a damaged table still yields what it got right.
#[derive(Debug, Clone, Copy)]
pub struct Madt<'m> {
    entries: &'m [u8],
    defect: Option<BootError>,
}

impl<'m> Madt<'m> {
    /// Wraps a MADT that [`read_table`] validated.
    pub fn new(table: &'m [u8]) -> Self {
        let entries = table.get(MADT_ENTRIES..).unwrap_or(&[]);
        let mut offset = 0;
        let mut defect = None;
        while offset < entries.len() {
            let length = entries
                .get(offset + 1)
                .map_or(0, |length| usize::from(*length));
            if length < 2 || offset + length > entries.len() {
                defect = Some(BootError::MadtEntryLength {
                    offset: MADT_ENTRIES + offset,
                    length: length as u32,
                    table_length: table.len(),
                });
                break;
            }
            offset += length;
        }
        Self {
            entries: &entries[..offset],
            defect,
        }
    }

    /// The structure that ended the walk early, if one did.
    pub fn defect(&self) -> Option<BootError> {
        self.defect
    }

    /// The interrupt controller structures as (type, bytes), each at least 2 bytes.
    fn entries(self) -> impl Iterator<Item = (u8, &'m [u8])> {
        let mut rest = self.entries;
        core::iter::from_fn(move || {
            let length = usize::from(*rest.get(1)?);
            let (entry, tail) = rest.split_at_checked(length)?;
            rest = tail;
            Some((entry[0], entry))
        })
    }

    /// Usable local APIC ids (enabled or online-capable): processor local APIC and local
    /// x2APIC structures.
    pub fn local_apics(self) -> impl Iterator<Item = u32> + 'm {
        let usable = |flags: Option<u32>| flags.is_some_and(|flags| flags & 0b11 != 0);
        self.entries().filter_map(move |(kind, entry)| match kind {
            0 if entry.len() >= 8 && usable(u32_at(entry, 4)) => Some(u32::from(entry[3])),
            9 if entry.len() >= 16 && usable(u32_at(entry, 8)) => u32_at(entry, 4),
            _ => None,
        })
    }

    /// The interrupt source override for ISA IRQ `irq` (bus 0), if the MADT has one:
    /// where that IRQ arrives (its GSI) and how (trigger and polarity).
    pub fn isa_override(self, irq: u8) -> Option<InterruptOverride> {
        self.entries().find_map(|(kind, entry)| {
            if kind != 2 || entry.len() < 10 || entry[2] != 0 || entry[3] != irq {
                return None;
            }
            Some(InterruptOverride {
                gsi: u32_at(entry, 4)?,
                flags: u16_at(entry, 8)?,
            })
        })
    }

    /// The I/O APICs.
    pub fn io_apics(self) -> impl Iterator<Item = IoApicEntry> + 'm {
        self.entries().filter_map(|(kind, entry)| {
            if kind != 1 || entry.len() < 12 {
                return None;
            }
            Some(IoApicEntry {
                address: u64::from(u32_at(entry, 4)?),
                gsi_base: u32_at(entry, 8)?,
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A physical memory made of separate pieces, as firmware memory is.
    #[derive(Clone, Default)]
    pub(crate) struct Pieces(pub(crate) Vec<(u64, Vec<u8>)>);

    impl Pieces {
        pub(crate) fn put(&mut self, addr: u64, bytes: Vec<u8>) {
            self.0.push((addr, bytes));
        }
    }

    impl PhysMemory for Pieces {
        fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
            self.0.iter().find_map(|(base, bytes)| {
                let offset = usize::try_from(addr.checked_sub(*base)?).ok()?;
                bytes.get(offset..offset.checked_add(len)?)
            })
        }
    }

    /// A table with `signature` and `body` after the header, checksummed.
    pub(crate) fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_LENGTH];
        bytes[..4].copy_from_slice(signature);
        bytes[4..8].copy_from_slice(&((HEADER_LENGTH + body.len()) as u32).to_le_bytes());
        bytes[8] = 2;
        bytes[10..16].copy_from_slice(b"TORITO");
        bytes.extend_from_slice(body);
        fix_table_checksum(&mut bytes);
        bytes
    }

    pub(crate) fn fix_table_checksum(bytes: &mut [u8]) {
        bytes[9] = 0;
        bytes[9] = checksum(bytes).wrapping_neg();
    }

    pub(crate) const XSDT: u64 = 0x7fe_0000;
    pub(crate) const RSDT: u32 = 0x7fe_0100;
    pub(crate) const FADT: u64 = 0x7fe_1000;
    pub(crate) const DSDT: u64 = 0x7fe_2000;
    pub(crate) const MADT: u64 = 0x7fe_3000;

    /// A q35-like FADT: SCI on IRQ 9, SMI command 0xb2 with ACPI_ENABLE 2, PM1a events at
    /// 0x600 (4 bytes), PM1a control 0x604, PM timer 0x608 (24 bits), DSDT through both
    /// fields, no sleep control register, a fixed power button.
    pub(crate) fn fadt_body(dsdt: u64) -> Vec<u8> {
        let mut body = vec![0u8; 276 - HEADER_LENGTH];
        let mut put = |offset: usize, bytes: &[u8]| {
            body[offset - HEADER_LENGTH..offset - HEADER_LENGTH + bytes.len()]
                .copy_from_slice(bytes)
        };
        put(FADT_DSDT, &(dsdt as u32).to_le_bytes());
        put(FADT_SCI_INT, &9u16.to_le_bytes());
        put(FADT_SMI_CMD, &0xb2u32.to_le_bytes());
        put(FADT_ACPI_ENABLE, &[2]);
        put(FADT_PM1A_EVENT, &0x600u32.to_le_bytes());
        put(FADT_PM1A_CONTROL, &0x604u32.to_le_bytes());
        put(FADT_PM_TIMER, &0x608u32.to_le_bytes());
        put(FADT_GPE0, &0x620u32.to_le_bytes());
        put(FADT_PM1_EVENT_LENGTH, &[4]);
        put(FADT_GPE0_LENGTH, &[16]);
        put(FADT_X_DSDT, &dsdt.to_le_bytes());
        body
    }

    /// What [`fadt_body`] describes.
    pub(crate) fn q35_fadt() -> Fadt {
        Fadt {
            pm1a_control: Some(0x604),
            sleep_control: None,
            pm_timer: Some(PmTimer {
                port: 0x608,
                bits32: false,
            }),
            dsdt: Some(DSDT),
            sci_interrupt: Some(9),
            pm1_events: Some(Pm1Events {
                a: 0x600,
                b: None,
                length: 4,
            }),
            acpi_enable: Some(AcpiEnable {
                smi_command: 0xb2,
                value: 2,
            }),
            fixed_power_button: true,
            gpe_blocks: [
                Some(GpeBlock {
                    port: 0x620,
                    length: 16,
                }),
                None,
            ],
        }
    }

    /// AML with `Name (_S5, Package (4) { 0x05, ... })` and a device `_HID`.
    pub(crate) fn dsdt_body() -> Vec<u8> {
        let mut aml = b"\x10\x0a\\_SB_DEVICE LNRO0005 ".to_vec();
        aml.extend_from_slice(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x05]);
        aml.extend_from_slice(&[0x0a, 0x05, 0x00, 0x00]);
        aml
    }

    /// Local APICs 0 (enabled), 1 (disabled), x2APIC 7 (online-capable), I/O APICs at
    /// 0xfec00000 (GSI 0) and 0xfec10000 (GSI 24).
    pub(crate) fn madt_body() -> Vec<u8> {
        let mut body = vec![0, 0, 0xe0, 0xfe, 1, 0, 0, 0]; // LAPIC address, flags
        body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
        body.extend_from_slice(&[0, 8, 1, 1, 0, 0, 0, 0]);
        body.extend_from_slice(&[9, 16, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]);
        body.extend_from_slice(&[1, 12, 1, 0, 0, 0, 0xc1, 0xfe, 24, 0, 0, 0]);
        // Overrides as QEMU writes them: IRQ 0 -> GSI 2 (bus defaults), IRQ 9 -> GSI 9
        // level-triggered active high; and one for another bus, to be ignored.
        body.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]);
        body.extend_from_slice(&[2, 10, 1, 1, 20, 0, 0, 0, 0x0f, 0]);
        body
    }

    /// A whole set of valid tables behind an XSDT (and an RSDT) listing FADT and MADT.
    pub(crate) fn tables() -> Pieces {
        let mut xsdt_body = Vec::new();
        xsdt_body.extend_from_slice(&FADT.to_le_bytes());
        xsdt_body.extend_from_slice(&MADT.to_le_bytes());
        let mut rsdt_body = Vec::new();
        rsdt_body.extend_from_slice(&(FADT as u32).to_le_bytes());
        rsdt_body.extend_from_slice(&(MADT as u32).to_le_bytes());
        let mut memory = Pieces::default();
        memory.put(XSDT, table(b"XSDT", &xsdt_body));
        memory.put(u64::from(RSDT), table(b"RSDT", &rsdt_body));
        memory.put(FADT, table(b"FACP", &fadt_body(DSDT)));
        memory.put(DSDT, table(b"DSDT", &dsdt_body()));
        memory.put(MADT, table(b"APIC", &madt_body()));
        memory
    }

    pub(crate) fn root(xsdt: bool) -> AcpiRoot {
        AcpiRoot {
            revision: if xsdt { 2 } else { 0 },
            rsdt: RSDT,
            xsdt: xsdt.then_some(XSDT),
        }
    }

    #[test]
    fn finds_and_parses_every_table_through_xsdt_and_rsdt() {
        let memory = tables();
        for xsdt in [true, false] {
            let fadt = find_table(&memory, &root(xsdt), *b"FACP").unwrap().unwrap();
            let fadt = Fadt::parse(fadt);
            assert_eq!(fadt, q35_fadt());
            let dsdt = read_table(&memory, fadt.dsdt.unwrap(), *b"DSDT").unwrap();
            assert_eq!(s5_sleep_type(dsdt), Some(5));
            assert!(mentions(dsdt, b"LNRO0005"));
            assert!(!mentions(dsdt, b"LNRO0006"));
            let madt = Madt::new(find_table(&memory, &root(xsdt), *b"APIC").unwrap().unwrap());
            assert_eq!(madt.defect(), None);
            assert_eq!(madt.local_apics().collect::<Vec<_>>(), [0, 7]);
            assert_eq!(
                madt.io_apics().collect::<Vec<_>>(),
                [
                    IoApicEntry {
                        address: 0xfec0_0000,
                        gsi_base: 0
                    },
                    IoApicEntry {
                        address: 0xfec1_0000,
                        gsi_base: 24
                    }
                ]
            );
            let sci = madt.isa_override(9).unwrap();
            assert_eq!(sci.gsi, 9);
            assert_eq!(
                sci.mode(SCI_DEFAULT),
                LineMode {
                    level: true,
                    active_low: false
                }
            );
            let timer = madt.isa_override(0).unwrap();
            assert_eq!((timer.gsi, timer.mode(ISA_DEFAULT)), (2, ISA_DEFAULT));
            assert_eq!(madt.isa_override(1), None, "IRQ 1's override is on bus 1");
            assert_eq!(find_table(&memory, &root(xsdt), *b"MCFG"), Ok(None));
        }
    }

    #[test]
    fn bad_checksum_is_refused() {
        let mut memory = tables();
        memory.0[2].1[50] ^= 0x40; // inside the FADT's body
        assert_eq!(
            find_table(&memory, &root(true), *b"FACP"),
            Err(BootError::TableChecksum {
                signature: *b"FACP",
                addr: FADT,
                sum: 0x40
            })
        );
        // The MADT is still found: one bad table does not hide the others.
        assert!(
            find_table(&memory, &root(true), *b"APIC")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn length_past_the_end_or_below_the_header_is_refused() {
        for (length, error) in [
            (
                10u32,
                BootError::TableLength {
                    signature: *b"APIC",
                    addr: MADT,
                    length: 10,
                },
            ),
            (
                u32::MAX,
                BootError::TableLength {
                    signature: *b"APIC",
                    addr: MADT,
                    length: u32::MAX,
                },
            ),
            (
                4096,
                BootError::OutOfBounds {
                    what: "ACPI table",
                    addr: MADT,
                    len: 4096,
                },
            ),
        ] {
            let mut memory = tables();
            let madt = &mut memory.0[4].1;
            madt[4..8].copy_from_slice(&length.to_le_bytes());
            fix_table_checksum(madt);
            assert_eq!(find_table(&memory, &root(true), *b"APIC"), Err(error));
        }
    }

    #[test]
    fn a_root_pointing_at_the_wrong_table_is_refused() {
        let memory = tables();
        let wrong = AcpiRoot {
            revision: 2,
            rsdt: RSDT,
            xsdt: Some(FADT),
        };
        assert_eq!(
            find_table(&memory, &wrong, *b"APIC"),
            Err(BootError::TableSignature {
                expected: *b"XSDT",
                found: *b"FACP",
                addr: FADT
            })
        );
        // A listed address that is not readable is skipped.
        let mut memory = tables();
        memory.0.retain(|(base, _)| *base != FADT);
        assert_eq!(find_table(&memory, &root(true), *b"FACP"), Ok(None));
    }

    #[test]
    fn madt_entries_that_overrun_or_loop_end_the_walk() {
        // A zero-length structure would loop forever; a long one runs past the table.
        for (bad_length, offset) in [(0u8, 8usize), (200, 8), (1, 8)] {
            let mut body = madt_body();
            body.truncate(16); // header fields and the first local APIC
            body.extend_from_slice(&[0, bad_length, 2, 2, 1, 0, 0, 0]);
            let bytes = table(b"APIC", &body);
            let madt = Madt::new(&bytes);
            assert_eq!(
                madt.defect(),
                Some(BootError::MadtEntryLength {
                    offset: MADT_ENTRIES + offset,
                    length: u32::from(bad_length),
                    table_length: bytes.len(),
                })
            );
            // The structure before the bad one still counts.
            assert_eq!(madt.local_apics().collect::<Vec<_>>(), [0]);
        }
        // A truncated structure (too short for its type) is skipped, not read past.
        let mut body = vec![0u8; 8];
        body.extend_from_slice(&[0, 4, 3, 3]);
        body.extend_from_slice(&[1, 6, 0, 0, 0, 0]);
        let bytes = table(b"APIC", &body);
        let madt = Madt::new(&bytes);
        assert_eq!(madt.defect(), None);
        assert_eq!(madt.local_apics().count(), 0);
        assert_eq!(madt.io_apics().count(), 0);
    }

    #[test]
    fn fadt_fields_past_a_short_table_are_absent() {
        let short = table(b"FACP", &fadt_body(DSDT)[..80 - HEADER_LENGTH]);
        let fadt = Fadt::parse(&short);
        assert_eq!(fadt.pm1a_control, Some(0x604));
        assert_eq!(
            fadt.pm_timer,
            Some(PmTimer {
                port: 0x608,
                bits32: false
            })
        );
        assert_eq!(fadt.dsdt, Some(DSDT)); // the 32-bit field
        assert_eq!(fadt.sleep_control, None);

        let mut body = fadt_body(DSDT);
        let flags = (FLAG_HARDWARE_REDUCED | FLAG_TIMER_32BIT).to_le_bytes();
        body[FADT_FLAGS - HEADER_LENGTH..FADT_FLAGS - HEADER_LENGTH + 4].copy_from_slice(&flags);
        let gas = [1, 8, 0, 1, 0x00, 0x06, 0, 0, 0, 0, 0, 0];
        let at = FADT_SLEEP_CONTROL - HEADER_LENGTH;
        body[at..at + 12].copy_from_slice(&gas);
        let fadt = Fadt::parse(&table(b"FACP", &body));
        assert_eq!(fadt.pm_timer, None, "hardware-reduced ACPI has no PM timer");
        assert_eq!(fadt.sleep_control, Some(Register::Io(0x600)));
    }

    #[test]
    fn power_button_fields_follow_the_flags_and_the_extended_blocks() {
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut body = fadt_body(DSDT);
            edit(&mut body);
            Fadt::parse(&table(b"FACP", &body))
        };
        let at = |offset: usize| offset - HEADER_LENGTH;
        let set_flags = |body: &mut Vec<u8>, flags: u32| {
            body[at(FADT_FLAGS)..at(FADT_FLAGS) + 4].copy_from_slice(&flags.to_le_bytes())
        };
        // A control-method power button: the PM1 blocks stay, the fixed event is not ours.
        let method = with(&|body| set_flags(body, FLAG_POWER_BUTTON_METHOD));
        assert!(method.pm1_events.is_some());
        assert!(!method.fixed_power_button);
        // Hardware-reduced: no SCI, no PM1 events, no SMI command, no GPE blocks.
        let reduced = with(&|body| set_flags(body, FLAG_HARDWARE_REDUCED));
        assert_eq!(
            (
                reduced.sci_interrupt,
                reduced.pm1_events,
                reduced.acpi_enable,
                reduced.fixed_power_button,
                reduced.gpe_blocks
            ),
            (None, None, None, false, [None, None])
        );
        // A GPE block with an odd or zero length is not used; GPE1 where it is named.
        let odd = with(&|body| body[at(FADT_GPE0_LENGTH)] = 3);
        assert_eq!(odd.gpe_blocks, [None, None]);
        let both = with(&|body| {
            body[at(FADT_GPE1)..at(FADT_GPE1) + 4].copy_from_slice(&0x630u32.to_le_bytes());
            body[at(FADT_GPE1_LENGTH)] = 4;
        });
        assert_eq!(
            both.gpe_blocks[1],
            Some(GpeBlock {
                port: 0x630,
                length: 4
            })
        );
        // PM1_EVT_LEN below 4 or odd: no usable block.
        for length in [0u8, 2, 5] {
            let fadt = with(&|body| body[at(FADT_PM1_EVENT_LENGTH)] = length);
            assert_eq!(fadt.pm1_events, None, "length {length}");
            assert!(!fadt.fixed_power_button);
        }
        // Only the extended fields: PM1a and PM1b from their I/O GAS.
        let extended = with(&|body| {
            body[at(FADT_PM1A_EVENT)..at(FADT_PM1A_EVENT) + 4].fill(0);
            let gas_a = [1, 32, 0, 2, 0x00, 0x04, 0, 0, 0, 0, 0, 0];
            let gas_b = [1, 32, 0, 2, 0x40, 0x04, 0, 0, 0, 0, 0, 0];
            body[at(FADT_X_PM1A_EVENT)..at(FADT_X_PM1A_EVENT) + 12].copy_from_slice(&gas_a);
            body[at(FADT_X_PM1B_EVENT)..at(FADT_X_PM1B_EVENT) + 12].copy_from_slice(&gas_b);
        });
        let events = extended.pm1_events.unwrap();
        assert_eq!((events.a, events.b), (0x400, Some(0x440)));
        assert_eq!(events.enable_port(events.b.unwrap()), 0x442);
        // ACPI_ENABLE 0: the chipset has no legacy mode to leave.
        assert_eq!(
            with(&|body| body[at(FADT_ACPI_ENABLE)] = 0).acpi_enable,
            None
        );
        // An SCI_INT past a byte is not an ISA IRQ.
        let wide = with(&|body| body[at(FADT_SCI_INT) + 1] = 1);
        assert_eq!(wide.sci_interrupt, None);
    }

    #[test]
    fn override_modes_resolve_bus_defaults() {
        let mode = |flags| InterruptOverride { gsi: 0, flags }.mode(SCI_DEFAULT);
        assert_eq!(mode(0), SCI_DEFAULT);
        assert_eq!(
            mode(0b0101),
            LineMode {
                level: false,
                active_low: false
            }
        );
        assert_eq!(mode(0b1111), SCI_DEFAULT);
        // 0b10 is reserved in both fields: the default stands.
        assert_eq!(mode(0b1010), SCI_DEFAULT);
        assert_eq!(
            InterruptOverride {
                gsi: 0,
                flags: 0b1111
            }
            .mode(ISA_DEFAULT),
            SCI_DEFAULT
        );
    }

    #[test]
    fn s5_variants() {
        let dsdt = |aml: &[u8]| table(b"DSDT", aml);
        assert_eq!(s5_sleep_type(&dsdt(b"_S5_\x12\x06\x04\x00")), Some(0));
        assert_eq!(s5_sleep_type(&dsdt(b"_S5_\x12\x06\x04\x01")), Some(1));
        assert_eq!(s5_sleep_type(&dsdt(b"_S5_\x12\x06\x04\xff")), None);
        assert_eq!(
            s5_sleep_type(&dsdt(b"_S5_\x12\x46\x00\x04\x0a\x07")),
            Some(7)
        );
        assert_eq!(s5_sleep_type(&dsdt(b"_S5_\x12\x06\x04\x0a")), None); // cut short
        assert_eq!(s5_sleep_type(&dsdt(b"_S5_\x13")), None);
        assert_eq!(s5_sleep_type(&dsdt(b"nothing")), None);
        assert!(!mentions(&dsdt(b"abc"), b""));
    }
}
