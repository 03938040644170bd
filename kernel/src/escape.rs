//! Console text that a log collector reads line by line: control characters escaped.
//!
//! The console is what `kubectl logs` (and Nomad's, and a VMM's log file) shows, one line
//! per event. A control character from an application string (an escape sequence in an
//! environment value, a stray `\r`, a bell) would repaint a terminal or split and garble
//! a collected line, so every write to the console goes through [`Escaped`]: a control
//! character (C0, DEL, C1) is written as `\x1b` or `\u{85}` text; `\n` ends the line
//! (written as the UART's `\r\n`) except inside a log record, where [`OneLine`] writes it
//! as `\n` text so that a record stays one line.
//!
//! Plain code, no hardware: the serial port (`arch::serial`) and the logger use it.

use core::fmt::{self, Write};

/// A writer that escapes control characters on their way to `inner`.
pub struct Escaped<W> {
    inner: W,
    /// Whether `\n` passes as a line end (the console) or is escaped (a log record).
    newlines: bool,
}

impl<W: Write> Escaped<W> {
    /// Escapes every control character but `\n`.
    pub fn lines(inner: W) -> Self {
        Escaped {
            inner,
            newlines: true,
        }
    }

    /// Escapes every control character, `\n` too.
    pub fn one_line(inner: W) -> Self {
        Escaped {
            inner,
            newlines: false,
        }
    }
}

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escape(&mut self.inner, text, self.newlines)
    }
}

/// `Escaped`'s work, written once for every writer (the UART, a formatter) rather than
/// once per writer type.
fn escape(out: &mut dyn Write, text: &str, newlines: bool) -> fmt::Result {
    let mut clean = 0;
    for (at, c) in text.char_indices() {
        if !c.is_control() || (c == '\n' && newlines) {
            continue;
        }
        out.write_str(text.get(clean..at).unwrap_or_default())?;
        match u32::from(c) {
            code @ 0..0x80 => write!(out, "\\x{code:02x}")?,
            code => write!(out, "\\u{{{code:x}}}")?,
        }
        clean = at + c.len_utf8();
    }
    out.write_str(text.get(clean..).unwrap_or_default())
}

/// Displays `T` on one line: every control character escaped, `\n` too (for a log
/// record's message).
pub struct OneLine<T>(pub T);

impl<T: fmt::Display> fmt::Display for OneLine<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaped::one_line(f), "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn lines(text: &str) -> String {
        let mut out = String::new();
        write!(Escaped::lines(&mut out), "{text}").unwrap();
        out
    }

    #[test]
    fn control_characters_become_text() {
        assert_eq!(lines("plain text, é ✓"), "plain text, é ✓");
        assert_eq!(lines("a\nb\n"), "a\nb\n");
        assert_eq!(lines("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(
            lines("cr\rtab\tbell\x07del\x7f"),
            "cr\\x0dtab\\x09bell\\x07del\\x7f"
        );
        assert_eq!(lines("c1\u{85}\u{9b}"), "c1\\u{85}\\u{9b}");
        assert_eq!(lines("\0"), "\\x00");
    }

    #[test]
    fn a_log_record_stays_on_one_line() {
        let record = alloc::format!("{}", OneLine(format_args!("one\ntwo\r\n{}", "\x1b")));
        assert_eq!(record, "one\\x0atwo\\x0d\\x0a\\x1b");
        assert!(!record.contains(|c: char| c.is_control()));
    }
}
