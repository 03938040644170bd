//! Torito's boot crate: the 32-bit entry (PVH note and multiboot2 header) and the parsers
//! that turn what the boot loader hands over into one owned [`BootInfo`].
//!
//! Promises a reader can check:
//!
//! - **The parsers never trust the loader or the firmware.** Every pointer they pass is read through
//!   [`PhysMemory`], which answers "not readable" instead of faulting; every count and size
//!   is bounded before use; nothing read from the loader can make a parser panic (a seeded
//!   fuzz test flips bytes of valid images to hold us to that).
//! - **Every malformed structure is an error naming what was wrong**: one [`BootError`]
//!   variant per defect, carrying the offending values, whose message says what to do.
//!   Command-line syntax and option errors are [`CmdlineError`].
//! - **No heap.** Parsing runs before an allocator exists: [`BootInfo`] has fixed capacity
//!   ([`MAX_MEMORY_REGIONS`], [`MAX_CMDLINE`]) and [`Cmdline`] borrows.
//! - **Unsafe is confined**: denied crate-wide, allowed only in `multiboot2` (one block:
//!   the `multiboot2` crate's `BootInformation::load`) and in the assembly entry.
//!
//! Firmware tables go through the same [`PhysMemory`] and the same rules: [`acpi`] finds,
//! validates and parses the FADT, MADT and DSDT; [`bios`] scans the BIOS areas once for
//! the RSDP and the MP floating pointer and reads the MP configuration table.
//!
//! Entry points: [`parse_pvh`] (QEMU `-kernel`, Firecracker, Cloud Hypervisor, Xen, whose
//! dom0 gets its memory map through [`xen::fill_memory_map`]) and
//! [`parse_multiboot2`] (GRUB), then [`Cmdline::parse`] and [`parse_kernel_options`] on
//! [`BootInfo::cmdline`].
//!
//! ```
//! use torito_boot::{Cmdline, parse_kernel_options, parse_pvh, SliceMemory};
//!
//! // Not a start_info: the parser says so instead of guessing.
//! let memory = [0u8; 64];
//! let error = parse_pvh(&SliceMemory { base: 0x1000, bytes: &memory }, 0x1000).unwrap_err();
//! assert_eq!(error, torito_boot::BootError::BadPvhMagic { found: 0 });
//!
//! let line = Cmdline::parse("console=ttyS0 log=warn -- serve --port 80").unwrap();
//! let (options, mut unknown) = parse_kernel_options(&line, &[]).unwrap();
//! assert_eq!(options.log, torito_boot::LogLevel::Warn);
//! assert!(unknown.next().is_none());
//! assert_eq!(line.app_args(), "serve --port 80");
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod acpi;
pub mod bios;
pub mod cmdline;
mod error;
pub mod ged;
mod info;
pub mod multiboot2;
mod phys;
pub mod pvh;
pub mod rsdp;
pub mod xen;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod entry;
#[cfg(target_os = "none")]
pub use entry::{BOOT_STACK_SIZE, PROTOCOL_MULTIBOOT2, PROTOCOL_PVH};

#[cfg(test)]
mod fuzz_tests;

pub use self::multiboot2::{MULTIBOOT2_MAGIC, parse_multiboot2};
pub use bios::{BiosPointers, ebda_address, scan_bios_areas};
pub use cmdline::{
    Arg, Cmdline, CmdlineError, KernelOptions, LogLevel, UnknownKeys, Words, is_env_key,
    parse_kernel_options,
};
pub use error::BootError;
pub use info::{
    AcpiRoot, BootInfo, MAX_CMDLINE, MAX_MEMORY_REGIONS, MemoryKind, MemoryRegion, Protocol,
};
pub use phys::{PhysMemory, SliceMemory};
pub use pvh::{PVH_MAGIC, parse_pvh};
pub use rsdp::{parse_rsdp, read_rsdp};
