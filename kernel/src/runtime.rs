//! Running the application: core 0's executor, its x86_64 platform, the exit path.
//!
//! The platform is what `torito_executor::Platform` asks for: `idle` disables interrupts,
//! re-checks for work, arms the local APIC timer for the next deadline and executes
//! `sti; hlt` as one step, so a wakeup that arrives between the check and the halt still
//! ends the halt (STI's one-instruction interrupt shadow covers the HLT). `wake_core` has
//! nothing to do while Torito runs on one core: a waker called from an interrupt handler
//! runs on the core it wakes, whose `hlt` that very interrupt ended.

use crate::arch::{clock, lapic};
use alloc::boxed::Box;
use core::fmt::Display;
use core::future::Future;
use core::pin::Pin;
use torito_executor::time::Instant;
use torito_executor::{Clock, Executor, Platform};

struct X86Platform;

impl Platform for X86Platform {
    fn idle(&self, deadline: Option<Instant>, has_work: &dyn Fn() -> bool) {
        x86_64::instructions::interrupts::disable();
        if has_work() {
            x86_64::instructions::interrupts::enable();
            return;
        }
        let now = clock::now_nanos();
        match deadline.map(Instant::as_nanos) {
            Some(at) if at <= now => {
                x86_64::instructions::interrupts::enable();
                return;
            }
            Some(at) => lapic::arm(Some((at - now, clock::tsc_at(at)))),
            None => lapic::arm(None),
        }
        x86_64::instructions::interrupts::enable_and_hlt();
    }

    fn wake_core(&self, _core: usize) {}
}

struct TscClock;

impl Clock for TscClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(clock::now_nanos())
    }
}

static PLATFORM: X86Platform = X86Platform;
static CLOCK: TscClock = TscClock;
pub(crate) static EXECUTOR: Executor = Executor::new(0, &PLATFORM, &CLOCK);

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

/// The application's main future, boxed by `#[torito::main]`.
pub struct AppMain(Pin<Box<dyn Future<Output = i32>>>);

impl AppMain {
    /// Wraps the future of `async fn main`.
    pub fn new<F>(main: F) -> Self
    where
        F: Future + 'static,
        F::Output: ExitStatus,
    {
        Self(Box::pin(async move { main.await.code() }))
    }
}

/// Runs the application's `main` to completion on core 0 and exits with its status.
pub(crate) fn run(main: AppMain) -> ! {
    let code = EXECUTOR.block_on(main.0);
    exit(code)
}

/// Ends the VM with `code` (0 = success). Under QEMU with isa-debug-exit the process
/// exit status is `(code << 1) | 1`; `qemu/run.sh` turns it back into `code`.
/// Codes are truncated to 0..=127 (the status is one byte).
pub fn exit(code: i32) -> ! {
    crate::arch::exit::exit((code & 0x7f) as u32)
}

/// The kernel heap; `arch::entry` gives it memory at boot.
#[global_allocator]
pub(crate) static HEAP: crate::memory::heap::KernelHeap = crate::memory::heap::KernelHeap::new();
