//! "Boot only" as a type: `Boot` proves that the caller is the boot sequence, so that
//! functions that must run then (on the boot core, interrupts off, no other core or task
//! running) say so in their signature instead of in an `unsafe` contract.
//!
//! One `unsafe` makes the token (as in tock's capabilities), in `entry.rs`; everything
//! that needs it takes `&Boot`.

/// Proof that the caller is the boot sequence. Neither `Clone` nor `Copy`; made once.
pub struct Boot(());

impl Boot {
    /// The token.
    ///
    /// # Safety
    /// Only the boot sequence (`entry::torito_kernel_entry`) calls this, once, on the
    /// boot core before interrupts are enabled and before any other core starts, and the
    /// token lives no longer than that sequence.
    pub unsafe fn new() -> Self {
        Self(())
    }
}
