//! The ACPI root pointer (RSDP): validated, then reduced to an [`AcpiRoot`].
//!
//! PVH passes the RSDP's physical address; multiboot2 passes a copy in a tag. Both go
//! through [`parse_rsdp`], so a corrupt RSDP is caught the same way whichever loader
//! started us. Layout (ACPI 6.5, section 5.2.5.3): signature `"RSD PTR "` (8), checksum
//! (1), OEM id (6), revision (1), RSDT address (4) — 20 bytes covered by the first
//! checksum; revision 2 and later add length (4), XSDT address (8), extended checksum (1)
//! and 3 reserved bytes, `length` bytes in all, covered by the extended checksum.

use crate::phys::{PhysMemory, le, read_array, read_exact};
use crate::{AcpiRoot, BootError};

/// The RSDP signature.
pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// Size of the ACPI 1.0 RSDP (the part covered by the first checksum).
pub const RSDP_V1_LENGTH: usize = 20;
/// Size of the ACPI 2.0 RSDP, the smallest valid `length`.
pub const RSDP_V2_LENGTH: usize = 36;
/// Largest `length` accepted; ACPI 6.5 still uses 36, so anything near this is corrupt.
pub const MAX_RSDP_LENGTH: u32 = 1024;

/// Validates an RSDP held in `bytes` (which may be longer than the RSDP).
///
/// Revisions 0 and 1 are ACPI 1.0 RSDPs (RSDT only); revision 2 and later must carry a
/// valid `length` and extended checksum, and give the XSDT (`None` when it is 0).
///
/// # Errors
/// `RsdpTruncated` when `bytes` is shorter than the RSDP, `BadRsdpSignature`,
/// `BadRsdpChecksum`, `BadRsdpLength`, `BadRsdpExtendedChecksum`.
///
/// # Examples
///
/// ```
/// let mut rsdp = [0u8; 20];
/// rsdp[..8].copy_from_slice(b"RSD PTR ");
/// rsdp[16..20].copy_from_slice(&0x7fe_1000u32.to_le_bytes());
/// let sum = rsdp.iter().fold(0u8, |s, b| s.wrapping_add(*b));
/// rsdp[8] = sum.wrapping_neg();
/// let root = torito_boot::parse_rsdp(&rsdp).unwrap();
/// assert_eq!((root.revision, root.rsdt, root.xsdt), (0, 0x7fe_1000, None));
/// ```
pub fn parse_rsdp(bytes: &[u8]) -> Result<AcpiRoot, BootError> {
    let v1 = parse_v1(bytes)?;
    if v1.revision < 2 {
        return Ok(v1);
    }
    let v2: &[u8; RSDP_V2_LENGTH] = bytes.first_chunk().ok_or(BootError::RsdpTruncated {
        len: bytes.len(),
        needed: RSDP_V2_LENGTH,
    })?;
    let length = le::u32_at::<20, RSDP_V2_LENGTH>(v2);
    if !(RSDP_V2_LENGTH as u32..=MAX_RSDP_LENGTH).contains(&length) {
        return Err(BootError::BadRsdpLength { length });
    }
    let whole = bytes
        .get(..length as usize)
        .ok_or(BootError::RsdpTruncated {
            len: bytes.len(),
            needed: length as usize,
        })?;
    let sum = checksum(whole);
    if sum != 0 {
        return Err(BootError::BadRsdpExtendedChecksum { sum });
    }
    let xsdt = le::u64_at::<24, RSDP_V2_LENGTH>(v2);
    Ok(AcpiRoot {
        xsdt: (xsdt != 0).then_some(xsdt),
        ..v1
    })
}

/// Validates only the ACPI 1.0 part (first 20 bytes) and ignores any extension: for the
/// multiboot2 "old RSDP" tag, which holds just those 20 bytes whatever the revision.
pub(crate) fn parse_v1(bytes: &[u8]) -> Result<AcpiRoot, BootError> {
    let v1: &[u8; RSDP_V1_LENGTH] = bytes.first_chunk().ok_or(BootError::RsdpTruncated {
        len: bytes.len(),
        needed: RSDP_V1_LENGTH,
    })?;
    let mut signature = [0u8; 8];
    signature.copy_from_slice(&v1[..8]);
    if signature != RSDP_SIGNATURE {
        return Err(BootError::BadRsdpSignature { found: signature });
    }
    let sum = checksum(v1);
    if sum != 0 {
        return Err(BootError::BadRsdpChecksum { sum });
    }
    Ok(AcpiRoot {
        revision: v1[15],
        rsdt: le::u32_at::<16, RSDP_V1_LENGTH>(v1),
        xsdt: None,
    })
}

/// Reads and validates the RSDP at physical address `addr`: the 20-byte ACPI 1.0 part
/// first, then (revision 2 and later) the full `length`, so that nothing past the RSDP
/// needs to be readable.
///
/// # Errors
/// `OutOfBounds` when the RSDP is not readable, or any error of [`parse_rsdp`].
pub fn read_rsdp(mem: &dyn PhysMemory, addr: u64) -> Result<AcpiRoot, BootError> {
    const WHAT: &str = "ACPI RSDP";
    let v1 = read_array::<RSDP_V1_LENGTH>(mem, WHAT, addr)?;
    let root = parse_v1(v1)?;
    if root.revision < 2 {
        return Ok(root);
    }
    let with_length = read_array::<24>(mem, WHAT, addr)?;
    let length = le::u32_at::<20, 24>(with_length);
    if !(RSDP_V2_LENGTH as u32..=MAX_RSDP_LENGTH).contains(&length) {
        return Err(BootError::BadRsdpLength { length });
    }
    parse_rsdp(read_exact(mem, WHAT, addr, length as usize)?)
}

/// The sum of `bytes` modulo 256 (0 for a valid ACPI structure).
pub(crate) fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::SliceMemory;

    /// A valid RSDP: revision 0 (20 bytes) or 2 (36 bytes).
    pub(crate) fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; if revision >= 2 { 36 } else { 20 }];
        bytes[..8].copy_from_slice(&RSDP_SIGNATURE);
        bytes[9..15].copy_from_slice(b"TORITO");
        bytes[15] = revision;
        bytes[16..20].copy_from_slice(&rsdt.to_le_bytes());
        if revision >= 2 {
            bytes[20..24].copy_from_slice(&36u32.to_le_bytes());
            bytes[24..32].copy_from_slice(&xsdt.to_le_bytes());
        }
        fix_checksums(&mut bytes);
        bytes
    }

    /// Recomputes both checksums (after a deliberate edit).
    pub(crate) fn fix_checksums(bytes: &mut [u8]) {
        bytes[8] = 0;
        bytes[8] = checksum(&bytes[..20]).wrapping_neg();
        if bytes.len() >= 36 {
            bytes[32] = 0;
            bytes[32] = checksum(&bytes[..36]).wrapping_neg();
        }
    }

    #[test]
    fn valid_v0_and_v2() {
        assert_eq!(
            parse_rsdp(&rsdp(0, 0x1234, 0)),
            Ok(AcpiRoot {
                revision: 0,
                rsdt: 0x1234,
                xsdt: None
            })
        );
        assert_eq!(
            parse_rsdp(&rsdp(2, 0x1234, 0x1_0000_5678)),
            Ok(AcpiRoot {
                revision: 2,
                rsdt: 0x1234,
                xsdt: Some(0x1_0000_5678)
            })
        );
        assert_eq!(
            parse_rsdp(&rsdp(2, 0x1234, 0)),
            Ok(AcpiRoot {
                revision: 2,
                rsdt: 0x1234,
                xsdt: None
            })
        );
    }

    #[test]
    fn bad_signature() {
        let mut bytes = rsdp(0, 1, 0);
        bytes[0] = b'X';
        fix_checksums(&mut bytes);
        assert_eq!(
            parse_rsdp(&bytes),
            Err(BootError::BadRsdpSignature {
                found: *b"XSD PTR "
            })
        );
    }

    #[test]
    fn bad_checksums() {
        let mut bytes = rsdp(0, 1, 0);
        bytes[16] ^= 0x10;
        assert_eq!(
            parse_rsdp(&bytes),
            Err(BootError::BadRsdpChecksum { sum: 0x10 })
        );

        let mut bytes = rsdp(2, 1, 0x5000);
        bytes[24] ^= 0x01;
        assert_eq!(
            parse_rsdp(&bytes),
            Err(BootError::BadRsdpExtendedChecksum { sum: 0x01 })
        );
    }

    #[test]
    fn bad_length_and_truncation() {
        let mut bytes = rsdp(2, 1, 0x5000);
        bytes[20..24].copy_from_slice(&20u32.to_le_bytes());
        fix_checksums(&mut bytes);
        assert_eq!(
            parse_rsdp(&bytes),
            Err(BootError::BadRsdpLength { length: 20 })
        );

        let mut bytes = rsdp(2, 1, 0x5000);
        bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        fix_checksums(&mut bytes);
        assert_eq!(
            parse_rsdp(&bytes),
            Err(BootError::BadRsdpLength { length: u32::MAX })
        );

        let mut bytes = rsdp(2, 1, 0x5000);
        bytes[20..24].copy_from_slice(&40u32.to_le_bytes());
        fix_checksums(&mut bytes);
        assert_eq!(
            parse_rsdp(&bytes),
            Err(BootError::RsdpTruncated {
                len: 36,
                needed: 40
            })
        );

        let bytes = rsdp(2, 1, 0x5000);
        assert_eq!(
            parse_rsdp(&bytes[..30]),
            Err(BootError::RsdpTruncated {
                len: 30,
                needed: 36
            })
        );
        assert_eq!(
            parse_rsdp(&bytes[..19]),
            Err(BootError::RsdpTruncated {
                len: 19,
                needed: 20
            })
        );
    }

    #[test]
    fn v1_part_ignores_the_extension() {
        let bytes = rsdp(2, 0x77, 0x5000);
        assert_eq!(
            parse_v1(&bytes[..20]),
            Ok(AcpiRoot {
                revision: 2,
                rsdt: 0x77,
                xsdt: None
            })
        );
    }

    #[test]
    fn read_from_memory_needs_nothing_past_the_rsdp() {
        // A v0 RSDP in the last 20 bytes of memory: readable although 36 bytes are not.
        let bytes = rsdp(0, 9, 0);
        let mem = SliceMemory {
            base: 0xe0000,
            bytes: &bytes,
        };
        assert_eq!(
            read_rsdp(&mem, 0xe0000),
            Ok(AcpiRoot {
                revision: 0,
                rsdt: 9,
                xsdt: None
            })
        );

        let bytes = rsdp(2, 9, 0x9000);
        let mem = SliceMemory {
            base: 0xe0000,
            bytes: &bytes,
        };
        assert_eq!(
            read_rsdp(&mem, 0xe0000),
            Ok(AcpiRoot {
                revision: 2,
                rsdt: 9,
                xsdt: Some(0x9000)
            })
        );
        // A v2 RSDP cut short by the end of memory.
        let mem = SliceMemory {
            base: 0xe0000,
            bytes: &bytes[..30],
        };
        assert_eq!(
            read_rsdp(&mem, 0xe0000),
            Err(BootError::OutOfBounds {
                what: "ACPI RSDP",
                addr: 0xe0000,
                len: 36
            })
        );
        assert_eq!(
            read_rsdp(&mem, 0xd0000),
            Err(BootError::OutOfBounds {
                what: "ACPI RSDP",
                addr: 0xd0000,
                len: 20
            })
        );
    }
}
