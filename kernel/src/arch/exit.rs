//! Ending the VM: isa-debug-exit, then (on Xen) `SCHEDOP_shutdown`, then ACPI S5, then a
//! keyboard-controller reset, then a triple fault. Every hypervisor we target stops at
//! one of these:
//!
//! * QEMU with `-device isa-debug-exit,iobase=0xf4,iosize=0x04` exits with status
//!   `(code << 1) | 1`, the only path that carries the exit code;
//! * on Xen, `SCHEDOP_shutdown` (power-off for status 0, or a reboot after `xl reboot`;
//!   crash otherwise) ends a domU;
//!   a dom0's power-off halts the machine (under QEMU, port 0xf4 ended it already);
//! * ACPI S5 through the FADT's PM1a control block or sleep control register ends
//!   QEMU without the device and Cloud Hypervisor;
//! * `0xfe` to port 0x64 ends Firecracker (it treats the reset as an exit), after a
//!   moment: the kernel waits up to half a second for that;
//! * a triple fault resets anything else.

use super::{acpi, serial};
use x86_64::instructions::port::Port;

/// Prints the exit line (tests and run scripts look for it) and stops the VM.
pub fn exit(code: u32) -> ! {
    x86_64::instructions::interrupts::disable();
    serial::force_write(format_args!("torito: exit({})\n", code));
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit when present and unused otherwise; a
    // write to an absent device is dropped.
    unsafe { Port::<u32>::new(0xf4).write(code) };
    // On Xen: poweroff, reboot or crash (a dom0's poweroff halts the machine).
    super::xen::shutdown(code);
    if acpi::power_off() {
        // A hypervisor stops the VM soon after the request: give it a moment before
        // the next way out.
        linger(100_000_000);
    }
    // Past S5, say which way the VM ends (Firecracker ends here, as designed).
    serial::force_write(format_args!("torito: resetting the VM\n"));
    // SAFETY: 0xfe to the keyboard controller's command port pulses the reset line; we
    // are leaving anyway.
    unsafe { Port::<u8>::new(0x64).write(0xfe) };
    // Firecracker acts on that write from another thread: give it time to stop the VM
    // before the last resort, or it sees the triple fault first and reports an error.
    linger(500_000_000);
    triple_fault()
}

/// Spins for `nanos`; before the clock is calibrated (an exit during the boot), for
/// `nanos / 8` spins instead, a spin with its pause taking several nanoseconds.
fn linger(nanos: u64) {
    let give_up = super::clock::now_nanos().saturating_add(nanos);
    let mut spins = 0u64;
    while super::clock::now_nanos() < give_up && spins < nanos / 8 {
        spins += 1;
        core::hint::spin_loop();
    }
}

fn triple_fault() -> ! {
    let empty = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: x86_64::VirtAddr::new(0),
    };
    // SAFETY: loading an empty IDT and raising an interrupt is a deliberate triple fault:
    // the CPU resets, which is what we want as the last resort.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3", options(nomem, nostack));
    }
    loop {
        x86_64::instructions::hlt();
    }
}
