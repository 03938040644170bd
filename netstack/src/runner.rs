//! The [`Runner`]: the task that polls smoltcp, and [`new`], which makes it with its
//! [`Stack`].
//!
//! The runner sits above the shared state (`crate::state`), beside the sockets: both
//! change the state, neither imports the other. It holds the stack's lock for one
//! interface poll at a time.

use alloc::sync::Arc;
use core::convert::Infallible;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Poll, Waker};

use smoltcp::iface::{self, Interface, PollIngressSingleResult, PollResult};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress};
use torito_executor::{Duration, Executor, Instant, sleep_until};

use crate::config::{Config, Ipv4Config, StaticConfig};
use crate::counters::CounterCells;
use alloc::vec::Vec;

use crate::device::{Phy, Tuple};
use crate::driver::Driver;
use crate::state::shared::Shared;
use crate::state::sockets::Sockets;
use crate::state::{Inner, Stack, listeners};

/// Frames received per [`Runner::poll`] before the runner yields to other tasks.
const RX_BUDGET: usize = 64;

/// The default of [`TcpTimeouts::close`](crate::TcpTimeouts::close): how long a dropped
/// [`TcpStream`](crate::TcpStream) may take to finish its graceful close (deliver its
/// data, exchange FINs) before it is aborted with a reset. Bounds the memory a peer that
/// never closes its side can pin.
pub const CLOSE_LINGER: Duration = Duration::from_secs(30);

/// Takes a DHCP event, if any, into the interface configuration.
fn update_dhcp(inner: &mut Inner) {
    let Some(handle) = inner.dhcp else { return };
    let config = match inner.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
        None => return,
        Some(dhcpv4::Event::Configured(config)) => Some(StaticConfig {
            address: config.address,
            gateway: config.router,
            dns: config.dns_servers.first().copied(),
        }),
        Some(dhcpv4::Event::Deconfigured) => None,
    };
    match config {
        Some(config) => log::info!(
            "net{}: DHCP: ip={} gw={} dns={}",
            inner.nic,
            config.address,
            Shown(config.gateway),
            Shown(config.dns)
        ),
        // smoltcp reports Deconfigured once at start, before any lease: only a lost
        // lease deserves a warning.
        None if inner.ipv4.is_some() => {
            log::warn!("net{}: DHCP lease lost; waiting for a new one", inner.nic)
        }
        None => {}
    }
    inner.apply_ipv4(config);
}

/// Reaps dropped connections that finished closing; aborts those past their linger
/// deadline. Returns the earliest deadline still pending.
fn reap(inner: &mut Inner, now: Instant, counters: &CounterCells) -> Option<Instant> {
    let Inner {
        closing, sockets, ..
    } = inner;
    let mut next = None;
    closing.retain_mut(|closing| {
        let socket = sockets.get_mut::<tcp::Socket>(closing.handle);
        let state = socket.state();
        let deadline = *closing.deadline.get_or_insert(now + closing.linger);
        // A Closed socket that still has its peer owes it a reset (sent at egress).
        let done = state == tcp::State::TimeWait
            || (state == tcp::State::Closed && socket.remote_endpoint().is_none());
        if done || (state == tcp::State::Closed && now >= deadline) {
            sockets.remove(closing.handle);
            counters.connection_gone();
            return false;
        }
        if now >= deadline {
            // Sends a reset at the next egress; reaped after it.
            socket.abort();
        }
        next = earliest(next, Some(deadline));
        true
    });
    next
}

/// Aborts live streams whose peer acknowledged none of their queued data for their
/// zero-window timeout (a peer that keeps its window shut, or stops reading while it
/// still answers probes, would otherwise hold the socket and its task for ever).
/// Returns the earliest such deadline still pending.
fn watch_streams(inner: &mut Inner, now: Instant, counters: &CounterCells) -> Option<Instant> {
    let Inner {
        streams, sockets, ..
    } = inner;
    let mut next = None;
    for watch in streams.iter_mut() {
        let socket = sockets.get_mut::<tcp::Socket>(watch.handle);
        let queued = socket.send_queue() as u64;
        let acknowledged = watch.written.saturating_sub(queued);
        if queued == 0 || acknowledged != watch.acknowledged {
            // Progress (or nothing to send): the clock starts again.
            watch.acknowledged = acknowledged;
            watch.stalled_since = (queued != 0).then_some(now);
        } else if watch.stalled_since.is_none() {
            watch.stalled_since = Some(now);
        }
        let (Some(since), Some(limit)) = (watch.stalled_since, watch.zero_window) else {
            continue;
        };
        if socket.state() == tcp::State::Closed {
            watch.stalled_since = None;
        } else if now >= since + limit {
            socket.abort();
            counters
                .zero_window_aborted
                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            watch.stalled_since = None;
        } else {
            next = earliest(next, Some(since + limit));
        }
    }
    next
}

/// Lists the addresses and ports of every TCP connection (in `tuples`, for the device
/// adapter), so that a SYN carrying them is dropped before a listener makes a second
/// socket for them: smoltcp hands a segment to the first socket that accepts it, and a
/// listening socket earlier in the table than the connection would take the SYN, and
/// its SYN-ACK and resets would then break the real connection. Only needed while a
/// listener exists; without memory for the list, the check is skipped.
fn note_connections(inner: &Inner, tuples: &mut Vec<Tuple>) {
    tuples.clear();
    if inner.listeners.iter().flatten().next().is_none() {
        return;
    }
    for (_, socket) in inner.sockets.iter() {
        let smoltcp::socket::Socket::Tcp(socket) = socket else {
            continue;
        };
        let (Some(local), Some(remote)) = (socket.local_endpoint(), socket.remote_endpoint())
        else {
            continue;
        };
        let smoltcp::wire::IpAddress::Ipv4(address) = remote.addr;
        if tuples.try_reserve(1).is_err() {
            tuples.clear();
            return;
        }
        tuples.push(Tuple {
            remote: address.octets(),
            remote_port: remote.port,
            local_port: local.port,
        });
    }
}

/// When the oldest half-open connection's handshake times out.
fn handshakes_due(inner: &Inner) -> Option<Instant> {
    let mut next = None;
    for listener in inner.listeners.iter().flatten() {
        for pending in &listener.pending {
            if inner.sockets.get::<tcp::Socket>(pending.handle).state() == tcp::State::SynReceived {
                next = earliest(next, Some(pending.since + listener.timeouts.handshake));
            }
        }
    }
    next
}

/// Updates the listeners and what the device adapter checks SYNs against.
fn refresh(inner: &mut Inner, phy: &mut Phy<impl Driver>, now: Instant, counters: &CounterCells) {
    listeners::refresh(
        &mut inner.listeners,
        &mut inner.sockets,
        inner.tcp,
        &mut phy.refusing,
        now,
        counters,
    );
    note_connections(inner, &mut phy.connections);
}

/// Displays an optional address as the address or `none`.
struct Shown(Option<smoltcp::wire::Ipv4Address>);

impl core::fmt::Display for Shown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(address) => write!(f, "{address}"),
            None => write!(f, "none"),
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn to_smoltcp(at: Instant) -> SmolInstant {
    SmolInstant::from_micros(i64::try_from(at.as_nanos() / 1000).unwrap_or(i64::MAX))
}

fn from_smoltcp(at: SmolInstant) -> Instant {
    Instant::from_micros(u64::try_from(at.total_micros()).unwrap_or(0))
}

/// Creates a stack for `driver`: the [`Stack`] handle for sockets and the [`Runner`]
/// to spawn as a task (or to drive with [`Runner::poll`]).
///
/// `seed` seeds smoltcp's initial sequence numbers and the first ephemeral port: give
/// each boot a different one (e.g. from the TSC or RDRAND). `now` is the current time.
///
/// # Examples
///
/// ```ignore
/// let (stack, runner) = torito_netstack::new(virtio_net, config, seed, now);
/// executor.spawn(runner.run());
/// stack.wait_config_up().await;
/// ```
pub fn new<D: Driver>(driver: D, config: Config, seed: u64, now: Instant) -> (Stack, Runner<D>) {
    let counters = Arc::new(CounterCells::default());
    let mut phy = Phy::new(driver, Waker::noop().clone(), counters.clone());
    let mtu = phy.driver.mtu();
    let mut iface_config =
        iface::Config::new(HardwareAddress::Ethernet(EthernetAddress(phy.driver.mac())));
    iface_config.random_seed = seed;
    let iface = Interface::new(iface_config, &mut phy, to_smoltcp(now));
    let mut sockets = Sockets::new();
    let dhcp = match config.ipv4 {
        Ipv4Config::Dhcp => match sockets.add(dhcpv4::Socket::new()) {
            Ok(handle) => Some(handle),
            Err(_) => unreachable!("a new socket table has free slots"),
        },
        Ipv4Config::Static(_) => None,
    };
    let mut inner = Inner::new(iface, sockets, config.tcp, mtu, dhcp, seed);
    inner.dhcp_timeout = config.dhcp_timeout;
    inner.nic = config.nic;
    if let Ipv4Config::Static(fixed) = config.ipv4 {
        inner.apply_ipv4(Some(fixed));
        log::info!(
            "net{}: static ip={} gw={} dns={}",
            config.nic,
            fixed.address,
            Shown(fixed.gateway),
            Shown(fixed.dns)
        );
    }
    let shared = Arc::new(Shared {
        inner: spin::Mutex::new(inner),
        counters,
    });
    let runner = Runner {
        shared: shared.clone(),
        phy,
    };
    (Stack { shared }, runner)
}

/// The task that runs the stack: polls the smoltcp interface when the device, a socket
/// or a timer asks for it.
///
/// Spawn [`run`](Self::run) on a torito executor, or call [`poll`](Self::poll) by hand
/// with explicit time (host tests).
pub struct Runner<D> {
    shared: Arc<Shared>,
    phy: Phy<D>,
}

impl<D: Driver> Runner<D> {
    /// Runs the stack forever. Each poll of this future polls the interface once; then
    /// it sleeps until the driver wakes it (frame received, transmit descriptor freed),
    /// a socket operation wakes it (data queued or consumed, close, bind, ...), or
    /// smoltcp's next deadline (retransmission, delayed ACK, DHCP renewal) or a close
    /// linger comes due (armed as an executor timer: [`sleep_until`]). It never wakes itself while nothing changed; after a burst of
    /// frames it yields once to let other tasks run.
    ///
    /// # Panics
    ///
    /// If polled outside a torito executor task (it reads the executor's clock and
    /// arms its timers).
    pub async fn run(mut self) -> Infallible {
        let mut timer = sleep_until(Instant::MAX);
        poll_fn(move |cx| {
            let Some(executor) = Executor::from_waker(cx.waker()) else {
                panic!("Runner::run must be polled inside a torito executor task");
            };
            let now = executor.now();
            self.set_waker(cx.waker());
            match self.poll(now) {
                Some(at) if at <= now => cx.waker().wake_by_ref(),
                Some(at) => {
                    timer.reset(at);
                    if Pin::new(&mut timer).poll(cx).is_ready() {
                        cx.waker().wake_by_ref();
                    }
                }
                None => {}
            }
            Poll::<Infallible>::Pending
        })
        .await
    }

    /// Sets the waker handed to the driver and woken by socket operations: the
    /// waker of whatever drives [`poll`](Self::poll). [`run`](Self::run) sets it itself;
    /// until set, a no-op waker is used.
    pub fn set_waker(&mut self, waker: &Waker) {
        if !self.phy.waker.will_wake(waker) {
            self.phy.waker = waker.clone();
        }
    }

    /// Polls the interface once at time `now`: receives what the driver has (up to a
    /// budget), updates listeners and DHCP, sends what sockets queued, reaps closed
    /// connections, and flushes the driver (one device
    /// notification for everything queued in this poll).
    ///
    /// Returns when to poll again at the latest if nothing wakes the waker before
    /// (`None`: only a wake can make work). A deadline at or before `now` means more
    /// frames wait: poll again soon. While the driver has no free transmit descriptor,
    /// smoltcp's "send now" deadline is dropped: the driver's wake ends that wait.
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        let mut guard = self.shared.inner.lock();
        let inner = &mut *guard;
        let counters = &*self.shared.counters;
        if !inner
            .runner
            .as_ref()
            .is_some_and(|waker| waker.will_wake(&self.phy.waker))
        {
            inner.runner = Some(self.phy.waker.clone());
        }
        let timestamp = to_smoltcp(now);
        let phy = &mut self.phy;
        phy.tx_blocked = false;
        inner.iface.poll_maintenance(timestamp);
        refresh(inner, phy, now, counters);

        // `more`: the budget ran out with frames possibly left.
        let mut received = 0;
        let more = loop {
            if received == RX_BUDGET {
                break true;
            }
            let result = inner
                .iface
                .poll_ingress_single(timestamp, phy, inner.sockets.for_poll());
            if result == PollIngressSingleResult::None {
                // A SYN waits for a half-open connection to give way: make the room,
                // then it is handed over on the next round.
                if let Some(port) = phy.evict.take() {
                    listeners::evict_half_open(
                        &mut inner.listeners,
                        &mut inner.sockets,
                        port,
                        counters,
                    );
                    refresh(inner, phy, now, counters);
                    continue;
                }
                // The adapter dropped a frame (counted): there may be more.
                if core::mem::take(&mut phy.skipped) {
                    received += 1;
                    continue;
                }
                break false;
            }
            received += 1;
            // A SYN may just have taken the listening socket: replace it before the
            // next frame, which may be another SYN.
            refresh(inner, phy, now, counters);
        };

        update_dhcp(inner);
        while inner
            .iface
            .poll_egress(timestamp, phy, inner.sockets.for_poll())
            != PollResult::None
        {}
        refresh(inner, phy, now, counters);
        let stalled = earliest(watch_streams(inner, now, counters), handshakes_due(inner));
        let reap = earliest(reap(inner, now, counters), stalled);
        phy.driver.flush();

        let smoltcp = inner
            .iface
            .poll_at(timestamp, &inner.sockets)
            .map(from_smoltcp)
            .filter(|&at| !(phy.tx_blocked && at <= now));
        let again = more.then_some(now);
        earliest(earliest(smoltcp, reap), again)
    }
}

// Compile-time check: the runner's future can be spawned on any core.
#[allow(dead_code)]
fn assert_send<D: Driver>(runner: Runner<D>) -> impl Send {
    runner.run()
}
