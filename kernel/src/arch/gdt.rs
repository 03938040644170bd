//! The GDT and TSS: 64-bit code/data segments and the interrupt stack table.
//!
//! Long mode ignores segmentation, but a TSS is still needed for the IST: the exceptions
//! that can hit a broken stack (double fault, page fault, NMI, machine check) switch to
//! stacks of their own, so a stack overflow is reported instead of triple-faulting.

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

static TSS: Once<TaskStateSegment> = Once::new();
static TABLES: Once<Tables> = Once::new();

/// Loads the GDT and the TSS on this core (core 0 for now).
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        for extent in stacks::all() {
            let index = match extent.kind {
                StackKind::Boot => continue,
                StackKind::DoubleFault => stacks::IST_DOUBLE_FAULT,
                StackKind::PageFault => stacks::IST_PAGE_FAULT,
                StackKind::Nmi => stacks::IST_NMI,
            };
            tss.interrupt_stack_table[usize::from(index - 1)] = VirtAddr::new(extent.top);
        }
        tss
    });
    let tables = TABLES.call_once(|| {
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
