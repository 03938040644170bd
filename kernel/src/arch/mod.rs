//! x86_64: every register, port, descriptor table and page table lives under here, and
//! with them all of the kernel's `unsafe` (except the heap's `GlobalAlloc` impl).

pub mod acpi;
pub mod clock;
pub mod entry;
pub mod exceptions;
pub mod exit;
pub mod fiber;
pub mod gdt;
pub mod interrupts;
pub mod ioapic;
pub mod lapic;
pub mod logger;
pub mod paging;
pub mod panic;
pub mod percpu;
pub mod pic;
pub mod serial;
pub mod smp;
pub mod stacks;
pub mod vectors;
pub mod virtio;
