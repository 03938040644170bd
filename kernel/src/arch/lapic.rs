//! The local APIC (xAPIC, memory-mapped): end of interrupt, the one-shot timer, IPIs.
//!
//! The timer is programmed one-shot for the executor's next deadline only while the core
//! idles; there is no periodic tick. It uses TSC-deadline mode when the CPU has it (no
//! frequency needed beyond the TSC's) and otherwise the divide-by-16 count-down mode,
//! with the count rate measured at boot by `clock::calibrate`.

use super::paging;
use super::vectors::{SPURIOUS_VECTOR, TIMER_VECTOR};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use x86_64::registers::model_specific::Msr;

const APIC_BASE_MSR: u32 = 0x1b;
const TSC_DEADLINE_MSR: u32 = 0x6e0;
const ID: usize = 0x20;
const EOI: usize = 0xb0;
const SPURIOUS: usize = 0xf0;
const LVT_TIMER: usize = 0x320;
const TIMER_INITIAL: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIVIDE: usize = 0x3e0;
const ONE_SHOT: u32 = 0;
const TSC_DEADLINE_MODE: u32 = 0b10 << 17;
const MASKED: u32 = 1 << 16;

static BASE: AtomicU64 = AtomicU64::new(0);
static DEADLINE_MODE: AtomicBool = AtomicBool::new(false);
/// Local APIC timer counts per second at divide-by-16 (count-down mode only).
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);

fn read(register: usize) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: `base` is the APIC page mapped uncached by `init`; `register` is one of the
    // architectural register offsets above, all inside that page.
    unsafe { core::ptr::read_volatile((base as usize + register) as *const u32) }
}

fn write(register: usize, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((base as usize + register) as *mut u32, value) }
}

/// Maps and enables this core's local APIC; returns its id.
pub fn init() -> Result<u32, &'static str> {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; reading it has no side effect.
    let msr = unsafe { Msr::new(APIC_BASE_MSR).read() };
    let phys = msr & 0x000f_ffff_ffff_f000;
    let base = paging::map_device(phys, 4096).ok_or("cannot map the local APIC")?;
    BASE.store(base, Ordering::Relaxed);
    write(SPURIOUS, 0x100 | u32::from(SPURIOUS_VECTOR)); // software enable
    write(TIMER_DIVIDE, 0b0011); // divide by 16
    write(LVT_TIMER, MASKED | u32::from(TIMER_VECTOR));
    let deadline = x86_64_cpuid(1).2 & (1 << 24) != 0;
    DEADLINE_MODE.store(deadline, Ordering::Relaxed);
    Ok(read(ID) >> 24)
}

pub(super) fn x86_64_cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let result = core::arch::x86_64::__cpuid(leaf);
    (result.eax, result.ebx, result.ecx, result.edx)
}

/// This core's local APIC id.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Whether the timer runs in TSC-deadline mode.
pub fn deadline_mode() -> bool {
    DEADLINE_MODE.load(Ordering::Relaxed)
}

/// Starts the count-down timer at its maximum, masked: for calibration.
pub fn start_free_count() {
    write(LVT_TIMER, MASKED | ONE_SHOT | u32::from(TIMER_VECTOR));
    write(TIMER_INITIAL, u32::MAX);
}

/// The count-down timer's current count.
pub fn current_count() -> u32 {
    read(TIMER_CURRENT)
}

/// Records the measured count-down rate (divide-by-16 counts per second).
pub fn set_timer_hz(hz: u64) {
    TIMER_HZ.store(hz, Ordering::Relaxed);
}

/// Arms a one-shot interrupt `nanos` from now (`tsc_deadline` is the same instant in TSC
/// ticks, used in deadline mode). `None` disarms it.
pub fn arm(deadline: Option<(u64, u64)>) {
    match deadline {
        None => {
            if deadline_mode() {
                // SAFETY: writing 0 to IA32_TSC_DEADLINE disarms the timer.
                unsafe { Msr::new(TSC_DEADLINE_MSR).write(0) };
            } else {
                write(TIMER_INITIAL, 0);
            }
        }
        Some((nanos, tsc_deadline)) => {
            if deadline_mode() {
                write(LVT_TIMER, TSC_DEADLINE_MODE | u32::from(TIMER_VECTOR));
                // SAFETY: IA32_TSC_DEADLINE exists (CPUID.1:ECX[24]); the write arms a
                // one-shot interrupt on TIMER_VECTOR, which the dispatcher acknowledges.
                unsafe { Msr::new(TSC_DEADLINE_MSR).write(tsc_deadline.max(1)) };
            } else {
                let hz = TIMER_HZ.load(Ordering::Relaxed);
                let counts = (u128::from(nanos) * u128::from(hz) / 1_000_000_000)
                    .clamp(1, u128::from(u32::MAX));
                write(LVT_TIMER, ONE_SHOT | u32::from(TIMER_VECTOR));
                write(TIMER_INITIAL, counts as u32);
            }
        }
    }
}

/// Signals end of interrupt.
pub fn end_of_interrupt() {
    write(EOI, 0);
}

const ICR_LOW: usize = 0x300;
const ICR_HIGH: usize = 0x310;
const ICR_PENDING: u32 = 1 << 12;

/// Writes the interrupt command register: the destination half, then the command half,
/// whose write sends. Interrupts are off from before the first write until the previous
/// command was delivered and this one is written: an interrupt handler that sends an IPI
/// in between (a waker does) would otherwise overwrite the destination, and the command
/// would go to its core instead.
fn send(apic_id: u32, command: u32) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        wait_until_sent();
        write(ICR_HIGH, apic_id << 24);
        write(ICR_LOW, command);
        wait_until_sent();
    });
}

/// Waits (bounded) until the local APIC has sent the last command; modern CPUs and
/// hypervisors send at once and never show the pending bit.
fn wait_until_sent() {
    let mut spins = 0u32;
    while read(ICR_LOW) & ICR_PENDING != 0 && spins < 1_000_000 {
        spins += 1;
        core::hint::spin_loop();
    }
}

/// Sends interrupt `vector` to the core with local APIC id `apic_id`. Callable from an
/// interrupt handler.
pub fn send_ipi(apic_id: u32, vector: u8) {
    send(apic_id, u32::from(vector));
}

/// Sends INIT (assert, level) to `apic_id` (Intel SDM vol. 3, 9.4.4).
pub fn send_init(apic_id: u32) {
    send(apic_id, 0x0000_4500);
}

/// Sends a start-up IPI: the core starts in real mode at `page * 4096`.
pub fn send_startup(apic_id: u32, page: u8) {
    send(apic_id, 0x0000_4600 | u32::from(page));
}
