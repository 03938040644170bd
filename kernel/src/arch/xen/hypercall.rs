//! The hypercall page and the typed calls through it: all of the kernel's Xen `unsafe`.
//!
//! Xen writes one 32-byte stub per hypercall (`mov eax, N; vmmcall` or `vmcall`; `ret`)
//! into a guest page named through an MSR, so the guest need not know which CPU vendor's
//! instruction to use. The page lives in the kernel's text segment (linker section
//! `.xen_hypercall_page`, no file bytes): the kernel's page tables map it executable and
//! not writable, and Xen writes it through its own mapping of guest memory.
//!
//! Each call below takes typed arguments and builds the argument structure Xen reads
//! (torito_boot::xen defines them), so no caller hands Xen a raw address.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use torito_boot::xen::{self as abi, op};
use x86_64::registers::model_specific::Msr;

/// Not `align(4096)` in Rust: that alignment would make the whole text segment 4 KiB
/// aligned in the file (padding the image); the linker script places the section on a
/// page boundary instead, and asserts it.
#[repr(C)]
struct Page(UnsafeCell<[u8; 4096]>);

// SAFETY: Rust code never reads or writes the page; only Xen writes it (once, when the
// MSR is written) and the CPU executes it.
unsafe impl Sync for Page {}

#[unsafe(link_section = ".xen_hypercall_page")]
static PAGE: Page = Page(UnsafeCell::new([0; 4096]));

/// Set once Xen has filled the page.
static READY: AtomicBool = AtomicBool::new(false);

/// Asks Xen to fill the hypercall page by writing its address to `msr`.
pub(super) fn install(msr: u32) {
    let page = PAGE.0.get() as u64;
    // SAFETY: `msr` is the MSR Xen's CPUID leaf named for this purpose; the write only
    // makes Xen fill `PAGE`, which Rust never reads and which is reserved for this.
    unsafe { Msr::new(msr).write(page) };
    READY.store(true, Ordering::Release);
}

/// Calls hypercall `number` with three arguments; `-ENOSYS` before `install`.
///
/// # Safety
/// Each argument Xen treats as an address must point to memory valid for what the
/// hypercall does with it (read or written), for the duration of the call.
unsafe fn call(number: u32, first: u64, second: u64, third: u64) -> i64 {
    let Some(offset) = abi::stub_offset(number) else {
        return -38;
    };
    if !READY.load(Ordering::Acquire) {
        return -38;
    }
    let stub = PAGE.0.get() as u64 + offset;
    let status: i64;
    // SAFETY: `stub` is inside the page Xen filled (`READY`); a stub preserves every
    // register but rax and the argument registers, which are declared clobbered. The
    // memory the arguments name is valid per the caller's contract.
    unsafe {
        asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rdi") first => _,
            inlateout("rsi") second => _,
            inlateout("rdx") third => _,
            lateout("r10") _,
            lateout("r8") _,
            lateout("rax") status,
        );
    }
    status
}

/// `console_io(CONSOLEIO_write)`: writes `bytes` to Xen's console.
pub(super) fn console_write(bytes: &[u8]) -> i64 {
    // SAFETY: Xen reads `bytes.len()` bytes at `bytes`, which the slice borrows.
    unsafe {
        call(
            op::CONSOLE_IO,
            abi::CONSOLEIO_WRITE,
            bytes.len() as u64,
            bytes.as_ptr() as u64,
        )
    }
}

/// `memory_op(XENMEM_memory_map)` into `buffer`: returns Xen's status and the entry count
/// it reported (unchecked: the caller bounds it).
pub(super) fn memory_map(buffer: &mut [u8]) -> (i64, u32) {
    let capacity = (buffer.len() / abi::E820_ENTRY_SIZE) as u32;
    let mut request = abi::MemoryMapRequest::new(buffer.as_mut_ptr() as u64, capacity);
    // SAFETY: Xen reads and writes `request` (borrowed here) and writes at most
    // `capacity` entries into `buffer` (borrowed mutably here); both are identity-mapped,
    // so their addresses are what Xen translates.
    let status = unsafe {
        call(
            op::MEMORY_OP,
            abi::XENMEM_MEMORY_MAP,
            &raw mut request as u64,
            0,
        )
    };
    (status, request.nr_entries)
}

/// `sched_op(SCHEDOP_shutdown)`: stops this domain. Returns only if Xen refused.
pub(super) fn shutdown(reason: abi::ShutdownReason) -> i64 {
    let request = abi::ShutdownRequest {
        reason: reason as u32,
    };
    // SAFETY: Xen reads the request, which lives on this stack for the call.
    unsafe {
        call(
            op::SCHED_OP,
            abi::SCHEDOP_SHUTDOWN,
            &raw const request as u64,
            0,
        )
    }
}
