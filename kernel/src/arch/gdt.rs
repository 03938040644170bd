//! The GDT and TSS: 64-bit code/data segments and the interrupt stack table.
//!
//! Long mode ignores segmentation, but a TSS is still needed for the IST: the exceptions
//! that can hit a broken stack (double fault, page fault, NMI, machine check) switch to
//! stacks of their own, so a stack overflow is reported instead of triple-faulting.

use super::percpu::MAX_CPUS;
use super::stacks::{self, StackKind};
use spin::Once;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::{lgdt, load_tss};
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::SegmentSelector;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

/// One core's GDT: null, 64-bit code, data, and the TSS descriptor (two entries).
///
/// Written as constants rather than with `x86_64`'s `GlobalDescriptorTable` builder: the
/// table never changes, and under emulation (TCG) the builder's bit-field loops were
/// about a millisecond of translated code at every boot.
#[repr(C, align(16))]
struct Gdt([u64; 5]);

/// Descriptors (Intel SDM vol. 3, 3.4.5): present, DPL 0, accessed (so the CPU never
/// writes the table); code is 64-bit (L), data is writable.
const CODE_DESCRIPTOR: u64 = 0x00af_9b00_0000_ffff;
const DATA_DESCRIPTOR: u64 = 0x00cf_9300_0000_ffff;
const CODE: SegmentSelector = SegmentSelector::new(1, PrivilegeLevel::Ring0);
const DATA: SegmentSelector = SegmentSelector::new(2, PrivilegeLevel::Ring0);
const TSS_SELECTOR: SegmentSelector = SegmentSelector::new(3, PrivilegeLevel::Ring0);

/// The 16-byte system descriptor of an available 64-bit TSS at `tss` (SDM vol. 3, 8.2.3).
fn tss_descriptor(tss: &'static TaskStateSegment) -> [u64; 2] {
    let base = core::ptr::from_ref(tss) as u64;
    let limit = (size_of::<TaskStateSegment>() - 1) as u64;
    let low = (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | 0x89 << 40 // present, DPL 0, type 9: available 64-bit TSS
        | (limit >> 16 & 0xf) << 48
        | (base >> 24 & 0xff) << 56;
    [low, base >> 32]
}

static TSS: [Once<TaskStateSegment>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];
static GDT: [Once<Gdt>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Loads core `cpu`'s GDT and TSS; `ist` gives the tops of its double-fault, page-fault
/// and NMI stacks.
pub fn init(cpu: usize, ist: [u64; 3]) {
    let tss = TSS[cpu].call_once(|| {
        let mut tss = TaskStateSegment::new();
        // Stack tops are the kernel's own identity-mapped addresses: canonical. (The
        // table is a field of a packed struct: copied out, set, copied back.)
        let mut table = tss.interrupt_stack_table;
        table[usize::from(stacks::IST_DOUBLE_FAULT - 1)] = VirtAddr::new_truncate(ist[0]);
        table[usize::from(stacks::IST_PAGE_FAULT - 1)] = VirtAddr::new_truncate(ist[1]);
        table[usize::from(stacks::IST_NMI - 1)] = VirtAddr::new_truncate(ist[2]);
        tss.interrupt_stack_table = table;
        tss
    });
    let gdt = GDT[cpu].call_once(|| {
        let [tss_low, tss_high] = tss_descriptor(tss);
        Gdt([0, CODE_DESCRIPTOR, DATA_DESCRIPTOR, tss_low, tss_high])
    });
    let pointer = DescriptorTablePointer {
        limit: (size_of::<Gdt>() - 1) as u16,
        base: VirtAddr::new_truncate(core::ptr::from_ref(gdt) as u64),
    };
    // SAFETY: the GDT lives in a `static` (it outlives every use) and holds valid
    // descriptors; the selectors index them: a 64-bit code segment, a data segment and
    // an available TSS, which `load_tss` marks busy (loaded once per core).
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
