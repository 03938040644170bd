//! Running the application: core 0's executor, its x86_64 platform, the exit path.
//!
//! Every core runs its own executor. The platform is what `torito_executor::Platform`
//! asks for:
//!
//! * `idle` disables interrupts, marks the core halted, re-checks for work, arms the
//!   local APIC timer for the next deadline and executes `sti; hlt` as one step, so a
//!   wakeup that arrives between the check and the halt still ends the halt (STI's
//!   one-instruction interrupt shadow covers the HLT, and where a hypervisor breaks the
//!   shadow the interrupt dispatcher steps over the HLT: `interrupts::enable_and_halt`);
//! * `wake_core` sends an IPI only when the target core is another core and is marked
//!   halted. A waker on the same core (a task, or an interrupt handler) needs nothing:
//!   the core is running, or that very interrupt ended its `hlt`.
//!
//! The halted flag and the run queue are each written before the other is read (with a
//! full fence on both sides), so either the idle core sees the new task or the waker
//! sees the halted flag: no lost wakeup.

use crate::arch::interrupts::{self, WAKE_VECTOR};
use crate::arch::percpu::{self, MAX_CPUS};
use crate::arch::{clock, lapic, smp};
/// The heap, for `net`'s buffer sizing (it lives in `memory::heap`).
pub(crate) use crate::memory::heap::HEAP;
use crate::time::CLOCK;
use core::fmt::Display;
use core::future::Future;
use core::sync::atomic::{Ordering, fence};
use torito_executor::{Executor, Instant, Platform};

struct X86Platform;

impl Platform for X86Platform {
    fn idle(&self, deadline: Option<Instant>, has_work: &dyn Fn() -> bool) {
        x86_64::instructions::interrupts::disable();
        let halted = &percpu::cpu(percpu::current()).halted;
        halted.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let now = clock::now_nanos();
        let due = deadline.map(Instant::as_nanos).filter(|at| *at > now);
        if has_work() || (deadline.is_some() && due.is_none()) {
            halted.store(false, Ordering::Relaxed);
            x86_64::instructions::interrupts::enable();
            return;
        }
        match due {
            Some(at) => lapic::arm(Some((at - now, clock::tsc_at(at)))),
            None => lapic::arm(None),
        }
        percpu::cpu(percpu::current())
            .halts
            .fetch_add(1, Ordering::Relaxed);
        interrupts::enable_and_halt();
        halted.store(false, Ordering::Relaxed);
    }

    fn wake_core(&self, core: usize) {
        if core == percpu::current() {
            return;
        }
        fence(Ordering::SeqCst);
        let target = percpu::cpu(core);
        if target.halted.load(Ordering::SeqCst) {
            percpu::cpu(percpu::current())
                .wakes_sent
                .fetch_add(1, Ordering::Relaxed);
            lapic::send_ipi(target.apic_id(), WAKE_VECTOR);
        }
    }
}

static PLATFORM: X86Platform = X86Platform;

/// One executor per core, indexed by core, each made on first use. An `Executor` holds
/// its core number and `&dyn` platform and clock, so an array of them built at compile
/// time sat in `.data`: 1 152 bytes of the image. `spin::Once` starts as zeroes, so
/// these stay in `.bss`.
static EXECUTORS: [spin::Once<Executor>; MAX_CPUS] = [const { spin::Once::new() }; MAX_CPUS];

/// Core `core`'s executor (`core` < `MAX_CPUS`).
#[inline(never)]
fn executor_at(core: usize) -> &'static Executor {
    EXECUTORS[core].call_once(|| Executor::new(core, &PLATFORM, &CLOCK))
}

/// This core's executor.
pub(crate) fn executor() -> &'static Executor {
    executor_at(percpu::current())
}

/// Core `core`'s executor, if that core runs.
pub(crate) fn executor_of(core: usize) -> Option<&'static Executor> {
    (core < percpu::count()).then(|| executor_at(core))
}

/// Runs core `core`'s executor forever (the other cores after bring-up; `extern "C"`
/// because `arch::smp` passes it through the start-up trampoline's parameters).
extern "C" fn run_core(core: usize) -> ! {
    executor_at(core).run()
}

/// What `main` may return: `()`, an exit code, or a `Result` whose error is printed.
pub trait ExitStatus {
    /// The VM's exit code for this value (0 = success).
    fn code(self) -> i32;
}

impl ExitStatus for () {
    fn code(self) -> i32 {
        0
    }
}

impl ExitStatus for i32 {
    fn code(self) -> i32 {
        self
    }
}

impl<T: ExitStatus, E: Display> ExitStatus for Result<T, E> {
    fn code(self) -> i32 {
        match self {
            Ok(value) => value.code(),
            Err(error) => {
                log::error!("main returned an error: {}", error);
                1
            }
        }
    }
}

/// Starts the other cores' executors, then runs the application's `main` future to
/// completion on core 0 and exits with its status. `#[torito::main]` calls it from the
/// application's crate, where the future's type is known, so it is pinned on the boot
/// stack: starting `main` allocates nothing.
pub fn run_main<F>(main: F) -> !
where
    F: Future,
    F::Output: ExitStatus,
{
    // Only the first call may start them (a second `run_main` would be API misuse).
    if let Some(once) = smp::StartOthers::take() {
        smp::start_others(once, run_core);
    }
    let code = executor_at(0).block_on(async move { main.await.code() });
    exit(code)
}

/// Ends the VM with `code` (0 = success). Under QEMU with isa-debug-exit the process
/// exit status is `(code << 1) | 1`; `qemu/run.sh` turns it back into `code`.
/// Codes are truncated to 0..=127 (the status is one byte).
pub fn exit(code: i32) -> ! {
    crate::arch::exit::exit((code & 0x7f) as u32)
}
