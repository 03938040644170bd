//! The monotonic clock: the TSC, with its frequency measured, never guessed.
//!
//! Sources for the TSC frequency, best first:
//!
//! 1. CPUID leaf 0x15 (TSC / crystal ratio and crystal frequency), exact when complete;
//! 2. the hypervisor timing leaf 0x40000010 (TSC and APIC bus kHz, VMware/QEMU/KVM);
//! 3. a measurement against the ACPI PM timer (3.579545 MHz, q35/pc);
//! 4. a measurement against PIT channel 0 (1.193182 MHz, microvm, Firecracker).
//!
//! A measurement spans at least `CALIBRATION_MICROS`: short, because boot time is a
//! product feature, yet a thousand reference ticks, so the error stays near 0.1%.
//!
//! The PIT measurement overlaps the rest of the boot instead of waiting for it: at
//! kernel entry `start_early` starts PIT channel 0 as a one-shot count-down from 0xffff
//! (55 ms) and notes the TSC; `calibrate` reads the count and the TSC again. The PIT's
//! OUT pin (read-back status) says whether the count ran out, so a boot slower than
//! 55 ms is detected and measured the slow way instead of being miscounted. The local
//! APIC count-down rate (needed without TSC-deadline mode) is then measured against the
//! TSC over the window from `lapic::init` to `finish_calibration`, just before `main`:
//! the other cores' bring-up overlaps it too.

use super::{acpi, lapic};
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

const CALIBRATION_MICROS: u64 = 1000;
const PIT_HZ: u64 = 1_193_182;
const PM_TIMER_HZ: u64 = 3_579_545;

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
/// TSC when the early PIT one-shot started (0 = not started).
static EARLY_TSC: AtomicU64 = AtomicU64::new(0);
/// TSC when the local APIC started its free count (0 = not started).
static APIC_START_TSC: AtomicU64 = AtomicU64::new(0);
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
}

impl Source {
    /// What it is, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::CpuidCrystal => "CPUID 0x15",
            Self::Hypervisor => "CPUID 0x40000010",
            Self::PmTimer => "the ACPI PM timer",
            Self::Pit => "the PIT",
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

/// Records the TSC at kernel entry (the boot stub's first instruction, which reads it
/// before unpacking the kernel): the epoch of `now_nanos`.
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

/// Starts the overlapped PIT measurement (first thing at kernel entry).
pub fn start_early() {
    // SAFETY: PIT ports belong to this module; channel 0, lobyte/hibyte, mode 0
    // (interrupt on terminal count: OUT goes high when the count reaches 0), binary,
    // count 0xffff. IRQ 0 stays masked, so this only runs a counter.
    unsafe {
        Port::<u8>::new(0x43).write(0x30);
        Port::<u8>::new(0x40).write(0xff);
        Port::<u8>::new(0x40).write(0xff);
    }
    EARLY_TSC.store(rdtsc(), Ordering::Relaxed);
}

/// Channel 0's (status, count) through the read-back command.
fn pit_status_and_count() -> (u8, u16) {
    // SAFETY: read-back of channel 0's status and count (0xc2) has no other effect.
    unsafe {
        Port::<u8>::new(0x43).write(0xc2);
        let status = Port::<u8>::new(0x40).read();
        let low = Port::<u8>::new(0x40).read();
        let high = Port::<u8>::new(0x40).read();
        (status, u16::from_le_bytes([low, high]))
    }
}

/// The TSC frequency from the early PIT one-shot, if it is usable: running in mode 0,
/// not run out, and (after waiting if needed) at least `CALIBRATION_MICROS` long.
fn from_early_pit() -> Option<u64> {
    let start = EARLY_TSC.load(Ordering::Relaxed);
    if start == 0 {
        return None;
    }
    let wanted = PIT_HZ * CALIBRATION_MICROS / 1_000_000;
    loop {
        let tsc = rdtsc();
        let (status, count) = pit_status_and_count();
        // Status: bit 7 OUT (high = ran out), bits 1-3 mode (0), bits 4-5 access (3).
        if status & 0x80 != 0 || status & 0x3e != 0x30 {
            return None;
        }
        let elapsed = u64::from(0xffff - count);
        if elapsed >= wanted {
            return Some((tsc - start) * PIT_HZ / elapsed);
        }
        core::hint::spin_loop();
    }
}

/// Records that the boot core's local APIC free count starts now (see
/// `apic_hz_since_start`). Only the first call counts: the other cores' `lapic::init`
/// may run before `finish_calibration`, and their counts are not the one measured.
pub fn mark_apic_start() {
    let _ = APIC_START_TSC.compare_exchange(0, rdtsc(), Ordering::Relaxed, Ordering::Relaxed);
}

/// The APIC count-down rate measured against the TSC (now known at `tsc_hz`) since
/// `mark_apic_start`, waiting until the window is `CALIBRATION_MICROS` long.
fn apic_hz_since_start(tsc_hz: u64) -> Option<u64> {
    let start = APIC_START_TSC.load(Ordering::Relaxed);
    if start == 0 {
        return None;
    }
    let window = tsc_hz * CALIBRATION_MICROS / 1_000_000;
    while rdtsc() - start < window {
        core::hint::spin_loop();
    }
    let counted = u64::from(u32::MAX - lapic::current_count());
    let ticks = rdtsc() - start;
    Some(counted * tsc_hz / ticks)
}

const NO_TIMER_RATE: &str = "no rate for the local APIC timer and no TSC-deadline mode";

/// Completes the calibration on the boot core, before anything can arm a timer: when the
/// TSC came from the early PIT and there is no TSC-deadline mode, the local APIC's rate
/// is measured against the TSC over the window since `lapic::init`. By now that window
/// spans the rest of the boot, so it rarely has to be waited for.
pub fn finish_calibration() -> Result<(), &'static str> {
    if lapic::timer_hz() != 0 || lapic::deadline_mode() {
        return Ok(());
    }
    let hz = apic_hz_since_start(TSC_HZ.load(Ordering::Relaxed)).filter(|hz| *hz > 0);
    let hz = hz.ok_or(NO_TIMER_RATE)?;
    lapic::set_timer_hz(hz);
    log::debug!(
        "clock: APIC timer {} kHz, measured over {} us",
        hz / 1000,
        ticks_to_micros(rdtsc() - APIC_START_TSC.load(Ordering::Relaxed))
    );
    Ok(())
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

/// Finds the TSC frequency (and the APIC timer rate) and starts the clock.
pub fn calibrate() -> Result<Calibration, &'static str> {
    let (tsc_hz, source, timer_hz) = if let Some(found) = from_cpuid() {
        found
    } else if let Some(tsc_hz) = from_early_pit() {
        // The APIC rate is left to `finish_calibration`, over a longer window.
        (tsc_hz, Source::Pit, None)
    } else {
        let fadt = acpi::fadt();
        let pm = fadt.pm_timer.map(|port| Reference {
            read: read_pm_timer,
            port,
            mask: if fadt.pm_timer_32bit {
                0xffff_ffff
            } else {
                0x00ff_ffff
            },
            hz: PM_TIMER_HZ,
            counts_down: false,
        });
        let pm = pm
            .and_then(|reference| measure(&reference))
            .map(|(tsc, apic)| (tsc, Source::PmTimer, Some(apic)));
        match pm {
            Some(found) => found,
            None => {
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
                (tsc, Source::Pit, Some(apic))
            }
        }
    };
    if tsc_hz < 1_000_000 {
        return Err("measured TSC frequency below 1 MHz: the clock source is broken");
    }
    if let Some(hz) = timer_hz.filter(|hz| *hz > 0) {
        lapic::set_timer_hz(hz);
    } else if !lapic::deadline_mode() && APIC_START_TSC.load(Ordering::Relaxed) == 0 {
        return Err(NO_TIMER_RATE);
    }
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    NANOS_PER_TICK_32.store(
        ((1_000_000_000u128 << 32) / u128::from(tsc_hz)) as u64,
        Ordering::Relaxed,
    );
    Ok(Calibration { tsc_hz, source })
}
