//! The console (COM1): `print!`/`println!` for applications, and the kernel log.
//!
//! Log lines carry the time since kernel entry and the level; the level is chosen on the
//! command line (`log=error|warn|info|debug|trace`, default `info`).

use crate::arch::{clock, serial};
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

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        // virtio-drivers narrates device setup at info level: one level down for us.
        let level = if record.target().starts_with("virtio_drivers")
            && record.level() < log::Level::Trace
        {
            match record.level() {
                log::Level::Error => log::Level::Warn,
                log::Level::Warn => log::Level::Info,
                log::Level::Info => log::Level::Debug,
                _ => log::Level::Trace,
            }
        } else {
            record.level()
        };
        if level <= log::max_level() {
            let micros = clock::now_nanos() / 1000;
            serial::write(format_args!(
                "[{:>4}.{:06}] {:<5} {}\n",
                micros / 1_000_000,
                micros % 1_000_000,
                level,
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub(crate) fn init_log(level: log::LevelFilter) {
    // A second call (there is none) would keep the first logger; nothing to report.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Shows an `Option` as its value or `none`: for log lines, without `Debug`'s
/// formatting machinery in the image.
pub(crate) struct OrNone<T>(pub Option<T>);

impl<T: fmt::Display> fmt::Display for OrNone<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("none"),
        }
    }
}
