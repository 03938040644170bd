//! The GDT and TSS: 64-bit code/data segments and the interrupt stack table.
//!
//! Long mode ignores segmentation, but a TSS is still needed for the IST: the exceptions
//! that can hit a broken stack (double fault, page fault, NMI, machine check) switch to
//! stacks of their own, so a stack overflow is reported instead of triple-faulting.
//! Both tables are the `x86_64` crate's types, one pair per core.

use super::percpu::MAX_CPUS;
use super::stacks::{self, StackKind};
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

/// Each core's TSS and GDT, built by that core's `init`. `spin::Once` starts as zeroes,
/// so these stay in `.bss` and cost the image nothing.
static TSS: [spin::Once<TaskStateSegment>; MAX_CPUS] = [const { spin::Once::new() }; MAX_CPUS];
static GDT: [spin::Once<GlobalDescriptorTable>; MAX_CPUS] = [const { spin::Once::new() }; MAX_CPUS];

/// Selectors of the descriptors in the order `init` appends them (null first).
const CODE: SegmentSelector = SegmentSelector::new(1, PrivilegeLevel::Ring0);
const DATA: SegmentSelector = SegmentSelector::new(2, PrivilegeLevel::Ring0);
const TSS_SELECTOR: SegmentSelector = SegmentSelector::new(3, PrivilegeLevel::Ring0);

/// Loads core `cpu`'s GDT and TSS; `ist` gives the tops of its double-fault, page-fault
/// and NMI stacks. Called once per core, by that core (a second call loads the same
/// tables again).
pub fn init(cpu: usize, ist: [u64; 3]) {
    let tss = TSS[cpu].call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (index, top) in [
            (stacks::IST_DOUBLE_FAULT, ist[0]),
            (stacks::IST_PAGE_FAULT, ist[1]),
            (stacks::IST_NMI, ist[2]),
        ] {
            // Stack tops are the kernel's own identity-mapped addresses: canonical.
            tss.interrupt_stack_table[usize::from(index - 1)] = VirtAddr::new_truncate(top);
        }
        tss
    });
    let gdt = GDT[cpu].call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        gdt.append(Descriptor::kernel_code_segment());
        gdt.append(Descriptor::kernel_data_segment());
        gdt.append(Descriptor::tss_segment(tss));
        gdt
    });
    gdt.load();
    // SAFETY: the GDT just loaded is a `static` (it outlives every use) and the selectors
    // index its descriptors: a 64-bit code segment, a data segment and an available TSS,
    // which `load_tss` marks busy (this core's, loaded once).
    unsafe {
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
