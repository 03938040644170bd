//! The kernel command line: `key=value` tokens for the kernel, then `--` and the
//! application's arguments.
//!
//! Grammar (whitespace is ASCII whitespace):
//!
//! - tokens are separated by whitespace; a token is `key`, `key=value` or
//!   `key="value with spaces"` (the quotes are not part of the value, and the token must
//!   end right after the closing quote); a key is never empty and never contains `"`;
//!   a value runs to the first whitespace and may itself contain `=`;
//! - a lone `--` token ends the kernel's part: everything after it (trimmed, quotes
//!   untouched) is [`Cmdline::app_args`].
//!
//! [`Cmdline::parse`] checks the whole kernel part once, so iterating it cannot fail.
//! Syntax errors are [`CmdlineError`], separate from [`BootError`](crate::BootError):
//! they borrow the command line to quote the bad token, and the kernel may boot with
//! default options after printing one.
//!
//! [`parse_kernel_options`] then reads the kernel's own options. Keys it does not know are
//! not errors: VMMs add their own (`console=ttyS0`, `pci=off`, `virtio_mmio.device=...`,
//! Firecracker's `reboot=k panic=1 ...`), and those are accepted silently, as are `app.*`
//! keys (the application's). Other unknown keys come back in [`UnknownKeys`] for the
//! kernel to warn about.
//!
//! # Who owns a token
//!
//! Orchestrators write command lines for Linux (urunc's `linux` type:
//! `panic=-1 console=ttyS0 ip=... NAME=value init=/app -- args`), so one rule sorts every
//! kernel-part token, whatever wrote it:
//!
//! 1. a key written only in upper-case letters, digits and `_`, starting with a letter
//!    or `_` (`PORT=8080`, `KUBERNETES_SERVICE_HOST=10.96.0.1`), is an **environment
//!    variable** for the application ([`Cmdline::env`], [`is_env_key`]); a bare one reads
//!    as set to the empty string. Torito's own keys are all lower case, so the two never
//!    meet;
//! 2. `app.*` keys are the application's options;
//! 3. the kernel's keys ([`KERNEL_KEYS`]) and the network's (read elsewhere, passed to
//!    [`parse_kernel_options`] as `extra_known`);
//! 4. keys that VMMs and Linux habits add ([`VMM_KEYS`], [`VMM_KEY_PREFIXES`]:
//!    `console=`, `panic=`, `init=`, `root=`, `rw`, `quiet`, ...) are accepted silently;
//! 5. anything else is unknown and warned about: a misspelt Torito key (`lgo=debug`)
//!    does not pass silently. A lower-case environment variable (`http_proxy=...`) is
//!    such a key: write it in upper case.
//!
//! After `--` every word is the application's ([`Cmdline::app_words`]); Linux gives the
//! same words to `init` as its arguments.
//!
//! A VMM that appends keys after a user's `--` (QEMU microvm with `acpi=off` appends
//! `virtio_mmio.device=...` to the end of the line) puts them into the application's
//! arguments; Firecracker inserts its keys before `--`.

use core::fmt;

/// One kernel-part token: `key` or `key=value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg<'a> {
    /// The text before `=` (the whole token for a bare key).
    pub key: &'a str,
    /// The text after `=`, without surrounding quotes; `None` for a bare key.
    pub value: Option<&'a str>,
}

/// A parsed command line (borrowed, no allocation).
///
/// # Examples
///
/// ```
/// use torito_boot::Cmdline;
///
/// let line = Cmdline::parse(r#"log=debug app.msg="hello world" quiet -- -v file"#).unwrap();
/// assert_eq!(line.get("app.msg").unwrap().value, Some("hello world"));
/// assert_eq!(line.get("quiet").unwrap().value, None);
/// assert_eq!(line.app_args(), "-v file");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmdline<'a> {
    /// The kernel's part: everything before the `--` token.
    kernel: &'a str,
    /// The application's part: everything after the `--` token, trimmed.
    app: &'a str,
}

impl<'a> Cmdline<'a> {
    /// Parses and checks `line`.
    ///
    /// # Errors
    /// `UnterminatedQuote` for a value whose opening `"` has no closing one;
    /// `Malformed` for an empty key, a `"` inside a key or in the middle of a value, or
    /// text right after a closing quote. Nothing after `--` is checked.
    pub fn parse(line: &'a str) -> Result<Self, CmdlineError<'a>> {
        let mut offset = 0;
        loop {
            match next_token(line, offset)? {
                None => {
                    return Ok(Self {
                        kernel: line,
                        app: "",
                    });
                }
                Some((Token::Separator, start, end)) => {
                    return Ok(Self {
                        kernel: sub(line, 0, start),
                        app: sub(line, end, line.len()).trim_ascii(),
                    });
                }
                Some((Token::Arg(_), _, end)) => offset = end,
            }
        }
    }

    /// The kernel's arguments, in order (duplicates included).
    pub fn args(&self) -> Args<'a> {
        Args {
            line: self.kernel,
            offset: 0,
        }
    }

    /// The last argument named `key`, if any (later ones override earlier ones).
    pub fn get(&self, key: &str) -> Option<Arg<'a>> {
        self.args().filter(|arg| arg.key == key).last()
    }

    /// Everything after the lone `--` token, trimmed; empty when there is none. Not split
    /// or unquoted: the application parses it (or takes [`app_words`](Self::app_words)).
    pub fn app_args(&self) -> &'a str {
        self.app
    }

    /// The application's arguments split into words: whitespace separates them, and a
    /// word may be quoted with `'` or `"` to hold whitespace (the quotes are dropped; a
    /// quote that never closes runs to the end of the line). urunc's `linux` type wraps a
    /// container argument that holds spaces in `'...'`, so it arrives as one word.
    ///
    /// # Examples
    ///
    /// ```
    /// use torito_boot::Cmdline;
    ///
    /// let line = Cmdline::parse("log=info -- serve --greeting 'hello world' -v").unwrap();
    /// let words: Vec<_> = line.app_words().collect();
    /// assert_eq!(words, ["serve", "--greeting", "hello world", "-v"]);
    /// ```
    pub fn app_words(&self) -> Words<'a> {
        Words { rest: self.app }
    }

    /// The environment variables (tokens whose key [`is_env_key`]), in command-line order,
    /// as `(name, value)`; a bare `NAME` has the value `""`. Duplicates included: the
    /// last one is the one [`env_var`](Self::env_var) returns.
    pub fn env(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        self.args()
            .filter(|arg| is_env_key(arg.key))
            .map(|arg| (arg.key, arg.value.unwrap_or("")))
    }

    /// The value of environment variable `name` (the last one wins), if set.
    pub fn env_var(&self, name: &str) -> Option<&'a str> {
        self.env()
            .filter(|(key, _)| *key == name)
            .last()
            .map(|(_, value)| value)
    }
}

/// Whether `key` names an environment variable: upper-case ASCII letters, digits and
/// `_`, not starting with a digit, at least one character (`PORT`, `_X`, `K8S_NODE`).
pub fn is_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_uppercase() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
}

/// Iterator over the application's words ([`Cmdline::app_words`]); the default is empty.
#[derive(Debug, Clone, Default)]
pub struct Words<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest.trim_ascii_start();
        let bytes = rest.as_bytes();
        let first = *bytes.first()?;
        let (word, after) = if first == b'\'' || first == b'"' {
            // A quoted word: up to the matching quote, or to the end when it never closes.
            let inner = sub(rest, 1, rest.len());
            match inner.find(first as char) {
                Some(close) => (sub(inner, 0, close), sub(inner, close + 1, inner.len())),
                None => (inner, ""),
            }
        } else {
            let end = bytes
                .iter()
                .position(u8::is_ascii_whitespace)
                .unwrap_or(bytes.len());
            (sub(rest, 0, end), sub(rest, end, rest.len()))
        };
        self.rest = after;
        Some(word)
    }
}

/// Iterator over a [`Cmdline`]'s kernel arguments.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    line: &'a str,
    offset: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = Arg<'a>;

    fn next(&mut self) -> Option<Arg<'a>> {
        // `Cmdline::parse` checked this part: no errors and no separator remain. Should
        // that ever not hold, iteration just stops.
        match next_token(self.line, self.offset) {
            Ok(Some((Token::Arg(arg), _, end))) => {
                self.offset = end;
                Some(arg)
            }
            _ => None,
        }
    }
}

/// What a token turned out to be.
enum Token<'a> {
    Arg(Arg<'a>),
    /// The lone `--`.
    Separator,
}

/// `line[from..to]`. Every index the parser makes sits next to an ASCII byte, so this is
/// always a char boundary; `get` states that without `str` indexing's panic path, which
/// would pull core's Unicode tables and `char` formatting (about 4 KiB) into every image.
fn sub(line: &str, from: usize, to: usize) -> &str {
    line.get(from..to).unwrap_or_default()
}

/// The next token of `line` at or after byte `offset`, with its start and end offsets.
fn next_token(
    line: &str,
    offset: usize,
) -> Result<Option<(Token<'_>, usize, usize)>, CmdlineError<'_>> {
    let bytes = line.as_bytes();
    let mut start = offset;
    while bytes.get(start).is_some_and(u8::is_ascii_whitespace) {
        start += 1;
    }
    if start >= bytes.len() {
        return Ok(None);
    }
    let run_end = |from: usize| {
        (from..bytes.len())
            .find(|&i| bytes[i].is_ascii_whitespace())
            .unwrap_or(bytes.len())
    };
    let malformed = |problem| CmdlineError::Malformed {
        token: sub(line, start, run_end(start)),
        offset: start,
        problem,
    };

    let key_end = (start..bytes.len())
        .find(|&i| bytes[i].is_ascii_whitespace() || bytes[i] == b'=' || bytes[i] == b'"')
        .unwrap_or(bytes.len());
    let key = sub(line, start, key_end);
    match bytes.get(key_end) {
        Some(b'"') => Err(malformed("a key cannot contain '\"'")),
        Some(b'=') if key.is_empty() => Err(malformed("the key before '=' is empty")),
        Some(b'=') => {
            let value_start = key_end + 1;
            if bytes.get(value_start) == Some(&b'"') {
                let Some(close) = sub(line, value_start + 1, line.len())
                    .find('"')
                    .map(|i| value_start + 1 + i)
                else {
                    return Err(CmdlineError::UnterminatedQuote {
                        key,
                        offset: value_start,
                    });
                };
                let end = close + 1;
                if bytes
                    .get(end)
                    .is_some_and(|byte| !byte.is_ascii_whitespace())
                {
                    return Err(malformed(
                        "text follows the closing '\"' (put all of the value inside the quotes)",
                    ));
                }
                let value = Some(sub(line, value_start + 1, close));
                Ok(Some((Token::Arg(Arg { key, value }), start, end)))
            } else {
                let end = run_end(value_start);
                let value = sub(line, value_start, end);
                if value.contains('"') {
                    return Err(malformed(
                        "'\"' inside a value (quote the whole value: key=\"...\")",
                    ));
                }
                Ok(Some((
                    Token::Arg(Arg {
                        key,
                        value: Some(value),
                    }),
                    start,
                    end,
                )))
            }
        }
        // Whitespace or the end of the line: a bare key.
        _ if key == "--" => Ok(Some((Token::Separator, start, key_end))),
        _ => Ok(Some((Token::Arg(Arg { key, value: None }), start, key_end))),
    }
}

/// Why the command line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// A value opens a quote that never closes.
    UnterminatedQuote {
        /// The key whose value it is.
        key: &'a str,
        /// Byte offset of the opening `"` in the command line.
        offset: usize,
    },
    /// A token breaks the grammar (see the module docs).
    Malformed {
        /// The token, up to the next whitespace.
        token: &'a str,
        /// Its byte offset in the command line.
        offset: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A known key has a value it does not accept.
    InvalidValue {
        /// The key.
        key: &'a str,
        /// The value given.
        value: &'a str,
        /// The values the key accepts.
        accepted: &'static [&'static str],
    },
    /// A known key that needs a value was given without one.
    MissingValue {
        /// The key.
        key: &'a str,
        /// The values the key accepts.
        accepted: &'static [&'static str],
    },
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnterminatedQuote { key, offset } => write!(
                f,
                "command line: the value of `{key}` opens a quote at byte {offset} that never \
                 closes: add the closing '\"'"
            ),
            Self::Malformed {
                token,
                offset,
                problem,
            } => {
                write!(f, "command line: `{token}` (at byte {offset}): {problem}")
            }
            Self::InvalidValue {
                key,
                value,
                accepted,
            } => {
                write!(
                    f,
                    "command line: `{key}={value}`: `{key}` does not accept \"{value}\"; use one of "
                )?;
                write_list(f, accepted)
            }
            Self::MissingValue { key, accepted } => {
                write!(
                    f,
                    "command line: `{key}` needs a value: `{key}=VALUE` with VALUE one of "
                )?;
                write_list(f, accepted)
            }
        }
    }
}

impl core::error::Error for CmdlineError<'_> {}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[&str]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(item)?;
    }
    Ok(())
}

/// The kernel's log level (`log=LEVEL`), most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Also informational messages (the default).
    #[default]
    Info,
    /// Also debugging messages.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Every level, in the order of [`LogLevel::NAMES`].
    pub const ALL: [LogLevel; 5] = [
        Self::Error,
        Self::Warn,
        Self::Info,
        Self::Debug,
        Self::Trace,
    ];
    /// The accepted spellings (matched ignoring ASCII case).
    pub const NAMES: [&'static str; 5] = ["error", "warn", "info", "debug", "trace"];

    /// The level called `name` (ASCII case ignored), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|known| known.eq_ignore_ascii_case(name))
            .map(|index| Self::ALL[index])
    }

    /// The level's name, as accepted by [`LogLevel::from_name`].
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel's own command-line options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelOptions {
    /// `log=error|warn|info|debug|trace`; default `info`.
    pub log: LogLevel,
}

/// Keys the kernel itself reads.
pub const KERNEL_KEYS: &[&str] = &["log", "smp.late"];
/// Keys VMMs, orchestrators and Linux habits put on the command line, accepted and
/// ignored silently. urunc's `linux` type writes `panic=-1 console=ttyS0`, `root=... rw`,
/// `rootfstype=`, `rootflags=`, `init=APP` or `rdinit=APP` (the container's first word;
/// Torito's application is the image itself), `loglevel=`, `nokaslr` and
/// `retain_initrd`; Firecracker writes `reboot=k panic=1 pci=off nomodule ...`.
pub const VMM_KEYS: &[&str] = &[
    "virtio_mmio.device",
    "console",
    "earlyprintk",
    "pci",
    "reboot",
    "panic",
    "acpi",
    "noapic",
    "nomodule",
    "quiet",
    "init",
    "rdinit",
    "root",
    "rootfstype",
    "rootflags",
    "rootwait",
    "rw",
    "ro",
    "loglevel",
    "ignore_loglevel",
    "nokaslr",
    "retain_initrd",
    "tsc",
    "clocksource",
    "no_timer_check",
    "mitigations",
    "nosmp",
    "maxcpus",
    "random.trust_cpu",
];
/// Key prefixes accepted and ignored silently (Firecracker passes `i8042.noaux`,
/// `8250.nr_uarts=0`, ...; `systemd.` keys are harmless Linux habits).
pub const VMM_KEY_PREFIXES: &[&str] = &["i8042.", "8250.", "systemd."];
/// Keys starting with this belong to the application and are never warned about.
pub const APP_KEY_PREFIX: &str = "app.";

/// Reads the kernel's options from `cmdline`; `extra_known` names further keys that are
/// read elsewhere (for example the network's `ip`, `gw`, `dns`) and so are not unknown.
///
/// Every occurrence of a kernel key is checked; the last one wins.
///
/// # Errors
/// `InvalidValue` for a value a kernel key does not accept (naming the key, the value and
/// the accepted values), `MissingValue` for a kernel key given bare.
///
/// # Examples
///
/// ```
/// use torito_boot::{Cmdline, LogLevel, parse_kernel_options};
///
/// let line = Cmdline::parse("console=ttyS0 log=debug ip=10.0.2.15/24 colour=blue").unwrap();
/// let (options, unknown) = parse_kernel_options(&line, &["ip"]).unwrap();
/// assert_eq!(options.log, LogLevel::Debug);
/// let unknown: Vec<_> = unknown.map(|arg| arg.key).collect();
/// assert_eq!(unknown, ["colour"]);
/// ```
pub fn parse_kernel_options<'a>(
    cmdline: &Cmdline<'a>,
    extra_known: &'a [&'a str],
) -> Result<(KernelOptions, UnknownKeys<'a>), CmdlineError<'a>> {
    let mut options = KernelOptions::default();
    for arg in cmdline.args() {
        if arg.key == "log" {
            let accepted = &LogLevel::NAMES;
            let Some(value) = arg.value else {
                return Err(CmdlineError::MissingValue {
                    key: arg.key,
                    accepted,
                });
            };
            options.log = LogLevel::from_name(value).ok_or(CmdlineError::InvalidValue {
                key: arg.key,
                value,
                accepted,
            })?;
        }
    }
    Ok((
        options,
        UnknownKeys {
            args: cmdline.args(),
            extra_known,
        },
    ))
}

/// Whether `key` is read by the kernel, the application (its `app.*` options and its
/// environment, [`is_env_key`]), or is a known VMM key (or one of `extra_known`): any
/// other key is worth a warning.
pub fn is_known_key(key: &str, extra_known: &[&str]) -> bool {
    KERNEL_KEYS.contains(&key)
        || is_env_key(key)
        || VMM_KEYS.contains(&key)
        || extra_known.contains(&key)
        || key.starts_with(APP_KEY_PREFIX)
        || VMM_KEY_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

/// The kernel arguments whose keys nobody reads, in command-line order: warn about them.
#[derive(Debug, Clone)]
pub struct UnknownKeys<'a> {
    args: Args<'a>,
    extra_known: &'a [&'a str],
}

impl<'a> Iterator for UnknownKeys<'a> {
    type Item = Arg<'a>;

    fn next(&mut self) -> Option<Arg<'a>> {
        let extra_known = self.extra_known;
        self.args.find(|arg| !is_known_key(arg.key, extra_known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg<'a>(key: &'a str, value: Option<&'a str>) -> Arg<'a> {
        Arg { key, value }
    }

    fn args(line: &str) -> Vec<Arg<'_>> {
        Cmdline::parse(line).unwrap().args().collect()
    }

    #[test]
    fn tokens() {
        assert_eq!(
            args("  log=debug\tquiet\n  virtio_mmio.device=512@0xfeb00e00:12 a=b=c  "),
            [
                arg("log", Some("debug")),
                arg("quiet", None),
                arg("virtio_mmio.device", Some("512@0xfeb00e00:12")),
                arg("a", Some("b=c")),
            ]
        );
        assert_eq!(args(""), []);
        assert_eq!(args("   "), []);
        assert_eq!(args("key="), [arg("key", Some(""))]);
    }

    #[test]
    fn quotes() {
        assert_eq!(
            args(r#"app.msg="hello world" app.empty="" x=1"#),
            [
                arg("app.msg", Some("hello world")),
                arg("app.empty", Some("")),
                arg("x", Some("1"))
            ]
        );
        // A quoted `--` is a value, not the separator.
        let line = Cmdline::parse(r#"app.x="a -- b" y"#).unwrap();
        assert_eq!(line.app_args(), "");
        assert_eq!(line.get("y"), Some(arg("y", None)));
        assert_eq!(line.get("app.x").unwrap().value, Some("a -- b"));
    }

    #[test]
    fn app_args_after_the_separator() {
        let line = Cmdline::parse("log=info -- --verbose  \"raw quotes\" k=v ").unwrap();
        assert_eq!(line.args().collect::<Vec<_>>(), [arg("log", Some("info"))]);
        assert_eq!(line.app_args(), "--verbose  \"raw quotes\" k=v");
        assert_eq!(line.get("k"), None);

        let line = Cmdline::parse("-- x").unwrap();
        assert_eq!(line.args().count(), 0);
        assert_eq!(line.app_args(), "x");

        let line = Cmdline::parse("a --").unwrap();
        assert_eq!(line.app_args(), "");
        assert_eq!(line.args().count(), 1);

        // Only a lone `--` separates; app args are not checked.
        let line = Cmdline::parse("--x --=1 -- \"unterminated").unwrap();
        assert_eq!(
            line.args().collect::<Vec<_>>(),
            [arg("--x", None), arg("--", Some("1"))]
        );
        assert_eq!(line.app_args(), "\"unterminated");
    }

    #[test]
    fn last_one_wins() {
        let line = Cmdline::parse("log=warn x log=trace").unwrap();
        assert_eq!(line.get("log"), Some(arg("log", Some("trace"))));
        assert_eq!(line.get("nope"), None);
        let (options, _) = parse_kernel_options(&line, &[]).unwrap();
        assert_eq!(options.log, LogLevel::Trace);
    }

    #[test]
    fn unterminated_quote() {
        assert_eq!(
            Cmdline::parse(r#"a=1 app.msg="hello world"#),
            Err(CmdlineError::UnterminatedQuote {
                key: "app.msg",
                offset: 12
            })
        );
        let text = Cmdline::parse(r#"app.msg="x"#).unwrap_err().to_string();
        assert!(
            text.contains("app.msg") && text.contains("closing"),
            "{text}"
        );
    }

    #[test]
    fn malformed_tokens() {
        let problem = |line| match Cmdline::parse(line) {
            Err(CmdlineError::Malformed { token, offset, .. }) => Some((token, offset)),
            _ => None,
        };
        assert_eq!(problem("ok =x"), Some(("=x", 3)));
        assert_eq!(problem(r#"a"b=c"#), Some((r#"a"b=c"#, 0)));
        assert_eq!(problem(r#"k="v"w next"#), Some((r#"k="v"w"#, 0)));
        assert_eq!(problem(r#"k=v"w""#), Some((r#"k=v"w""#, 0)));
    }

    #[test]
    fn log_levels() {
        for (level, name) in LogLevel::ALL.iter().zip(LogLevel::NAMES) {
            assert_eq!(LogLevel::from_name(name), Some(*level));
            assert_eq!(level.name(), name);
        }
        assert_eq!(LogLevel::from_name("DEBUG"), Some(LogLevel::Debug));
        assert_eq!(LogLevel::from_name("loud"), None);
        assert_eq!(LogLevel::default(), LogLevel::Info);
        assert!(LogLevel::Error < LogLevel::Trace);
    }

    #[test]
    fn log_option() {
        let line = Cmdline::parse("log=debug").unwrap();
        assert_eq!(
            parse_kernel_options(&line, &[]).unwrap().0,
            KernelOptions {
                log: LogLevel::Debug
            }
        );
        let line = Cmdline::parse("quiet").unwrap();
        assert_eq!(
            parse_kernel_options(&line, &[]).unwrap().0.log,
            LogLevel::Info
        );
    }

    #[test]
    fn bad_log_value_names_key_value_and_choices() {
        let line = Cmdline::parse("log=loud").unwrap();
        let error = parse_kernel_options(&line, &[]).unwrap_err();
        assert_eq!(
            error,
            CmdlineError::InvalidValue {
                key: "log",
                value: "loud",
                accepted: &LogLevel::NAMES
            }
        );
        let text = error.to_string();
        for needle in ["log", "loud", "error", "warn", "info", "debug", "trace"] {
            assert!(text.contains(needle), "{needle:?} missing from {text:?}");
        }
        // An invalid earlier occurrence is an error even if a later one is valid.
        let line = Cmdline::parse("log=loud log=info").unwrap();
        assert!(parse_kernel_options(&line, &[]).is_err());

        let line = Cmdline::parse("log").unwrap();
        let error = parse_kernel_options(&line, &[]).unwrap_err();
        assert!(matches!(
            error,
            CmdlineError::MissingValue { key: "log", .. }
        ));
        assert!(error.to_string().contains("trace"));
    }

    #[test]
    fn unknown_keys_are_reported_in_order() {
        let line =
            Cmdline::parse("colour=blue log=info ip=10.0.2.15/24 speed dns=1.1.1.1").unwrap();
        let (_, unknown) = parse_kernel_options(&line, &["ip", "gw", "dns"]).unwrap();
        assert_eq!(
            unknown.collect::<Vec<_>>(),
            [arg("colour", Some("blue")), arg("speed", None)]
        );
        // Without the extra keys, the network's keys are unknown too.
        let (_, unknown) = parse_kernel_options(&line, &[]).unwrap();
        assert_eq!(
            unknown.map(|arg| arg.key).collect::<Vec<_>>(),
            ["colour", "ip", "speed", "dns"]
        );
    }

    #[test]
    fn vmm_and_app_keys_are_silent() {
        // Firecracker's default boot arguments, QEMU microvm's device list, Linux habits.
        let line = Cmdline::parse(
            "console=ttyS0 reboot=k panic=1 pci=off nomodule 8250.nr_uarts=0 i8042.noaux \
             i8042.nomux i8042.nopnp i8042.dumbkbd acpi=off noapic quiet earlyprintk=ttyS0 \
             virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb01000:13 \
             app.msg=\"hello world\" app.port=8080",
        )
        .unwrap();
        let (options, unknown) = parse_kernel_options(&line, &[]).unwrap();
        assert_eq!(options, KernelOptions::default());
        assert_eq!(unknown.count(), 0);
        // A key that merely starts like a known one is still unknown.
        assert!(!is_known_key("consoles", &[]));
        assert!(!is_known_key("initial", &[]));
        assert!(!is_known_key("app", &[]));
        assert!(is_known_key("app.", &[]));
    }

    /// The command lines urunc writes (pkg/unikontainers/unikernels): its `linux` type
    /// and its `hermit` type.
    const URUNC_LINUX: &str = "panic=-1 console=ttyS0 root=/dev/vda rw \
        ip=10.244.1.5::169.254.1.1:255.255.255.255:urunc:eth0:off \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOSTNAME=echo-7d9 \
        GREETING=hola URUNIT_DEFROUTE=1 init=/echo -- --port 5555 'hello world'";
    const URUNC_HERMIT: &str = "ip=10.244.1.5/24 gateway=10.244.1.1 -- --port 5555";

    #[test]
    fn urunc_linux_line_sorts_into_env_args_and_silence() {
        let line = Cmdline::parse(URUNC_LINUX).unwrap();
        let (options, unknown) = parse_kernel_options(&line, &["ip", "gw", "gateway"]).unwrap();
        assert_eq!(options, KernelOptions::default());
        assert_eq!(unknown.collect::<Vec<_>>(), []);
        assert_eq!(
            line.env().collect::<Vec<_>>(),
            [
                (
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                ),
                ("HOSTNAME", "echo-7d9"),
                ("GREETING", "hola"),
                ("URUNIT_DEFROUTE", "1"),
            ]
        );
        assert_eq!(line.env_var("GREETING"), Some("hola"));
        assert_eq!(line.env_var("greeting"), None);
        assert_eq!(
            line.app_words().collect::<Vec<_>>(),
            ["--port", "5555", "hello world"]
        );
        // Without the network's keys, only those are unknown.
        let (_, unknown) = parse_kernel_options(&line, &[]).unwrap();
        assert_eq!(unknown.map(|arg| arg.key).collect::<Vec<_>>(), ["ip"]);

        let line = Cmdline::parse(URUNC_HERMIT).unwrap();
        let (_, unknown) = parse_kernel_options(&line, &["ip", "gateway"]).unwrap();
        assert_eq!(unknown.count(), 0);
        assert_eq!(line.env().count(), 0);
        assert_eq!(line.app_words().collect::<Vec<_>>(), ["--port", "5555"]);
    }

    #[test]
    fn environment_keys_are_upper_case_only() {
        for key in ["PORT", "_X", "K8S_NODE", "A1", "_"] {
            assert!(is_env_key(key), "{key}");
        }
        for key in [
            "", "port", "Port", "PORT.X", "1PORT", "PO-RT", "app.PORT", "ÉTÉ",
        ] {
            assert!(!is_env_key(key), "{key}");
        }
        let line = Cmdline::parse(r#"A=1 B C="two words" A=3 lower=x"#).unwrap();
        assert_eq!(
            line.env().collect::<Vec<_>>(),
            [("A", "1"), ("B", ""), ("C", "two words"), ("A", "3")]
        );
        assert_eq!(line.env_var("A"), Some("3"));
        assert_eq!(line.env_var("B"), Some(""));
        assert_eq!(line.env_var("lower"), None);
        // A misspelt Torito key is still warned about; so is a lower-case variable.
        let line = Cmdline::parse("lgo=debug http_proxy=x LOG=debug").unwrap();
        let (options, unknown) = parse_kernel_options(&line, &[]).unwrap();
        assert_eq!(options.log, LogLevel::Info, "LOG is the app's, not log=");
        assert_eq!(
            unknown.map(|arg| arg.key).collect::<Vec<_>>(),
            ["lgo", "http_proxy"]
        );
        // Words after `--` are never environment.
        let line = Cmdline::parse("-- X=1").unwrap();
        assert_eq!(line.env().count(), 0);
    }

    #[test]
    fn app_words_split_and_unquote() {
        let words = |line| {
            Cmdline::parse(line)
                .unwrap()
                .app_words()
                .collect::<Vec<_>>()
        };
        assert_eq!(words("a"), Vec::<&str>::new());
        assert_eq!(words("-- "), Vec::<&str>::new());
        assert_eq!(words("--  a\tb\n c "), ["a", "b", "c"]);
        assert_eq!(words(r#"-- "x y" 'p "q"' z"#), ["x y", r#"p "q""#, "z"]);
        assert_eq!(words("-- '' b"), ["", "b"]);
        // A quote that never closes runs to the end; nothing panics on odd input.
        assert_eq!(words("-- a 'b c"), ["a", "b c"]);
        assert_eq!(words("-- 'x'y"), ["x", "y"]);
        assert_eq!(
            words("-- \"\u{e9}t\u{e9}\" \u{2603}"),
            ["\u{e9}t\u{e9}", "\u{2603}"]
        );
    }
}
