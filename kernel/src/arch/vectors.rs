//! The interrupt vectors the kernel assigns: one list, below both the interrupt dispatch
//! (`interrupts.rs`) and the local APIC that raises them (`lapic.rs`).

/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 32;
/// The vector another core sends to end this core's `hlt` (a task here became ready).
pub const WAKE_VECTOR: u8 = 33;
/// First vector that devices may `register` (virtio takes 16 from here).
pub const FIRST_DEVICE_VECTOR: u8 = 48;
/// The ACPI SCI (the fixed power button), past virtio's 16.
pub const SCI_VECTOR: u8 = 64;
/// The i8042 keyboard's IRQ 1 (Ctrl+Alt+Del).
pub const KEYBOARD_VECTOR: u8 = 65;
/// The Generic Event Device's interrupt (microvm's and Cloud Hypervisor's power button).
pub const GED_VECTOR: u8 = 66;
/// Xen's event-channel upcall (every event channel of a Xen guest arrives through it).
pub const XEN_UPCALL_VECTOR: u8 = 67;
/// The local APIC's spurious-interrupt vector (no EOI for it).
pub const SPURIOUS_VECTOR: u8 = 0xff;
