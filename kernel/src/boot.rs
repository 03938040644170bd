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

/// The application's arguments as words: [`app_args`] split at whitespace, with `'...'`
/// or `"..."` holding a word that contains spaces (urunc quotes a container argument
/// that has spaces that way). `app_words().next()` is the first argument, not a program
/// name.
pub fn app_words() -> torito_boot::Words<'static> {
    torito_boot::Cmdline::parse(cmdline())
        .map(|line| line.app_words())
        .unwrap_or_default()
}

/// The value of environment variable `name`: a command-line token `NAME=value` whose key
/// is upper-case letters, digits and `_` (`torito_boot::is_env_key`), as orchestrators
/// pass a container's environment (urunc's `linux` type). The last one wins; a bare
/// `NAME` reads as `Some("")`.
pub fn env(name: &str) -> Option<&'static str> {
    torito_boot::Cmdline::parse(cmdline()).ok()?.env_var(name)
}

/// Every environment variable, as `(name, value)`, in command-line order (duplicates
/// included; [`env()`] returns the last).
pub fn env_vars() -> impl Iterator<Item = (&'static str, &'static str)> {
    torito_boot::Cmdline::parse(cmdline())
        .ok()
        .into_iter()
        .flat_map(|line| line.env())
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
