//! Firmware tables, read where the firmware left them: this module maps their memory and
//! hands the bytes to torito-boot's parsers (`torito_boot::acpi`, `torito_boot::bios`),
//! which are tested and fuzzed on the host; it keeps what they found, and requests ACPI
//! S5 (power-off) through the registers the FADT names.
//!
//! Nothing is read before it is needed: the MADT when the CPUs or I/O APICs are wanted,
//! the FADT for the PM timer or S5, the DSDT at power-off or for a device lookup, and the BIOS
//! areas are scanned (once, for both the RSDP and the MP floating pointer) only when the
//! loader passed no RSDP or there is no MADT. A table that fails validation is ignored
//! with a warning naming the defect.

use super::paging;
use conquer_once::spin::OnceCell;
use torito_boot::acpi::{self as tables, Fadt, Register};
pub use torito_boot::acpi::{IoApicEntry, Madt};
use torito_boot::bios::{self, BiosPointers, MpTable};
use torito_boot::{AcpiRoot, BootError, BootInfo, MemoryKind, PhysMemory};
use x86_64::instructions::port::Port;

/// Physical memory as the firmware-table parsers see it: only what the kernel does not
/// own, so that a table pointer into RAM the heap or a stack uses is refused, not read.
struct Firmware {
    boot: &'static BootInfo,
    /// The BIOS data area's EBDA address, read at entry (page 0 is unmapped since).
    ebda: Option<u64>,
}

impl PhysMemory for Firmware {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        let image = paging::kernel_image();
        let owned = self
            .boot
            .memory_map()
            .iter()
            .filter(|region| region.kind == MemoryKind::Usable)
            .map(|region| (region.start, region.end()))
            .chain([(image.start, image.end)])
            .any(|(start, stop)| addr < stop && start < end);
        if owned {
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
static BIOS: OnceCell<BiosPointers> = OnceCell::uninit();
static FADT: OnceCell<Fadt> = OnceCell::uninit();
static MADT: OnceCell<Option<Madt<'static>>> = OnceCell::uninit();

/// Records where the firmware's tables can be found: the loader's RSDP and memory map in
/// `boot`, and `ebda` (`torito_boot::ebda_address`, read while page 0 was still mapped).
/// No table is read here. Only the first call counts.
pub fn init(boot: &'static BootInfo, ebda: Option<u64>) {
    FIRMWARE.init_once(|| Firmware { boot, ebda });
}

fn firmware() -> Option<&'static Firmware> {
    FIRMWARE.get()
}

/// The one scan of the BIOS areas (for the RSDP and the MP floating pointer).
fn bios_pointers() -> BiosPointers {
    *BIOS.get_or_init(|| {
        firmware()
            .map(|firmware| bios::scan_bios_areas(firmware, firmware.ebda))
            .unwrap_or_default()
    })
}

/// The ACPI root: the loader's, else the one the BIOS-area scan finds (Firecracker
/// writes tables but passes no RSDP).
fn root() -> Option<AcpiRoot> {
    firmware()?.boot.acpi.or_else(|| bios_pointers().rsdp)
}

/// Logs a table that failed validation; `None` for it.
fn ignore_bad<T>(result: Result<Option<T>, BootError>) -> Option<T> {
    result.unwrap_or_else(|error| {
        log::warn!("acpi: {}", error);
        None
    })
}

/// The table named by `signature`, through the root.
fn find_table(signature: [u8; 4]) -> Option<&'static [u8]> {
    let firmware = firmware()?;
    ignore_bad(tables::find_table(firmware, &root()?, signature))
}

/// The DSDT the FADT points at.
fn dsdt(fadt: &Fadt) -> Option<&'static [u8]> {
    let firmware = firmware()?;
    ignore_bad(tables::read_table(firmware, fadt.dsdt?, *b"DSDT").map(Some))
}

/// What the FADT says (read on first use); all `None` without ACPI.
pub fn fadt() -> Fadt {
    *FADT.get_or_init(|| {
        let fadt = find_table(*b"FACP").map(Fadt::parse).unwrap_or_default();
        log::debug!("acpi: {}", fadt);
        fadt
    })
}

/// The MADT (looked up once); `None` without ACPI.
pub fn madt() -> Option<Madt<'static>> {
    *MADT.get_or_init(|| {
        let madt = find_table(*b"APIC").map(Madt::new)?;
        if let Some(defect) = madt.defect() {
            log::warn!("acpi: {}", defect);
        }
        Some(madt)
    })
}

/// The MP configuration table, found by the BIOS-area scan (Firecracker and QEMU microvm
/// with `acpi=off` write one instead of ACPI's MADT).
pub fn mp_table() -> Option<MpTable<'static>> {
    let firmware = firmware()?;
    let address = bios_pointers().mp_table?;
    bios::read_mp_table(firmware, address)
        .map_err(|error| log::warn!("acpi: {}", error))
        .ok()
}

/// Whether the DSDT mentions `name` (e.g. QEMU microvm's virtio-mmio `_HID "LNRO0005"`).
pub fn dsdt_mentions(name: &[u8]) -> bool {
    dsdt(&fadt()).is_some_and(|dsdt| tables::mentions(dsdt, name))
}

/// Requests ACPI S5 (soft off) through the FADT's PM1a control block or sleep control
/// register; returns whether it wrote a request (the VM then stops when the hypervisor
/// acts on it).
pub fn power_off() -> bool {
    // Reading the FADT, or mapping a memory-mapped register, takes the page-table lock.
    // An exit from a fault inside a page-table change holds it: S5 is then skipped (the
    // caller resets instead) rather than waiting forever.
    if !FADT.is_initialized() && paging::busy() {
        return false;
    }
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
