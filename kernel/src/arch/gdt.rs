//! The GDT and TSS: 64-bit code/data segments and the interrupt stack table.
//!
//! Long mode ignores segmentation, but a TSS is still needed for the IST: the exceptions
//! that can hit a broken stack (double fault, page fault, NMI, machine check) switch to
//! stacks of their own, so a stack overflow is reported instead of triple-faulting.

use super::percpu::MAX_CPUS;
use super::stacks::{self, StackKind};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use x86_64::PrivilegeLevel;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::{lgdt, load_tss};
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::SegmentSelector;

/// One core's GDT: null, 64-bit code, data, and the TSS descriptor (two entries).
///
/// Each core's tables are statics written in place at its `init`: only the TSS address
/// and the IST stack tops vary, and building whole tables to copy over (or running the
/// `x86_64` crate's builders) was translated code at every boot under emulation (TCG).
#[repr(C, align(16))]
struct Gdt([AtomicU64; 5]);

/// A 64-bit TSS (Intel SDM vol. 3, 8.7): 104 bytes whose 64-bit fields sit at 4-byte
/// offsets, hence 32-bit words. Only the IST entries are used (no privilege levels, no
/// I/O bitmap).
#[repr(C, align(8))]
struct Tss([AtomicU32; 26]);
const _: () = assert!(
    size_of::<Tss>() == 104,
    "the TSS limit must end at the I/O map base"
);

/// Descriptors (Intel SDM vol. 3, 3.4.5): present, DPL 0, accessed (so the CPU never
/// writes the table); code is 64-bit (L), data is writable.
const CODE_DESCRIPTOR: u64 = 0x00af_9b00_0000_ffff;
const DATA_DESCRIPTOR: u64 = 0x00cf_9300_0000_ffff;
const CODE: SegmentSelector = SegmentSelector::new(1, PrivilegeLevel::Ring0);
const DATA: SegmentSelector = SegmentSelector::new(2, PrivilegeLevel::Ring0);
const TSS_SELECTOR: SegmentSelector = SegmentSelector::new(3, PrivilegeLevel::Ring0);
/// TSS word holding IST1's low half (byte offset 36).
const TSS_IST1: usize = 9;
/// The last TSS word: the I/O map base (high half) set past the TSS, so there is none.
const TSS_NO_IO_MAP: u32 = 104 << 16;

// Zero-initialised (so in .bss, not in the image): `init` writes every non-zero word.
static GDT: [Gdt; MAX_CPUS] = [const { Gdt([const { AtomicU64::new(0) }; 5]) }; MAX_CPUS];
static TSS: [Tss; MAX_CPUS] = [const { Tss([const { AtomicU32::new(0) }; 26]) }; MAX_CPUS];

/// The 16-byte system descriptor of an available 64-bit TSS at `base` (SDM vol. 3, 8.2.3).
fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = (size_of::<Tss>() - 1) as u64;
    let low = (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | 0x89 << 40 // present, DPL 0, type 9: available 64-bit TSS
        | (limit >> 16 & 0xf) << 48
        | (base >> 24 & 0xff) << 56;
    [low, base >> 32]
}

/// Loads core `cpu`'s GDT and TSS; `ist` gives the tops of its double-fault, page-fault
/// and NMI stacks. Called once per core, by that core.
pub fn init(cpu: usize, ist: [u64; 3]) {
    let tss = &TSS[cpu];
    tss.0[25].store(TSS_NO_IO_MAP, Ordering::Relaxed);
    for (index, top) in [
        (stacks::IST_DOUBLE_FAULT, ist[0]),
        (stacks::IST_PAGE_FAULT, ist[1]),
        (stacks::IST_NMI, ist[2]),
    ] {
        // Stack tops are the kernel's own identity-mapped addresses: canonical.
        let word = TSS_IST1 + 2 * usize::from(index - 1);
        tss.0[word].store(top as u32, Ordering::Relaxed);
        tss.0[word + 1].store((top >> 32) as u32, Ordering::Relaxed);
    }
    let gdt = &GDT[cpu];
    gdt.0[1].store(CODE_DESCRIPTOR, Ordering::Relaxed);
    gdt.0[2].store(DATA_DESCRIPTOR, Ordering::Relaxed);
    let [tss_low, tss_high] = tss_descriptor(core::ptr::from_ref(tss) as u64);
    gdt.0[3].store(tss_low, Ordering::Relaxed);
    gdt.0[4].store(tss_high, Ordering::Relaxed);
    let pointer = DescriptorTablePointer {
        limit: (size_of::<Gdt>() - 1) as u16,
        base: VirtAddr::new_truncate(core::ptr::from_ref(gdt) as u64),
    };
    // SAFETY: the GDT is a `static` (it outlives every use), written above by this core
    // alone, and holds valid descriptors; the selectors index them: a 64-bit code
    // segment, a data segment and an available TSS, which `load_tss` marks busy (loaded
    // once per core).
    unsafe {
        lgdt(&pointer);
        CS::set_reg(CODE);
        DS::set_reg(DATA);
        ES::set_reg(DATA);
        SS::set_reg(DATA);
        load_tss(TSS_SELECTOR);
    }
}

/// Core 0's IST stack tops (static stacks).
pub fn boot_ist() -> [u64; 3] {
    let mut tops = [0; 3];
    for extent in stacks::boot_stacks() {
        match extent.kind {
            StackKind::Boot => {}
            StackKind::DoubleFault => tops[0] = extent.top,
            StackKind::PageFault => tops[1] = extent.top,
            StackKind::Nmi => tops[2] = extent.top,
        }
    }
    tops
}
