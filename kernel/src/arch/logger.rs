//! The kernel log on the console: `log` records as `[seconds.micros] LEVEL message`, one
//! line each (control characters in the message escaped: `crate::escape`).
//!
//! It lives in `arch`, beside the serial port and the clock it uses, because the boot
//! sets it up first thing (`entry.rs`), before anything above `arch` runs. The level is
//! chosen on the command line (`log=error|warn|info|debug|trace`, default `info`).

use super::{clock, serial};

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
                // One record, one line: a `\n` in the message is escaped too.
                crate::escape::OneLine(record.args())
            ));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Sends the `log` crate's records to the console, up to `level`.
pub fn init(level: log::LevelFilter) {
    // A second call (there is none) would keep the first logger; nothing to report.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
