//! From the boot assembly to the application's `main`, in order:
//!
//! 1. note the TSC (boot time is measured from here), look for Xen (whose console
//!    replaces COM1), COM1, GDT/TSS, IDT: from now on any fault is reported;
//! 2. parse the loader's boot information (through the boot tables' 1 GiB identity map)
//!    into an owned `BootInfo`; a malformed structure stops the boot here, by name;
//! 3. the command line: log level, unknown keys warned about, bad values fatal;
//! 4. frames from the memory map, the kernel's page tables, the heap;
//! 5. the local APIC, the firmware tables (FADT, MADT, or the MP table; parsed by
//!    torito-boot), the clock calibration;
//! 6. interrupts on, and the application's `main` (`runtime::run_main` starts the other
//!    cores first, so that `arch` needs nothing from above it).

use super::boot_token::Boot;
use super::{acpi, clock, exceptions, gdt, interrupts, lapic, paging, pic, serial, xen};
use crate::memory::frames::{FRAME, FrameAllocator, Range};
use core::fmt::Display;
use torito_boot::{BootInfo, PhysMemory};

/// Low memory kept out of the allocator: real-mode IVT/BDA and room for an AP trampoline.
const LOW_RESERVED: u64 = 0x10000;
/// Frames kept back from the heap for page tables (MMIO mappings, firmware tables).
const FRAME_RESERVE: u64 = 32 * FRAME;

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

/// The boot information (after boot).
pub fn boot_info() -> Option<&'static BootInfo> {
    BOOT_INFO.get()
}

/// Physical memory seen through the boot page tables: the first 1 GiB, identity-mapped.
struct BootIdentityMap;

impl PhysMemory for BootIdentityMap {
    fn read(&self, address: u64, len: usize) -> Option<&[u8]> {
        let end = address.checked_add(len as u64)?;
        if address == 0 || end > 1 << 30 {
            return None;
        }
        // SAFETY: the boot page tables identity-map the first 1 GiB (boot/src/entry.rs),
        // the range was checked to lie inside it and above page 0, and nothing writes
        // the loader's structures while they are parsed.
        Some(unsafe { core::slice::from_raw_parts(address as *const u8, len) })
    }
}

/// Stops the boot with a message naming what failed.
pub(crate) fn fatal(stage: &str, error: impl Display) -> ! {
    fatal_message(stage, &error)
}

/// `fatal`'s body, once for every error type rather than once per type.
#[inline(never)]
fn fatal_message(stage: &str, error: &dyn Display) -> ! {
    serial::force_write(format_args!(
        "\n!!! torito: cannot boot: {}: {}\n",
        stage, error
    ));
    super::exit::exit(super::panic::EXIT_PANIC)
}

unsafe extern "Rust" {
    /// Defined by `#[torito::main]` in the application: runs its `main` (`run_main`).
    safe fn torito_app_main() -> !;
}

#[unsafe(no_mangle)]
extern "C" fn torito_kernel_entry(protocol: u32, magic: u32, info: u32, entry_tsc: u64) -> ! {
    // SAFETY: this is the boot sequence, entered once by the boot core with interrupts
    // off; the token stays in this function.
    let boot_only = unsafe { Boot::new() };
    clock::mark_boot(entry_tsc);
    super::percpu::init(0, 0);
    // On Xen the console is Xen's (and Xen keeps COM1's ports from dom0): each port
    // write would be a trip into Xen for nothing. CPUID and the hypercall MSR need no
    // descriptor tables.
    let on_xen = xen::init().unwrap_or_else(|error| fatal("Xen", error));
    if !on_xen {
        serial::init();
    }
    gdt::init(0, gdt::boot_ist());
    interrupts::init(exceptions::report);
    pic::disable();

    let mut stamps = [0u64; 4];
    stamps[0] = clock::rdtsc();
    let parsed = if on_xen && protocol == torito_boot::PROTOCOL_PVH {
        parse_pvh_on_xen(info)
    } else {
        parse_boot_info(protocol, magic, info)
    };
    let boot =
        BOOT_INFO.call_once(|| parsed.unwrap_or_else(|error| fatal("boot information", error)));
    xen::note_start_flags(boot.start_flags);

    let cmdline = torito_boot::Cmdline::parse(boot.cmdline())
        .unwrap_or_else(|error| fatal("command line", error));
    let (options, unknown) =
        torito_boot::parse_kernel_options(&cmdline, torito_netstack::CONFIG_KEYS)
            .unwrap_or_else(|error| fatal("command line", error));
    super::logger::init(level_filter(options.log));
    for arg in unknown.filter(|arg| !crate::fs::path::KEYS.contains(&arg.key)) {
        log::warn!("command line: unknown key `{}` ignored", arg.key);
    }
    if let Err(error) = crate::fs::path::check_cmdline(&cmdline) {
        fatal("command line", error);
    }
    log::debug!(
        "boot: {}{}, command line `{}`",
        boot.protocol.name(),
        match xen::kind() {
            Some(torito_boot::xen::DomainKind::Dom0) => " on Xen (dom0)",
            Some(torito_boot::xen::DomainKind::DomU) => " on Xen (domU)",
            None => "",
        },
        boot.cmdline()
    );

    xen::repair_xsdt(&boot_only, boot);
    // The BIOS data area is in page 0, which the kernel's page tables leave unmapped.
    let ebda = torito_boot::ebda_address(&BootIdentityMap);
    let image = paging::kernel_image();
    let reserved = [
        Range {
            start: 0,
            end: LOW_RESERVED,
        },
        image,
    ];
    let (frames, dropped) = FrameAllocator::new(boot.memory_map(), &reserved);
    if dropped > 0 {
        log::warn!(
            "memory: {} memory-map ranges past the allocator's capacity are unused",
            dropped
        );
    }
    if let Err(error) = paging::init(boot.memory_map(), frames) {
        fatal("page tables", error);
    }
    let heap = paging::with_frames(|frames| frames.take_largest(FRAME_RESERVE)).flatten();
    let Some(heap) = heap else {
        fatal("memory", "no RAM left for a heap after the kernel image")
    };
    // SAFETY: the range came out of the frame allocator, which no longer owns it; it is
    // usable RAM, mapped read-write by `paging::init`.
    let given = unsafe { crate::memory::heap::HEAP.init(heap.start, heap.len() as usize) };
    if given.is_err() {
        fatal("memory", "the heap was given memory twice");
    }
    if let Err(error) = xen::start_console(&boot_only) {
        fatal("Xen console", error);
    }
    log::debug!(
        "memory: kernel {:#x}-{:#x}, heap {:#x}-{:#x} ({} KiB), {} KiB of frames",
        image.start,
        image.end,
        heap.start,
        heap.end,
        heap.len() / 1024,
        paging::with_frames(|frames| frames.free_bytes() / 1024).unwrap_or(0)
    );

    stamps[1] = clock::rdtsc();
    if let Err(error) = lapic::init() {
        fatal("local APIC", error);
    }
    acpi::init(&boot_only, boot, ebda);
    stamps[2] = clock::rdtsc();
    match clock::calibrate(&boot_only) {
        Ok(calibration) => log::debug!(
            "clock: TSC {} kHz from {}, APIC timer in {} mode",
            calibration.tsc_hz / 1000,
            calibration.source.name(),
            if lapic::deadline_mode() {
                "TSC-deadline"
            } else {
                "one-shot"
            }
        ),
        Err(error) => fatal("clock", error),
    }
    stamps[3] = clock::rdtsc();
    log::debug!(
        "boot: us spent: early {}, boot info + memory {}, apic + acpi {}, clock {}",
        clock::ticks_to_micros(stamps[0] - clock::boot_tsc()),
        clock::ticks_to_micros(stamps[1] - stamps[0]),
        clock::ticks_to_micros(stamps[2] - stamps[1]),
        clock::ticks_to_micros(stamps[3] - stamps[2]),
    );
    super::percpu::cpu(0).apic_id_set(lapic::id());
    x86_64::instructions::interrupts::enable();
    torito_app_main()
}

/// The loader's boot information, parsed (PVH or multiboot2).
// Out of line: inlined into the entry, the parsers' results and errors were copied
// through its large frame at every `?`.
#[inline(never)]
fn parse_boot_info(
    protocol: u32,
    magic: u32,
    info: u32,
) -> Result<BootInfo, torito_boot::BootError> {
    match protocol {
        torito_boot::PROTOCOL_PVH => torito_boot::parse_pvh(&BootIdentityMap, u64::from(info)),
        _ => torito_boot::parse_multiboot2(&BootIdentityMap, magic, u64::from(info)),
    }
}

/// The PVH start_info on Xen, with the memory map from Xen when it has none (a version-0
/// start_info: Xen's dom0). Apart from `parse_boot_info` because filling the map in
/// place costs a copy of the `BootInfo` (2.6 KiB) that other boots need not pay.
#[inline(never)]
fn parse_pvh_on_xen(info: u32) -> Result<BootInfo, torito_boot::BootError> {
    let mut parsed = torito_boot::parse_pvh(&BootIdentityMap, u64::from(info));
    if let Ok(info) = &mut parsed
        && info.memory_map().is_empty()
    {
        xen::memory_map(info)?;
    }
    parsed
}

fn level_filter(level: torito_boot::LogLevel) -> log::LevelFilter {
    match level {
        torito_boot::LogLevel::Error => log::LevelFilter::Error,
        torito_boot::LogLevel::Warn => log::LevelFilter::Warn,
        torito_boot::LogLevel::Info => log::LevelFilter::Info,
        torito_boot::LogLevel::Debug => log::LevelFilter::Debug,
        torito_boot::LogLevel::Trace => log::LevelFilter::Trace,
    }
}
