//! Xen's guest interface as plain data: the CPUID signature, hypercall numbers, the
//! argument structures, the memory map reply and the clock scale, tested on the host.
//!
//! The kernel's `arch::xen` issues the hypercalls (all of their `unsafe` is there); what
//! it sends and what it makes of Xen's answers is decided here, where a test can feed it
//! hostile values. Names and numbers follow Xen's public headers
//! (xen/include/public/xen.h, memory.h, sched.h, arch-x86/cpuid.h).

use crate::{BootError, BootInfo, MemoryKind, MemoryRegion};

pub mod events;

/// The 12 bytes of CPUID `ebx:ecx:edx` at Xen's first leaf.
pub const SIGNATURE: [u8; 12] = *b"XenVMMXenVMM";
/// The bases where Xen puts its leaves: 0x40000000, or 0x40000100 when it offers
/// Hyper-V's leaves (Viridian) first. Xen's header allows any later 0x100-aligned base,
/// but Xen uses no other; looking at two keeps a boot on another hypervisor to three
/// CPUID instructions (each a VM exit) instead of the 256 of a full scan.
pub const BASES: [u32; 2] = [0x4000_0000, 0x4000_0100];

/// Whether a CPUID answer (`ebx`, `ecx`, `edx`) spells [`SIGNATURE`].
pub fn is_signature(ebx: u32, ecx: u32, edx: u32) -> bool {
    let mut bytes = [0; 12];
    bytes[..4].copy_from_slice(&ebx.to_le_bytes());
    bytes[4..8].copy_from_slice(&ecx.to_le_bytes());
    bytes[8..].copy_from_slice(&edx.to_le_bytes());
    bytes == SIGNATURE
}

/// The hypercall leaf (base + 2): how many hypercall pages, and the MSR that installs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HypercallLeaf {
    /// Pages Xen fills (always 1 in practice; more are refused).
    pub pages: u32,
    /// Writing a page's physical address to this MSR makes Xen write the stubs there.
    pub msr: u32,
}

impl HypercallLeaf {
    /// Decodes leaf base + 2 (`eax` = pages, `ebx` = MSR).
    ///
    /// # Errors
    /// `XenHypercallPages` when Xen asks for a number of pages other than one: the kernel
    /// reserves exactly one.
    pub fn decode(eax: u32, ebx: u32) -> Result<Self, BootError> {
        if eax != 1 {
            return Err(BootError::XenHypercallPages { pages: eax });
        }
        Ok(Self {
            pages: eax,
            msr: ebx,
        })
    }
}

/// Hypercall numbers (`__HYPERVISOR_*`).
pub mod op {
    /// `memory_op`: memory reservations and the memory map.
    pub const MEMORY_OP: u32 = 12;
    /// `console_io`: the hypervisor's console.
    pub const CONSOLE_IO: u32 = 18;
    /// `grant_table_op`: the grant table's version and size.
    pub const GRANT_TABLE_OP: u32 = 20;
    /// `vcpu_op`: starting and stopping virtual CPUs.
    pub const VCPU_OP: u32 = 24;
    /// `sched_op`: yield, block, shutdown.
    pub const SCHED_OP: u32 = 29;
    /// `event_channel_op`: allocate, bind, signal and unmask event channels.
    pub const EVENT_CHANNEL_OP: u32 = 32;
    /// `hvm_op`: HVM parameters and the event-channel upcall vector.
    pub const HVM_OP: u32 = 34;
    /// Hypercall numbers stop below this (one 32-byte stub each in a 4 KiB page).
    pub const LIMIT: u32 = 4096 / 32;
}

/// `XENMEM_memory_map`: the guest's E820-style memory map.
pub const XENMEM_MEMORY_MAP: u64 = 9;
/// `CONSOLEIO_write`: write bytes to the hypervisor's console.
pub const CONSOLEIO_WRITE: u64 = 0;
/// `SCHEDOP_shutdown`: stop this domain, with a reason.
pub const SCHEDOP_SHUTDOWN: u64 = 2;

/// `XENMEM_add_to_physmap`: put a Xen-owned page (shared info, grant table frame) at a
/// guest frame.
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// `HVMOP_set_param`.
pub const HVMOP_SET_PARAM: u64 = 0;
/// `HVMOP_get_param`.
pub const HVMOP_GET_PARAM: u64 = 1;
/// `HVMOP_set_evtchn_upcall_vector` (Xen 4.6 on): a local-APIC vector per vCPU for
/// event-channel upcalls.
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
/// `DOMID_SELF`: "this domain" wherever a domain id is asked for.
pub const DOMID_SELF: u16 = 0x7ff0;

/// Byte offset of hypercall `number`'s stub in the hypercall page, or `None` past the page.
pub fn stub_offset(number: u32) -> Option<u64> {
    (number < op::LIMIT).then_some(u64::from(number) * 32)
}

/// `struct xen_memory_map`: in, the buffer's capacity in entries; out, the entries written.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryMapRequest {
    /// Capacity on the way in, entries written on the way out.
    pub nr_entries: u32,
    /// Padding before the 8-byte handle.
    pub pad: u32,
    /// Guest address of the entry array (identity-mapped: physical = virtual).
    pub buffer: u64,
}

impl MemoryMapRequest {
    /// A request for at most `capacity` entries into the buffer at `buffer`.
    pub fn new(buffer: u64, capacity: u32) -> Self {
        Self {
            nr_entries: capacity,
            pad: 0,
            buffer,
        }
    }
}

/// Why a domain stops (`SHUTDOWN_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    /// Domain exited normally.
    Poweroff = 0,
    /// Domain asks to be restarted.
    Reboot = 1,
    /// Domain crashed: the toolstack's `on_crash` policy applies.
    Crash = 3,
}

impl ShutdownReason {
    /// Exit status 0 is a power-off; anything else is reported as a crash, the only way a
    /// domain can tell its toolstack that it failed (Xen carries no exit code).
    pub fn for_exit_code(code: u32) -> Self {
        if code == 0 {
            Self::Poweroff
        } else {
            Self::Crash
        }
    }

    /// How a domain ends with exit status `code` when the toolstack has (or has not)
    /// asked it to reboot (`xl reboot`: `reboot` in `control/shutdown`). A clean exit
    /// after that request is a reboot, which xl's `on_reboot` policy ("restart" by
    /// default) turns into a fresh domain; a failure stays a crash, so that `on_crash`
    /// still sees it and a broken service is not restarted as if it had stopped well.
    pub fn at_exit(code: u32, reboot_requested: bool) -> Self {
        match Self::for_exit_code(code) {
            Self::Poweroff if reboot_requested => Self::Reboot,
            reason => reason,
        }
    }
}

/// `struct sched_shutdown`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownRequest {
    /// A [`ShutdownReason`] as its number.
    pub reason: u32,
}

/// Size of one entry of Xen's memory map reply: `addr: u64, size: u64, type: u32`, packed.
pub const E820_ENTRY_SIZE: usize = 20;

/// Copies the memory map Xen wrote into `table` (it says `count` entries) into `info`,
/// then checks it as every other map is checked.
///
/// Zero-length entries are skipped; overlapping or unsorted entries are kept as given
/// (the frame allocator merges usable ranges and never hands out a frame twice).
///
/// # Errors
/// - `XenMemoryMapCount` when `count` claims more entries than `table` holds (a reply
///   past its buffer: nothing of it is trusted);
/// - `MemoryRegionOverflow` for an entry whose end does not fit in 64 bits;
/// - `TooManyMemoryRegions`, `EmptyMemoryMap`, `NoUsableMemory` as for any map.
pub fn fill_memory_map(info: &mut BootInfo, table: &[u8], count: u32) -> Result<(), BootError> {
    let (entries, _) = table.as_chunks::<E820_ENTRY_SIZE>();
    let Some(entries) = entries.get(..count as usize) else {
        return Err(BootError::XenMemoryMapCount {
            count,
            capacity: entries.len(),
        });
    };
    for entry in entries {
        let field = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&entry[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let kind = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]);
        info.push_region(MemoryRegion {
            start: field(0),
            len: field(8),
            kind: MemoryKind::from_e820(kind),
        })?;
    }
    info.check_memory_map()
}

/// The TSC rate implied by a `vcpu_time_info` scale: Xen converts TSC ticks to
/// nanoseconds as `((ticks << shift) * mul) >> 32` (a negative shift shifts right), the
/// same pair it publishes in CPUID leaf base + 3, sub-leaf 1.
///
/// `None` for a scale no real clock has: `mul` 0, a shift beyond ±31, or a rate outside
/// 1 MHz..=100 GHz.
pub fn tsc_hz_from_scale(mul: u32, shift: i8) -> Option<u64> {
    if mul == 0 || !(-31..=31).contains(&shift) {
        return None;
    }
    // 10^9 << 32 fits in 64 bits (about 2^61.9); so does `mul << shift` for shift <= 31.
    // A right shift's factor is applied after the division: its rounding is below 2^31 Hz
    // in the worst case and below 1 Hz for the shifts real clocks have (-1 to 2).
    const NUMERATOR: u64 = 1_000_000_000 << 32;
    let hz = if shift >= 0 {
        NUMERATOR / (u64::from(mul) << shift)
    } else {
        let quotient = NUMERATOR / u64::from(mul);
        let left = u32::from(shift.unsigned_abs());
        if quotient.leading_zeros() < left {
            return None; // far above 100 GHz
        }
        quotient << left
    };
    (1_000_000..=100_000_000_000).contains(&hz).then_some(hz)
}

/// Repairs the signature of the XSDT Xen 4.17 builds for its PVH dom0, in place.
///
/// Xen copies the host's XSDT header into the one it writes for dom0, from the address
/// in the host RSDP's `xsdt` field; a revision-0 RSDP (QEMU's own tables under SeaBIOS
/// have only an RSDT) has no such field, so Xen copies from address 0 and the table's
/// signature is the real-mode interrupt table's first entry (measured: `53 ff 00 f0`,
/// "S\xff\x00\xf0"), while its length, entries and checksum are Xen's own and valid. This
/// writes "XSDT" and adjusts the checksum byte so the table sums to 0 again.
///
/// Returns `false` and changes nothing unless `table` is exactly such a table: its
/// `length` field equals `table.len()` (36 bytes or more, whole 8-byte entries), the
/// bytes sum to 0, and the signature is not already "XSDT".
pub fn repair_xsdt(table: &mut [u8]) -> bool {
    const HEADER: usize = crate::acpi::HEADER_LENGTH;
    if table.len() < HEADER || !(table.len() - HEADER).is_multiple_of(8) || &table[..4] == b"XSDT" {
        return false;
    }
    let length = u32::from_le_bytes([table[4], table[5], table[6], table[7]]);
    if length as usize != table.len() {
        return false;
    }
    let sum = table.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
    if sum != 0 {
        return false;
    }
    let old = table[..4]
        .iter()
        .fold(0u8, |sum, byte| sum.wrapping_add(*byte));
    let new = b"XSDT"
        .iter()
        .fold(0u8, |sum, byte| sum.wrapping_add(*byte));
    table[..4].copy_from_slice(b"XSDT");
    table[9] = table[9].wrapping_add(old).wrapping_sub(new);
    true
}

/// `SIF_INITDOMAIN` in `hvm_start_info.flags`: the domain is the initial (hardware)
/// domain. Xen's PVH dom0 builder sets it with `SIF_PRIVILEGED`; libxl leaves a domU's
/// flags 0.
pub const SIF_INITDOMAIN: u32 = 1 << 1;

/// What this domain is to Xen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainKind {
    /// The initial, hardware domain: it owns the machine's devices, COM1 and port 0xf4 included,
    /// and Xen's console is reached through `console_io`.
    Dom0,
    /// An unprivileged guest: no devices but what the toolstack set up, reached through
    /// event channels, grant tables and xenstore; its console is a shared ring.
    DomU,
}

impl DomainKind {
    /// The kind from `hvm_start_info.flags` (read there rather than asked with
    /// `XENVER_get_features`: that hypercall cost 21 500 of Xen's instructions on the
    /// way to `main` under QEMU's emulator).
    pub fn from_start_flags(flags: u32) -> Self {
        if flags & SIF_INITDOMAIN != 0 {
            Self::Dom0
        } else {
            Self::DomU
        }
    }

    /// The name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dom0 => "dom0",
            Self::DomU => "domU",
        }
    }
}

/// Which Xen-owned page `XENMEM_add_to_physmap` places (`XENMAPSPACE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapSpace {
    /// The shared info page (event bitmaps, per-vCPU upcall flags, wall clock).
    SharedInfo = 0,
    /// A grant-table frame; `idx` is the frame's number in the table.
    GrantTable = 1,
}

/// `struct xen_add_to_physmap`: put page `idx` of `space` at guest frame `gpfn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddToPhysmap {
    /// Whose physmap: [`DOMID_SELF`].
    pub domid: u16,
    /// Only for `XENMAPSPACE_gmfn_range`; 0 here.
    pub size: u16,
    /// A [`MapSpace`] as its number.
    pub space: u32,
    /// Which page of the space.
    pub idx: u64,
    /// The guest frame number it appears at.
    pub gpfn: u64,
}

impl AddToPhysmap {
    /// Page `idx` of `space` at guest frame `gpfn` of this domain.
    pub fn new(space: MapSpace, idx: u64, gpfn: u64) -> Self {
        Self {
            domid: DOMID_SELF,
            size: 0,
            space: space as u32,
            idx,
            gpfn,
        }
    }
}

/// The HVM parameters the kernel reads (`HVM_PARAM_*`, public/hvm/params.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Param {
    /// How event-channel upcalls are delivered (written, see [`callback_vector`]).
    CallbackIrq = 0,
    /// The xenstore ring's guest frame number.
    StorePfn = 1,
    /// The xenstore ring's event channel.
    StoreEvtchn = 2,
    /// The PV console ring's guest frame number.
    ConsolePfn = 17,
    /// The PV console ring's event channel.
    ConsoleEvtchn = 18,
}

impl Param {
    /// The name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::CallbackIrq => "HVM_PARAM_CALLBACK_IRQ",
            Self::StorePfn => "HVM_PARAM_STORE_PFN",
            Self::StoreEvtchn => "HVM_PARAM_STORE_EVTCHN",
            Self::ConsolePfn => "HVM_PARAM_CONSOLE_PFN",
            Self::ConsoleEvtchn => "HVM_PARAM_CONSOLE_EVTCHN",
        }
    }
}

/// `struct xen_hvm_param`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvmParam {
    /// [`DOMID_SELF`].
    pub domid: u16,
    /// Padding before the 32-bit index.
    pub pad: u16,
    /// A [`Param`] as its number.
    pub index: u32,
    /// In for `HVMOP_set_param`, out for `HVMOP_get_param`.
    pub value: u64,
}

impl HvmParam {
    /// A request about `param` of this domain, with `value` (0 for a get).
    pub fn new(param: Param, value: u64) -> Self {
        Self {
            domid: DOMID_SELF,
            pad: 0,
            index: param as u32,
            value,
        }
    }
}

/// `GNTTABOP_query_size`: how many grant-table frames the domain has and may have.
pub const GNTTABOP_QUERY_SIZE: u64 = 6;

/// `struct gnttab_query_size`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuerySize {
    /// In: [`DOMID_SELF`].
    pub dom: u16,
    /// Padding before the 32-bit fields.
    pub pad: u16,
    /// Out: frames the table has now.
    pub nr_frames: u32,
    /// Out: frames it may grow to (the toolstack's `max_grant_frames`).
    pub max_nr_frames: u32,
    /// Out: `GNTST_okay` (0) or a negative `GNTST_*` error.
    pub status: i16,
}

impl QuerySize {
    /// A query about this domain.
    pub fn new() -> Self {
        Self {
            dom: DOMID_SELF,
            pad: 0,
            nr_frames: 0,
            max_nr_frames: 0,
            status: 0,
        }
    }

    /// How many frames to map: `wanted`, at most what the domain may have; `None` when
    /// the reply is an error or allows none.
    pub fn frames(&self, wanted: u32) -> Option<u32> {
        (self.status == 0 && self.max_nr_frames > 0).then(|| wanted.min(self.max_nr_frames))
    }
}

impl Default for QuerySize {
    fn default() -> Self {
        Self::new()
    }
}

/// The `HVM_PARAM_CALLBACK_IRQ` value that delivers upcalls as `vector` on vCPU 0
/// (`HVM_PARAM_CALLBACK_TYPE_VECTOR`, type 2 in bits 63:56): the fallback for a Xen
/// without `HVMOP_set_evtchn_upcall_vector`.
pub fn callback_vector(vector: u8) -> u64 {
    (2 << 56) | u64::from(vector)
}

/// `struct xen_hvm_evtchn_upcall_vector`: upcalls for `vcpu` arrive as `vector`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpcallVector {
    /// The vCPU (Xen's id: the kernel's core index, the order of the MADT).
    pub vcpu: u32,
    /// The local-APIC vector.
    pub vector: u8,
}

/// A frame number a parameter reply names, as a physical address, or `None` for 0 (the
/// toolstack set none) or one whose address does not fit in 52 bits.
pub fn frame_address(pfn: u64) -> Option<u64> {
    (pfn != 0 && pfn < 1 << 40).then_some(pfn << 12)
}

/// An event-channel port a parameter reply names, or `None` past [`events::PORTS`]
/// (the 2-level ABI's limit) or for port 0 (never a valid port).
pub fn port(value: u64) -> Option<u32> {
    u32::try_from(value)
        .ok()
        .filter(|&port| port != 0 && port < events::PORTS)
}

/// A hypercall's status: non-negative is success, negative is `-errno`.
///
/// # Errors
/// `XenHypercall` naming `call` and the error number.
pub fn check(call: &'static str, status: i64) -> Result<u64, BootError> {
    u64::try_from(status).map_err(|_| BootError::XenHypercall {
        call,
        errno: status.unsigned_abs().min(u64::from(u32::MAX)) as u32,
    })
}

/// The name of a Xen error number, for messages.
pub fn errno_name(errno: u32) -> &'static str {
    match errno {
        1 => "EPERM",
        12 => "ENOMEM",
        14 => "EFAULT",
        22 => "EINVAL",
        38 => "ENOSYS",
        _ => "an error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_MEMORY_REGIONS, Protocol};
    use core::mem::{offset_of, size_of};

    fn entry(start: u64, len: u64, kind: u32) -> [u8; E820_ENTRY_SIZE] {
        let mut bytes = [0; E820_ENTRY_SIZE];
        bytes[..8].copy_from_slice(&start.to_le_bytes());
        bytes[8..16].copy_from_slice(&len.to_le_bytes());
        bytes[16..].copy_from_slice(&kind.to_le_bytes());
        bytes
    }

    fn table(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|&(start, len, kind)| entry(start, len, kind))
            .collect()
    }

    fn fill(bytes: &[u8], count: u32) -> Result<BootInfo, BootError> {
        let mut info = BootInfo::empty(Protocol::Pvh);
        fill_memory_map(&mut info, bytes, count)?;
        Ok(info)
    }

    #[test]
    fn signature() {
        // "XenV" "MMXe" "nVMM" as CPUID returns them.
        assert!(is_signature(0x566e_6558, 0x6558_4d4d, 0x4d4d_566e));
        assert!(!is_signature(0x4b4d_564b, 0x564b_4d56, 0x4d)); // "KVMKVMKVM"
        assert!(!is_signature(0, 0, 0));
    }

    #[test]
    fn hypercall_leaf() {
        assert_eq!(
            HypercallLeaf::decode(1, 0x4000_0000),
            Ok(HypercallLeaf {
                pages: 1,
                msr: 0x4000_0000
            })
        );
        assert_eq!(
            HypercallLeaf::decode(0, 0x4000_0000),
            Err(BootError::XenHypercallPages { pages: 0 })
        );
        assert_eq!(
            HypercallLeaf::decode(u32::MAX, 0),
            Err(BootError::XenHypercallPages { pages: u32::MAX })
        );
    }

    #[test]
    fn stubs_are_32_bytes_apart_inside_one_page() {
        assert_eq!(stub_offset(op::MEMORY_OP), Some(12 * 32));
        assert_eq!(stub_offset(op::CONSOLE_IO), Some(18 * 32));
        assert_eq!(stub_offset(op::SCHED_OP), Some(29 * 32));
        assert_eq!(stub_offset(127), Some(4064));
        assert_eq!(stub_offset(128), None);
        assert_eq!(stub_offset(u32::MAX), None);
    }

    #[test]
    fn domu_argument_layouts_match_xen() {
        // struct xen_add_to_physmap { domid_t domid; uint16_t size; unsigned int space;
        // xen_ulong_t idx; xen_pfn_t gpfn; }
        assert_eq!(size_of::<AddToPhysmap>(), 24);
        assert_eq!(offset_of!(AddToPhysmap, space), 4);
        assert_eq!(offset_of!(AddToPhysmap, idx), 8);
        assert_eq!(offset_of!(AddToPhysmap, gpfn), 16);
        let request = AddToPhysmap::new(MapSpace::GrantTable, 2, 0x1234);
        assert_eq!((request.domid, request.space, request.idx), (0x7ff0, 1, 2));
        // struct xen_hvm_param { domid_t domid; uint32_t index; uint64_t value; }
        assert_eq!(size_of::<HvmParam>(), 16);
        assert_eq!(offset_of!(HvmParam, index), 4);
        assert_eq!(offset_of!(HvmParam, value), 8);
        assert_eq!(HvmParam::new(Param::ConsoleEvtchn, 0).index, 18);
        assert_eq!(HvmParam::new(Param::StorePfn, 0).index, 1);
        // struct xen_hvm_evtchn_upcall_vector { uint32_t vcpu; uint8_t vector; }
        assert_eq!(size_of::<UpcallVector>(), 8);
        assert_eq!(offset_of!(UpcallVector, vector), 4);
        // struct gnttab_query_size { domid_t dom; uint32_t nr_frames; uint32_t
        // max_nr_frames; int16_t status; }
        assert_eq!(size_of::<QuerySize>(), 16);
        assert_eq!(offset_of!(QuerySize, nr_frames), 4);
        assert_eq!(offset_of!(QuerySize, max_nr_frames), 8);
        assert_eq!(offset_of!(QuerySize, status), 12);
        // HVM_PARAM_CALLBACK_TYPE_VECTOR is type 2, in the top byte.
        assert_eq!(callback_vector(0xf3), 0x0200_0000_0000_00f3);
    }

    #[test]
    fn grant_frames_from_query() {
        let reply = |max, status| QuerySize {
            max_nr_frames: max,
            status,
            ..QuerySize::new()
        };
        assert_eq!(reply(64, 0).frames(4), Some(4));
        assert_eq!(reply(2, 0).frames(4), Some(2));
        assert_eq!(reply(0, 0).frames(4), None);
        assert_eq!(reply(64, -1).frames(4), None);
    }

    #[test]
    fn domain_kind_from_start_flags() {
        // Xen's PVH dom0: SIF_PRIVILEGED | SIF_INITDOMAIN.
        assert_eq!(DomainKind::from_start_flags(0b11), DomainKind::Dom0);
        // libxl's domU: 0; privileged but not the initial domain is still a domU.
        assert_eq!(DomainKind::from_start_flags(0), DomainKind::DomU);
        assert_eq!(DomainKind::from_start_flags(0b01), DomainKind::DomU);
    }

    #[test]
    fn parameter_replies_are_checked() {
        assert_eq!(frame_address(0xfeffc), Some(0xfeff_c000));
        assert_eq!(frame_address(0), None);
        assert_eq!(frame_address(1 << 40), None);
        assert_eq!(frame_address(u64::MAX), None);
        assert_eq!(port(1), Some(1));
        assert_eq!(port(4095), Some(4095));
        assert_eq!(port(0), None);
        assert_eq!(port(4096), None);
        assert_eq!(port(1 << 32 | 5), None);
    }

    #[test]
    fn argument_layouts_match_xen() {
        // struct xen_memory_map { unsigned int nr_entries; XEN_GUEST_HANDLE(void) buffer; }
        assert_eq!(size_of::<MemoryMapRequest>(), 16);
        assert_eq!(offset_of!(MemoryMapRequest, nr_entries), 0);
        assert_eq!(offset_of!(MemoryMapRequest, buffer), 8);
        let request = MemoryMapRequest::new(0x1234_5000, 64);
        assert_eq!((request.nr_entries, request.pad), (64, 0));
        // struct sched_shutdown { unsigned int reason; }
        assert_eq!(size_of::<ShutdownRequest>(), 4);
        assert_eq!(ShutdownReason::Poweroff as u32, 0);
        assert_eq!(ShutdownReason::Reboot as u32, 1);
        assert_eq!(ShutdownReason::Crash as u32, 3);
    }

    #[test]
    fn exit_codes_become_shutdown_reasons() {
        assert_eq!(ShutdownReason::for_exit_code(0), ShutdownReason::Poweroff);
        assert_eq!(ShutdownReason::for_exit_code(1), ShutdownReason::Crash);
        assert_eq!(ShutdownReason::for_exit_code(101), ShutdownReason::Crash);
    }

    #[test]
    fn a_clean_exit_after_a_reboot_request_reboots() {
        assert_eq!(ShutdownReason::at_exit(0, true), ShutdownReason::Reboot);
    }

    #[test]
    fn without_a_reboot_request_the_exit_code_decides() {
        assert_eq!(ShutdownReason::at_exit(0, false), ShutdownReason::Poweroff);
        assert_eq!(ShutdownReason::at_exit(1, false), ShutdownReason::Crash);
        assert_eq!(ShutdownReason::at_exit(101, false), ShutdownReason::Crash);
    }

    #[test]
    fn a_failed_exit_after_a_reboot_request_is_still_a_crash() {
        assert_eq!(ShutdownReason::at_exit(1, true), ShutdownReason::Crash);
        assert_eq!(ShutdownReason::at_exit(101, true), ShutdownReason::Crash);
        assert_eq!(ShutdownReason::at_exit(127, true), ShutdownReason::Crash);
    }

    #[test]
    fn memory_map_as_xen_gives_it() {
        // Xen 4.17's map for a 256 MiB PVH dom0 on q35, shortened.
        let bytes = table(&[
            (0, 0x9_f000, 1),
            (0x9_f000, 0x1000, 2),
            (0x10_0000, 0xff0_0000, 1),
            (0xfc00_0000, 0x400_0000, 2),
        ]);
        let info = fill(&bytes, 4).unwrap();
        let map = info.memory_map();
        assert_eq!(map.len(), 4);
        assert_eq!(
            map[2],
            MemoryRegion {
                start: 0x10_0000,
                len: 0xff0_0000,
                kind: MemoryKind::Usable
            }
        );
        assert_eq!(map[3].kind, MemoryKind::Reserved);
        // Entries past `count` are not read.
        let info = fill(&bytes, 1).unwrap();
        assert_eq!(info.memory_map().len(), 1);
    }

    #[test]
    fn hostile_memory_maps() {
        // A count past the buffer: refused, nothing read.
        let bytes = table(&[(0x10_0000, 0x100_0000, 1)]);
        assert_eq!(
            fill(&bytes, 2).unwrap_err(),
            BootError::XenMemoryMapCount {
                count: 2,
                capacity: 1
            }
        );
        assert_eq!(
            fill(&bytes, u32::MAX).unwrap_err(),
            BootError::XenMemoryMapCount {
                count: u32::MAX,
                capacity: 1
            }
        );
        // A buffer with a partial entry at its end: the partial entry is not counted.
        let mut ragged = bytes.clone();
        ragged.extend_from_slice(&[0xff; 7]);
        assert!(matches!(
            fill(&ragged, 2).unwrap_err(),
            BootError::XenMemoryMapCount { capacity: 1, .. }
        ));
        // Zero entries, or only zero-length ones: no map.
        assert_eq!(fill(&bytes, 0).unwrap_err(), BootError::EmptyMemoryMap);
        let empty = table(&[(0x10_0000, 0, 1), (0, 0, 1)]);
        assert_eq!(fill(&empty, 2).unwrap_err(), BootError::EmptyMemoryMap);
        // Zero-length entries among real ones are skipped.
        let mixed = table(&[(0x10_0000, 0, 1), (0x10_0000, 0x10_0000, 1)]);
        assert_eq!(fill(&mixed, 2).unwrap().memory_map().len(), 1);
        // An entry running past 2^64.
        let absurd = table(&[(0x10_0000, 0x10_0000, 1), (u64::MAX - 1, 0x1000, 1)]);
        assert_eq!(
            fill(&absurd, 2).unwrap_err(),
            BootError::MemoryRegionOverflow {
                start: u64::MAX - 1,
                len: 0x1000
            }
        );
        // Unknown kinds and no RAM at all.
        let no_ram = table(&[(0, 0x1000, 7), (0x10_0000, 0x1000, 2)]);
        assert_eq!(fill(&no_ram, 2).unwrap_err(), BootError::NoUsableMemory);
        // More entries than the kernel keeps.
        let many: Vec<_> = (0..=MAX_MEMORY_REGIONS as u64)
            .map(|i| (i << 20, 0x1000, 1))
            .collect();
        assert_eq!(
            fill(&table(&many), many.len() as u32).unwrap_err(),
            BootError::TooManyMemoryRegions {
                max: MAX_MEMORY_REGIONS
            }
        );
        // Overlapping entries are kept as given: the frame allocator merges them.
        let overlapping = table(&[(0x10_0000, 0x20_0000, 1), (0x20_0000, 0x20_0000, 1)]);
        assert_eq!(fill(&overlapping, 2).unwrap().memory_map().len(), 2);
    }

    #[test]
    fn tsc_rate_from_scale() {
        // 1 GHz: one tick is one nanosecond, mul = 2^31 with shift 1.
        assert_eq!(tsc_hz_from_scale(1 << 31, 1), Some(1_000_000_000));
        // 2.6 GHz as Xen encodes it: shift -1, mul = 2^33 / 2.6.
        let mul = ((1u64 << 33) * 10 / 26) as u32;
        let hz = tsc_hz_from_scale(mul, -1).unwrap();
        assert!(hz.abs_diff(2_600_000_000) < 10, "{hz}");
        // 100 MHz: 10 ns a tick, shift 4, mul = 2^32 * 10 / 16.
        assert_eq!(
            tsc_hz_from_scale(((1u64 << 32) * 10 / 16) as u32, 4),
            Some(100_000_000)
        );
        // Hostile scales.
        assert_eq!(tsc_hz_from_scale(0, 0), None);
        assert_eq!(tsc_hz_from_scale(1, 32), None);
        assert_eq!(tsc_hz_from_scale(1, -32), None);
        assert_eq!(tsc_hz_from_scale(1, i8::MIN), None);
        assert_eq!(tsc_hz_from_scale(1, -31), None, "above 100 GHz");
        assert_eq!(tsc_hz_from_scale(u32::MAX, 31), None, "below 1 MHz");
    }

    /// An XSDT as Xen 4.17 writes it on a host with only an RSDT.
    fn xen_xsdt(entries: &[u64]) -> Vec<u8> {
        let mut table = vec![0x53, 0xff, 0x00, 0xf0];
        let length = (36 + 8 * entries.len()) as u32;
        table.extend_from_slice(&length.to_le_bytes());
        table.extend_from_slice(&[1, 0]); // revision, checksum (below)
        table.extend_from_slice(b"XenVMM  HVML    ");
        table.resize(36, 0);
        for entry in entries {
            table.extend_from_slice(&entry.to_le_bytes());
        }
        let sum = table.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        table[9] = 0u8.wrapping_sub(sum);
        table
    }

    #[test]
    fn xen_xsdt_signature_is_repaired() {
        let mut table = xen_xsdt(&[0x1006_0e00, 0x1006_0d00, 0x1006_0c00]);
        assert!(repair_xsdt(&mut table));
        assert_eq!(&table[..4], b"XSDT");
        let mem = crate::SliceMemory {
            base: 0x1000,
            bytes: &table,
        };
        // Now it reads as any XSDT does.
        assert_eq!(
            crate::acpi::read_table(&mem, 0x1000, *b"XSDT")
                .unwrap()
                .len(),
            60
        );
        // A second pass changes nothing.
        let repaired = table.clone();
        assert!(!repair_xsdt(&mut table));
        assert_eq!(table, repaired);
    }

    #[test]
    fn other_tables_are_left_alone() {
        // A bad checksum: not Xen's table, nothing changed.
        let mut table = xen_xsdt(&[0x1006_0e00]);
        table[40] ^= 1;
        let before = table.clone();
        assert!(!repair_xsdt(&mut table));
        assert_eq!(table, before);
        // A length field that disagrees with the table's extent.
        let mut table = xen_xsdt(&[0x1006_0e00]);
        assert!(!repair_xsdt(&mut table[..40]));
        let mut table = xen_xsdt(&[0x1006_0e00]);
        table.push(0);
        assert!(!repair_xsdt(&mut table));
        // Too short to be a table.
        assert!(!repair_xsdt(&mut [0u8; 8]));
        assert!(!repair_xsdt(&mut []));
    }

    #[test]
    fn hypercall_status() {
        assert_eq!(check("memory map", 0), Ok(0));
        assert_eq!(check("console write", 17), Ok(17));
        assert_eq!(
            check("memory map", -22),
            Err(BootError::XenHypercall {
                call: "memory map",
                errno: 22
            })
        );
        assert_eq!(
            check("memory map", i64::MIN),
            Err(BootError::XenHypercall {
                call: "memory map",
                errno: u32::MAX
            })
        );
        assert_eq!(errno_name(38), "ENOSYS");
        assert_eq!(errno_name(9999), "an error");
    }
}
