//! Xen: found through CPUID, then asked for what a PVH dom0 does not get otherwise.
//!
//! On Xen the boot takes four things from the hypervisor instead of the machine:
//!
//! - the **memory map** (`XENMEM_memory_map`): Xen gives its PVH dom0 a version-0
//!   `start_info` without one;
//! - the **console** (`console_io`): Xen owns COM1 when its own console is there;
//! - the **TSC rate**, from the scale Xen publishes (CPUID leaf base + 3, sub-leaf 1, the
//!   `vcpu_time_info` pair): Xen keeps the PIT and the ACPI PM timer from dom0;
//! - the **end** (`SCHEDOP_shutdown`), after the isa-debug-exit port.
//!
//! Everything else (local APIC, ACPI tables, PCI) is what Xen emulates or passes through;
//! one of Xen's ACPI tables needs a repair first (`repair_xsdt`).
//! Off Xen, `init` costs one CPUID scan and nothing else here runs. The hypercalls and
//! their `unsafe` are in `hypercall`; what they send and how replies are checked is plain
//! code in `torito_boot::xen`, tested on the host.

mod console;
pub mod domu;
pub mod events;
mod hypercall;
pub mod shared;
mod xsdt;

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use torito_boot::xen::{self as abi, DomainKind};
use torito_boot::{BootError, BootInfo, MAX_MEMORY_REGIONS};

/// Xen's CPUID base leaf, or 0 when not on Xen (or before `init`).
static BASE: AtomicU32 = AtomicU32::new(0);
/// Whether this domain is unprivileged (a domU), when on Xen.
static DOMU: AtomicBool = AtomicBool::new(false);
/// Whether the toolstack's last stop request was a reboot (`xl reboot`).
static REBOOT: AtomicBool = AtomicBool::new(false);

/// What went wrong talking to Xen after the boot's first steps (these are logged, and the
/// kernel goes on without what failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Xen refused a hypercall: `call`, with error number `errno`.
    Hypercall {
        /// What was asked.
        call: &'static str,
        /// Xen's error number.
        errno: u32,
    },
    /// No free frame for a page Xen shares with this kernel: give the domain more memory.
    NoFrame(&'static str),
    /// The upcall vector was already registered (a kernel bug).
    VectorTaken(u8),
    /// A parameter the toolstack sets for a domU is missing or out of range.
    Param {
        /// The parameter's name.
        name: &'static str,
        /// Its value.
        value: u64,
    },
}

impl Error {
    /// A hypercall's status as a result.
    fn check(call: &'static str, status: i64) -> Result<u64, Self> {
        u64::try_from(status).map_err(|_| Self::Hypercall {
            call,
            errno: status.unsigned_abs().min(u64::from(u32::MAX)) as u32,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Hypercall { call, errno } => write!(
                f,
                "Xen refused {call}: error -{errno} ({})",
                abi::errno_name(errno)
            ),
            Self::NoFrame(what) => write!(
                f,
                "no free frame for the {what} page: give the domain more memory"
            ),
            Self::VectorTaken(vector) => write!(f, "vector {vector} is taken (a kernel bug)"),
            Self::Param { name, value } => write!(
                f,
                "{name} is {value:#x}: the toolstack did not set it up (is this a PVH domU \
                 built by xl?)"
            ),
        }
    }
}

impl core::error::Error for Error {}

fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let result = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (result.eax, result.ebx, result.ecx, result.edx)
}

/// Looks for Xen and, when found, installs the hypercall page. Returns whether the
/// kernel runs on Xen.
///
/// # Errors
/// When Xen's hypercall leaf is unusable (the boot then stops: without hypercalls a
/// dom0 has neither console nor memory map).
pub fn init() -> Result<bool, BootError> {
    if cpuid(1, 0).2 & (1 << 31) == 0 {
        return Ok(false); // no hypervisor at all
    }
    let Some(base) = abi::BASES.into_iter().find(|&leaf| {
        let (max, ebx, ecx, edx) = cpuid(leaf, 0);
        abi::is_signature(ebx, ecx, edx) && max >= leaf + 3
    }) else {
        return Ok(false);
    };
    let (pages, msr, _, _) = cpuid(base + 2, 0);
    let leaf = abi::HypercallLeaf::decode(pages, msr)?;
    hypercall::install(leaf.msr);
    BASE.store(base, Ordering::Relaxed);
    Ok(true)
}

/// Notes what this domain is from its PVH `start_info` flags, once the boot information
/// is parsed (until then the console is `console_io`'s, which is right for dom0 and, on
/// a domU, the only thing there is before the ring). Not on Xen: nothing.
pub fn note_start_flags(flags: u32) {
    if present() {
        DOMU.store(
            DomainKind::from_start_flags(flags) == DomainKind::DomU,
            Ordering::Relaxed,
        );
    }
}

/// Whether the kernel runs on Xen (after `init`).
pub fn present() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

/// What this domain is, when on Xen.
pub fn kind() -> Option<DomainKind> {
    present().then(|| {
        if DOMU.load(Ordering::Relaxed) {
            DomainKind::DomU
        } else {
            DomainKind::Dom0
        }
    })
}

/// Fills `info`'s memory map from `XENMEM_memory_map` (a version-0 `start_info` has none).
///
/// # Errors
/// `PvhNoMemoryMap` off Xen; the hypercall's failure; any error of
/// `torito_boot::xen::fill_memory_map` for a hostile or unusable reply.
pub fn memory_map(info: &mut BootInfo) -> Result<(), BootError> {
    if !present() {
        return Err(BootError::PvhNoMemoryMap { version: 0 });
    }
    let mut buffer = [0u8; MAX_MEMORY_REGIONS * abi::E820_ENTRY_SIZE];
    let (status, count) = hypercall::memory_map(&mut buffer);
    abi::check("XENMEM_memory_map", status)?;
    abi::fill_memory_map(info, &buffer, count)
}

/// Repairs the XSDT Xen 4.17 built for this dom0 when its signature is broken (see
/// `torito_boot::xen::repair_xsdt`), so that the MADT and FADT can be found. Boot only,
/// before the kernel's page tables replace the boot tables.
pub fn repair_xsdt(boot_only: &crate::arch::boot_token::Boot, info: &BootInfo) {
    if present() && xsdt::repair(boot_only, info) {
        log::debug!("xen: XSDT signature repaired");
    }
}

/// The TSC rate Xen states for this domain, when on Xen and plausible.
pub fn tsc_hz() -> Option<u64> {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return None;
    }
    let (_, _, mul, shift) = cpuid(base + 3, 1);
    abi::tsc_hz_from_scale(mul, shift as u8 as i8)
}

/// Notes what the toolstack asked for in `control/shutdown`: a reboot (`xl reboot`,
/// `reboot` true) or a stop (`xl shutdown`). The last request counts: a power-off asked
/// after a reboot is a power-off. The stop itself goes through `torito::shutdown()`'s
/// watcher like any other; only the end (`shutdown`) differs.
pub fn request_reboot(reboot: bool) {
    REBOOT.store(reboot, Ordering::Release);
}

/// Stops the domain: power-off for exit status 0 (a reboot when the toolstack asked for
/// one), crash otherwise. Returns at once off Xen, or if Xen refuses. A domU first waits
/// (bounded) for its console daemon to take what is in the ring, the exit line included.
pub fn shutdown(code: u32) {
    if present() {
        let reason = abi::ShutdownReason::at_exit(code, REBOOT.load(Ordering::Acquire));
        if reason == abi::ShutdownReason::Reboot {
            write(format_args!(
                "xen: the domain reboots (the toolstack asked: xl reboot)\n"
            ));
        }
        if DOMU.load(Ordering::Relaxed) {
            console::drain();
        }
        hypercall::shutdown(reason);
    }
}

/// A domU's console ring, right after the kernel's page tables are up (the ring's page
/// lies outside the boot tables' first 1 GiB); the boot's first lines, kept until now,
/// go out first. Off Xen and on dom0 it returns `Ok` at once; a domU without its ring
/// can only end (its log would go nowhere): the caller ends the boot with the error.
pub fn start_console(_boot_only: &crate::arch::boot_token::Boot) -> Result<(), Error> {
    if kind() != Some(DomainKind::DomU) {
        return Ok(());
    }
    console::start()
}

/// Console output gathered into lines, so that a line is one hypercall (a hypercall is
/// a VM exit; `fmt` hands text over in small pieces).
struct Line {
    bytes: [u8; 128],
    len: usize,
}

impl Line {
    fn flush(&mut self) {
        if self.len > 0 {
            if DOMU.load(Ordering::Relaxed) {
                console::write(&self.bytes[..self.len]);
            } else {
                hypercall::console_write(&self.bytes[..self.len]);
            }
            self.len = 0;
        }
    }
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.len == self.bytes.len() {
                self.flush();
            }
            self.bytes[self.len] = byte;
            self.len += 1;
            if byte == b'\n' {
                self.flush();
            }
        }
        Ok(())
    }
}

/// Writes formatted text to Xen's console (the caller holds the console lock, or is on
/// a fatal path), control characters but `\n` escaped as on COM1 (`crate::escape`).
pub fn write(args: fmt::Arguments<'_>) {
    let mut line = Line {
        bytes: [0; 128],
        len: 0,
    };
    let _ = crate::escape::Escaped::lines(&mut line).write_fmt(args);
    line.flush();
}
