//! Network configuration: DHCP or a static address, and the socket buffer sizes.
//!
//! [`Config::from_cmdline`] reads the kernel command line's `ip=`, `gw=` and `dns=`
//! keys, so the same image runs under QEMU's user networking (DHCP) or with a fixed
//! address on Firecracker without a rebuild.

use alloc::string::{String, ToString};
use core::fmt;
use core::net::Ipv4Addr;

use torito_executor::Duration;

pub use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// The command-line keys [`Config::from_cmdline`] reads, for a kernel that warns about
/// keys nobody knows.
pub const CONFIG_KEYS: &[&str] = &["ip", "gw", "dns", "dhcp.timeout"];

/// Everything [`new`](crate::new) needs to know besides the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// How the interface gets its IPv4 address.
    pub ipv4: Ipv4Config,
    /// Buffer sizes, reserve and timeouts of each TCP connection.
    pub tcp: TcpConfig,
    /// With DHCP: how long [`Stack::configured`](crate::Stack::configured) waits for
    /// an answer before it fails (`None`: for ever, warning now and then). The
    /// `dhcp.timeout=SECONDS` key.
    pub dhcp_timeout: Option<Duration>,
}

/// How the interface gets its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ipv4Config {
    /// Ask a DHCP server; [`Stack::wait_config_up`](crate::Stack::wait_config_up)
    /// resolves once it answered.
    #[default]
    Dhcp,
    /// A fixed address.
    Static(StaticConfig),
}

/// A fixed IPv4 configuration (also what DHCP produces, see
/// [`Stack::ipv4_config`](crate::Stack::ipv4_config)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticConfig {
    /// The interface's address and the prefix length of its subnet.
    pub address: Ipv4Cidr,
    /// The default route, if any: without one only the subnet is reachable.
    pub gateway: Option<Ipv4Address>,
    /// The DNS server, kept for applications (the stack does not resolve names).
    pub dns: Option<Ipv4Address>,
}

/// Buffer sizes of each TCP connection, allocated when its listening socket is created
/// (or at `connect`) and freed when the connection is reaped, plus the memory kept for
/// the task that will serve it and the connection's timeouts.
///
/// The default (8 KiB each way) makes a connection cost about 17 KiB with smoltcp's
/// socket state, so 50 connections take about 850 KiB: they fit in a 4 MiB guest next
/// to the kernel. The kernel uses [`TcpConfig::for_memory`], which keeps that in small
/// guests and gives larger guests larger windows (up to 64 KiB), which bulk transfers
/// need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Receive buffer in bytes: the largest window offered to the peer.
    pub rx_buffer: usize,
    /// Transmit buffer in bytes: data written but not yet acknowledged.
    pub tx_buffer: usize,
    /// Heap kept, per incoming connection, from its SYN until `accept` hands it out,
    /// for the task that will serve it ([`TcpConfig::RESERVE`] by default; a listener
    /// can ask for more with `TcpListener::set_reserve`). Reserved, not merely checked:
    /// a burst of handshakes that complete before the accept loop runs cannot take the
    /// memory their own tasks will need.
    pub reserve: usize,
    /// Timeouts of each connection.
    pub timeouts: TcpTimeouts,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            rx_buffer: TcpConfig::MIN_BUFFER,
            tx_buffer: TcpConfig::MIN_BUFFER,
            reserve: TcpConfig::RESERVE,
            timeouts: TcpTimeouts::default(),
        }
    }
}

/// How long a connection may wait on its peer, at each stage. The stack enforces
/// these itself, so a peer that vanishes, stalls or floods holds a socket (and the
/// task serving it) for a bounded time only, whatever the application does.
///
/// Defaults: [`TcpTimeouts::default`]. Per listener: `TcpListener::set_timeouts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTimeouts {
    /// A half-open connection (our SYN-ACK sent, the peer's final ACK not come) is
    /// dropped after this, and makes room in the backlog. (When the backlog is full
    /// of half-open connections, the oldest also gives way to a new SYN at once, so a
    /// SYN flood cannot lock out a real client.)
    pub handshake: Duration,
    /// Keep-alive probes after this much silence (`None`: no probes). On by default:
    /// without them a peer that vanished without a FIN or RST is never noticed.
    pub keep_alive: Option<Duration>,
    /// A connection that heard nothing from its peer for this long (keep-alive
    /// probes and retransmissions unanswered) is aborted: a dead peer.
    pub dead_peer: Duration,
    /// Waits of a stream's `read`, `write`, `flush` and `close` end with
    /// `Error::TimedOut` after this (`None`: no limit). The stream's initial
    /// `set_timeout`: an application's idle timeout.
    pub idle: Option<Duration>,
    /// A connection with data queued of which the peer acknowledged nothing for this
    /// long (a zero window, or a reader that stopped reading while it still answers
    /// probes) is aborted (`None`: never).
    pub zero_window: Option<Duration>,
    /// A closed or dropped connection gets this long to finish its graceful close
    /// (deliver its data, exchange FINs), then it is reset and freed.
    pub close: Duration,
}

impl Default for TcpTimeouts {
    /// Handshake 10 s, keep-alive after 30 s of silence, dead peer after 90 s without
    /// a word, no idle limit, zero window 60 s, close 30 s.
    fn default() -> Self {
        TcpTimeouts {
            handshake: Duration::from_secs(10),
            keep_alive: Some(Duration::from_secs(30)),
            dead_peer: Duration::from_secs(90),
            idle: None,
            zero_window: Some(Duration::from_secs(60)),
            close: Duration::from_secs(30),
        }
    }
}

impl TcpConfig {
    /// The smallest buffer [`for_memory`](Self::for_memory) gives (and the default).
    pub const MIN_BUFFER: usize = 8 * 1024;
    /// The largest buffer [`for_memory`](Self::for_memory) gives.
    pub const MAX_BUFFER: usize = 64 * 1024;
    /// The default [`reserve`](Self::reserve): room for an async task serving the
    /// connection (the echo example's takes 2.5 KiB) and its first allocations.
    pub const RESERVE: usize = 8 * 1024;

    /// Buffers in proportion to the memory there is, as Linux sizes its socket buffers
    /// by RAM: each buffer is 1/1024 of `memory` (bytes of heap), rounded down to a power
    /// of two and kept between [`MIN_BUFFER`](Self::MIN_BUFFER) and
    /// [`MAX_BUFFER`](Self::MAX_BUFFER). So a connection costs at most 1/512 of the heap
    /// plus smoltcp's state, and a small guest keeps the default.
    ///
    /// Why it matters: the receive buffer is the window the peer may send into, and the
    /// transmit buffer what may be in flight unacknowledged. With 8 KiB (five and a half
    /// full segments) a bulk transfer through QEMU's user networking stalls on every
    /// window (the peer waits for our ACK, the echo waits for the peer's) and runs at
    /// about two thirds of the speed it reaches with 32 KiB or more (bench/net).
    ///
    /// # Examples
    ///
    /// ```
    /// use torito_netstack::TcpConfig;
    ///
    /// assert_eq!(TcpConfig::for_memory(2 << 20), TcpConfig::default());
    /// assert_eq!(TcpConfig::for_memory(24 << 20).rx_buffer, 16 * 1024);
    /// assert_eq!(TcpConfig::for_memory(120 << 20).tx_buffer, 64 * 1024);
    /// ```
    pub fn for_memory(memory: usize) -> TcpConfig {
        let share = memory / 1024;
        let buffer = match share.checked_ilog2() {
            Some(log) => 1 << log,
            None => 0,
        }
        .clamp(Self::MIN_BUFFER, Self::MAX_BUFFER);
        TcpConfig {
            rx_buffer: buffer,
            tx_buffer: buffer,
            ..TcpConfig::default()
        }
    }
}

/// A network setting on the command line has a value the stack cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key (`ip`, `gw` or `dns`).
    pub key: &'static str,
    /// The value as given.
    pub value: String,
    /// What the key accepts.
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad network setting {}={}: expected {}; fix the kernel command line",
            self.key, self.value, self.expected
        )
    }
}

impl core::error::Error for ConfigError {}

const EXPECTED_IP: &str = "`dhcp` or ADDRESS/PREFIX such as 10.0.2.15/24 (the prefix is required)";
const EXPECTED_ADDRESS: &str = "an IPv4 address such as 10.0.2.2";
const EXPECTED_STATIC: &str = "no value with ip=dhcp (DHCP supplies it); give ip=ADDRESS/PREFIX";
const EXPECTED_SECONDS: &str = "a whole number of seconds, 1 or more, with ip=dhcp";

impl Config {
    /// Reads `ip=`, `gw=`, `dns=` and `dhcp.timeout=` through `keys` (the value of a
    /// command-line key, if present), with the default [`TcpConfig`].
    ///
    /// - `ip=dhcp`, or no `ip` at all: DHCP. `gw` and `dns` must then be absent;
    ///   `dhcp.timeout=SECONDS` bounds the wait for a DHCP server.
    /// - `ip=ADDRESS/PREFIX` (prefix 0 to 32, required: a guessed netmask would silently
    ///   misroute), optionally with `gw=ADDRESS` and `dns=ADDRESS`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad key, its value and what it accepts.
    ///
    /// # Examples
    ///
    /// ```
    /// use torito_netstack::{Config, Ipv4Config};
    ///
    /// let cmdline = [("ip", "10.0.2.15/24"), ("gw", "10.0.2.2")];
    /// let config = Config::from_cmdline(|key| {
    ///     cmdline.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    /// })
    /// .unwrap();
    /// let Ipv4Config::Static(fixed) = config.ipv4 else { panic!() };
    /// assert_eq!(fixed.address.prefix_len(), 24);
    ///
    /// let error = Config::from_cmdline(|key| (key == "ip").then_some("10.0.2.15")).unwrap_err();
    /// assert!(error.to_string().contains("ip=10.0.2.15"));
    /// ```
    pub fn from_cmdline<'c>(keys: impl Fn(&str) -> Option<&'c str>) -> Result<Config, ConfigError> {
        let error = |key, value: &str, expected| ConfigError {
            key,
            value: value.to_string(),
            expected,
        };
        let address = |key: &'static str| -> Result<Option<Ipv4Address>, ConfigError> {
            keys(key)
                .map(|value| {
                    parse_address(value).ok_or_else(|| error(key, value, EXPECTED_ADDRESS))
                })
                .transpose()
        };
        let ipv4 = match keys("ip") {
            None | Some("dhcp") => {
                for key in ["gw", "dns"] {
                    if let Some(value) = keys(key) {
                        return Err(error(key, value, EXPECTED_STATIC));
                    }
                }
                Ipv4Config::Dhcp
            }
            Some(value) => Ipv4Config::Static(StaticConfig {
                address: parse_cidr(value).ok_or_else(|| error("ip", value, EXPECTED_IP))?,
                gateway: address("gw")?,
                dns: address("dns")?,
            }),
        };
        let dhcp_timeout = match keys("dhcp.timeout") {
            None => None,
            Some(value) => {
                let seconds = value.parse::<u64>().ok().filter(|&seconds| seconds > 0);
                match (seconds, ipv4) {
                    (Some(seconds), Ipv4Config::Dhcp) => Some(Duration::from_secs(seconds)),
                    _ => return Err(error("dhcp.timeout", value, EXPECTED_SECONDS)),
                }
            }
        };
        Ok(Config {
            ipv4,
            tcp: TcpConfig::default(),
            dhcp_timeout,
        })
    }
}

/// A unicast IPv4 address (not 0.0.0.0, broadcast or multicast).
fn parse_address(text: &str) -> Option<Ipv4Address> {
    let address: Ipv4Addr = text.parse().ok()?;
    let unicast = !address.is_unspecified() && !address.is_broadcast() && !address.is_multicast();
    unicast.then_some(address)
}

fn parse_cidr(text: &str) -> Option<Ipv4Cidr> {
    let (address, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    Some(Ipv4Cidr::new(parse_address(address)?, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &'static str)]) -> Result<Config, ConfigError> {
        Config::from_cmdline(|key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
    }

    #[test]
    fn dhcp_is_the_default() {
        assert_eq!(parse(&[]).unwrap().ipv4, Ipv4Config::Dhcp);
        assert_eq!(parse(&[("ip", "dhcp")]).unwrap().ipv4, Ipv4Config::Dhcp);
        assert_eq!(parse(&[]).unwrap().tcp, TcpConfig::default());
        assert_eq!(parse(&[]).unwrap().dhcp_timeout, None);
        assert_eq!(
            parse(&[("dhcp.timeout", "45")]).unwrap().dhcp_timeout,
            Some(Duration::from_secs(45))
        );
    }

    #[test]
    fn static_address_gateway_and_dns() {
        let config = parse(&[
            ("ip", "10.0.2.15/24"),
            ("gw", "10.0.2.2"),
            ("dns", "10.0.2.3"),
        ]);
        assert_eq!(
            config.unwrap().ipv4,
            Ipv4Config::Static(StaticConfig {
                address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
                gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
                dns: Some(Ipv4Address::new(10, 0, 2, 3)),
            })
        );
        let bare = parse(&[("ip", "192.168.1.9/32")]).unwrap();
        let Ipv4Config::Static(bare) = bare.ipv4 else {
            panic!("expected static")
        };
        assert_eq!((bare.gateway, bare.dns), (None, None));
    }

    #[test]
    fn buffers_grow_with_memory_within_bounds() {
        let memories: [usize; 9] = [
            0,
            1 << 20,
            8 << 20,
            12 << 20,
            16 << 20,
            32 << 20,
            64 << 20,
            1 << 30,
            usize::MAX,
        ];
        let sizes = memories.map(|memory| TcpConfig::for_memory(memory).rx_buffer);
        let k = 1024;
        assert_eq!(
            sizes,
            [
                8 * k,
                8 * k,
                8 * k,
                8 * k,
                16 * k,
                32 * k,
                64 * k,
                64 * k,
                64 * k
            ]
        );
        let config = TcpConfig::for_memory(48 << 20);
        assert_eq!((config.rx_buffer, config.tx_buffer), (32 * k, 32 * k));
    }

    #[test]
    fn bad_values_name_key_value_and_expectation() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static str,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                &[("ip", "300.1.1.1/24")],
                "ip=300.1.1.1/24",
                "ADDRESS/PREFIX",
            ),
            (&[("ip", "10.0.0.2")], "ip=10.0.0.2", "prefix is required"),
            (&[("ip", "10.0.0.2/33")], "ip=10.0.0.2/33", "ADDRESS/PREFIX"),
            (&[("ip", "0.0.0.0/0")], "ip=0.0.0.0/0", "ADDRESS/PREFIX"),
            (&[("ip", "DHCP")], "ip=DHCP", "`dhcp`"),
            (
                &[("ip", "10.0.0.2/24"), ("gw", "foo")],
                "gw=foo",
                "IPv4 address",
            ),
            (
                &[("ip", "10.0.0.2/24"), ("dns", "1.2.3")],
                "dns=1.2.3",
                "IPv4 address",
            ),
            (&[("gw", "10.0.0.1")], "gw=10.0.0.1", "ip=dhcp"),
            (&[("dhcp.timeout", "soon")], "dhcp.timeout=soon", "seconds"),
            (&[("dhcp.timeout", "0")], "dhcp.timeout=0", "seconds"),
            (
                &[("ip", "10.0.0.2/24"), ("dhcp.timeout", "5")],
                "dhcp.timeout=5",
                "with ip=dhcp",
            ),
        ];
        for (pairs, shown, expected) in cases {
            let text = parse(pairs).unwrap_err().to_string();
            assert!(text.contains(shown), "{text:?} lacks {shown:?}");
            assert!(text.contains(expected), "{text:?} lacks {expected:?}");
        }
    }
}
