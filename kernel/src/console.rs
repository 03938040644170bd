//! The console (COM1): `print!`/`println!` for applications; and, apart from it, the
//! virtio console port ([`port`], [`VirtioPort`]), a byte channel to a host program.
//!
//! The kernel log (`log::info!` and friends, with the time since kernel entry) goes to
//! COM1 too; `arch::log` writes it, because it starts before anything above `arch` runs.
//! Nothing printed or logged ever goes to the virtio port: it carries only what the
//! application writes there.

use crate::arch::serial;
use core::fmt;

mod virtio_port;

pub use virtio_port::{PortError, VirtioPort, blocking, port, port_stats};

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    serial::write(args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
