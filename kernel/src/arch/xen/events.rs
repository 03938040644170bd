//! Event channels as interrupt sources: the shared info page, one upcall vector, and a
//! waker per port.
//!
//! They start on first use (the first [`Channel`]: a domU's xenstore, when the network
//! starts), so a boot that needs none pays for none: placing the shared info page and
//! the check below cost about 200 000 of Xen's instructions under QEMU's emulator, 40%
//! of what Xen spends on a dom0's way to `main`. At start the kernel places Xen's shared info page on a frame of its own
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
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use futures_util::task::AtomicWaker;
use torito_boot::xen::{self as abi, MapSpace, Param};

/// Ports that can be routed to a waker; an event on a higher port is counted and
/// dropped (a domU's ports are numbered from 1 as it binds them: a few per device).
pub const MAX_PORTS: usize = 256;
/// Wakers, one per [`Channel`] (a device or service: console, xenstore, a NIC).
pub const CHANNELS: usize = 16;

static SHARED_INFO: spin::Once<SharedInfo> = spin::Once::new();
/// How upcalls arrive, or why they do not (decided once, by the first `Channel::new`).
static STARTED: spin::Once<Result<Delivery, Error>> = spin::Once::new();
static WAKERS: [AtomicWaker; CHANNELS] = [const { AtomicWaker::new() }; CHANNELS];
/// Which channel each port wakes: 0 for none, else the channel's index + 1.
static ROUTES: [AtomicU8; MAX_PORTS] = [const { AtomicU8::new(0) }; MAX_PORTS];
static NEXT_CHANNEL: AtomicUsize = AtomicUsize::new(0);
/// A port whose events nobody waits for (the console's: its output is polled), masked
/// when event channels start; 0 for none.
static QUIET: AtomicU32 = AtomicU32::new(0);
/// Upcalls taken, and events on ports routed to no channel.
static UPCALLS: AtomicU64 = AtomicU64::new(0);
/// Events delivered to each channel (a NIC's are its interrupt count).
static EVENTS: [AtomicU64; CHANNELS] = [const { AtomicU64::new(0) }; CHANNELS];
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
        let channel = usize::from(route).wrapping_sub(1);
        match WAKERS.get(channel) {
            Some(waker) => {
                EVENTS[channel].fetch_add(1, Ordering::Relaxed);
                waker.wake();
            }
            None => {
                STRAY.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Starts event channels once (later calls return the first call's result): `init`,
/// then a looped-back event; when it does not arrive through the per-vCPU vector, the
/// callback parameter instead. Logs the outcome.
///
/// # Errors
/// As `init`; a `Hypercall` error when no looped-back event arrives either way.
pub fn start() -> Result<Delivery, Error> {
    *STARTED.call_once(|| {
        let started = start_and_check();
        match started {
            Ok(delivery) => log::debug!(
                "xen: event channels up, upcalls on vector {} through {}",
                crate::arch::vectors::XEN_UPCALL_VECTOR,
                delivery.name()
            ),
            Err(error) => log::error!("xen: no event channels: {}", error),
        }
        started
    })
}

fn start_and_check() -> Result<Delivery, Error> {
    /// Spins to wait for the looped-back event: far more than an upcall takes (the
    /// event is raised before the wait starts), bounded so a broken delivery costs a
    /// moment, not the boot.
    const SPINS: u64 = 1_000_000;
    let vector = crate::arch::vectors::XEN_UPCALL_VECTOR;
    let delivery = init(vector)?;
    if loop_back(SPINS)? {
        return Ok(delivery);
    }
    if delivery == Delivery::PerVcpuVector {
        Error::check(
            Param::CallbackIrq.name(),
            hypercall::set_param(Param::CallbackIrq, abi::callback_vector(vector)),
        )?;
        if loop_back(SPINS)? {
            return Ok(Delivery::CallbackVector);
        }
    }
    Err(Error::Hypercall {
        call: "delivering a looped-back event (no upcall arrived)",
        errno: 0,
    })
}

/// Maps the shared info page and asks for upcalls on `vector` (registered here with
/// the dispatcher). After the local APIC is up.
fn init(vector: u8) -> Result<Delivery, Error> {
    let frame = crate::arch::paging::allocate_frames(1).ok_or(Error::NoFrame("shared info"))?;
    Error::check(
        "XENMEM_add_to_physmap(shared info)",
        hypercall::add_to_physmap(MapSpace::SharedInfo, 0, frame >> 12),
    )?;
    // SAFETY: the frame came from the frame allocator (nobody else owns it), is RAM the
    // kernel's tables identity-map read-write, and from now on holds Xen's shared info,
    // accessed only through `Page`.
    let page = unsafe { Page::new(frame) };
    let shared = SHARED_INFO.call_once(|| SharedInfo(page));
    let quiet = QUIET.load(Ordering::Acquire);
    if quiet != 0 {
        shared.mask_port(quiet);
    }
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

/// One waker and the ports routed to it: what a driver is given to hear its events
/// (`torito_virtio::xen::EventChannel`).
#[derive(Debug)]
pub struct Channel {
    index: usize,
}

impl Channel {
    /// A channel of its own, event channels started first when this is the first;
    /// `None` off Xen, when event channels could not start (logged by [`start`]) or
    /// when all [`CHANNELS`] are taken.
    pub fn new() -> Option<Self> {
        if !super::present() || start().is_err() {
            return None;
        }
        let index = NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed);
        (index < CHANNELS).then_some(Self { index })
    }

    /// The waker the upcall wakes for this channel's ports.
    pub fn waker(&self) -> &'static AtomicWaker {
        &WAKERS[self.index]
    }

    /// Events delivered to this channel's ports since boot (one per port per upcall
    /// that found it pending).
    pub fn events(&self) -> &'static AtomicU64 {
        &EVENTS[self.index]
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

    /// Stops routing `port` here and closes it (`EVTCHNOP_close`); returns Xen's status.
    /// A port routed to another channel is left alone (`-EINVAL`).
    pub fn close(&self, port: u32) -> i64 {
        let Some(route) = ROUTES.get(port as usize) else {
            return -22;
        };
        let mine = self.index as u8 + 1;
        // Unrouted first: once closed, Xen may hand the port to another channel, whose
        // events must not wake this one. A last event of ours in between is counted stray.
        if route
            .compare_exchange(mine, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return -22;
        }
        let status = hypercall::close(port);
        if status != 0 {
            // Still open: still ours.
            route.store(mine, Ordering::Release);
        }
        status
    }
}

/// Keeps `port`'s events from raising upcalls: xenconsoled signals the console's port
/// each time it takes output, and the console polls instead (each upcall is a VM exit).
pub fn quiet(port: u32) {
    QUIET.store(port, Ordering::Release);
    if let Some(shared) = SHARED_INFO.get() {
        shared.mask_port(port);
    }
}

/// Signals the other end of `port` (`EVTCHNOP_send`); returns Xen's status. A failure
/// (a closed port) leaves the driver waiting for an answer that will not come, as a
/// dead device would.
pub fn notify(port: u32) -> i64 {
    hypercall::send(port)
}

/// Checks that an event reaches this kernel's handler: a port pair looped back to this
/// domain, one event sent, interrupts on for at most `spins` spins until it arrives
/// (then as they were). Returns whether the event arrived.
fn loop_back(spins: u64) -> Result<bool, Error> {
    let (status, here) = hypercall::alloc_unbound(abi::DOMID_SELF);
    Error::check("EVTCHNOP_alloc_unbound", status)?;
    let (status, there) = hypercall::bind_interdomain(abi::DOMID_SELF, here);
    Error::check("EVTCHNOP_bind_interdomain", status)?;
    Error::check("EVTCHNOP_unmask", hypercall::unmask(here))?;
    let before = UPCALLS.load(Ordering::Relaxed);
    Error::check("EVTCHNOP_send", notify(there))?;
    let mut waited = 0;
    let were_enabled = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::enable();
    while UPCALLS.load(Ordering::Relaxed) == before && waited < spins {
        waited += 1;
        core::hint::spin_loop();
    }
    if !were_enabled {
        x86_64::instructions::interrupts::disable();
    }
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
