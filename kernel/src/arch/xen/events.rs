//! Event channels as interrupt sources: the shared info page, one upcall vector, and a
//! waker per port.
//!
//! At start the kernel places Xen's shared info page on a frame of its own
//! (`XENMEM_add_to_physmap`) and asks for upcalls as a local-APIC vector on vCPU 0
//! (`HVMOP_set_evtchn_upcall_vector`; `HVM_PARAM_CALLBACK_IRQ` of the vector type when
//! Xen lacks it). Every port is bound to vCPU 0 (Xen's default), so vCPU 0 takes every
//! upcall. The handler only acknowledges and wakes: `torito_boot::xen::events::scan`
//! clears the upcall flag, takes the selector and clears each pending port's bit; the
//! handler wakes the `AtomicWaker` of each port, and the local APIC gets its EOI from
//! the dispatcher. Drivers re-check their rings when woken.

use super::Error;
use super::hypercall;
use super::shared::{Page, SharedInfo};
use core::sync::atomic::{AtomicU64, Ordering};
use futures_util::task::AtomicWaker;
use torito_boot::xen::{self as abi, MapSpace, Param};

/// Ports with a waker; an event on a higher port is counted and dropped (a domU's ports
/// are numbered from 1 as it binds them: a few per device).
pub const MAX_PORTS: usize = 128;

static SHARED_INFO: spin::Once<SharedInfo> = spin::Once::new();
static WAKERS: [AtomicWaker; MAX_PORTS] = [const { AtomicWaker::new() }; MAX_PORTS];
/// Upcalls taken, and events on ports without a waker.
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static STRAY: AtomicU64 = AtomicU64::new(0);

/// How upcalls reach this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `HVMOP_set_evtchn_upcall_vector` for vCPU 0 (EOI'd at the local APIC).
    PerVcpuVector,
    /// `HVM_PARAM_CALLBACK_IRQ` with the vector type (older Xen).
    CallbackVector,
}

impl Delivery {
    /// The name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::PerVcpuVector => "HVMOP_set_evtchn_upcall_vector",
            Self::CallbackVector => "HVM_PARAM_CALLBACK_IRQ",
        }
    }
}

/// The upcall handler: acknowledge (the scan clears the flags and bits) and wake.
fn upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    let Some(shared) = SHARED_INFO.get() else {
        return;
    };
    let vcpu = crate::arch::percpu::current();
    if vcpu >= abi::events::SHARED_VCPUS {
        return;
    }
    abi::events::scan(shared, vcpu, |port| match WAKERS.get(port as usize) {
        Some(waker) => waker.wake(),
        None => {
            STRAY.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Maps the shared info page and asks for upcalls on `vector` (the dispatcher must route
/// `vector` to this module: `init` registers it). Boot only, with interrupts off, after
/// the local APIC is up.
///
/// # Errors
/// When no frame is left for the page, the vector is taken, or Xen refuses both ways of
/// delivering upcalls.
pub fn init(vector: u8) -> Result<Delivery, Error> {
    let frame = crate::arch::paging::allocate_frames(1).ok_or(Error::NoFrame("shared info"))?;
    Error::check(
        "XENMEM_add_to_physmap(shared info)",
        hypercall::add_to_physmap(MapSpace::SharedInfo, 0, frame >> 12),
    )?;
    // SAFETY: the frame came from the frame allocator (nobody else owns it), is RAM the
    // kernel's tables identity-map read-write, and from now on holds Xen's shared info,
    // accessed only through `Page`.
    let page = unsafe { Page::new(frame) };
    SHARED_INFO.call_once(|| SharedInfo(page));
    crate::arch::interrupts::register(vector, upcall).map_err(Error::VectorTaken)?;
    if hypercall::set_upcall_vector(0, vector) == 0 {
        return Ok(Delivery::PerVcpuVector);
    }
    Error::check(
        Param::CallbackIrq.name(),
        hypercall::set_param(Param::CallbackIrq, abi::callback_vector(vector)),
    )?;
    Ok(Delivery::CallbackVector)
}

/// Whether `init` succeeded.
pub fn ready() -> bool {
    SHARED_INFO.is_completed()
}

/// A port's waker, and the port unmasked so that its events raise upcalls; `None` for a
/// port past [`MAX_PORTS`] or before `init`.
pub fn bind(port: u32) -> Option<&'static AtomicWaker> {
    if !ready() {
        return None;
    }
    let waker = WAKERS.get(port as usize)?;
    if hypercall::unmask(port) != 0 {
        log::warn!("xen: cannot unmask event channel {}", port);
    }
    Some(waker)
}

/// Signals the other end of `port` (`EVTCHNOP_send`). A failure (a closed port) is
/// logged: the driver then waits for an answer that will not come, as on a dead device.
pub fn notify(port: u32) {
    let status = hypercall::send(port);
    if status != 0 {
        log::warn!("xen: EVTCHNOP_send on port {} failed: {}", port, status);
    }
}

/// A new port that domain `remote` may bind (a frontend's port for its backend).
///
/// # Errors
/// Xen's refusal.
pub fn alloc_unbound(remote: u16) -> Result<u32, Error> {
    let (status, port) = hypercall::alloc_unbound(remote);
    Error::check("EVTCHNOP_alloc_unbound", status)?;
    Ok(port)
}

/// Checks that an event reaches this kernel's handler: a port pair looped back to this
/// domain, one event sent, interrupts on for at most `spins` spins until it arrives.
/// Boot only, interrupts off. Returns whether the event arrived.
pub fn loop_back(spins: u64) -> Result<bool, Error> {
    let here = alloc_unbound(abi::DOMID_SELF)?;
    let (status, there) = hypercall::bind_interdomain(abi::DOMID_SELF, here);
    Error::check("EVTCHNOP_bind_interdomain", status)?;
    let before = UPCALLS.load(Ordering::Relaxed);
    let Some(waker) = bind(here) else {
        return Ok(false);
    };
    let _ = waker; // woken by the upcall; the count below is what the check reads
    notify(there);
    let mut waited = 0;
    x86_64::instructions::interrupts::enable();
    while UPCALLS.load(Ordering::Relaxed) == before && waited < spins {
        waited += 1;
        core::hint::spin_loop();
    }
    x86_64::instructions::interrupts::disable();
    let arrived = UPCALLS.load(Ordering::Relaxed) != before;
    hypercall::close(there);
    hypercall::close(here);
    Ok(arrived)
}

/// Upcalls taken since boot, and events dropped for lack of a waker.
pub fn counts() -> (u64, u64) {
    (
        UPCALLS.load(Ordering::Relaxed),
        STRAY.load(Ordering::Relaxed),
    )
}
