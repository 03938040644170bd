//! RESP2 framing: requests in (arrays of bulk strings, or inline lines), replies out.
//!
//! [`parse`] looks at the bytes a connection has buffered and finds the first complete
//! request without copying it: the arguments come back as ranges into the buffer. It
//! never panics on any input (a seeded fuzz test in `tests` holds it to that), and an
//! incomplete request says how many bytes it needs at least, so that a 1 MiB value is
//! parsed once when it is all there, not once per TCP segment.
//!
//! The reply writers append to a `Vec<u8>` with fallible growth: a reply as large as the
//! value a client stored reserves its room first and reports [`OutOfMemory`] instead of
//! aborting.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// The longest bulk string (a key or a value): 1 MiB.
pub const MAX_BULK: usize = 1 << 20;
/// The longest request (an MSET of several large values, say): 8 MiB. A client cannot
/// make a connection buffer more than this (Redis's query buffer limit plays this role).
pub const MAX_REQUEST: usize = 8 << 20;
/// The most arguments one request may have (each costs 16 bytes of ranges).
pub const MAX_ARGS: usize = 1 << 16;
/// The longest inline request line, and the longest header line of an array or bulk
/// string (as Redis: 64 KiB).
pub const MAX_INLINE: usize = 64 << 10;

/// What [`parse`] found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A complete request, its arguments in the `args` vector, `consumed` bytes long. An
    /// empty request (a blank inline line, `*0`) has no arguments and is skipped.
    Complete {
        /// Bytes of the buffer the request takes up.
        consumed: usize,
    },
    /// Not all of the request has arrived: the buffer must hold at least `need` bytes
    /// before parsing again can succeed.
    Incomplete {
        /// The least buffer length that can hold the request (always more than the
        /// buffer's length now).
        need: usize,
    },
}

/// A request that cannot be framed: the connection answers `-ERR` with this text and
/// closes, since where the next request starts is unknown. The texts are Redis's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*N` with N not a number, or above [`MAX_ARGS`].
    InvalidMultibulkLength,
    /// `$N` with N not a number, negative, or above [`MAX_BULK`].
    InvalidBulkLength,
    /// An array element that is not a bulk string (the byte found instead of `$`).
    ExpectedBulk(u8),
    /// A bulk string not followed by `\r\n`, or a header line whose `\r` is not followed
    /// by `\n`.
    ExpectedLineEnd,
    /// An inline request longer than [`MAX_INLINE`] without a line end.
    TooBigInline,
    /// An array or bulk header longer than [`MAX_INLINE`] without a line end.
    TooBigHeader,
    /// An inline request with a quote that does not close (or closes before a letter).
    UnbalancedQuotes,
    /// A request longer than [`MAX_REQUEST`].
    TooBigRequest,
    /// The request's argument list found no room on the heap.
    OutOfMemory,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidMultibulkLength => f.write_str("Protocol error: invalid multibulk length"),
            Self::InvalidBulkLength => f.write_str("Protocol error: invalid bulk length"),
            Self::ExpectedBulk(byte) if byte.is_ascii_graphic() => {
                write!(f, "Protocol error: expected '$', got '{}'", *byte as char)
            }
            Self::ExpectedBulk(byte) => {
                write!(f, "Protocol error: expected '$', got byte 0x{byte:02x}")
            }
            Self::ExpectedLineEnd => f.write_str("Protocol error: expected '\\r\\n'"),
            Self::TooBigInline => f.write_str("Protocol error: too big inline request"),
            Self::TooBigHeader => f.write_str("Protocol error: too big mbulk count string"),
            Self::UnbalancedQuotes => f.write_str("Protocol error: unbalanced quotes in request"),
            Self::TooBigRequest => f.write_str("Protocol error: request longer than 8 MiB"),
            Self::OutOfMemory => f.write_str("out of memory for the request's arguments"),
        }
    }
}

impl core::error::Error for ProtocolError {}

/// Finds the first request in `input`. On `Complete`, `args` holds the ranges of its
/// arguments in `input` (cleared first in every case).
///
/// # Errors
/// A [`ProtocolError`] when the bytes cannot be a request: the connection must answer
/// and close.
pub fn parse(input: &[u8], args: &mut Vec<Range<usize>>) -> Result<Parsed, ProtocolError> {
    args.clear();
    match input.first() {
        None => Ok(Parsed::Incomplete { need: 1 }),
        Some(b'*') => array(input, args),
        Some(_) => inline(input, args),
    }
}

/// `*N\r\n` then N times `$LEN\r\nBYTES\r\n`.
fn array(input: &[u8], args: &mut Vec<Range<usize>>) -> Result<Parsed, ProtocolError> {
    let Some((count, mut at)) = header(input, 0)? else {
        return Ok(incomplete(input));
    };
    let count = number(count).ok_or(ProtocolError::InvalidMultibulkLength)?;
    if count > MAX_ARGS as i64 {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    // `*0` and `*-1` are empty requests, as Redis treats them.
    for _ in 0..count.max(0) {
        match input.get(at) {
            None => return Ok(incomplete(input)),
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedBulk(other)),
        }
        let Some((length, start)) = header(input, at)? else {
            return Ok(incomplete(input));
        };
        let length = number(length)
            .filter(|&length| (0..=MAX_BULK as i64).contains(&length))
            .ok_or(ProtocolError::InvalidBulkLength)? as usize;
        let end = start + length;
        if end + 2 > MAX_REQUEST {
            return Err(ProtocolError::TooBigRequest);
        }
        if input.len() < end + 2 {
            return Ok(Parsed::Incomplete { need: end + 2 });
        }
        if &input[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::ExpectedLineEnd);
        }
        args.try_reserve(1)
            .map_err(|_| ProtocolError::OutOfMemory)?;
        args.push(start..end);
        at = end + 2;
    }
    Ok(Parsed::Complete { consumed: at })
}

/// The header line starting at `at` (a type byte, then text up to `\r\n`): its text
/// without the type byte, and where the next line starts; `None` until the line end has
/// arrived.
fn header(input: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &input[at..];
    match rest.iter().position(|&byte| byte == b'\r') {
        None if rest.len() > MAX_INLINE => Err(ProtocolError::TooBigHeader),
        None => Ok(None),
        Some(end) if end > MAX_INLINE => Err(ProtocolError::TooBigHeader),
        Some(end) => match rest.get(end + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((&rest[1..end], at + end + 2))),
            Some(_) => Err(ProtocolError::ExpectedLineEnd),
        },
    }
}

/// An incomplete request with no better hint: one more byte.
fn incomplete(input: &[u8]) -> Parsed {
    Parsed::Incomplete {
        need: input.len() + 1,
    }
}

/// A decimal integer as RESP writes lengths: an optional `-`, then 1 to 18 digits.
fn number(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0'));
    Some(if negative { -value } else { value })
}

/// An inline request: one line (ending in `\n` or `\r\n`), arguments separated by
/// spaces or tabs; an argument may be quoted with `"` or `'` to hold spaces (the quotes
/// are delimiters only: no escapes inside, unlike Redis's `sdssplitargs`).
fn inline(input: &[u8], args: &mut Vec<Range<usize>>) -> Result<Parsed, ProtocolError> {
    let Some(newline) = input.iter().position(|&byte| byte == b'\n') else {
        if input.len() > MAX_INLINE {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(incomplete(input));
    };
    if newline > MAX_INLINE {
        return Err(ProtocolError::TooBigInline);
    }
    let line_end = if newline > 0 && input[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    };
    let mut at = 0;
    loop {
        while at < line_end && matches!(input[at], b' ' | b'\t') {
            at += 1;
        }
        if at == line_end {
            break;
        }
        let range = match input[at] {
            quote @ (b'"' | b'\'') => {
                let start = at + 1;
                let Some(length) = input[start..line_end].iter().position(|&b| b == quote) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                at = start + length + 1;
                // A closing quote must end the argument, as in Redis.
                if at < line_end && !matches!(input[at], b' ' | b'\t') {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                start..start + length
            }
            _ => {
                let start = at;
                while at < line_end && !matches!(input[at], b' ' | b'\t') {
                    at += 1;
                }
                start..at
            }
        };
        if args.len() == MAX_ARGS {
            return Err(ProtocolError::TooBigInline);
        }
        args.try_reserve(1)
            .map_err(|_| ProtocolError::OutOfMemory)?;
        args.push(range);
    }
    Ok(Parsed::Complete {
        consumed: newline + 1,
    })
}

/// A reply could not be appended: the heap has no room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the heap has no room for the reply")
    }
}

impl core::error::Error for OutOfMemory {}

/// Appends `parts` to `out`, reserving their room first.
fn append(out: &mut Vec<u8>, parts: &[&[u8]]) -> Result<(), OutOfMemory> {
    let length = parts.iter().map(|part| part.len()).sum();
    out.try_reserve(length).map_err(|_| OutOfMemory)?;
    for part in parts {
        out.extend_from_slice(part);
    }
    Ok(())
}

/// `+text\r\n`.
pub fn simple(out: &mut Vec<u8>, text: &str) -> Result<(), OutOfMemory> {
    append(out, &[b"+", text.as_bytes(), b"\r\n"])
}

/// `-text\r\n` (the text starts with its kind: `ERR ...`, `OOM ...`).
pub fn error(out: &mut Vec<u8>, text: &str) -> Result<(), OutOfMemory> {
    error_parts(out, &[text.as_bytes()])
}

/// `-` then `parts` one after the other, then `\r\n`. A part may come from the client
/// (a command's name): line ends in it would break the framing, so they become spaces.
pub fn error_parts(out: &mut Vec<u8>, parts: &[&[u8]]) -> Result<(), OutOfMemory> {
    let length = parts.iter().map(|part| part.len()).sum::<usize>() + 3;
    out.try_reserve(length).map_err(|_| OutOfMemory)?;
    out.push(b'-');
    for part in parts {
        out.extend(part.iter().map(|&byte| match byte {
            b'\r' | b'\n' => b' ',
            other => other,
        }));
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `-`, `prefix`, `value` as `Display` writes it, `\r\n`.
pub fn error_display(
    out: &mut Vec<u8>,
    prefix: &str,
    value: &dyn fmt::Display,
) -> Result<(), OutOfMemory> {
    struct Writer<'a>(&'a mut Vec<u8>);
    impl fmt::Write for Writer<'_> {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            append(self.0, &[text.as_bytes()]).map_err(|_| fmt::Error)
        }
    }
    let start = out.len();
    let result = fmt::Write::write_fmt(&mut Writer(out), format_args!("{prefix}{value}"));
    let text_end = out.len();
    if result.is_err() {
        out.truncate(start);
        return Err(OutOfMemory);
    }
    // Reuse `error_parts` for the sanitising and the framing: move the text out of the
    // way first (it is short: an error message).
    let mut text = [0u8; 128];
    let length = (text_end - start).min(text.len());
    text[..length].copy_from_slice(&out[start..start + length]);
    out.truncate(start);
    error_parts(out, &[&text[..length]])
}

/// `:N\r\n`.
pub fn integer(out: &mut Vec<u8>, value: i64) -> Result<(), OutOfMemory> {
    let mut digits = Digits::new();
    append(out, &[b":", digits.format(value), b"\r\n"])
}

/// `$LEN\r\nBYTES\r\n`.
pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), OutOfMemory> {
    let mut digits = Digits::new();
    let length = digits.format(bytes.len() as i64);
    append(out, &[b"$", length, b"\r\n", bytes, b"\r\n"])
}

/// `$-1\r\n`: the null bulk string (a missing key).
pub fn nil(out: &mut Vec<u8>) -> Result<(), OutOfMemory> {
    append(out, &[b"$-1\r\n"])
}

/// `bytes` as they are (an encoded reply).
pub fn append_raw(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), OutOfMemory> {
    append(out, &[bytes])
}

/// `*N\r\n`: an array header; the caller appends its N elements.
pub fn array_header(out: &mut Vec<u8>, elements: usize) -> Result<(), OutOfMemory> {
    let mut digits = Digits::new();
    append(out, &[b"*", digits.format(elements as i64), b"\r\n"])
}

/// Formats integers without allocating.
pub struct Digits([u8; 20]);

impl Digits {
    /// A buffer for one integer.
    pub fn new() -> Self {
        Self([0; 20])
    }

    /// `value` in decimal (i64::MIN included).
    pub fn format(&mut self, value: i64) -> &[u8] {
        let mut magnitude = value.unsigned_abs();
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (magnitude % 10) as u8;
            magnitude /= 10;
            if magnitude == 0 {
                break;
            }
        }
        if value < 0 {
            at -= 1;
            self.0[at] = b'-';
        }
        &self.0[at..]
    }
}

impl Default for Digits {
    fn default() -> Self {
        Self::new()
    }
}
