//! The panic handler: message, location, the out-of-memory record if there is one, a
//! backtrace, and exit with `EXIT_PANIC`.

use super::{exceptions, serial};
use core::sync::atomic::{AtomicBool, Ordering};

/// Exit status after a panic (an out-of-memory is a panic too).
pub const EXIT_PANIC: u32 = 101;

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    if PANICKING.swap(true, Ordering::AcqRel) {
        serial::force_write(format_args!(
            "\n!!! panic while panicking: {}\n",
            info.message()
        ));
        super::exit::exit(EXIT_PANIC);
    }
    serial::force_write(format_args!("\n!!! panic: {}\n", info.message()));
    if let Some(location) = info.location() {
        serial::force_write(format_args!(
            "!!! at {}:{}:{}\n",
            location.file(),
            location.line(),
            location.column()
        ));
    }
    if let Some(failure) = crate::memory::heap::HEAP.last_failure() {
        serial::force_write(format_args!(
            "!!! out of memory: {} bytes (align {}) requested; heap: {} of {} bytes used, {} free; {} failed allocation(s)\n",
            failure.size,
            failure.align,
            failure.heap.used,
            failure.heap.size,
            failure.heap.free,
            failure.count
        ));
    }
    let rbp: u64;
    // SAFETY: reads the frame pointer register; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
    exceptions::backtrace(panic as *const () as u64, rbp);
    super::exit::exit(EXIT_PANIC)
}
