//! The GDT and TSS: 64-bit code/data segments and the interrupt stack table.
//!
//! Long mode ignores segmentation, but a TSS is still needed for the IST: the exceptions
//! that can hit a broken stack (double fault, page fault, NMI, machine check) switch to
//! stacks of their own, so a stack overflow is reported instead of triple-faulting.

use super::percpu::MAX_CPUS;
use super::stacks::{self, StackKind};
use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: [Once<TaskStateSegment>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];
static TABLES: [Once<Tables>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Loads core `cpu`'s GDT and TSS; `ist` gives the tops of its double-fault, page-fault
/// and NMI stacks.
pub fn init(cpu: usize, ist: [u64; 3]) {
    let tss = TSS[cpu].call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (index, top) in [
            stacks::IST_DOUBLE_FAULT,
            stacks::IST_PAGE_FAULT,
            stacks::IST_NMI,
        ]
        .into_iter()
        .zip(ist)
        {
            tss.interrupt_stack_table[usize::from(index - 1)] = VirtAddr::new(top);
        }
        tss
    });
    let tables = TABLES[cpu].call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        Tables {
            gdt,
            code,
            data,
            tss,
        }
    });
    tables.gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which lives in a
    // `static` and so outlives every use; the code segment is a 64-bit one.
    unsafe {
        CS::set_reg(tables.code);
        DS::set_reg(tables.data);
        ES::set_reg(tables.data);
        SS::set_reg(tables.data);
        load_tss(tables.tss);
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
