//! x86_64: every register, port, descriptor table and page table lives under here, and
//! with them all of the kernel's `unsafe` (except the heap's `GlobalAlloc` impl).
//!
//! No parsing: firmware tables are read here and parsed by torito-boot (`acpi.rs`).
//! Imports point one way, from `entry` (the boot sequence) down to the leaves
//! (`vectors`, `percpu`, `stacks`, `serial`, `pic`), and never up to `runtime`, `console`
//! or the public API: where a lower module must call a higher one, the higher one passes
//! a function down (`interrupts::init(exceptions::report)`, `smp::start_others(run_core)`).
//! docs/architecture.md draws the whole order.

pub mod acpi;
pub mod boot_token;
pub mod clock;
pub mod entropy;
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
pub mod pci;
pub mod percpu;
pub mod pic;
pub mod power;
pub mod serial;
pub mod smp;
pub mod stacks;
pub mod vectors;
pub mod virtio;
pub mod xen;
