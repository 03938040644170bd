//! `BootError`: everything that can be wrong with what the boot loader handed over.
//!
//! Each variant names one defect and carries the offending values; its `Display` text
//! says what was wrong and what to do about it, so the kernel can print it and halt.
//! Command-line *syntax* errors are separate ([`CmdlineError`](crate::CmdlineError)):
//! they borrow the command line to quote the bad token, and the kernel may choose to boot
//! with defaults instead of halting.

use core::fmt;

use crate::pvh::PVH_MAGIC;
use crate::rsdp::MAX_RSDP_LENGTH;

/// Why the boot information could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootError {
    /// A structure (or part of one) lies outside readable physical memory.
    OutOfBounds {
        /// Which structure the parser was reading.
        what: &'static str,
        /// Its physical address.
        addr: u64,
        /// How many bytes were needed there.
        len: u64,
    },

    /// `hvm_start_info.magic` is not [`PVH_MAGIC`].
    BadPvhMagic {
        /// The value found.
        found: u32,
    },
    /// `hvm_start_info.version` is 0, which has no memory map fields, and the hypervisor
    /// is not Xen (which gives the map through a hypercall instead).
    PvhNoMemoryMap {
        /// The version found.
        version: u32,
    },

    /// Xen's hypercall leaf asks for a number of hypercall pages other than one.
    XenHypercallPages {
        /// The number of pages in CPUID leaf base + 2, `eax`.
        pages: u32,
    },
    /// A hypercall the boot needs failed.
    XenHypercall {
        /// What was asked of Xen.
        call: &'static str,
        /// Xen's error number (the hypercall returned its negation).
        errno: u32,
    },
    /// Xen's memory map reply claims more entries than the buffer it was given holds.
    XenMemoryMapCount {
        /// The entry count in the reply.
        count: u32,
        /// The buffer's capacity in entries.
        capacity: usize,
    },

    /// The memory map has no (non-empty) entries.
    EmptyMemoryMap,
    /// The memory map has no region of kind `Usable`.
    NoUsableMemory,
    /// The memory map has more regions than [`MAX_MEMORY_REGIONS`](crate::MAX_MEMORY_REGIONS).
    TooManyMemoryRegions {
        /// The capacity that was exceeded (`MAX_MEMORY_REGIONS`).
        max: usize,
    },
    /// A memory map entry's `start + len` does not fit in 64 bits.
    MemoryRegionOverflow {
        /// The entry's first byte.
        start: u64,
        /// The entry's length.
        len: u64,
    },

    /// The command line is longer than [`MAX_CMDLINE`](crate::MAX_CMDLINE) bytes.
    CmdlineTooLong {
        /// Bytes seen before giving up; when no NUL was found this is `max + 1`
        /// ("at least this long").
        len: usize,
        /// The limit (`MAX_CMDLINE`).
        max: usize,
    },
    /// The command line is not valid UTF-8.
    CmdlineNotUtf8 {
        /// Length of the valid prefix; the bad byte is at this offset.
        valid_up_to: usize,
    },
    /// The command line has no terminating NUL before readable memory (or its tag) ends.
    CmdlineUnterminated {
        /// Physical address of the command line's first byte.
        addr: u64,
    },

    /// The multiboot2 magic in `eax` is not [`MULTIBOOT2_MAGIC`](crate::MULTIBOOT2_MAGIC).
    BadMultiboot2Magic {
        /// The value found.
        found: u32,
    },
    /// The multiboot2 boot information is not 8-byte aligned (the spec requires it).
    MisalignedMultiboot2 {
        /// Its physical address.
        addr: u64,
    },
    /// The multiboot2 boot information's `total_size` is below the minimum (header + end tag).
    Multiboot2TooSmall {
        /// The `total_size` found.
        size: u32,
        /// The minimum ([`MULTIBOOT2_MIN_SIZE`](crate::multiboot2::MULTIBOOT2_MIN_SIZE)).
        min: u32,
    },
    /// The multiboot2 boot information's `total_size` is implausibly large.
    Multiboot2TooLarge {
        /// The `total_size` found.
        size: u32,
        /// The limit ([`MULTIBOOT2_MAX_SIZE`](crate::multiboot2::MULTIBOOT2_MAX_SIZE)).
        max: u32,
    },
    /// The multiboot2 tag sequence is malformed (reported by the `multiboot2` crate).
    Multiboot2 {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The multiboot2 tag sequence does not end with an end tag (type 0, size 8).
    Multiboot2NoEndTag,
    /// The multiboot2 boot information has no memory map tag (type 6).
    Multiboot2NoMemoryMap,
    /// A multiboot2 tag is too short (or has a size inconsistent with its contents).
    Multiboot2BadTagSize {
        /// The tag type.
        tag: u32,
        /// The tag's `size` field.
        size: u32,
    },
    /// The memory map tag's `entry_size` is not the 24 bytes this kernel understands.
    Multiboot2BadMemoryMapEntrySize {
        /// The `entry_size` found.
        entry_size: u32,
    },

    /// The RSDP does not start with `"RSD PTR "`.
    BadRsdpSignature {
        /// The eight bytes found.
        found: [u8; 8],
    },
    /// The bytes of the ACPI 1.0 part of the RSDP (the first 20) do not sum to 0.
    BadRsdpChecksum {
        /// Their sum modulo 256.
        sum: u8,
    },
    /// The bytes of the whole ACPI 2.0+ RSDP (`length` bytes) do not sum to 0.
    BadRsdpExtendedChecksum {
        /// Their sum modulo 256.
        sum: u8,
    },
    /// The ACPI 2.0+ RSDP's `length` field is below 36 or above [`MAX_RSDP_LENGTH`].
    BadRsdpLength {
        /// The `length` found.
        length: u32,
    },
    /// Fewer RSDP bytes are available than its revision (or `length`) requires.
    RsdpTruncated {
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },

    /// A firmware table (an ACPI table, or the MP configuration table, `PCMP`) does not
    /// carry the signature its reference promised.
    TableSignature {
        /// The signature looked for.
        expected: [u8; 4],
        /// The four bytes found.
        found: [u8; 4],
        /// The table's physical address.
        addr: u64,
    },
    /// A firmware table's length is below its header (36 bytes for ACPI, 44 for the MP
    /// table) or above [`MAX_TABLE_LENGTH`](crate::acpi::MAX_TABLE_LENGTH).
    TableLength {
        /// The table's signature.
        signature: [u8; 4],
        /// Its physical address.
        addr: u64,
        /// The `length` found.
        length: u32,
    },
    /// The bytes of a firmware table do not sum to 0.
    TableChecksum {
        /// The table's signature.
        signature: [u8; 4],
        /// Its physical address.
        addr: u64,
        /// Their sum modulo 256.
        sum: u8,
    },
    /// A MADT interrupt controller structure is shorter than its 2-byte header or runs
    /// past the end of the table.
    MadtEntryLength {
        /// The structure's offset in the MADT.
        offset: usize,
        /// Its `length` field (a byte in the table).
        length: u32,
        /// The MADT's length.
        table_length: usize,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfBounds { what, addr, len } => write!(
                f,
                "the {what} at {addr:#x} ({len} bytes) is outside readable memory: \
                 the loader passed a bad pointer, or the kernel maps too little memory at entry"
            ),
            Self::BadPvhMagic { found } => write!(
                f,
                "PVH start_info magic is {found:#010x}, expected {PVH_MAGIC:#010x}: \
                 ebx does not point at an hvm_start_info (was the kernel entered through its PVH note?)"
            ),
            Self::PvhNoMemoryMap { version } => write!(
                f,
                "PVH start_info version {version} has no memory map (version 1 or later needed): \
                 use a newer VMM (QEMU >= 4.0, Firecracker, Cloud Hypervisor)"
            ),
            Self::XenHypercallPages { pages } => write!(
                f,
                "Xen asks for {pages} hypercall pages, not 1: unsupported Xen"
            ),
            Self::XenHypercall { call, errno } => write!(
                f,
                "Xen refused {call}: error -{errno} ({}): no permission, or Xen too old",
                crate::xen::errno_name(errno)
            ),
            Self::XenMemoryMapCount { count, capacity } => write!(
                f,
                "Xen's memory map claims {count} entries in a buffer of {capacity}: refused"
            ),
            Self::EmptyMemoryMap => {
                f.write_str("the loader's memory map is empty: the VMM or firmware gave no RAM layout")
            }
            Self::NoUsableMemory => f.write_str(
                "the loader's memory map has no usable RAM region: give the machine memory (QEMU: -m)",
            ),
            Self::TooManyMemoryRegions { max } => write!(
                f,
                "the loader's memory map has more than {max} regions: \
                 raise MAX_MEMORY_REGIONS in torito-boot"
            ),
            Self::MemoryRegionOverflow { start, len } => write!(
                f,
                "memory map entry at {start:#x} with length {len:#x} runs past the end of the \
                 64-bit address space: the loader's memory map is corrupt"
            ),
            Self::CmdlineTooLong { len, max } => write!(
                f,
                "the command line is {len} bytes or more, longer than the {max} kept: \
                 shorten it (or raise MAX_CMDLINE in torito-boot)"
            ),
            Self::CmdlineNotUtf8 { valid_up_to } => write!(
                f,
                "the command line is not valid UTF-8 (bad byte at offset {valid_up_to}): \
                 pass ASCII or UTF-8 text"
            ),
            Self::CmdlineUnterminated { addr } => write!(
                f,
                "the command line at {addr:#x} has no terminating NUL before its memory ends: \
                 the loader's command line pointer or tag is corrupt"
            ),
            Self::BadMultiboot2Magic { found } => write!(
                f,
                "multiboot2 magic in eax is {found:#010x}, expected {:#010x}: \
                 the kernel was not started by a multiboot2 loader",
                crate::MULTIBOOT2_MAGIC
            ),
            Self::MisalignedMultiboot2 { addr } => write!(
                f,
                "the multiboot2 boot information at {addr:#x} is not 8-byte aligned: \
                 the loader violates the multiboot2 spec"
            ),
            Self::Multiboot2TooSmall { size, min } => write!(
                f,
                "the multiboot2 boot information's total_size is {size}, below the minimum {min} \
                 (header and end tag): it is corrupt"
            ),
            Self::Multiboot2TooLarge { size, max } => write!(
                f,
                "the multiboot2 boot information's total_size is {size}, above the {max} bytes \
                 accepted: it is corrupt (or raise MULTIBOOT2_MAX_SIZE)"
            ),
            Self::Multiboot2 { reason } => {
                write!(f, "the multiboot2 boot information is malformed: {reason}")
            }
            Self::Multiboot2NoEndTag => f.write_str(
                "the multiboot2 boot information has no end tag (type 0, size 8) within total_size: \
                 it is truncated or corrupt",
            ),
            Self::Multiboot2NoMemoryMap => f.write_str(
                "the multiboot2 boot information has no memory map tag (type 6): \
                 use a loader that provides one (GRUB does)",
            ),
            Self::Multiboot2BadTagSize { tag, size } => write!(
                f,
                "multiboot2 tag of type {tag} has an impossible size {size} for its contents: \
                 the boot information is corrupt"
            ),
            Self::Multiboot2BadMemoryMapEntrySize { entry_size } => write!(
                f,
                "the multiboot2 memory map uses {entry_size}-byte entries; only 24-byte entries \
                 are supported"
            ),
            Self::BadRsdpSignature { found } => write!(
                f,
                "the ACPI RSDP signature is {:?}, expected \"RSD PTR \": the RSDP pointer is wrong \
                 (boot with ACPI off in the VMM to skip it)",
                ByteString(&found)
            ),
            Self::BadRsdpChecksum { sum } => write!(
                f,
                "the ACPI RSDP checksum over its first 20 bytes is {sum:#04x}, not 0: the RSDP is corrupt"
            ),
            Self::BadRsdpExtendedChecksum { sum } => write!(
                f,
                "the ACPI 2.0 RSDP extended checksum is {sum:#04x}, not 0: the RSDP is corrupt"
            ),
            Self::BadRsdpLength { length } => write!(
                f,
                "the ACPI 2.0 RSDP length is {length}, outside 36..={MAX_RSDP_LENGTH}: the RSDP is corrupt"
            ),
            Self::RsdpTruncated { len, needed } => write!(
                f,
                "only {len} bytes of the ACPI RSDP are available, {needed} needed: \
                 the RSDP (or its multiboot2 tag) is truncated"
            ),
            Self::TableSignature {
                expected,
                found,
                addr,
            } => write!(
                f,
                "the firmware table at {addr:#x} is {:?}, expected {:?}: the firmware's table \
                 pointers are corrupt; the table is ignored (boot with ACPI off to skip ACPI)",
                ByteString(&found),
                ByteString(&expected)
            ),
            Self::TableLength {
                signature,
                addr,
                length,
            } => write!(
                f,
                "the firmware table {:?} at {addr:#x} claims {length} bytes, less than its header \
                 or more than {}: it is corrupt and ignored",
                ByteString(&signature),
                crate::acpi::MAX_TABLE_LENGTH
            ),
            Self::TableChecksum {
                signature,
                addr,
                sum,
            } => write!(
                f,
                "the firmware table {:?} at {addr:#x} has checksum {sum:#04x}, not 0: \
                 it is corrupt and ignored",
                ByteString(&signature)
            ),
            Self::MadtEntryLength {
                offset,
                length,
                table_length,
            } => write!(
                f,
                "the MADT structure at offset {offset} has length {length}, which does not fit \
                 the {table_length}-byte table: the structures from there on are ignored"
            ),
        }
    }
}

impl core::error::Error for BootError {}

/// Shows bytes as text, escaping anything that is not printable ASCII.
struct ByteString<'a>(&'a [u8]);

impl fmt::Debug for ByteString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &byte in self.0 {
            write!(f, "{}", core::ascii::escape_default(byte))?;
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(error: BootError) -> String {
        error.to_string()
    }

    #[test]
    fn messages_carry_the_offending_values() {
        let cases = [
            (BootError::BadPvhMagic { found: 0x1bad_b002 }, "0x1badb002"),
            (
                BootError::OutOfBounds {
                    what: "PVH memory map",
                    addr: 0x4000_0000,
                    len: 120,
                },
                "PVH memory map at 0x40000000 (120 bytes)",
            ),
            (BootError::PvhNoMemoryMap { version: 0 }, "version 0"),
            (
                BootError::XenHypercallPages { pages: 2 },
                "asks for 2 hypercall pages",
            ),
            (
                BootError::XenHypercall {
                    call: "XENMEM_memory_map",
                    errno: 38,
                },
                "refused XENMEM_memory_map: error -38 (ENOSYS)",
            ),
            (
                BootError::XenMemoryMapCount {
                    count: 99,
                    capacity: 64,
                },
                "99 entries in a buffer of 64",
            ),
            (BootError::TooManyMemoryRegions { max: 64 }, "more than 64"),
            (
                BootError::MemoryRegionOverflow {
                    start: 0x1000,
                    len: 0x2000,
                },
                "0x1000 with length 0x2000",
            ),
            (
                BootError::CmdlineTooLong {
                    len: 1025,
                    max: 1024,
                },
                "1025 bytes or more",
            ),
            (BootError::CmdlineNotUtf8 { valid_up_to: 7 }, "offset 7"),
            (BootError::CmdlineUnterminated { addr: 0x9000 }, "0x9000"),
            (
                BootError::BadMultiboot2Magic { found: 0x2bad_b002 },
                "0x2badb002, expected 0x36d76289",
            ),
            (BootError::MisalignedMultiboot2 { addr: 0x10004 }, "0x10004"),
            (
                BootError::Multiboot2TooSmall { size: 8, min: 16 },
                "8, below the minimum 16",
            ),
            (
                BootError::Multiboot2TooLarge {
                    size: 1 << 21,
                    max: 1 << 20,
                },
                "2097152",
            ),
            (
                BootError::Multiboot2 { reason: "a reason" },
                "malformed: a reason",
            ),
            (
                BootError::Multiboot2BadTagSize { tag: 6, size: 12 },
                "type 6 has an impossible size 12",
            ),
            (
                BootError::Multiboot2BadMemoryMapEntrySize { entry_size: 20 },
                "20-byte entries",
            ),
            (
                BootError::BadRsdpSignature {
                    found: *b"RSD\"PTR\0",
                },
                r#""RSD\"PTR\x00""#,
            ),
            (BootError::BadRsdpChecksum { sum: 0x10 }, "0x10"),
            (BootError::BadRsdpExtendedChecksum { sum: 0x01 }, "0x01"),
            (BootError::BadRsdpLength { length: 20 }, "length is 20"),
            (
                BootError::RsdpTruncated {
                    len: 12,
                    needed: 20,
                },
                "only 12 bytes of the ACPI RSDP are available, 20 needed",
            ),
            (
                BootError::TableSignature {
                    expected: *b"XSDT",
                    found: *b"FACP",
                    addr: 0x7fe_0000,
                },
                r#"0x7fe0000 is "FACP", expected "XSDT""#,
            ),
            (
                BootError::TableLength {
                    signature: *b"PCMP",
                    addr: 0x1000,
                    length: 10,
                },
                r#""PCMP" at 0x1000 claims 10 bytes"#,
            ),
            (
                BootError::TableChecksum {
                    signature: *b"FACP",
                    addr: 0x2000,
                    sum: 0x40,
                },
                r#""FACP" at 0x2000 has checksum 0x40"#,
            ),
            (
                BootError::MadtEntryLength {
                    offset: 52,
                    length: 0,
                    table_length: 60,
                },
                "offset 52 has length 0, which does not fit the 60-byte table",
            ),
        ];
        for (error, needle) in cases {
            let message = text(error);
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
        for error in [
            BootError::EmptyMemoryMap,
            BootError::NoUsableMemory,
            BootError::Multiboot2NoEndTag,
            BootError::Multiboot2NoMemoryMap,
        ] {
            assert!(text(error).contains(':'), "no advice in {:?}", text(error));
        }
    }
}
