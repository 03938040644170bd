//! Per-CPU state: which core this is, found through the GS segment base.
//!
//! Each core points its GS base at its own `PerCpu` block, whose first word is the core
//! index, so `current()` is one memory load. Core indices are dense (0 = the boot core)
//! and are what executors, `spawn_on` and the halted flags use; APIC ids are only for
//! interrupts.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use x86_64::registers::model_specific::Msr;

/// Most cores Torito runs on; more are reported and left parked.
pub const MAX_CPUS: usize = 16;

const GS_BASE_MSR: u32 = 0xc000_0101;

/// One core's block. `index` must stay the first field (read at `gs:[0]`).
#[repr(C)]
pub struct PerCpu {
    index: AtomicUsize,
    apic_id: AtomicU32,
    /// Set while the core is halted in `idle` (a wake must send it an IPI).
    pub halted: AtomicBool,
    /// Set once the core finished its bring-up.
    pub online: AtomicBool,
    /// Times this core halted.
    pub halts: AtomicU64,
    /// Wake IPIs this core sent to halted cores.
    pub wakes_sent: AtomicU64,
    /// Wake IPIs this core received.
    pub wakes_received: AtomicU64,
    /// Local APIC timer interrupts on this core.
    pub timer_interrupts: AtomicU64,
    /// Interrupts taken between the idle `sti` and `hlt`, whose `hlt` was then skipped
    /// (`interrupts::enable_and_halt`): never on hardware, which honours STI's shadow.
    pub halts_skipped: AtomicU64,
}

static CPUS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        index: AtomicUsize::new(0),
        apic_id: AtomicU32::new(0),
        halted: AtomicBool::new(false),
        online: AtomicBool::new(false),
        halts: AtomicU64::new(0),
        wakes_sent: AtomicU64::new(0),
        wakes_received: AtomicU64::new(0),
        timer_interrupts: AtomicU64::new(0),
        halts_skipped: AtomicU64::new(0),
    }
}; MAX_CPUS];

static COUNT: AtomicUsize = AtomicUsize::new(1);

/// Points this core's GS base at block `index` (called first thing on every core).
pub fn init(index: usize, apic_id: u32) {
    let block = &CPUS[index];
    block.index.store(index, Ordering::Relaxed);
    block.apic_id.store(apic_id, Ordering::Relaxed);
    // SAFETY: IA32_GS_BASE only changes what `gs:` addresses; nothing else uses GS.
    unsafe { Msr::new(GS_BASE_MSR).write(block as *const PerCpu as u64) };
}

/// This core's index (0 = the boot core).
pub fn current() -> usize {
    let index: usize;
    // SAFETY: every core sets its GS base (`init`) before any code that can call this;
    // the load reads the first word of its own `PerCpu`.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) index, options(nostack, readonly, preserves_flags))
    };
    index
}

/// Core `index`'s block.
pub fn cpu(index: usize) -> &'static PerCpu {
    &CPUS[index]
}

impl PerCpu {
    /// Its local APIC id.
    pub fn apic_id(&self) -> u32 {
        self.apic_id.load(Ordering::Relaxed)
    }

    /// Records its local APIC id.
    pub fn apic_id_set(&self, apic_id: u32) {
        self.apic_id.store(apic_id, Ordering::Relaxed);
    }
}

/// How many cores run Torito (set once bring-up is over).
pub fn count() -> usize {
    COUNT.load(Ordering::Acquire)
}

pub(super) fn set_count(count: usize) {
    COUNT.store(count, Ordering::Release);
}
