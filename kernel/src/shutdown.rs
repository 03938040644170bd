//! Stopping cleanly: a future that resolves when the platform asks the VM to stop.
//!
//! Sources: the ACPI power button (QEMU's `system_powerdown`: the fixed PM1 event on q35
//! and pc, the Generic Event Device on microvm; Cloud Hypervisor's GED), Ctrl+Alt+Del
//! on an i8042 keyboard (Firecracker's `SendCtrlAltDel`, QEMU's `send-key`) and, on a Xen
//! domU, the toolstack's `control/shutdown` in xenstore (`xl shutdown`, `xl reboot`).
//! docs/services.md ("Stopping cleanly") lists which machine sends what.
//!
//! ```ignore
//! // Stop accepting when asked; connections in flight finish on their own tasks.
//! while let Some(accepted) = torito::until_shutdown(listener.accept()).await {
//!     ...
//! }
//! ```
//!
//! Promises:
//!
//! * any number of tasks, on any cores, may await [`shutdown()`] at once; every one
//!   resolves on the first request, and a future made after it resolves at once;
//! * [`shutdown_requested()`] is one atomic load;
//! * until some task calls [`shutdown()`], a request powers the VM off at once with exit
//!   status 0, as a machine without an operating system's help would; from the first
//!   call on, stopping is the application's job (return from `main`, or
//!   [`crate::exit`]);
//! * a second request while the first is being handled powers off at once with status
//!   0: the way out of a service that does not stop.
//!
//! The interrupt handlers (`arch::power`) record the source and wake one watcher task
//! on core 0, which decides, wakes the waiting tasks (taking a lock no handler takes) and
//! logs `shutdown: requested by ...`.

use crate::power_events::Source;
use crate::stop_signal::{StopSignal, Wait};
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};

/// Raised by the watcher on the first request.
static SIGNAL: StopSignal = StopSignal::new();
/// Whether a task ever called `shutdown()` (it then owns stopping).
static LISTENED: AtomicBool = AtomicBool::new(false);

/// Whether the platform has asked the VM to stop.
pub fn shutdown_requested() -> bool {
    SIGNAL.is_raised()
}

/// A future that resolves when the platform asks the VM to stop (at once if it already
/// did). Calling it tells the kernel that the application stops by itself: the power
/// button no longer powers off by itself (see the module's docs).
pub fn shutdown() -> Shutdown {
    LISTENED.store(true, Ordering::Release);
    // On a Xen domU, from now on `xl shutdown` is heard (xenstore, started here so that
    // an application that never listens carries none of it).
    crate::xen::arm_shutdown();
    Shutdown(SIGNAL.wait())
}

/// Runs `future` until it completes (`Some` of its output) or the platform asks the VM
/// to stop (`None`; `future` is dropped unfinished). `future` is polled first: work that
/// is ready when the request arrives (a connection to accept, bytes to read) still
/// completes. Like [`shutdown()`], it tells the kernel that the application stops by
/// itself.
///
/// # Examples
///
/// ```ignore
/// // An accept loop that stops accepting when asked.
/// while let Some(accepted) = torito::until_shutdown(listener.accept()).await {
///     let stream = accepted?;
///     torito::task::spawn(serve(stream)).detach();
/// }
/// ```
pub async fn until_shutdown<F: Future>(future: F) -> Option<F::Output> {
    let mut stop = core::pin::pin!(shutdown());
    let mut future = core::pin::pin!(future);
    core::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        stop.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// What [`shutdown()`] returns.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Shutdown(Wait);

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// Arms the machine's sources and, if there are any, starts the watcher on this core
/// (core 0, before `main`). Only the first call counts.
pub(crate) fn start() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    // A Xen domU's source (xenstore's `control/shutdown`) is armed by the first
    // `shutdown()` or the network's start (`crate::xen::arm_shutdown`).
    let xen = if crate::xen::is_domu() {
        Source::Xen.bit()
    } else {
        0
    };
    let armed = crate::arch::power::init() | xen;
    if armed == 0 {
        log::debug!("shutdown: no stop request source on this machine");
        return;
    }
    crate::runtime::executor().spawn(watch()).detach();
}

/// Names the sources in `bits`.
fn names(bits: u8) -> impl core::fmt::Display {
    struct Names(u8);
    impl core::fmt::Display for Names {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let mut first = true;
            for source in Source::ALL
                .iter()
                .filter(|source| self.0 & source.bit() != 0)
            {
                if !first {
                    f.write_str(" and ")?;
                }
                f.write_str(source.name())?;
                first = false;
            }
            Ok(())
        }
    }
    Names(bits)
}

/// The watcher: waits for a request, then tells the waiting tasks, or powers off when no
/// task ever listened, or on a second request.
async fn watch() {
    loop {
        let sources = core::future::poll_fn(crate::arch::power::poll_requests).await;
        let (again, waiting) = SIGNAL.raise();
        if again {
            log::warn!(
                "shutdown: requested again by {}: powering off now",
                names(sources)
            );
            crate::runtime::exit(0);
        }
        if !LISTENED.load(Ordering::Acquire) {
            log::info!(
                "shutdown: requested by {}; no task awaits torito::shutdown(): powering off",
                names(sources)
            );
            crate::runtime::exit(0);
        }
        log::info!("shutdown: requested by {}", names(sources));
        for waker in waiting {
            waker.wake();
        }
    }
}
