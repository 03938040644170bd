//! Just enough ACPI for power-off and the PM timer: the FADT and the `\_S5` sleep type.
//!
//! Firmware tables are untrusted input like any other: lengths are bounded, checksums
//! checked, and a table that fails is ignored (with a warning) rather than trusted.
//! No AML interpreter: `\_S5` is found with the usual byte-pattern scan of the DSDT.

use super::paging;
use crate::console::OrNone;
use torito_boot::AcpiRoot;
use x86_64::instructions::port::Port;

/// A generic address structure (ACPI 5.2.3.2), reduced to what we write to.
#[derive(Debug, Clone, Copy)]
enum Register {
    Io(u16),
    Memory(u64),
}

/// What the FADT told us.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fadt {
    pm1a_control: Option<u16>,
    sleep_control: Option<RegisterSlot>,
    /// The ACPI PM timer's I/O port, when the platform has one (q35, pc).
    pub pm_timer: Option<u16>,
    /// Whether the PM timer counts 32 bits (else 24).
    pub pm_timer_32bit: bool,
    s5_sleep_type: Option<u8>,
}

#[derive(Debug, Clone, Copy)]
struct RegisterSlot(Register);

static FADT: spin::Once<Fadt> = spin::Once::new();

const MAX_TABLE: usize = 1 << 20;

fn table(phys: u64, signature: &[u8; 4]) -> Option<&'static [u8]> {
    let header = paging::firmware_bytes(phys, 36)?;
    if &header[..4] != signature {
        return None;
    }
    let length = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    if !(36..=MAX_TABLE).contains(&length) {
        log::warn!(
            "acpi: table {} at {:#x} has a bad length {}",
            core::str::from_utf8(signature).unwrap_or("????"),
            phys,
            length
        );
        return None;
    }
    let bytes = paging::firmware_bytes(phys, length)?;
    if bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte)) != 0 {
        log::warn!(
            "acpi: table {} at {:#x} has a bad checksum; ignored",
            core::str::from_utf8(signature).unwrap_or("????"),
            phys
        );
        return None;
    }
    Some(bytes)
}

fn find(root: &AcpiRoot, signature: &[u8; 4]) -> Option<&'static [u8]> {
    let (list, entry_size) = match root.xsdt {
        Some(xsdt) => (table(xsdt, b"XSDT")?, 8),
        None => (table(u64::from(root.rsdt), b"RSDT")?, 4),
    };
    list[36..].chunks_exact(entry_size).find_map(|entry| {
        let mut address = [0u8; 8];
        address[..entry_size].copy_from_slice(entry);
        let phys = u64::from_le_bytes(address);
        let header = paging::firmware_bytes(phys, 4)?;
        if &header[..4] == signature {
            table(phys, signature)
        } else {
            None
        }
    })
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset + 8)?.try_into().ok()?,
    ))
}

fn generic_address(bytes: &[u8], offset: usize) -> Option<Register> {
    let gas = bytes.get(offset..offset + 12)?;
    let address = u64_at(gas, 4)?;
    if address == 0 {
        return None;
    }
    match gas[0] {
        0 => Some(Register::Memory(address)),
        1 => u16::try_from(address).ok().map(Register::Io),
        _ => None,
    }
}

/// The `\_S5` package's first element (SLP_TYPa), from a DSDT's AML.
fn s5_sleep_type(aml: &[u8]) -> Option<u8> {
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

/// The table named by `signature`, found through the root `init` recorded.
fn find_table(signature: &[u8; 4]) -> Option<&'static [u8]> {
    ROOT.get()
        .copied()
        .flatten()
        .and_then(|root| find(&root, signature))
}

/// The DSDT a FADT points at: its 64-bit address when set, else the 32-bit one.
fn dsdt(fadt: &[u8]) -> Option<&'static [u8]> {
    let address = u64_at(fadt, 140)
        .filter(|address| *address != 0)
        .or(u32_at(fadt, 40).map(u64::from))?;
    table(address, b"DSDT")
}

fn parse_fadt(fadt: &[u8]) -> Fadt {
    let flags = u32_at(fadt, 112).unwrap_or(0);
    let hardware_reduced = flags & (1 << 20) != 0;
    let s5_sleep_type = dsdt(fadt).and_then(|dsdt| s5_sleep_type(&dsdt[36..]));
    let pm_timer = if hardware_reduced {
        None
    } else {
        u32_at(fadt, 76)
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port != 0)
    };
    Fadt {
        pm1a_control: u32_at(fadt, 64)
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port != 0),
        sleep_control: generic_address(fadt, 244).map(RegisterSlot),
        pm_timer,
        pm_timer_32bit: flags & (1 << 8) != 0,
        s5_sleep_type,
    }
}

/// Looks for the RSDP where BIOS-style firmware leaves it (ACPI 6.5, 5.2.5.1): the first
/// KiB of the EBDA, then 0xe0000-0xfffff, on 16-byte boundaries, validated like one the
/// loader passed. Firecracker writes its tables there but passes no address in PVH's
/// start info.
pub fn search_rsdp() -> Option<AcpiRoot> {
    let ebda = paging::firmware_bytes(0x40e, 2)
        .map(|bytes| u64::from(u16::from_le_bytes([bytes[0], bytes[1]])) << 4);
    let areas = [
        ebda.filter(|start| *start >= 0x80000)
            .map(|start| (start, 1024)),
        Some((0xe0000, 0x20000)),
    ];
    areas.into_iter().flatten().find_map(|(start, len)| {
        let area = paging::firmware_bytes(start, len)?;
        area.chunks_exact(16)
            .enumerate()
            .find_map(|(index, chunk)| {
                if &chunk[..8] != b"RSD PTR " {
                    return None;
                }
                let offset = index * 16;
                torito_boot::parse_rsdp(&area[offset..(offset + 36).min(area.len())]).ok()
            })
    })
}

/// Records where the ACPI tables are, searching the BIOS area when the loader gave no
/// RSDP. No table is read here: each is read when first needed, so a boot that needs
/// neither the PM timer nor S5 never parses the FADT or scans the DSDT.
pub fn init(root: Option<AcpiRoot>) {
    ROOT.call_once(|| root.or_else(search_rsdp));
}

/// What the FADT says (read on first use); all `None` without ACPI.
pub fn fadt() -> Fadt {
    *FADT.call_once(|| {
        let fadt = find_table(b"FACP").map(parse_fadt).unwrap_or_default();
        log::debug!(
            "acpi: PM1a control {}, sleep control {}, PM timer {}, S5 type {}",
            OrNone(fadt.pm1a_control),
            fadt.sleep_control.is_some(),
            OrNone(fadt.pm_timer),
            OrNone(fadt.s5_sleep_type)
        );
        fadt
    })
}

/// Requests ACPI S5 (soft off) through the FADT's PM1a control block or sleep control
/// register; returns whether it wrote a request (the VM then stops when the hypervisor
/// acts on it).
pub fn power_off() -> bool {
    // Reading the FADT, or mapping a memory-mapped register, takes the page-table lock.
    // An exit from a fault inside a page-table change holds it: S5 is then skipped (the
    // caller resets instead) rather than waiting forever.
    if FADT.get().is_none() && paging::busy() {
        return false;
    }
    let fadt = fadt();
    let sleep_type = u16::from(fadt.s5_sleep_type.unwrap_or(0));
    const SLEEP_ENABLE: u16 = 1 << 13;
    let mut requested = false;
    if let Some(port) = fadt.pm1a_control {
        // SAFETY: the FADT names this port as PM1a_CNT; writing SLP_TYP|SLP_EN requests S5.
        unsafe { Port::<u16>::new(port).write((sleep_type << 10) | SLEEP_ENABLE) };
        requested = true;
    }
    if let Some(RegisterSlot(register)) = fadt.sleep_control {
        // Hardware-reduced ACPI: SLP_TYP in bits 2-4, SLP_EN is bit 5.
        let value = ((sleep_type as u8) << 2) | (1 << 5);
        match register {
            Register::Io(port) => {
                // SAFETY: the FADT names this port as the sleep control register.
                unsafe { Port::<u8>::new(port).write(value) };
                requested = true;
            }
            Register::Memory(phys) if !paging::busy() => {
                if let Some(register) = paging::map_device(phys, 1) {
                    // SAFETY: `map_device` mapped this device register uncached.
                    unsafe { core::ptr::write_volatile(register as *mut u8, value) };
                    requested = true;
                }
            }
            Register::Memory(_) => {}
        }
    }
    requested
}

/// An I/O APIC from the MADT.
#[derive(Debug, Clone, Copy)]
pub struct IoApicEntry {
    /// Physical address of its registers.
    pub address: u64,
    /// First global system interrupt it serves.
    pub gsi_base: u32,
}

/// The MADT (ACPI 5.2.12), read where the firmware left it: its entries are parsed as
/// they are iterated, so nothing is copied out at boot.
#[derive(Debug, Clone, Copy)]
pub struct Madt(&'static [u8]);

static MADT: spin::Once<Option<Madt>> = spin::Once::new();
static ROOT: spin::Once<Option<AcpiRoot>> = spin::Once::new();

/// The MADT (looked up once); `None` without ACPI.
pub fn madt() -> Option<Madt> {
    *MADT.call_once(|| find_table(b"APIC").map(Madt))
}

impl Madt {
    /// The interrupt controller structures as (type, bytes), up to a malformed one.
    fn entries(self) -> impl Iterator<Item = (u8, &'static [u8])> {
        let table = self.0;
        let mut offset = 44;
        core::iter::from_fn(move || {
            let length = usize::from(*table.get(offset + 1)?);
            let entry = table.get(offset..offset + length).filter(|_| length >= 2);
            let Some(entry) = entry else {
                log::warn!(
                    "acpi: MADT entry at offset {} has a bad length {}; rest ignored",
                    offset,
                    length
                );
                return None;
            };
            offset += length;
            Some((entry[0], entry))
        })
    }

    /// Usable local APIC ids (enabled or online-capable): processor local APIC and
    /// local x2APIC entries.
    pub fn local_apics(self) -> impl Iterator<Item = u32> {
        let usable = |flags: Option<u32>| flags.is_some_and(|flags| flags & 0b11 != 0);
        self.entries().filter_map(move |(kind, entry)| match kind {
            0 if entry.len() >= 8 && usable(u32_at(entry, 4)) => Some(u32::from(entry[3])),
            9 if entry.len() >= 16 && usable(u32_at(entry, 8)) => u32_at(entry, 4),
            _ => None,
        })
    }

    /// The I/O APICs.
    pub fn io_apics(self) -> impl Iterator<Item = IoApicEntry> {
        self.entries().filter_map(|(kind, entry)| {
            (kind == 1 && entry.len() >= 12).then_some(IoApicEntry {
                address: u64::from(u32_at(entry, 4)?),
                gsi_base: u32_at(entry, 8)?,
            })
        })
    }
}

/// Whether the DSDT mentions `name` (e.g. QEMU microvm's virtio-mmio `_HID "LNRO0005"`).
pub fn dsdt_mentions(name: &[u8]) -> bool {
    find_table(b"FACP")
        .and_then(dsdt)
        .is_some_and(|dsdt| dsdt.windows(name.len()).any(|window| window == name))
}

/// The MCFG table (PCI Express ECAM windows), when the firmware has one (q35, Cloud
/// Hypervisor); parsed by `torito_virtio::discovery::pci::parse_mcfg`.
pub fn mcfg() -> Option<&'static [u8]> {
    find_table(b"MCFG")
}
