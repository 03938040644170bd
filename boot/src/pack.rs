//! The contract between `torito-pack` (boot/pack), which compresses a linked kernel into
//! a smaller bootable image, and the entry code that unpacks it (`entry.rs`).
//!
//! A linked kernel starts with its boot stub: the multiboot2 header and the 32-bit entry
//! code, up to the linker symbol [`STUB_END_SYMBOL`]. The packer LZ4-compresses
//! everything the image loads after that (the rest of `.text`, `.rodata`, `.data`) and
//! writes where the compressed bytes are and what they must unpack to into the
//! [`Descriptor`] at [`DESCRIPTOR_SYMBOL`], which sits in the stub. The entry code, before
//! anything else, unpacks in place, checks [`checksums`], and goes on as if the loader had
//! loaded the unpacked kernel. A descriptor left at zero (an image that was not packed)
//! means there is nothing to unpack, so a freshly linked kernel boots as it is.
//!
//! The entry code has no stack and no paging at that point, so the unpacker is a few dozen
//! lines of 32-bit assembly; this module holds what the packer and the tests need to agree
//! with it.

/// The linker symbol of the descriptor (in the uncompressed stub).
pub const DESCRIPTOR_SYMBOL: &str = "torito_pack";
/// The linker symbol that ends the stub: the first byte the packer compresses.
pub const STUB_END_SYMBOL: &str = "__boot_stub_end";
/// The linker symbol that ends the stub's contents; from there to [`STUB_END_SYMBOL`] is
/// alignment padding, which the packed image does not carry.
pub const STUB_USED_SYMBOL: &str = "__boot_stub_used";
/// The exit status (isa-debug-exit) when the packed kernel fails to unpack or check.
pub const EXIT_CORRUPT_IMAGE: u32 = 103;
/// The unpacker may write up to this many bytes past `dest + dest_len` (it copies short
/// runs 16 bytes at a time): the packed bytes must start at least this far beyond.
pub const OVERRUN: u32 = 16;
/// The unpacked length must be a multiple of this: the checksum reads four 32-bit words
/// a step.
pub const UNPACKED_ALIGN: u32 = 16;

/// Where the compressed kernel is and what it unpacks to: six little-endian `u32`s, in
/// this order, at [`DESCRIPTOR_SYMBOL`]. All addresses are physical (paging is off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Address of the compressed bytes (an LZ4 block, loaded by the loader).
    pub source: u32,
    /// Length of the compressed bytes; 0 = the image is not packed.
    pub source_len: u32,
    /// Where to unpack: the stub's end.
    pub dest: u32,
    /// Exactly how many bytes the block unpacks to (a multiple of [`UNPACKED_ALIGN`]).
    pub dest_len: u32,
    /// The first of [`checksums`] over the unpacked bytes.
    pub sum: u32,
    /// The second of [`checksums`] over the unpacked bytes.
    pub sum_of_sums: u32,
}

impl Descriptor {
    /// Size in the image, in bytes.
    pub const SIZE: usize = 24;
    /// Byte offset of [`Descriptor::source`] (the entry code addresses fields by offset).
    pub const SOURCE: usize = 0;
    /// Byte offset of [`Descriptor::source_len`].
    pub const SOURCE_LEN: usize = 4;
    /// Byte offset of [`Descriptor::dest`].
    pub const DEST: usize = 8;
    /// Byte offset of [`Descriptor::dest_len`].
    pub const DEST_LEN: usize = 12;
    /// Byte offset of [`Descriptor::sum`].
    pub const SUM: usize = 16;
    /// Byte offset of [`Descriptor::sum_of_sums`].
    pub const SUM_OF_SUMS: usize = 20;

    /// The descriptor as the entry code reads it.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        let fields = [
            (Self::SOURCE, self.source),
            (Self::SOURCE_LEN, self.source_len),
            (Self::DEST, self.dest),
            (Self::DEST_LEN, self.dest_len),
            (Self::SUM, self.sum),
            (Self::SUM_OF_SUMS, self.sum_of_sums),
        ];
        for (offset, value) in fields {
            bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }
}

/// The unpacked kernel's checksums, as the entry code computes them: over little-endian
/// 32-bit words `w`, `sum = Σ w` and `sum_of_sums = Σ (running sum)`, both wrapping.
/// The second depends on where each word is, so most moved or swapped words are caught
/// too (not all: two words an even distance apart that differ only in their top bit
/// swap unseen). This detects a damaged image; it is not a defence against a deliberate
/// one.
///
/// `bytes.len()` must be a multiple of [`UNPACKED_ALIGN`]; a trailing partial word is
/// ignored.
pub fn checksums(bytes: &[u8]) -> (u32, u32) {
    let mut sum = 0u32;
    let mut sum_of_sums = 0u32;
    for word in bytes.chunks_exact(4) {
        sum = sum.wrapping_add(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
        sum_of_sums = sum_of_sums.wrapping_add(sum);
    }
    (sum, sum_of_sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_fields_land_at_their_offsets() {
        let descriptor = Descriptor {
            source: 0x0102_0304,
            source_len: 5,
            dest: 6,
            dest_len: 7,
            sum: 8,
            sum_of_sums: 0xffff_fff9,
        };
        let bytes = descriptor.to_bytes();
        assert_eq!(&bytes[Descriptor::SOURCE..][..4], &[4, 3, 2, 1]);
        assert_eq!(bytes[Descriptor::SOURCE_LEN], 5);
        assert_eq!(bytes[Descriptor::DEST], 6);
        assert_eq!(bytes[Descriptor::DEST_LEN], 7);
        assert_eq!(bytes[Descriptor::SUM], 8);
        assert_eq!(
            &bytes[Descriptor::SUM_OF_SUMS..][..4],
            &[0xf9, 0xff, 0xff, 0xff]
        );
    }

    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|word| word.to_le_bytes()).collect()
    }

    #[test]
    fn checksums_catch_a_changed_word_and_swapped_words() {
        let (sum, sum_of_sums) = checksums(&bytes(&[1, 2, 0x8000_0000, 4]));
        assert_eq!(sum, 0x8000_0007);
        // Running sums: 1, 3, 0x8000_0003, 0x8000_0007.
        assert_eq!(
            sum_of_sums,
            4u32.wrapping_add(0x8000_0003).wrapping_add(0x8000_0007)
        );

        let (swapped_sum, swapped_sos) = checksums(&bytes(&[2, 1, 0x8000_0000, 4]));
        assert_eq!(swapped_sum, sum, "a plain sum cannot see the swap");
        assert_ne!(swapped_sos, sum_of_sums, "the running sum must");

        // The top bit flipped in two words leaves the plain sum unchanged; not the other.
        let (flipped_sum, flipped_sos) = checksums(&bytes(&[1, 2, 0, 0x8000_0004]));
        assert_eq!(flipped_sum, sum);
        assert_ne!(flipped_sos, sum_of_sums);
    }
}
