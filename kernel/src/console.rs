//! The console (COM1): `print!`/`println!` for applications.
//!
//! The kernel log (`log::info!` and friends, with the time since kernel entry) goes to the
//! same port; `arch::log` writes it, because it starts before anything above `arch` runs.

use crate::arch::serial;
use core::fmt;

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
