//! The state the runner and the sockets share, and the [`Stack`] handle that reaches it.
//!
//! All state lives in one `spin::Mutex<Inner>` behind an `Arc`. Socket methods lock it
//! for a few smoltcp calls and release it before returning `Pending`; no lock is ever
//! held across an `.await`. The runner holds it for one interface poll.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use smoltcp::iface::{Interface, SocketHandle};
use smoltcp::wire::{IpCidr, Ipv4Cidr};
use torito_executor::{Duration, Instant};

use super::listeners::Listener;
use super::sockets::Sockets;
use crate::config::{StaticConfig, TcpConfig};
use crate::counters::{CounterCells, Counters};
use crate::error::Error;

/// How long [`Stack::configured`] waits for a DHCP answer before its first warning.
pub const DHCP_FIRST_WARNING: Duration = Duration::from_secs(5);
/// How often [`Stack::configured`] repeats the warning after that.
pub const DHCP_WARNING_EVERY: Duration = Duration::from_secs(30);

/// First port of the ephemeral range used by `connect`.
const EPHEMERAL_FIRST: u16 = 49152;

/// A cheap-to-clone handle to the network stack, used to create sockets.
///
/// Every clone refers to the same interface; the [`Runner`](crate::Runner) made with
/// it does the work.
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
    /// How long the close may take ([`TcpTimeouts::close`](crate::TcpTimeouts::close)).
    pub linger: Duration,
    /// Abort at this time; armed by the runner at the first poll after the drop.
    pub deadline: Option<Instant>,
}

/// A live stream's send progress, for the zero-window timeout: bytes ever written, and
/// how many of them the peer had acknowledged when last seen (`written` minus the send
/// queue), since when that has not moved.
pub(crate) struct Watch {
    pub handle: SocketHandle,
    pub zero_window: Option<Duration>,
    pub written: u64,
    pub acknowledged: u64,
    pub stalled_since: Option<Instant>,
}

pub(crate) struct Inner {
    pub iface: Interface,
    pub sockets: Sockets,
    pub tcp: TcpConfig,
    /// The IP MTU of the device.
    pub mtu: usize,
    /// The runner's waker: socket operations wake it when they change socket state.
    pub runner: Option<Waker>,
    /// The DHCP socket, with `ip=dhcp`.
    pub dhcp: Option<SocketHandle>,
    pub ipv4: Option<StaticConfig>,
    config_waiters: Vec<Waker>,
    pub listeners: Vec<Option<Listener>>,
    pub closing: Vec<Closing>,
    /// Live streams (accepted or connected, not dropped), for the zero-window timeout.
    pub streams: Vec<Watch>,
    /// How long [`Stack::configured`] waits for DHCP.
    pub dhcp_timeout: Option<Duration>,
    /// Which NIC this stack serves ([`Config::nic`](crate::Config::nic)), for its log
    /// lines.
    pub nic: usize,
    next_port: u16,
}

impl Inner {
    /// The state of a stack that has no address yet. `seed` picks the first ephemeral
    /// port.
    pub fn new(
        iface: Interface,
        sockets: Sockets,
        tcp: TcpConfig,
        mtu: usize,
        dhcp: Option<SocketHandle>,
        seed: u64,
    ) -> Self {
        let span = u64::from(u16::MAX - EPHEMERAL_FIRST) + 1;
        Inner {
            iface,
            sockets,
            tcp,
            mtu,
            runner: None,
            dhcp,
            ipv4: None,
            config_waiters: Vec::new(),
            listeners: Vec::new(),
            closing: Vec::new(),
            streams: Vec::new(),
            dhcp_timeout: None,
            nic: 0,
            // `seed % span` < 16384, so the sum fits in a u16.
            next_port: EPHEMERAL_FIRST + (seed % span) as u16,
        }
    }

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
    ///
    /// A gateway outside the address's subnet (a pod's `/32` with Calico's 169.254.1.1)
    /// makes the interface treat every address as on-link: see [`on_link_cidr`].
    pub fn apply_ipv4(&mut self, config: Option<StaticConfig>) {
        self.iface.update_ip_addrs(|addresses| {
            addresses.clear();
            if let Some(config) = config {
                // One address: fits any `iface-max-addr-count`.
                let _ = addresses.push(IpCidr::Ipv4(on_link_cidr(&config)));
            }
        });
        if let Some(config) = config
            && let Some(gateway) = config.gateway
            && on_link_cidr(&config) != config.address
        {
            log::info!(
                "net{}: gateway {} is outside {}: every address is treated as on-link \
                 (the node answers ARP for them, as Calico's proxy ARP does)",
                self.nic,
                gateway,
                config.address
            );
        }
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
}

impl Stack {
    pub(crate) fn lock(&self) -> spin::MutexGuard<'_, Inner> {
        self.shared.inner.lock()
    }

    pub(crate) fn counter_cells(&self) -> &CounterCells {
        &self.shared.counters
    }

    /// Which NIC this stack serves (0 is the first): [`Config::nic`](crate::Config::nic).
    pub fn nic(&self) -> usize {
        self.lock().nic
    }

    /// A snapshot of this stack's counters (each NIC's stack counts its own).
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

    /// Resolves once the interface has an IPv4 address, like
    /// [`wait_config_up`](Self::wait_config_up), but does not wait in silence: while
    /// DHCP gets no answer it logs a warning after [`DHCP_FIRST_WARNING`] that names the
    /// problem and the fix (a static `ip=`), repeated every [`DHCP_WARNING_EVERY`], and
    /// it gives up after the configured `dhcp.timeout` ([`Config::dhcp_timeout`]).
    ///
    /// [`Config::dhcp_timeout`]: crate::Config::dhcp_timeout
    ///
    /// # Errors
    ///
    /// [`Error::NoDhcpAnswer`] once the DHCP timeout passed without an address.
    ///
    /// # Panics
    ///
    /// If polled outside a torito executor task (it arms executor timers).
    pub async fn configured(&self) -> Result<StaticConfig, Error> {
        let (limit, nic) = {
            let inner = self.lock();
            (inner.dhcp_timeout, inner.nic)
        };
        let keys = crate::config::KeySuffix(nic);
        let mut waited = Duration::ZERO;
        let mut pause = DHCP_FIRST_WARNING;
        loop {
            let pause_now = match limit {
                Some(limit) => pause.min(limit.saturating_sub(waited)),
                None => pause,
            };
            if let Ok(config) = torito_executor::timeout(pause_now, self.wait_config_up()).await {
                return Ok(config);
            }
            waited += pause_now;
            if limit.is_some_and(|limit| waited >= limit) {
                let error = Error::NoDhcpAnswer {
                    waited_secs: waited.as_secs(),
                };
                log::error!("net{}: {}", nic, error);
                return Err(error);
            }
            log::warn!(
                "net{nic}: no answer from a DHCP server for {} s (ip{keys}=dhcp): is there one \
                 on this network? Without one, give a static address on the command line: \
                 ip{keys}=ADDRESS/PREFIX gw{keys}=GATEWAY (e.g. ip{keys}=10.0.2.15/24 \
                 gw{keys}=10.0.2.2); dhcp.timeout{keys}=SECONDS gives up waiting",
                waited.as_secs()
            );
            pause = DHCP_WARNING_EVERY;
        }
    }

    /// How many smoltcp sockets exist (listening, connected, closing, UDP, DHCP): for
    /// diagnostics and leak tests. It returns to its earlier value once connections
    /// are closed and reaped.
    pub fn socket_count(&self) -> usize {
        self.lock().sockets.iter().count()
    }

    /// Polls `op` under the lock until it is ready, or until `timeout` passed
    /// ([`Error::TimedOut`]). `op` registers the waker with smoltcp before it returns
    /// `Pending`.
    ///
    /// The timeout is an executor timer ([`torito_executor::timeout`]) of the task
    /// waiting, as every timer in Torito is: the runner keeps none of its own.
    ///
    /// # Panics
    ///
    /// With a `timeout`, if polled outside a torito executor task (as any executor
    /// timer).
    pub(crate) async fn wait<T>(
        &self,
        timeout: Option<Duration>,
        mut op: impl FnMut(&mut Inner, &Waker) -> Poll<Result<T, Error>>,
    ) -> Result<T, Error> {
        let ready = poll_fn(|cx| op(&mut self.lock(), cx.waker()));
        match timeout {
            None => ready.await,
            Some(limit) => torito_executor::timeout(limit, ready)
                .await
                .unwrap_or(Err(Error::TimedOut)),
        }
    }
}

/// The address and prefix smoltcp gets for `config`: the configured ones, except when
/// the gateway lies outside the subnet, where the prefix becomes 0 (every address
/// on-link; the configuration the application sees is unchanged).
///
/// Why: smoltcp 0.14 takes an ARP packet only from a sender inside the interface's
/// subnet (`process_arp`: "source IP address not in same network as us"), so on a `/32`
/// pod it would answer no one's ARP request (the node asks from its own address) and
/// never learn the gateway's MAC: the pod would be unreachable. Pod networks that hand
/// out a `/32` with an off-subnet gateway (Calico: 169.254.1.1; Cilium) answer ARP for
/// every address from the node's side of the veth (proxy ARP), with the MAC that also
/// answers for the gateway, so resolving each peer directly reaches the same next hop.
/// A network whose gateway alone answers ARP is not served by this (smoltcp cannot
/// hold a neighbour outside its subnet).
pub fn on_link_cidr(config: &StaticConfig) -> Ipv4Cidr {
    match config.gateway {
        Some(gateway) if !config.address.contains_addr(&gateway) => {
            Ipv4Cidr::new(config.address.address(), 0)
        }
        _ => config.address,
    }
}
