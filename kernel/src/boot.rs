//! What the boot loader passed: the command line and the protocol.

pub use torito_boot::Protocol;

/// The full kernel command line.
pub fn cmdline() -> &'static str {
    crate::arch::entry::boot_info()
        .map(|info| info.cmdline())
        .unwrap_or("")
}

/// The application's arguments: everything after a lone `--` on the command line.
pub fn app_args() -> &'static str {
    // The boot already refused a command line that does not parse.
    torito_boot::Cmdline::parse(cmdline())
        .map(|line| line.app_args())
        .unwrap_or("")
}

/// The value of command-line key `key` (the last one wins), e.g. `app.port`; `Some("")`
/// for a key given without a value (`app.stats`), so that a flag reads as present.
pub fn arg(key: &str) -> Option<&'static str> {
    Some(
        torito_boot::Cmdline::parse(cmdline())
            .ok()?
            .get(key)?
            .value
            .unwrap_or(""),
    )
}

/// How the kernel was booted.
pub fn protocol() -> Option<Protocol> {
    crate::arch::entry::boot_info().map(|info| info.protocol)
}
