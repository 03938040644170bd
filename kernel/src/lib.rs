//! Torito: an async-executor unikernel for x86_64 microVMs.
//!
//! An application is a `no_std` binary that depends on this crate and writes
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! #[torito::main]
//! async fn main() {
//!     torito::println!("Hello from Torito");
//!     torito::time::sleep(torito::time::Duration::from_millis(10)).await;
//! }
//! ```
//!
//! and becomes one ELF that boots through PVH (QEMU, Firecracker, Cloud Hypervisor, Xen)
//! or multiboot2 (GRUB). Promises this crate keeps:
//!
//! * every CPU exception is reported by name with RIP, CR2 and a backtrace, and ends the
//!   VM with a non-zero status; a stack overflow is named as such;
//! * a panic prints its message and location and exits non-zero; an allocation failure
//!   prints the request and the heap's state;
//! * an idle core halts until an interrupt; there is no periodic tick;
//! * a malformed boot structure or command-line value stops the boot with a message
//!   naming what was wrong; an unknown command-line key is a warning;
//! * the platform's request to stop (the ACPI power button, Ctrl+Alt+Del) resolves
//!   [`shutdown()`] in every task that awaits it; when no task ever did, it powers the
//!   VM off with status 0.
//!
//! Layout: `arch` (every register, port and page table; all of the kernel's `unsafe`
//! except the heap's `GlobalAlloc`), `memory` (frames and heap), `runtime` (the
//! executor platform and the application's entry), and the public modules below.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod arch;
#[allow(unsafe_code)]
pub mod memory;
#[cfg(target_os = "none")]
mod runtime;
// Used by `arch::smp`; pure bookkeeping, so built and tested on the host too.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod cpu_start;

#[cfg(target_os = "none")]
pub mod block;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
mod device_call;
#[cfg(target_os = "none")]
mod devices;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod escape;
pub mod fs;
#[cfg(target_os = "none")]
pub mod net;
// Decoders for the platform's stop requests; plain code, tested on the host.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod power_events;
#[cfg(target_os = "none")]
pub mod random;
#[cfg(target_os = "none")]
pub mod shutdown;
#[cfg(target_os = "none")]
mod spread;
// The bookkeeping behind `shutdown()`; plain code, tested on the host.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod stop_signal;
pub mod sync;
#[cfg(target_os = "none")]
pub mod task;
#[cfg(target_os = "none")]
pub mod time;
#[cfg(target_os = "none")]
pub mod vsock;
#[cfg(target_os = "none")]
mod xen;

pub use log;
pub use torito_macros::main;

#[cfg(target_os = "none")]
pub use runtime::exit;
#[cfg(target_os = "none")]
pub use shutdown::{shutdown, shutdown_requested, until_shutdown};

#[doc(hidden)]
#[cfg(target_os = "none")]
pub mod __private {
    pub use crate::runtime::ExitStatus;

    /// What `#[torito::main]` calls: arms the stop requests (their watcher is a task on
    /// core 0, where their interrupts go), then `runtime::run_main`. Here, above both,
    /// so that neither the runtime nor `shutdown` imports the other.
    pub fn run_main<F>(main: F) -> !
    where
        F: core::future::Future,
        F::Output: ExitStatus,
    {
        crate::shutdown::start();
        crate::runtime::run_main(main)
    }
}
