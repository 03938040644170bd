//! The shared stack state, the [`Stack`] handle sockets use, and the [`Runner`] task
//! that polls smoltcp.
//!
//! All state lives in one `spin::Mutex<Inner>` behind an `Arc`. Socket methods lock it
//! for a few smoltcp calls and release it before returning `Pending`; no lock is ever
//! held across an `.await`. The runner holds it for one interface poll.

use crate::sockets::Sockets;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::convert::Infallible;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Poll, Waker};

use smoltcp::iface::{self, Interface, PollIngressSingleResult, PollResult, SocketHandle};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};
use torito_executor::{Duration, Executor, Instant, sleep_until};

use crate::config::{Config, Ipv4Config, StaticConfig, TcpConfig};
use crate::counters::{CounterCells, Counters};
use crate::device::Phy;
use crate::driver::Driver;
use crate::error::Error;
use crate::tcp::Listener;
use crate::timer::Timers;

/// Frames received per [`Runner::poll`] before the runner yields to other tasks.
const RX_BUDGET: usize = 64;

/// How long a dropped [`TcpStream`](crate::TcpStream) may take to finish its graceful
/// close (deliver its data, exchange FINs) before it is aborted with a reset. Bounds the
/// memory a peer that never closes its side can pin.
pub const CLOSE_LINGER: Duration = Duration::from_secs(30);

/// First port of the ephemeral range used by `connect`.
const EPHEMERAL_FIRST: u16 = 49152;

/// A cheap-to-clone handle to the network stack, used to create sockets.
///
/// Every clone refers to the same interface; the [`Runner`] made with it does the work.
#[derive(Clone)]
pub struct Stack {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub inner: spin::Mutex<Inner>,
    pub counters: Arc<CounterCells>,
}

/// A dropped connection waiting for its graceful close to finish.
pub(crate) struct Closing {
    pub handle: SocketHandle,
    /// Abort at this time; armed by the runner at the first poll after the drop.
    pub deadline: Option<Instant>,
}

pub(crate) struct Inner {
    pub iface: Interface,
    pub sockets: Sockets,
    pub tcp: TcpConfig,
    /// The IP MTU of the device.
    pub mtu: usize,
    /// The runner's waker: socket operations wake it when they change socket state.
    runner: Option<Waker>,
    dhcp: Option<SocketHandle>,
    ipv4: Option<StaticConfig>,
    config_waiters: Vec<Waker>,
    pub listeners: Vec<Option<Listener>>,
    pub closing: Vec<Closing>,
    pub timers: Timers,
    next_port: u16,
}

impl Inner {
    /// Asks the runner for a poll: socket state changed.
    pub fn wake_runner(&self) {
        if let Some(waker) = &self.runner {
            waker.wake_by_ref();
        }
    }

    /// A free local port for `connect`, from the ephemeral range.
    pub fn ephemeral_port(&mut self) -> Result<u16, Error> {
        let span = u16::MAX - EPHEMERAL_FIRST + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = EPHEMERAL_FIRST + (port - EPHEMERAL_FIRST + 1) % span;
            let in_use = self.sockets.iter().any(|(_, socket)| match socket {
                smoltcp::socket::Socket::Tcp(tcp) => {
                    tcp.local_endpoint().is_some_and(|local| local.port == port)
                        || tcp.listen_endpoint().port == port
                }
                _ => false,
            });
            if !in_use {
                return Ok(port);
            }
        }
        Err(Error::NoFreePort)
    }

    /// Applies an IPv4 configuration (or removes it) and wakes `wait_config_up`.
    fn apply_ipv4(&mut self, config: Option<StaticConfig>) {
        self.iface.update_ip_addrs(|addresses| {
            addresses.clear();
            if let Some(config) = config {
                // One address: fits any `iface-max-addr-count`.
                let _ = addresses.push(IpCidr::Ipv4(config.address));
            }
        });
        let routes = self.iface.routes_mut();
        match config.and_then(|config| config.gateway) {
            // The route table holds at least the default route.
            Some(gateway) => drop(routes.add_default_ipv4_route(gateway)),
            None => drop(routes.remove_default_ipv4_route()),
        }
        self.ipv4 = config;
        if config.is_some() {
            self.config_waiters.drain(..).for_each(Waker::wake);
        }
    }

    /// Takes a DHCP event, if any, into the interface configuration.
    fn update_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let config = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
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
                "net: DHCP: ip={} gw={} dns={}",
                config.address,
                Shown(config.gateway),
                Shown(config.dns)
            ),
            // smoltcp reports Deconfigured once at start, before any lease: only a lost
            // lease deserves a warning.
            None if self.ipv4.is_some() => {
                log::warn!("net: DHCP lease lost; waiting for a new one")
            }
            None => {}
        }
        self.apply_ipv4(config);
    }

    /// Reaps dropped connections that finished closing; aborts those past their linger
    /// deadline. Returns the earliest deadline still pending.
    fn reap(&mut self, now: Instant, counters: &CounterCells) -> Option<Instant> {
        let Inner {
            closing, sockets, ..
        } = self;
        let mut next = None;
        closing.retain_mut(|closing| {
            let socket = sockets.get_mut::<tcp::Socket>(closing.handle);
            let state = socket.state();
            let deadline = *closing.deadline.get_or_insert(now + CLOSE_LINGER);
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
    let span = u64::from(u16::MAX - EPHEMERAL_FIRST) + 1;
    let mut inner = Inner {
        iface,
        sockets,
        tcp: config.tcp,
        mtu,
        runner: None,
        dhcp,
        ipv4: None,
        config_waiters: Vec::new(),
        listeners: Vec::new(),
        closing: Vec::new(),
        timers: Timers::default(),
        // `seed % span` < 16384, so the sum fits in a u16.
        next_port: EPHEMERAL_FIRST + (seed % span) as u16,
    };
    if let Ipv4Config::Static(fixed) = config.ipv4 {
        inner.apply_ipv4(Some(fixed));
        log::info!(
            "net: static ip={} gw={} dns={}",
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

impl Stack {
    pub(crate) fn lock(&self) -> spin::MutexGuard<'_, Inner> {
        self.shared.inner.lock()
    }

    pub(crate) fn counter_cells(&self) -> &CounterCells {
        &self.shared.counters
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// The interface's IPv4 configuration, once it has an address.
    pub fn ipv4_config(&self) -> Option<StaticConfig> {
        self.lock().ipv4
    }

    /// Resolves once the interface has an IPv4 address (at once for a static
    /// configuration, after the DHCP answer otherwise), with that configuration.
    pub async fn wait_config_up(&self) -> StaticConfig {
        poll_fn(|cx| {
            let mut inner = self.lock();
            if let Some(config) = inner.ipv4 {
                return Poll::Ready(config);
            }
            if !inner.config_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                inner.config_waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// How many smoltcp sockets exist (listening, connected, closing, UDP, DHCP): for
    /// diagnostics and leak tests. It returns to its earlier value once connections
    /// are closed and reaped.
    pub fn socket_count(&self) -> usize {
        self.lock().sockets.iter().count()
    }
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
    /// smoltcp's next deadline (retransmission, delayed ACK, DHCP renewal) or a socket
    /// timeout comes due. It never wakes itself while nothing changed; after a burst of
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
    /// connections, fires socket timeouts, and flushes the driver (one device
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
        crate::tcp::refresh_listeners(inner, &mut phy.refusing);

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
                break false;
            }
            received += 1;
            // A SYN may just have taken the listening socket: replace it before the
            // next frame, which may be another SYN.
            crate::tcp::refresh_listeners(inner, &mut phy.refusing);
        };

        inner.update_dhcp();
        while inner
            .iface
            .poll_egress(timestamp, phy, inner.sockets.for_poll())
            != PollResult::None
        {}
        crate::tcp::refresh_listeners(inner, &mut phy.refusing);
        let reap = inner.reap(now, counters);
        let timers = inner.timers.fire(now);
        phy.driver.flush();

        let smoltcp = inner
            .iface
            .poll_at(timestamp, &inner.sockets)
            .map(from_smoltcp)
            .filter(|&at| !(phy.tx_blocked && at <= now));
        let again = more.then_some(now);
        earliest(earliest(smoltcp, reap), earliest(timers, again))
    }
}

// Compile-time check: the runner's future can be spawned on any core.
#[allow(dead_code)]
fn assert_send<D: Driver>(runner: Runner<D>) -> impl Send {
    runner.run()
}

/// The largest UDP payload a frame can carry on a device with IP MTU `mtu`.
pub(crate) fn udp_payload_max(mtu: usize) -> usize {
    // IPv4 header (20) and UDP header (8); no fragmentation.
    mtu.saturating_sub(28)
}
