//! Firmware tables, read where the firmware left them: this module maps their memory and
//! hands the bytes to torito-boot's parsers (`torito_boot::acpi`, `torito_boot::bios`),
//! which are tested and fuzzed on the host; it keeps what they found, and requests ACPI
//! S5 (power-off) through the registers the FADT names.
//!
//! `init` reads the FADT and the MADT (every boot needs them); the DSDT is read only at
//! power-off or for a device lookup, and the BIOS areas are scanned (once, for both the
//! RSDP and the MP floating pointer) only when the loader passed no RSDP or there is no
//! MADT. A table that fails validation is ignored with a warning naming the defect.

use super::boot_token::Boot;
use super::paging;
use conquer_once::spin::OnceCell;
use torito_boot::acpi::{self as tables, Fadt, Register};
pub use torito_boot::acpi::{IoApicEntry, Madt};
use torito_boot::bios::{self, MpTable};
use torito_boot::ged::GedPowerButton;
use torito_boot::{AcpiRoot, BootError, BootInfo, MemoryKind, PhysMemory};
use x86_64::instructions::port::Port;

/// Physical memory as the firmware-table parsers see it: only what the kernel does not
/// own, so that a table pointer into RAM the heap or a stack uses is refused, not read.
struct Firmware {
    boot: &'static BootInfo,
    /// The BIOS data area's EBDA address, read at entry (page 0 is unmapped since).
    ebda: Option<u64>,
}

impl Firmware {
    /// Whether `addr..addr+len` overlaps usable RAM or the kernel image (`None` when the
    /// range wraps).
    fn owned(&self, addr: u64, len: usize) -> Option<bool> {
        let end = addr.checked_add(len as u64)?;
        let image = paging::kernel_image();
        Some(
            self.boot
                .memory_map()
                .iter()
                .filter(|region| region.kind == MemoryKind::Usable)
                .map(|region| (region.start, region.end()))
                .chain([(image.start, image.end)])
                .any(|(start, stop)| addr < stop && start < end),
        )
    }
}

impl PhysMemory for Firmware {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        if self.owned(addr, len)? {
            log::warn!(
                "acpi: firmware data at {:#x} ({} bytes) lies in RAM the kernel uses; ignored",
                addr,
                len
            );
            return None;
        }
        // SAFETY: the range lies outside every usable RAM region of the memory map and
        // outside the kernel image (checked just above): no Rust object lives there and
        // the kernel never writes it. It is firmware memory (or nothing), which the
        // firmware does not change while the kernel runs.
        unsafe { paging::firmware_bytes(addr, len) }
    }
}

static FIRMWARE: OnceCell<Firmware> = OnceCell::uninit();
static TABLES: OnceCell<Tables> = OnceCell::uninit();

/// What the kernel keeps of the firmware's tables.
struct Tables {
    /// The RSDP's root table, for lookups after boot (the MCFG).
    root: Option<AcpiRoot>,
    fadt: Fadt,
    madt: Option<Madt<'static>>,
    mp_table: Option<MpTable<'static>>,
}

/// Reads the firmware's tables, once: the FADT and the MADT through the loader's RSDP or,
/// without one, through the RSDP the BIOS-area scan finds (Firecracker writes tables but
/// passes no RSDP); the MP table when there is no MADT, from the same scan. Every boot
/// needs the MADT (for the CPUs) and most need the FADT (for the PM timer), so nothing is
/// saved by reading them later; the DSDT is read only at power-off or for a device lookup.
/// `boot` gives the loader's RSDP and memory map, `ebda` the EBDA's address
/// (`torito_boot::ebda_address`, read while page 0 was still mapped). Only the first call
/// counts.
pub fn init(_boot_only: &Boot, boot: &'static BootInfo, ebda: Option<u64>) {
    FIRMWARE.init_once(|| Firmware { boot, ebda });
    let Ok(firmware) = FIRMWARE.try_get() else {
        return;
    };
    TABLES.init_once(|| {
        let mut scan = None;
        let mut bios_pointers =
            || *scan.get_or_insert_with(|| bios::scan_bios_areas(firmware, firmware.ebda));
        // An RSDP past the boot tables' reach (a Xen domU's) is read now, mapped on demand.
        let unread = boot.rsdp_unread.and_then(|address| {
            torito_boot::read_rsdp(firmware, address)
                .map_err(|error| log::warn!("acpi: {}", error))
                .ok()
        });
        let root = boot.acpi.or(unread).or_else(|| bios_pointers().rsdp);
        let find = |signature| {
            let root = root?;
            ignore_bad(tables::find_table(firmware, &root, signature))
        };
        let fadt = find(*b"FACP").map(Fadt::parse).unwrap_or_default();
        let sleep_control = match fadt.sleep_control {
            Some(Register::Io(port)) => u64::from(port),
            Some(Register::Memory(address)) => address,
            None => 0,
        };
        log::debug!(
            "acpi: PM1a control {:#x}, sleep control {:#x}, PM timer {:#x} (0: none)",
            fadt.pm1a_control.map_or(0, u64::from),
            sleep_control,
            fadt.pm_timer.map_or(0, |timer| u64::from(timer.port))
        );
        let madt = find(*b"APIC").map(Madt::new);
        if let Some(defect) = madt.and_then(|madt| madt.defect()) {
            log::warn!("acpi: {}", defect);
        }
        let mp_table = match madt {
            Some(_) => None,
            None => bios_pointers().mp_table.and_then(|address| {
                bios::read_mp_table(firmware, address)
                    .map_err(|error| log::warn!("acpi: {}", error))
                    .ok()
            }),
        };
        Tables {
            root,
            fadt,
            madt,
            mp_table,
        }
    });
}

/// Logs a table that failed validation; `None` for it.
fn ignore_bad<T>(result: Result<Option<T>, BootError>) -> Option<T> {
    result.unwrap_or_else(|error| {
        log::warn!("acpi: {}", error);
        None
    })
}

/// The tables, once `init` read them (never waiting: an exit from a fault inside `init`
/// gets `None`).
fn tables() -> Option<&'static Tables> {
    TABLES.try_get().ok()
}

/// The DSDT the FADT points at.
fn dsdt(fadt: &Fadt) -> Option<&'static [u8]> {
    let firmware = FIRMWARE.try_get().ok()?;
    ignore_bad(tables::read_table(firmware, fadt.dsdt?, *b"DSDT").map(Some))
}

/// What the FADT says; all `None` without ACPI.
pub fn fadt() -> Fadt {
    tables().map(|tables| tables.fadt).unwrap_or_default()
}

/// The MADT; `None` without ACPI.
pub fn madt() -> Option<Madt<'static>> {
    tables()?.madt
}

/// The MP configuration table, when there is no MADT (Firecracker and QEMU microvm with
/// `acpi=off` write one instead).
pub fn mp_table() -> Option<MpTable<'static>> {
    tables()?.mp_table
}

/// Whether the DSDT mentions `name` (e.g. QEMU microvm's virtio-mmio `_HID "LNRO0005"`).
pub fn dsdt_mentions(name: &[u8]) -> bool {
    dsdt(&fadt()).is_some_and(|dsdt| tables::mentions(dsdt, name))
}

/// The power button of a Generic Event Device (QEMU microvm, Cloud Hypervisor), from the
/// DSDT (`torito_boot::ged`); `None` without one, or when the DSDT puts its register in
/// RAM the kernel uses (hostile or broken: refused with a warning).
pub fn ged_power_button() -> Option<GedPowerButton> {
    let firmware = FIRMWARE.try_get().ok()?;
    let button = torito_boot::ged::find_ged_power_button(dsdt(&fadt())?)?;
    if firmware.owned(button.register, usize::from(button.width)) != Some(false) {
        log::warn!(
            "acpi: the GED's event register {:#x} lies in RAM the kernel uses; ignored",
            button.register
        );
        return None;
    }
    Some(button)
}

/// The MCFG table (PCI Express ECAM windows), when the firmware has one (q35, Cloud
/// Hypervisor); parsed by `torito_virtio::discovery::pci::parse_mcfg`.
pub fn mcfg() -> Option<&'static [u8]> {
    let firmware = FIRMWARE.try_get().ok()?;
    let root = tables()?.root.as_ref()?;
    ignore_bad(tables::find_table(firmware, root, *b"MCFG"))
}

/// Requests ACPI S5 (soft off) through the FADT's PM1a control block or sleep control
/// register; returns whether it wrote a request (the VM then stops when the hypervisor
/// acts on it).
pub fn power_off() -> bool {
    // Reading the DSDT, or mapping a memory-mapped register, takes the page-table lock.
    // An exit from a fault inside a page-table change holds it: those steps are then
    // skipped rather than waiting forever.
    let fadt = fadt();
    // The sleep type is read here, at the one call: scanning the DSDT for it at boot
    // would cost every boot for the sake of the last moment of one.
    let s5_sleep_type = if paging::busy() {
        None
    } else {
        dsdt(&fadt).and_then(tables::s5_sleep_type)
    };
    let sleep_type = u16::from(s5_sleep_type.unwrap_or(0));
    const SLEEP_ENABLE: u16 = 1 << 13;
    let mut requested = false;
    if let Some(port) = fadt.pm1a_control {
        // SAFETY: the FADT names this port as PM1a_CNT; writing SLP_TYP|SLP_EN requests S5.
        unsafe { Port::<u16>::new(port).write((sleep_type << 10) | SLEEP_ENABLE) };
        requested = true;
    }
    if let Some(register) = fadt.sleep_control {
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
