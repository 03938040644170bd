//! CPU exception reports: name, error code, RIP, CR2 for a page fault, a backtrace,
//! then exit with `EXIT_EXCEPTION`.
//!
//! Every exception is fatal in a unikernel with no user space: there is nobody to
//! deliver a signal to, and continuing after a fault would run on corrupted state.

use super::interrupts::InterruptFrame;
use super::{serial, stacks};
use core::fmt::Arguments;

/// Exit status after a CPU exception.
pub const EXIT_EXCEPTION: u32 = 102;

const NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "non-maskable interrupt",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved (15)",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection exception",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "hypervisor injection exception",
    "VMM communication exception",
    "security exception",
    "reserved (31)",
];

/// The name of exception `vector` (0-31).
pub fn name(vector: u64) -> &'static str {
    NAMES
        .get(vector as usize)
        .copied()
        .unwrap_or("unknown exception")
}

fn say(args: Arguments<'_>) {
    serial::force_write(args);
}

/// Reports the exception in `frame` and ends the VM.
pub fn report(frame: &InterruptFrame) -> ! {
    let vector = frame.vector;
    say(format_args!(
        "\n!!! CPU exception {}: {} (error code {:#x}) at RIP {:#018x} on core {}\n",
        vector,
        name(vector),
        frame.error_code,
        frame.rip,
        super::percpu::current()
    ));
    if vector == 14 {
        let address = x86_64::registers::control::Cr2::read_raw();
        let code = frame.error_code;
        say(format_args!(
            "!!! page fault address (CR2) {:#018x}: {} {} access, {}\n",
            address,
            if code & 0x10 != 0 {
                "instruction fetch"
            } else if code & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if code & 4 != 0 { "user" } else { "kernel" },
            if code & 1 != 0 {
                "protection violation"
            } else {
                "page not present"
            },
        ));
        if let Some(stack) = stacks::guard_hit(address) {
            say(format_args!(
                "!!! stack overflow: the {} of core {} ran into its guard page\n",
                stack.kind.name(),
                stack.core
            ));
        }
    }
    if vector == 8 {
        say(format_args!(
            "!!! a double fault usually means a fault while handling a fault\n"
        ));
    }
    say(format_args!(
        "    rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x}\n    rsi {:#x} rdi {:#x} rbp {:#x} rsp {:#x}\n",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp, frame.rsp
    ));
    backtrace(frame.rip, frame.rbp);
    super::exit::exit(EXIT_EXCEPTION)
}

/// Prints the return addresses of the frame-pointer chain starting at `rbp`.
///
/// The kernel is built with frame pointers. The walk only reads inside known kernel
/// stacks and stops at the first frame pointer that is misaligned, outside them, or not
/// moving up the stack, so a corrupted chain ends the backtrace instead of faulting.
pub fn backtrace(rip: u64, mut rbp: u64) {
    say(format_args!("backtrace:\n  0: {:#018x}\n", rip));
    for depth in 1..32 {
        let Some(stack) = stacks::containing(rbp) else {
            break;
        };
        if !rbp.is_multiple_of(8) || rbp + 16 > stack.top {
            break;
        }
        // SAFETY: `rbp..rbp+16` lies inside a mapped kernel stack (checked just above),
        // so both words are readable.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        say(format_args!("  {}: {:#018x}\n", depth, ret));
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    say(format_args!(
        "(resolve with: addr2line -e build/<image>.elf ADDRESS)\n"
    ));
}
