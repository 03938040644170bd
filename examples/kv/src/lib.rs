//! kv: an in-memory key-value store that speaks the Redis protocol (RESP2).
//!
//! This library is the whole service but the socket: the framing ([`resp`]), the
//! commands ([`command`]), the shared store ([`store`]) and a connection's buffers and
//! request loop ([`connection`]). It is plain `no_std` code with no kernel in it, so it
//! builds and is tested on the host (`cargo test -p kv --lib`); `src/main.rs` puts it on
//! Torito's network. Promises:
//!
//! * no input panics the parser or a command (a seeded fuzz test feeds random bytes and
//!   cut requests);
//! * every allocation whose size a client chooses is fallible, and a write that would
//!   take the heap past the memory limit is answered `-OOM`, never a crash;
//! * pipelined requests are answered in order, their replies sent together.
// `std` only for the tests on the host; the image has none.
#![cfg_attr(any(not(test), target_os = "none"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod command;
pub mod connection;
pub mod resp;
pub mod store;

#[cfg(test)]
mod tests;

pub use connection::{Connection, Flow};
pub use store::Store;

/// The TCP port the service listens on (Redis's).
pub const PORT: u16 = 6379;

/// `kv.maxmemory=` could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSize<'a>(pub &'a str);

impl core::fmt::Display for BadSize<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "kv.maxmemory={:?} is not a size: give bytes, optionally with a unit as Redis \
             reads them (k = 1000, kb = 1024, m, mb, g, gb), e.g. kv.maxmemory=64mb",
            self.0
        )
    }
}

impl core::error::Error for BadSize<'_> {}

/// A size as Redis's configuration reads it: digits, then optionally `k` (1000), `kb`
/// (1024), `m`, `mb`, `g` or `gb`, in any case.
///
/// # Errors
/// [`BadSize`] when `text` is not such a size or it does not fit a `usize`.
pub fn parse_size(text: &str) -> Result<usize, BadSize<'_>> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    const UNITS: [(&str, usize); 8] = [
        ("", 1),
        ("b", 1),
        ("k", 1000),
        ("kb", 1 << 10),
        ("m", 1000 * 1000),
        ("mb", 1 << 20),
        ("g", 1000 * 1000 * 1000),
        ("gb", 1 << 30),
    ];
    let Some(&(_, multiplier)) = UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
    else {
        return Err(BadSize(text));
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|number| number.checked_mul(multiplier))
        .ok_or(BadSize(text))
}

/// The memory limit when none is given: the heap less an eighth, kept for what the
/// limit check does not foresee (new connections' buffers, the network stack's tables,
/// tasks). Connection buffers already allocated count against the limit (it is checked
/// against the heap's real use), so the eighth is headroom, not their budget.
pub fn default_limit(heap_size: usize) -> usize {
    heap_size - heap_size / 8
}
