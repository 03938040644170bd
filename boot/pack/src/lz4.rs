//! The LZ4 block format, both ways: [`compress`] for the packer, and [`unpack`], the
//! boot stub's unpacker (boot/src/unpack.s) written again in Rust with the same checks, so
//! the packer can prove each image unpacks before writing it and the tests can feed it
//! damaged input.
//!
//! A block is a run of sequences. Each is a token byte (high nibble: literal count, low
//! nibble: match length - 4, 15 meaning "more length bytes follow", each added, until one
//! below 255), the literals, then a 16-bit little-endian offset back into the output and
//! the match, copied forward byte by byte so that a short offset repeats. The last
//! sequence stops after its literals.

use std::fmt;

/// Why packed bytes do not unpack: the stub stops with its "damaged" message for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnpackError {
    /// The input ends inside a sequence.
    Truncated,
    /// A literal run or match would write past the promised length.
    TooLong,
    /// A match offset is zero or reaches before the start of the output.
    BadOffset,
    /// The input ended before the output reached the promised length.
    TooShort,
    /// It unpacked, but not to the bytes that were packed (a packer bug).
    Mismatch,
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "the input ends inside a sequence",
            Self::TooLong => "a sequence writes past the unpacked length",
            Self::BadOffset => "a match offset points outside the output",
            Self::TooShort => "the input ends before the unpacked length is reached",
            Self::Mismatch => "the unpacked bytes differ from the input",
        })
    }
}

/// The shortest match the format has.
const MIN_MATCH: usize = 4;
/// The farthest a match can reach back (its offset is 16 bits, and never 0).
const WINDOW: usize = 65_535;
/// No match starts in the last 12 bytes and the last 5 are literals (the format's end
/// rules, which other LZ4 decoders rely on; ours does not).
const END_LITERALS: usize = 5;
const LAST_MATCH_START: usize = 12;
/// How many earlier positions with the same 4-byte hash are tried per position. The
/// kernel is small, so the search can be thorough: this runs once per build.
const CHAIN_DEPTH: usize = 1024;
/// A match at least this long ends the search and is taken as it is, without pricing
/// every shorter one; inside it, the next position reuses it. Long runs (zero padding)
/// would otherwise make parsing quadratic. (Stopping at 64 instead lost a byte a run on
/// medium runs; the search's skip test, below, is what keeps those fast: 256 KiB of
/// 500-byte zero runs took 30 s without it, 1 s with it.)
const TAKE_AT_ONCE: usize = 512;

/// Compresses `input` into one LZ4 block, as small as the format allows for it: the
/// parse is chosen by cost (dynamic programming over every position, the way `lz4 -12`
/// does), not greedily, which makes the kernel about a tenth smaller than a fast
/// compressor's output.
pub fn compress(input: &[u8]) -> Vec<u8> {
    let longest = longest_matches(input);
    let n = input.len();
    // best[i]: the cheapest encoding of input[..i] found so far, in bytes, not counting
    // the final sequence's token. A literal costs 1, plus 1 whenever its run reaches 15
    // and every 255 after; a match costs its token, 2 offset bytes and its length bytes.
    #[derive(Clone, Copy)]
    struct Step {
        cost: usize,
        /// Literals in the run that ends at this position (0 after a match).
        run: usize,
        /// The match that ends here (length 0: the byte is a literal) and its offset.
        len: usize,
        offset: usize,
    }
    let mut best = vec![
        Step {
            cost: usize::MAX,
            run: 0,
            len: 0,
            offset: 0
        };
        n + 1
    ];
    best[0] = Step {
        cost: 0,
        run: 0,
        len: 0,
        offset: 0,
    };
    for i in 0..n {
        let here = best[i];
        // Extend the literal run.
        let run = here.run + 1;
        let extra = usize::from(run == 15 || (run > 15 && (run - 15).is_multiple_of(255)));
        let literal = Step {
            cost: here.cost + 1 + extra,
            run,
            len: 0,
            offset: 0,
        };
        if literal.cost < best[i + 1].cost {
            best[i + 1] = literal;
        }
        let (len, offset) = longest[i];
        if len < MIN_MATCH {
            continue;
        }
        let lengths = if len >= TAKE_AT_ONCE {
            len..=len
        } else {
            MIN_MATCH..=len
        };
        for m in lengths {
            let cost = here.cost + 1 + 2 + length_bytes(m - MIN_MATCH);
            if cost < best[i + m].cost {
                best[i + m] = Step {
                    cost,
                    run: 0,
                    len: m,
                    offset,
                };
            }
        }
    }

    // Walk back from the end to recover the sequences, then write them forwards.
    let mut matches = Vec::new();
    let mut at = n;
    while at > 0 {
        let step = best[at];
        if step.len == 0 {
            at -= 1;
        } else {
            at -= step.len;
            matches.push((at, step.len, step.offset));
        }
    }
    matches.reverse();
    let mut out = Vec::with_capacity(n / 2);
    let mut literals_from = 0;
    for (start, len, offset) in matches {
        let literals = start - literals_from;
        let token_at = out.len();
        out.push(0);
        let literal_nibble = write_length(&mut out, literals);
        out.extend_from_slice(&input[literals_from..start]);
        out.extend_from_slice(&(offset as u16).to_le_bytes());
        let match_nibble = write_length(&mut out, len - MIN_MATCH);
        out[token_at] = (literal_nibble << 4) | match_nibble;
        literals_from = start + len;
    }
    let token_at = out.len();
    out.push(0);
    let literal_nibble = write_length(&mut out, n - literals_from);
    out.extend_from_slice(&input[literals_from..]);
    out[token_at] = literal_nibble << 4;
    out
}

/// Bytes a length field takes after its token nibble.
fn length_bytes(length: usize) -> usize {
    if length < 15 {
        0
    } else {
        1 + (length - 15) / 255
    }
}

/// Writes the bytes of a length field that follow the token; returns the nibble.
fn write_length(out: &mut Vec<u8>, length: usize) -> u8 {
    if length < 15 {
        return length as u8;
    }
    let mut rest = length - 15;
    while rest >= 255 {
        out.push(255);
        rest -= 255;
    }
    out.push(rest as u8);
    15
}

/// For every position, the longest match with an earlier position (length, offset),
/// within the window and the format's end rules; (0, 0) where there is none.
fn longest_matches(input: &[u8]) -> Vec<(usize, usize)> {
    let n = input.len();
    let mut longest = vec![(0, 0); n];
    if n < LAST_MATCH_START + 1 {
        return longest;
    }
    let hash = |at: usize| {
        let word = u32::from_le_bytes([input[at], input[at + 1], input[at + 2], input[at + 3]]);
        (word.wrapping_mul(2_654_435_761) >> 16) as usize
    };
    let mut head = vec![usize::MAX; 1 << 16];
    let mut previous = vec![usize::MAX; n];
    let match_end = n - END_LITERALS;
    for i in 0..=n - LAST_MATCH_START {
        let h = hash(i);
        // Inside a long match the next position matches one byte less at the same offset:
        // take that instead of searching, or long runs would cost a search each.
        if let Some(&(len, offset)) = i.checked_sub(1).map(|before| &longest[before])
            && len > TAKE_AT_ONCE
        {
            longest[i] = (len - 1, offset);
            previous[i] = head[h];
            head[h] = i;
            continue;
        }
        let mut candidate = head[h];
        let mut tries = 0;
        let mut best = (0, 0);
        while candidate != usize::MAX && i - candidate <= WINDOW && tries < CHAIN_DEPTH {
            // A candidate that differs at the byte after the best match so far cannot
            // beat it: skip the comparison (the best ends before match_end, or the
            // search would have stopped).
            if best.0 > 0 && input[candidate + best.0] != input[i + best.0] {
                candidate = previous[candidate];
                tries += 1;
                continue;
            }
            let len = input[candidate..match_end]
                .iter()
                .zip(&input[i..match_end])
                .take_while(|(a, b)| a == b)
                .count();
            if len > best.0 {
                best = (len, i - candidate);
                if i + len == match_end || len >= TAKE_AT_ONCE {
                    break;
                }
            }
            candidate = previous[candidate];
            tries += 1;
        }
        if best.0 >= MIN_MATCH {
            longest[i] = best;
        }
        previous[i] = head[h];
        head[h] = i;
    }
    longest
}

/// Unpacks one LZ4 block that must produce exactly `len` bytes, checking as the stub does.
pub fn unpack(input: &[u8], len: usize) -> Result<Vec<u8>, UnpackError> {
    let mut out = Vec::with_capacity(len);
    let mut reader = Reader { input, at: 0 };
    loop {
        let token = reader.byte()?;
        let literals = reader.length(token >> 4)?;
        let literals = reader.take(literals)?;
        if literals.len() > len - out.len() {
            return Err(UnpackError::TooLong);
        }
        out.extend_from_slice(literals);
        if reader.at == input.len() {
            return if out.len() == len {
                Ok(out)
            } else {
                Err(UnpackError::TooShort)
            };
        }
        let offset = reader.take(2)?;
        let offset = usize::from(u16::from_le_bytes([offset[0], offset[1]]));
        if offset == 0 || offset > out.len() {
            return Err(UnpackError::BadOffset);
        }
        let matched = reader.length(token & 15)? + 4;
        if matched > len - out.len() {
            return Err(UnpackError::TooLong);
        }
        for _ in 0..matched {
            out.push(out[out.len() - offset]);
        }
    }
}

/// The unread rest of a block.
struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<usize, UnpackError> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], UnpackError> {
        let bytes = self.input.get(self.at..).and_then(|rest| rest.get(..count));
        let bytes = bytes.ok_or(UnpackError::Truncated)?;
        self.at += count;
        Ok(bytes)
    }

    /// A length whose nibble is 15 continues in the bytes that follow.
    fn length(&mut self, nibble: usize) -> Result<usize, UnpackError> {
        let mut total = nibble;
        if nibble == 15 {
            loop {
                let more = self.byte()?;
                total += more;
                if more != 255 {
                    break;
                }
            }
        }
        Ok(total)
    }
}
