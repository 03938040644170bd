//! The monotonic clock: the TSC, with its frequency measured, never guessed.
//!
//! Sources for the TSC frequency, best first:
//!
//! 1. CPUID leaf 0x15 (TSC / crystal ratio and crystal frequency), exact when complete;
//! 2. the hypervisor timing leaf 0x40000010 (TSC and APIC bus kHz, VMware/QEMU/KVM);
//! 3. a measurement against the ACPI PM timer (3.579545 MHz, q35/pc);
//! 4. a measurement against PIT channel 0 (1.193182 MHz, microvm, Firecracker).
//!
//! On Xen, Xen's own scale comes before all of them (`xen::tsc_hz`).
//!
//! A measurement spans `CALIBRATION_MICROS`: short, because boot time is a product
//! feature, yet a thousand reference ticks, so the error stays near 0.1%. The local APIC
//! count-down rate (needed only without TSC-deadline mode) is measured in the same window,
//! or against the TSC when a CPUID leaf gave the TSC's rate but not the APIC's.
//!
//! All of it happens in one place, `calibrate`, at one point of the boot. Spreading the
//! measurement over the boot (start the PIT at entry, read it later) saves the wait only
//! on a boot that takes longer than the window before `calibrate` and has neither CPUID
//! leaf: a gain seen under emulation, where the boot is slow, and not on hardware, where
//! the boot to this point takes well under the window and CPUID or TSC-deadline mode
//! usually makes the measurement unnecessary.

use super::boot_token::Boot;
use super::{acpi, lapic};
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

const CALIBRATION_MICROS: u64 = 1000;
const PIT_HZ: u64 = 1_193_182;
const PM_TIMER_HZ: u64 = 3_579_545;

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// `nanoseconds = (ticks * NANOS_PER_TICK_32) >> 32`.
static NANOS_PER_TICK_32: AtomicU64 = AtomicU64::new(0);

/// Which source gave the TSC frequency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// CPUID leaf 0x15.
    CpuidCrystal,
    /// CPUID leaf 0x40000010.
    Hypervisor,
    /// Measured against the ACPI PM timer.
    PmTimer,
    /// Measured against PIT channel 0.
    Pit,
    /// Xen's `vcpu_time_info` scale (CPUID leaf base + 3, sub-leaf 1).
    Xen,
}

impl Source {
    /// What it is, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::CpuidCrystal => "CPUID 0x15",
            Self::Hypervisor => "CPUID 0x40000010",
            Self::PmTimer => "the ACPI PM timer",
            Self::Pit => "the PIT",
            Self::Xen => "Xen's vcpu_time_info scale",
        }
    }
}

/// The result of calibration.
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// Where that number came from.
    pub source: Source,
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; it is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Records the TSC at kernel entry (read by the boot stub's first instruction): the
/// epoch of `now_nanos`.
pub fn mark_boot(entry_tsc: u64) {
    BOOT_TSC.store(entry_tsc, Ordering::Relaxed);
}

/// The TSC at kernel entry.
pub fn boot_tsc() -> u64 {
    BOOT_TSC.load(Ordering::Relaxed)
}

/// Converts a TSC interval to microseconds (0 until calibrated).
pub fn ticks_to_micros(ticks: u64) -> u64 {
    (((u128::from(ticks) * u128::from(NANOS_PER_TICK_32.load(Ordering::Relaxed))) >> 32) / 1000)
        as u64
}

/// Nanoseconds since kernel entry (0 until calibrated).
pub fn now_nanos() -> u64 {
    let ticks = rdtsc().saturating_sub(BOOT_TSC.load(Ordering::Relaxed));
    ((u128::from(ticks) * u128::from(NANOS_PER_TICK_32.load(Ordering::Relaxed))) >> 32) as u64
}

/// The TSC value at `nanos` after kernel entry.
pub fn tsc_at(nanos: u64) -> u64 {
    let ticks = u128::from(nanos) * u128::from(TSC_HZ.load(Ordering::Relaxed)) / 1_000_000_000;
    BOOT_TSC
        .load(Ordering::Relaxed)
        .saturating_add(ticks.min(u128::from(u64::MAX)) as u64)
}

fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    lapic::x86_64_cpuid(leaf)
}

fn from_cpuid() -> Option<(u64, Source, Option<u64>)> {
    // Xen's own statement of the guest's TSC rate, first: it keeps the PIT and the PM
    // timer from dom0, and leaf 0x15 describes the host, not the guest.
    if let Some(hz) = super::xen::tsc_hz() {
        return Some((hz, Source::Xen, None));
    }
    if cpuid(0).0 >= 0x15 {
        let (denominator, numerator, crystal_hz, _) = cpuid(0x15);
        if denominator != 0 && numerator != 0 && crystal_hz != 0 {
            let hz = u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator);
            // The APIC timer runs at the crystal clock on these CPUs; divide by 16.
            return Some((hz, Source::CpuidCrystal, Some(u64::from(crystal_hz) / 16)));
        }
    }
    let hypervisor = cpuid(1).2 & (1 << 31) != 0;
    if hypervisor && cpuid(0x4000_0000).0 >= 0x4000_0010 {
        let (tsc_khz, bus_khz, _, _) = cpuid(0x4000_0010);
        if tsc_khz != 0 {
            let timer = (bus_khz != 0).then_some(u64::from(bus_khz) * 1000 / 16);
            return Some((u64::from(tsc_khz) * 1000, Source::Hypervisor, timer));
        }
    }
    None
}

/// A free-running reference counter: `read` returns its value, `mask` its width.
struct Reference {
    read: fn(u16) -> u64,
    port: u16,
    mask: u64,
    hz: u64,
    counts_down: bool,
}

fn read_pm_timer(port: u16) -> u64 {
    // SAFETY: the FADT names this port as the PM timer; reading it has no side effect.
    u64::from(unsafe { Port::<u32>::new(port).read() })
}

fn read_pit(_: u16) -> u64 {
    // SAFETY: PIT ports 0x40/0x43 belong to this module; latching channel 0 and reading
    // its count has no other effect.
    unsafe {
        Port::<u8>::new(0x43).write(0x00);
        let low = Port::<u8>::new(0x40).read();
        let high = Port::<u8>::new(0x40).read();
        u64::from(u16::from_le_bytes([low, high]))
    }
}

fn start_pit() {
    // SAFETY: channel 0, lobyte/hibyte, mode 2 (rate generator), binary, reload 0xffff;
    // its interrupt (IRQ 0) is never unmasked, so this only makes a counter run.
    unsafe {
        Port::<u8>::new(0x43).write(0x34);
        Port::<u8>::new(0x40).write(0xff);
        Port::<u8>::new(0x40).write(0xff);
    }
}

/// The APIC count-down rate measured against the TSC (running at `tsc_hz`) over
/// `CALIBRATION_MICROS`: for when a CPUID leaf gave the TSC's rate but not the APIC's.
///
/// Each read of the count is timed at the midpoint of two TSC reads around it: where
/// the local APIC is emulated (Xen's PVH), a read is a trip into the hypervisor, and
/// timing it from one side skewed the rate (measured under Xen under QEMU's emulator:
/// 19% low, so every APIC timer fired at 0.81 of its delay).
fn apic_hz_against_tsc(tsc_hz: u64) -> u64 {
    let window = tsc_hz * CALIBRATION_MICROS / 1_000_000;
    lapic::start_free_count();
    let (start, apic_start) = timed_count();
    while rdtsc() - start < window {
        core::hint::spin_loop();
    }
    let (end, apic_end) = timed_count();
    let counted = u64::from(apic_start.wrapping_sub(apic_end));
    counted * tsc_hz / (end - start).max(1)
}

/// The APIC count and the TSC at the middle of its read.
fn timed_count() -> (u64, u32) {
    let before = rdtsc();
    let count = lapic::current_count();
    let after = rdtsc();
    (before + after.wrapping_sub(before) / 2, count)
}

/// Measures (TSC Hz, APIC count-down Hz) against `reference`; `None` if it never moves.
fn measure(reference: &Reference) -> Option<(u64, u64)> {
    let wanted = reference.hz * CALIBRATION_MICROS / 1_000_000;
    let step = |previous: u64, now: u64| {
        if reference.counts_down {
            previous.wrapping_sub(now) & reference.mask
        } else {
            now.wrapping_sub(previous) & reference.mask
        }
    };
    // Align to a reference edge, with a bound in case the device is absent.
    let first = (reference.read)(reference.port);
    let give_up = rdtsc() + 200_000_000;
    let mut previous = first;
    while previous == first {
        previous = (reference.read)(reference.port);
        if rdtsc() > give_up {
            return None;
        }
    }
    lapic::start_free_count();
    let tsc_start = rdtsc();
    let apic_start = lapic::current_count();
    let mut elapsed = 0;
    while elapsed < wanted {
        let now = (reference.read)(reference.port);
        elapsed += step(previous, now);
        previous = now;
        if rdtsc().wrapping_sub(tsc_start) > 20_000_000_000 {
            return None;
        }
    }
    let tsc = rdtsc() - tsc_start;
    let apic = u64::from(apic_start.wrapping_sub(lapic::current_count()));
    Some((tsc * reference.hz / elapsed, apic * reference.hz / elapsed))
}

/// Finds the TSC frequency (and the APIC timer rate, unless TSC-deadline mode makes it
/// unneeded) and starts the clock. Runs in the boot sequence (hence `&Boot`), after
/// `lapic::init` and `acpi::init`.
///
/// # Errors
/// A message when no reference clock works or the result is implausible.
pub fn calibrate(_boot_only: &Boot) -> Result<Calibration, &'static str> {
    let (tsc_hz, source, timer_hz) = match from_cpuid() {
        Some(found) => found,
        None => measure_against_reference()?,
    };
    if tsc_hz < 1_000_000 {
        return Err("measured TSC frequency below 1 MHz: the clock source is broken");
    }
    if !lapic::deadline_mode() {
        let hz = timer_hz
            .filter(|hz| *hz > 0)
            .unwrap_or_else(|| apic_hz_against_tsc(tsc_hz));
        if hz == 0 {
            return Err("the local APIC timer does not count: no timer without TSC-deadline mode");
        }
        lapic::set_timer_hz(hz);
    }
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    NANOS_PER_TICK_32.store(
        ((1_000_000_000u128 << 32) / u128::from(tsc_hz)) as u64,
        Ordering::Relaxed,
    );
    Ok(Calibration { tsc_hz, source })
}

/// (TSC Hz, source, APIC Hz) measured against the ACPI PM timer, else the PIT.
fn measure_against_reference() -> Result<(u64, Source, Option<u64>), &'static str> {
    let pm = acpi::fadt().pm_timer.map(|timer| Reference {
        read: read_pm_timer,
        port: timer.port,
        mask: if timer.bits32 {
            0xffff_ffff
        } else {
            0x00ff_ffff
        },
        hz: PM_TIMER_HZ,
        counts_down: false,
    });
    if let Some((tsc, apic)) = pm.and_then(|reference| measure(&reference)) {
        return Ok((tsc, Source::PmTimer, Some(apic)));
    }
    start_pit();
    let pit = Reference {
        read: read_pit,
        port: 0x40,
        mask: 0xffff,
        hz: PIT_HZ,
        counts_down: true,
    };
    let (tsc, apic) = measure(&pit).ok_or(
        "no clock to calibrate against: no CPUID 0x15/0x40000010 frequency, no ACPI PM timer, no PIT",
    )?;
    Ok((tsc, Source::Pit, Some(apic)))
}
