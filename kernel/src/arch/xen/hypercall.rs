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
use torito_boot::xen::{self as abi, events, op};
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

/// `memory_op(XENMEM_add_to_physmap)`: page `idx` of `space` appears at guest frame
/// `gpfn`, replacing whatever was there (the caller owns that frame).
pub(super) fn add_to_physmap(space: abi::MapSpace, idx: u64, gpfn: u64) -> i64 {
    let request = abi::AddToPhysmap::new(space, idx, gpfn);
    // SAFETY: Xen reads `request`, borrowed here. It changes what guest frame `gpfn`
    // holds, which is not a memory access of this call; the caller owns that frame.
    unsafe {
        call(
            op::MEMORY_OP,
            abi::XENMEM_ADD_TO_PHYSMAP,
            &raw const request as u64,
            0,
        )
    }
}

/// `hvm_op(HVMOP_get_param)`: Xen's status and the parameter's value.
pub(super) fn get_param(param: abi::Param) -> (i64, u64) {
    let mut request = abi::HvmParam::new(param, 0);
    // SAFETY: Xen reads and writes `request`, borrowed here for the call.
    let status = unsafe { call(op::HVM_OP, abi::HVMOP_GET_PARAM, &raw mut request as u64, 0) };
    (status, request.value)
}

/// `hvm_op(HVMOP_set_param)`.
pub(super) fn set_param(param: abi::Param, value: u64) -> i64 {
    let request = abi::HvmParam::new(param, value);
    // SAFETY: Xen reads `request`, borrowed here for the call.
    unsafe {
        call(
            op::HVM_OP,
            abi::HVMOP_SET_PARAM,
            &raw const request as u64,
            0,
        )
    }
}

/// `hvm_op(HVMOP_set_evtchn_upcall_vector)`: upcalls for `vcpu` arrive as `vector`.
pub(super) fn set_upcall_vector(vcpu: u32, vector: u8) -> i64 {
    let request = abi::UpcallVector { vcpu, vector };
    // SAFETY: Xen reads `request`, borrowed here for the call.
    unsafe {
        call(
            op::HVM_OP,
            abi::HVMOP_SET_EVTCHN_UPCALL_VECTOR,
            &raw const request as u64,
            0,
        )
    }
}

/// `event_channel_op(command)` on an argument Xen reads and may write back.
///
/// # Safety
/// `T` must be the `repr(C)` structure `command` takes (Xen reads and writes that many
/// bytes at `argument`).
unsafe fn event_channel<T>(command: u64, argument: &mut T) -> i64 {
    // SAFETY: `argument` is borrowed mutably for the call, and is as large as what Xen
    // accesses (the caller's contract).
    unsafe { call(op::EVENT_CHANNEL_OP, command, argument as *mut T as u64, 0) }
}

/// `EVTCHNOP_send`: signals the other end of `port`.
pub(super) fn send(port: u32) -> i64 {
    // SAFETY: `EVTCHNOP_send` takes a `struct evtchn_send`: one port.
    unsafe { event_channel(events::EVTCHNOP_SEND, &mut events::PortArgument { port }) }
}

/// `EVTCHNOP_unmask`: lets `port`'s events raise upcalls (and delivers one pending).
pub(super) fn unmask(port: u32) -> i64 {
    // SAFETY: `EVTCHNOP_unmask` takes a `struct evtchn_unmask`: one port.
    unsafe { event_channel(events::EVTCHNOP_UNMASK, &mut events::PortArgument { port }) }
}

/// `EVTCHNOP_close`.
pub(super) fn close(port: u32) -> i64 {
    // SAFETY: `EVTCHNOP_close` takes a `struct evtchn_close`: one port.
    unsafe { event_channel(events::EVTCHNOP_CLOSE, &mut events::PortArgument { port }) }
}

/// `EVTCHNOP_alloc_unbound`: a new port that domain `remote` may bind; status and port.
pub(super) fn alloc_unbound(remote: u16) -> (i64, u32) {
    let mut request = events::AllocUnbound {
        dom: abi::DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    // SAFETY: `AllocUnbound` is `struct evtchn_alloc_unbound` (host-tested layout).
    let status = unsafe { event_channel(events::EVTCHNOP_ALLOC_UNBOUND, &mut request) };
    (status, request.port)
}

/// `EVTCHNOP_bind_interdomain`: a local port joined to `remote_port` of `remote`.
pub(super) fn bind_interdomain(remote: u16, remote_port: u32) -> (i64, u32) {
    let mut request = events::BindInterdomain {
        remote_dom: remote,
        pad: 0,
        remote_port,
        local_port: 0,
    };
    // SAFETY: `BindInterdomain` is `struct evtchn_bind_interdomain` (host-tested layout).
    let status = unsafe { event_channel(events::EVTCHNOP_BIND_INTERDOMAIN, &mut request) };
    (status, request.local_port)
}

/// `grant_table_op(GNTTABOP_query_size)` for this domain: Xen's status and the reply.
pub(super) fn query_grant_frames() -> (i64, abi::QuerySize) {
    let mut request = abi::QuerySize::new();
    // SAFETY: Xen reads and writes one `struct gnttab_query_size` (the count is 1),
    // borrowed here for the call.
    let status = unsafe {
        call(
            op::GRANT_TABLE_OP,
            abi::GNTTABOP_QUERY_SIZE,
            &raw mut request as u64,
            1,
        )
    };
    (status, request)
}
