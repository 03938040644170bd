//! COM1, the console every QEMU machine, Firecracker and Cloud Hypervisor give us.
//!
//! Polled output: a unikernel's console is for logs and crash reports, and a crash report
//! must get out even with interrupts off and the heap broken. Output goes through one
//! spin lock taken with interrupts disabled, so a line from an interrupt handler never
//! interleaves with a line from a task; the exception path uses `force_write`, which
//! skips the lock (the CPU may have faulted while holding it).

use crate::escape::Escaped;
use core::fmt;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

struct Uart;

impl Uart {
    fn out(register: u16, value: u8) {
        // SAFETY: the COM1 register block (0x3f8..0x3ff) belongs to this module alone;
        // writing it has no effect on memory.
        unsafe { Port::new(COM1 + register).write(value) }
    }

    fn line_status() -> u8 {
        // SAFETY: reading COM1's line status register has no side effect.
        unsafe { Port::<u8>::new(COM1 + 5).read() }
    }

    fn write_byte(byte: u8) {
        // Wait for "transmit holding register empty", bounded so that a missing UART (Xen
        // PVH has none) cannot hang the kernel: the byte is then dropped.
        let mut spins = 0u32;
        while Self::line_status() & 0x20 == 0 && spins < 100_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        Self::out(0, byte);
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                Uart::write_byte(b'\r');
            }
            Uart::write_byte(byte);
        }
        Ok(())
    }
}

static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Programs COM1 for 115200 baud, 8N1, FIFO on, interrupts off.
pub fn init() {
    Uart::out(1, 0x00); // no UART interrupts
    Uart::out(3, 0x80); // DLAB on
    Uart::out(0, 0x01); // divisor 1 = 115200 baud
    Uart::out(1, 0x00);
    Uart::out(3, 0x03); // DLAB off, 8 bits, no parity, 1 stop bit
    Uart::out(2, 0xc7); // FIFO on, cleared, 14-byte threshold
    Uart::out(4, 0x03); // DTR | RTS
}

/// Writes formatted text as one unit, control characters but `\n` escaped
/// (`crate::escape`: the console is what a log collector reads line by line).
pub fn write(args: fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _guard = LOCK.lock();
        emit(args);
    });
}

/// Writes without taking the console lock: for the fatal paths only (exceptions,
/// panics), where the lock may be held by the code that failed. Escaped as [`write`].
pub fn force_write(args: fmt::Arguments<'_>) {
    emit(args);
}

/// On Xen the console is Xen's (it owns COM1 when its own console is there).
/// Both paths escape control characters.
fn emit(args: fmt::Arguments<'_>) {
    if super::xen::present() {
        super::xen::write(args);
    } else {
        let _ = fmt::Write::write_fmt(&mut Escaped::lines(Uart), args);
    }
}
