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
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use futures_util::task::AtomicWaker;
use torito_boot::xen::{self as abi, MapSpace, Param};

/// Ports that can be routed to a waker; an event on a higher port is counted and
/// dropped (a domU's ports are numbered from 1 as it binds them: a few per device).
pub const MAX_PORTS: usize = 256;
/// Wakers, one per [`Channel`] (a device or service: console, xenstore, a NIC).
pub const CHANNELS: usize = 16;

static SHARED_INFO: spin::Once<SharedInfo> = spin::Once::new();
static WAKERS: [AtomicWaker; CHANNELS] = [const { AtomicWaker::new() }; CHANNELS];
/// Which channel each port wakes: 0 for none, else the channel's index + 1.
static ROUTES: [AtomicU8; MAX_PORTS] = [const { AtomicU8::new(0) }; MAX_PORTS];
static NEXT_CHANNEL: AtomicUsize = AtomicUsize::new(0);
/// Upcalls taken, and events on ports routed to no channel.
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
    abi::events::scan(shared, vcpu, |port| {
        let route = ROUTES
            .get(port as usize)
            .map_or(0, |route| route.load(Ordering::Acquire));
        match WAKERS.get(usize::from(route).wrapping_sub(1)) {
            Some(waker) => waker.wake(),
            None => {
                STRAY.fetch_add(1, Ordering::Relaxed);
            }
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

/// One waker and the ports routed to it: what a driver is given to hear its events
/// (`torito_virtio::xen::EventChannel`).
#[derive(Debug)]
pub struct Channel {
    index: usize,
}

impl Channel {
    /// A channel of its own; `None` when all [`CHANNELS`] are taken or before `init`.
    pub fn new() -> Option<Self> {
        if !ready() {
            return None;
        }
        let index = NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed);
        (index < CHANNELS).then_some(Self { index })
    }

    /// The waker the upcall wakes for this channel's ports.
    pub fn waker(&self) -> &'static AtomicWaker {
        &WAKERS[self.index]
    }

    /// Routes `port`'s events to this channel's waker and unmasks the port.
    ///
    /// # Errors
    /// `Param` for a port past [`MAX_PORTS`]; Xen's refusal to unmask it.
    pub fn bind(&self, port: u32) -> Result<(), Error> {
        let route = ROUTES.get(port as usize).ok_or(Error::Param {
            name: "event channel port",
            value: u64::from(port),
        })?;
        route.store(self.index as u8 + 1, Ordering::Release);
        Error::check("EVTCHNOP_unmask", hypercall::unmask(port)).map(|_| ())
    }

    /// A new port that domain `remote` may bind (a frontend's port for its backend),
    /// routed to this channel.
    ///
    /// # Errors
    /// Xen's refusal; `Param` for a port past [`MAX_PORTS`] (then closed again).
    pub fn alloc_unbound(&self, remote: u16) -> Result<u32, Error> {
        let (status, port) = hypercall::alloc_unbound(remote);
        Error::check("EVTCHNOP_alloc_unbound", status)?;
        if let Err(error) = self.bind(port) {
            hypercall::close(port);
            return Err(error);
        }
        Ok(port)
    }
}

/// Signals the other end of `port` (`EVTCHNOP_send`); returns Xen's status. A failure
/// (a closed port) leaves the driver waiting for an answer that will not come, as a
/// dead device would.
pub fn notify(port: u32) -> i64 {
    hypercall::send(port)
}

/// Checks that an event reaches this kernel's handler: a port pair looped back to this
/// domain, one event sent, interrupts on for at most `spins` spins until it arrives.
/// Boot only, interrupts off. Returns whether the event arrived.
pub fn loop_back(spins: u64) -> Result<bool, Error> {
    let (status, here) = hypercall::alloc_unbound(abi::DOMID_SELF);
    Error::check("EVTCHNOP_alloc_unbound", status)?;
    let (status, there) = hypercall::bind_interdomain(abi::DOMID_SELF, here);
    Error::check("EVTCHNOP_bind_interdomain", status)?;
    Error::check("EVTCHNOP_unmask", hypercall::unmask(here))?;
    let before = UPCALLS.load(Ordering::Relaxed);
    Error::check("EVTCHNOP_send", notify(there))?;
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

/// Upcalls taken since boot, and events dropped for lack of a channel.
pub fn counts() -> (u64, u64) {
    (
        UPCALLS.load(Ordering::Relaxed),
        STRAY.load(Ordering::Relaxed),
    )
}
