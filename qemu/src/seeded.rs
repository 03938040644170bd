//! Seeded test data: the same bytes for a seed on every run, so a failure repeats.
//!
//! Tests send these bytes and compare what comes back with what they sent; nothing
//! depends on the particular sequence, only on its being repeatable and varied enough
//! that a dropped, repeated or reordered chunk shows.

/// SplitMix64 (Steele, Lea and Flood), for tests that want numbers as well as bytes.
///
/// # Examples
///
/// ```
/// use torito_qemu_tests::SplitMix64;
///
/// let mut a = SplitMix64(7);
/// let mut b = SplitMix64(7);
/// assert_eq!(a.bytes(100), b.bytes(100));
/// assert!((3..=9).contains(&a.range(3, 9)));
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    ///
    /// # Panics
    /// When `high < low`.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }

    /// `length` random bytes.
    pub fn bytes(&mut self, length: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(length + 8);
        while bytes.len() < length {
            bytes.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        bytes.truncate(length);
        bytes
    }
}

/// `length` bytes from an xorshift64 generator seeded with `seed` (a cheap one-call form
/// for tests that only need bytes).
///
/// # Examples
///
/// ```
/// use torito_qemu_tests::seeded_bytes;
///
/// assert_eq!(seeded_bytes(1, 64), seeded_bytes(1, 64));
/// assert_ne!(seeded_bytes(1, 64), seeded_bytes(2, 64));
/// ```
pub fn seeded_bytes(seed: u64, length: usize) -> Vec<u8> {
    // xorshift never leaves 0: an odd state always works.
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
