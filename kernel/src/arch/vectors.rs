//! The interrupt vectors the kernel assigns: one list, below both the interrupt dispatch
//! (`interrupts.rs`) and the local APIC that raises them (`lapic.rs`).

/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 32;
/// The vector another core sends to end this core's `hlt` (a task here became ready).
pub const WAKE_VECTOR: u8 = 33;
/// First vector that devices may `register`.
pub const FIRST_DEVICE_VECTOR: u8 = 48;
/// The local APIC's spurious-interrupt vector (no EOI for it).
pub const SPURIOUS_VECTOR: u8 = 0xff;
