//! Network configuration: DHCP or a static address, and the socket buffer sizes.
//!
//! [`Config::from_cmdline`] reads the kernel command line's `ip=`, `gw=` and `dns=`
//! keys, so the same image runs under QEMU's user networking (DHCP) or with a fixed
//! address on Firecracker without a rebuild.
//!
//! It also reads them as orchestrators write them for Linux guests, so an image runs
//! under urunc (Kubernetes) or Nomad unchanged (docs/deploy.md):
//!
//! - Linux's `ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0:DNS1:NTP0`
//!   (urunc's `linux` type writes `ip=10.244.1.5::10.244.1.1:255.255.255.0:urunc:eth0:off`);
//!   trailing fields may be left out and any field may be empty;
//! - `gateway=` as another name for `gw=` (urunc's `hermit` and `mewz` types);
//! - `mtu=` to lower the device's MTU (a pod on an overlay network has 1450 or less);
//! - `TORITO_DNS=` and `TORITO_MTU=` as environment tokens, for `dns=` and `mtu=`: a
//!   Kubernetes pod spec can set environment variables but not the kernel's command line.
//!
//! A key given on its own (`gw=`, `gateway=`, `dns=`, `mtu=`) wins over the same setting
//! inside a Linux-style `ip=`; an empty `gw=`, `gateway=` or `dns=` means "none" (urunc
//! writes `gateway=` empty when the pod has no gateway).

use alloc::string::{String, ToString};
use core::fmt;
use core::net::Ipv4Addr;

use torito_executor::Duration;

pub use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// The command-line keys [`Config::from_cmdline`] reads, for a kernel that warns about
/// keys nobody knows.
pub const CONFIG_KEYS: &[&str] = &[
    "ip",
    "gw",
    "gateway",
    "dns",
    "mtu",
    "dhcp.timeout",
    "ip1",
    "gw1",
    "gateway1",
    "dns1",
    "mtu1",
    "dhcp.timeout1",
    "ip2",
    "gw2",
    "gateway2",
    "dns2",
    "mtu2",
    "dhcp.timeout2",
    "ip3",
    "gw3",
    "gateway3",
    "dns3",
    "mtu3",
    "dhcp.timeout3",
];

/// How many NICs the command line can configure ([`Config::for_nic`]): NIC 0 with `ip=`,
/// `gw=`, ..., NIC N with the same keys ending in N (`ip1=`, `gw1=`, ...).
pub const CONFIGURABLE_NICS: usize = NIC_KEYS.len();

/// What a NIC's keys end in, for hints: nothing for NIC 0 (`ip=`), the number
/// for the others (`ip1=`).
pub(crate) struct KeySuffix(pub usize);

impl fmt::Display for KeySuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            nic => write!(f, "{nic}"),
        }
    }
}

/// The names of one NIC's keys; `&'static` so that a [`ConfigError`] can name the key.
struct NicKeys {
    ip: &'static str,
    gw: &'static str,
    gateway: &'static str,
    dns: &'static str,
    mtu: &'static str,
    dhcp_timeout: &'static str,
    /// Whether the environment tokens `TORITO_DNS` and `TORITO_MTU` apply (NIC 0 only:
    /// they stand in for `dns=` and `mtu=` where a pod spec cannot set the command line).
    environment: bool,
}

/// Each NIC's keys, taken from [`CONFIG_KEYS`] (six a NIC, in [`NicKeys`]'s order).
const NIC_KEYS: [NicKeys; CONFIG_KEYS.len() / 6] = {
    let mut table = [const {
        NicKeys {
            ip: "",
            gw: "",
            gateway: "",
            dns: "",
            mtu: "",
            dhcp_timeout: "",
            environment: false,
        }
    }; CONFIG_KEYS.len() / 6];
    let mut nic = 0;
    while nic < table.len() {
        let keys = &CONFIG_KEYS;
        table[nic] = NicKeys {
            ip: keys[nic * 6],
            gw: keys[nic * 6 + 1],
            gateway: keys[nic * 6 + 2],
            dns: keys[nic * 6 + 3],
            mtu: keys[nic * 6 + 4],
            dhcp_timeout: keys[nic * 6 + 5],
            environment: nic == 0,
        };
        nic += 1;
    }
    table
};

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
    /// The IP MTU to use when it is below the device's (`mtu=BYTES`, or `TORITO_MTU`);
    /// `None`: the device's. The driver applies it: it bounds the frames sent and the
    /// TCP MSS offered, which is what keeps a pod on an overlay network from sending
    /// frames its path drops.
    pub mtu: Option<usize>,
    /// Which NIC this is (0 is the first): the stack's log lines say `net0:`, `net1:`,
    /// ..., and its hints name that NIC's keys (`ip1=` for NIC 1).
    pub nic: usize,
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

const EXPECTED_IP: &str = "`dhcp`, ADDRESS/PREFIX such as 10.0.2.15/24 (the prefix is \
     required), or Linux's CLIENT:SERVER:GATEWAY:NETMASK:... such as \
     10.0.2.15::10.0.2.2:255.255.255.0";
const EXPECTED_ADDRESS: &str = "an IPv4 address such as 10.0.2.2";
const EXPECTED_STATIC: &str =
    "no value with ip=dhcp (DHCP supplies it); give ip=ADDRESS/PREFIX (or a Linux-style ip=)";
const EXPECTED_SECONDS: &str = "a whole number of seconds, 1 or more, with ip=dhcp";
const EXPECTED_MTU: &str = "a whole number of bytes from 576 to 1500 (the IP MTU; it can only \
     lower the device's)";
const EXPECTED_SAME_GATEWAY: &str =
    "the same address as gw= (gateway= is another name for it): give one of them";
const EXPECTED_OFF: &str =
    "an address: ip=off/none leaves the interface without one; give ip=dhcp or a static address";

/// The smallest and largest `mtu=` accepted: 576 is the least every IPv4 host must
/// accept; 1500 is what the virtio-net receive buffers hold.
pub const MTU_RANGE: core::ops::RangeInclusive<usize> = 576..=1500;

/// The fields of a Linux-style `ip=` value, in order (Documentation/admin-guide/nfs/
/// nfsroot.rst in Linux). What each is for, here: CLIENT, GATEWAY, NETMASK, AUTOCONF and
/// DNS0/DNS1 are used; SERVER and NTP0 are checked (an address or empty) and unused;
/// HOSTNAME and DEVICE are names and ignored (the command line configures the first NIC).
const LINUX_FIELDS: [&str; 10] = [
    "CLIENT", "SERVER", "GATEWAY", "NETMASK", "HOSTNAME", "DEVICE", "AUTOCONF", "DNS0", "DNS1",
    "NTP0",
];

/// One message per Linux-style field that can be wrong, naming the field.
const EXPECTED_LINUX_ADDRESS: [&str; 10] = [
    "CLIENT (field 1 of ip=CLIENT:SERVER:GATEWAY:NETMASK:...) to be an IPv4 address or empty",
    "SERVER (field 2 of ip=CLIENT:SERVER:GATEWAY:NETMASK:...) to be an IPv4 address or empty",
    "GATEWAY (field 3 of ip=CLIENT:SERVER:GATEWAY:NETMASK:...) to be an IPv4 address or empty",
    "NETMASK (field 4 of ip=CLIENT:SERVER:GATEWAY:NETMASK:...) to be a netmask such as \
     255.255.255.0, a prefix length from 0 to 32, or empty",
    "",
    "",
    "AUTOCONF (field 7 of ip=...) to be off, none, dhcp, on, any or empty (Torito asks DHCP \
     only: no BOOTP or RARP)",
    "DNS0 (field 8 of ip=...) to be an IPv4 address or empty",
    "DNS1 (field 9 of ip=...) to be an IPv4 address or empty",
    "NTP0 (field 10 of ip=...) to be an IPv4 address or empty",
];
const EXPECTED_LINUX_FIELDS: &str =
    "at most 10 fields: ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0:DNS1:NTP0";
const EXPECTED_LINUX_STATIC: &str = "CLIENT and NETMASK (fields 1 and 4) for a static address, \
     as in ip=10.0.2.15::10.0.2.2:255.255.255.0 (or AUTOCONF dhcp)";
const EXPECTED_LINUX_DHCP: &str = "no CLIENT, GATEWAY or NETMASK with AUTOCONF dhcp (DHCP \
     supplies them)";

/// What a Linux-style `ip=` says.
struct LinuxIp {
    /// `None`: DHCP.
    address: Option<Ipv4Cidr>,
    gateway: Option<Ipv4Address>,
    dns: Option<Ipv4Address>,
}

/// Parses a Linux-style `ip=` value (one holding a `:`).
fn parse_linux_ip(key: &'static str, value: &str) -> Result<LinuxIp, ConfigError> {
    let error = |expected| ConfigError {
        key,
        value: value.to_string(),
        expected,
    };
    let mut fields = [""; 10];
    for (index, field) in value.split(':').enumerate() {
        *fields
            .get_mut(index)
            .ok_or_else(|| error(EXPECTED_LINUX_FIELDS))? = field;
    }
    // An address field: empty or a unicast address (0.0.0.0 reads as empty, as Linux
    // reads it).
    let address = |index: usize| -> Result<Option<Ipv4Address>, ConfigError> {
        match fields[index] {
            "" | "0.0.0.0" => Ok(None),
            text => parse_address(text)
                .map(Some)
                .ok_or_else(|| error(EXPECTED_LINUX_ADDRESS[index])),
        }
    };
    let client = address(0)?;
    address(1)?;
    let gateway = address(2)?;
    let prefix = match fields[3] {
        "" => None,
        text => Some(parse_netmask(text).ok_or_else(|| error(EXPECTED_LINUX_ADDRESS[3]))?),
    };
    let dhcp = match fields[6] {
        "" | "off" | "none" => false,
        "dhcp" | "on" | "any" | "both" => true,
        _ => return Err(error(EXPECTED_LINUX_ADDRESS[6])),
    };
    let dns = address(7)?.or(address(8)?);
    address(9)?;
    debug_assert_eq!(LINUX_FIELDS.len(), fields.len());
    let address = match (dhcp, client, prefix) {
        (true, None, None) if gateway.is_none() => None,
        (true, ..) => return Err(error(EXPECTED_LINUX_DHCP)),
        (false, Some(client), Some(prefix)) => Some(Ipv4Cidr::new(client, prefix)),
        (false, ..) => return Err(error(EXPECTED_LINUX_STATIC)),
    };
    Ok(LinuxIp {
        address,
        gateway,
        dns,
    })
}

/// A netmask (`255.255.255.0`, contiguous ones) or a prefix length (`24`) as a prefix
/// length.
fn parse_netmask(text: &str) -> Option<u8> {
    if !text.contains('.') {
        // Digits only (`parse` would take a leading `+`).
        let digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
        return digits
            .then(|| text.parse::<u8>().ok())
            .flatten()
            .filter(|&prefix| prefix <= 32);
    }
    let mask = u32::from(text.parse::<Ipv4Addr>().ok()?);
    let prefix = mask.leading_ones();
    // Contiguous: every one bit before every zero bit.
    (mask.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

impl Config {
    /// Reads `ip=`, `gw=` (or `gateway=`), `dns=`, `mtu=` and `dhcp.timeout=` through
    /// `keys` (the value of a command-line key, if present; environment tokens such as
    /// `TORITO_DNS` are asked for through it too), with the default [`TcpConfig`].
    ///
    /// - `ip=dhcp` (or Linux's `on`/`any`/`both`), or no `ip` at all: DHCP. `gw`,
    ///   `gateway` and `dns` must then be absent; `dhcp.timeout=SECONDS` bounds the wait
    ///   for a DHCP server.
    /// - `ip=ADDRESS/PREFIX` (prefix 0 to 32, required: a guessed netmask would silently
    ///   misroute), optionally with `gw=ADDRESS` and `dns=ADDRESS`.
    /// - A Linux-style `ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0:...`
    ///   (see the module docs): static with CLIENT and NETMASK, DHCP with AUTOCONF `dhcp`.
    /// - `ip=off` or `ip=none` (Linux: no address) is refused: a stack needs an address.
    /// - `mtu=BYTES` (576 to 1500), else `TORITO_MTU`; `dns=`, else `TORITO_DNS`.
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
        Config::for_nic(0, keys)
    }

    /// NIC `nic`'s configuration: for NIC 0 what [`from_cmdline`](Self::from_cmdline)
    /// reads; for NIC N (1 to [`CONFIGURABLE_NICS`] - 1) the same keys with N appended,
    /// read the same way and with the same errors: `ip1=`, `gw1=` (or `gateway1=`),
    /// `dns1=`, `mtu1=`, `dhcp.timeout1=`. A NIC without keys asks DHCP. The environment
    /// tokens (`TORITO_DNS`, `TORITO_MTU`) are NIC 0's alone. A NIC past the table asks
    /// DHCP (the kernel drives no more NICs than the table has).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad key (`ip1`, ...), its value and what it
    /// accepts.
    ///
    /// # Examples
    ///
    /// ```
    /// use torito_netstack::{Config, Ipv4Config};
    ///
    /// let cmdline = [("ip", "dhcp"), ("ip1", "10.0.3.15/24"), ("mtu1", "1400")];
    /// let keys = |key: &str| cmdline.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    /// assert_eq!(Config::for_nic(0, keys).unwrap().ipv4, Ipv4Config::Dhcp);
    /// let second = Config::for_nic(1, keys).unwrap();
    /// assert!(matches!(second.ipv4, Ipv4Config::Static(_)));
    /// assert_eq!((second.nic, second.mtu), (1, Some(1400)));
    ///
    /// let error = Config::for_nic(1, |key| (key == "ip1").then_some("10.0.3.300/24")).unwrap_err();
    /// assert_eq!(error.key, "ip1");
    /// ```
    pub fn for_nic<'c>(
        nic: usize,
        keys: impl Fn(&str) -> Option<&'c str>,
    ) -> Result<Config, ConfigError> {
        let Some(names) = NIC_KEYS.get(nic) else {
            return Ok(Config {
                nic,
                ..Config::default()
            });
        };
        // The environment tokens are NIC 0's only.
        let keys = |key: &str| match key {
            "TORITO_DNS" | "TORITO_MTU" if !names.environment => None,
            _ => keys(key),
        };
        let error = |key, value: &str, expected| ConfigError {
            key,
            value: value.to_string(),
            expected,
        };
        // A key given on its own; empty reads as absent (urunc writes `gateway=` empty).
        let given = |key: &str| keys(key).filter(|value| !value.is_empty());
        let address = |key: &'static str, value: Option<&str>| {
            value
                .map(|value| {
                    parse_address(value).ok_or_else(|| error(key, value, EXPECTED_ADDRESS))
                })
                .transpose()
        };
        let gw = address(names.gw, given(names.gw))?;
        let gateway = address(names.gateway, given(names.gateway))?;
        if let (Some(gw), Some(gateway)) = (gw, gateway)
            && gw != gateway
        {
            let value = keys(names.gateway).unwrap_or_default();
            return Err(error(names.gateway, value, EXPECTED_SAME_GATEWAY));
        }
        let gateway_key = gw.or(gateway);
        let dns_key = match given(names.dns) {
            Some(value) => address(names.dns, Some(value))?,
            None => address("TORITO_DNS", given("TORITO_DNS"))?,
        };
        // The first key that set each separately given setting, for the DHCP error.
        let separate = [names.gw, names.gateway, names.dns]
            .into_iter()
            .find_map(|key| given(key).map(|value| (key, value)));

        let ipv4 = match keys(names.ip) {
            None | Some("dhcp" | "on" | "any" | "both") => {
                if let Some((key, value)) = separate {
                    return Err(error(key, value, EXPECTED_STATIC));
                }
                Ipv4Config::Dhcp
            }
            Some(value @ ("off" | "none")) => return Err(error(names.ip, value, EXPECTED_OFF)),
            Some(value) if value.contains(':') => match parse_linux_ip(names.ip, value)? {
                LinuxIp { address: None, .. } => {
                    if let Some((key, value)) = separate {
                        return Err(error(key, value, EXPECTED_STATIC));
                    }
                    Ipv4Config::Dhcp
                }
                LinuxIp {
                    address: Some(address),
                    gateway,
                    dns,
                } => Ipv4Config::Static(StaticConfig {
                    address,
                    gateway: gateway_key.or(gateway),
                    dns: dns_key.or(dns),
                }),
            },
            Some(value) => Ipv4Config::Static(StaticConfig {
                address: parse_cidr(value).ok_or_else(|| error(names.ip, value, EXPECTED_IP))?,
                gateway: gateway_key,
                dns: dns_key,
            }),
        };
        let dhcp_timeout = match keys(names.dhcp_timeout) {
            None => None,
            Some(value) => {
                let seconds = value.parse::<u64>().ok().filter(|&seconds| seconds > 0);
                match (seconds, ipv4) {
                    (Some(seconds), Ipv4Config::Dhcp) => Some(Duration::from_secs(seconds)),
                    _ => return Err(error(names.dhcp_timeout, value, EXPECTED_SECONDS)),
                }
            }
        };
        let (mtu_key, mtu_value) = match keys(names.mtu) {
            Some(value) => (names.mtu, Some(value)),
            None => ("TORITO_MTU", keys("TORITO_MTU")),
        };
        let mtu = mtu_value
            .map(|value| {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|mtu| MTU_RANGE.contains(mtu))
                    .ok_or_else(|| error(mtu_key, value, EXPECTED_MTU))
            })
            .transpose()?;
        Ok(Config {
            ipv4,
            tcp: TcpConfig::default(),
            dhcp_timeout,
            mtu,
            nic,
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

    #[test]
    fn linux_style_ip_as_urunc_writes_it() {
        let static_of = |pairs: &[(&str, &'static str)]| match parse(pairs).unwrap().ipv4 {
            Ipv4Config::Static(fixed) => fixed,
            Ipv4Config::Dhcp => panic!("expected static for {pairs:?}"),
        };
        let address = Ipv4Address::new;
        // urunc's `linux` type on a Calico pod: a /32 and the link-local gateway.
        let pod = static_of(&[(
            "ip",
            "10.244.1.5::169.254.1.1:255.255.255.255:urunc:eth0:off",
        )]);
        assert_eq!(pod.address, Ipv4Cidr::new(address(10, 244, 1, 5), 32));
        assert_eq!(pod.gateway, Some(address(169, 254, 1, 1)));
        assert_eq!(pod.dns, None);
        // A /24 with a DNS server in field 8; fewer fields; a prefix length as netmask.
        let full = static_of(&[(
            "ip",
            "10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:host:eth0:off:10.0.2.3:1.1.1.1:",
        )]);
        assert_eq!(full.address.prefix_len(), 24);
        assert_eq!(full.dns, Some(address(10, 0, 2, 3)));
        let short = static_of(&[("ip", "10.0.2.15::10.0.2.2:255.255.0.0")]);
        assert_eq!(short.address.prefix_len(), 16);
        assert_eq!(short.gateway, Some(address(10, 0, 2, 2)));
        let prefix = static_of(&[("ip", "10.0.2.15:::24")]);
        assert_eq!((prefix.address.prefix_len(), prefix.gateway), (24, None));
        // DNS1 stands in for an empty DNS0; separate keys win over the fields.
        let second = static_of(&[("ip", "10.0.2.15:::24:::::1.1.1.1")]);
        assert_eq!(second.dns, Some(address(1, 1, 1, 1)));
        let keys = static_of(&[
            ("ip", "10.0.2.15::10.0.2.2:24::::10.0.2.3"),
            ("gateway", "10.0.2.1"),
            ("dns", "9.9.9.9"),
        ]);
        assert_eq!(keys.gateway, Some(address(10, 0, 2, 1)));
        assert_eq!(keys.dns, Some(address(9, 9, 9, 9)));
        // AUTOCONF dhcp and its Linux synonyms: DHCP.
        for value in [
            ":::::eth0:dhcp",
            "::::::on",
            "::::::any",
            "dhcp",
            "on",
            "any",
        ] {
            assert_eq!(
                parse(&[("ip", value)]).unwrap().ipv4,
                Ipv4Config::Dhcp,
                "{value}"
            );
        }
    }

    #[test]
    fn hermit_and_mewz_style_gateway_key() {
        let config = parse(&[("ip", "10.244.1.5/24"), ("gateway", "10.244.1.1")]).unwrap();
        let Ipv4Config::Static(fixed) = config.ipv4 else {
            panic!("expected static")
        };
        assert_eq!(fixed.gateway, Some(Ipv4Address::new(10, 244, 1, 1)));
        // Both names, one address: fine. An empty gateway= is none (mewz writes it).
        assert!(
            parse(&[
                ("ip", "10.0.0.2/24"),
                ("gw", "10.0.0.1"),
                ("gateway", "10.0.0.1")
            ])
            .is_ok()
        );
        let empty = parse(&[("ip", "10.0.0.2/24"), ("gateway", "")]).unwrap();
        let Ipv4Config::Static(empty) = empty.ipv4 else {
            panic!("expected static")
        };
        assert_eq!(empty.gateway, None);
    }

    #[test]
    fn mtu_and_dns_from_keys_or_environment_tokens() {
        assert_eq!(parse(&[]).unwrap().mtu, None);
        assert_eq!(parse(&[("mtu", "1450")]).unwrap().mtu, Some(1450));
        assert_eq!(parse(&[("TORITO_MTU", "1400")]).unwrap().mtu, Some(1400));
        assert_eq!(
            parse(&[("mtu", "1450"), ("TORITO_MTU", "1400")])
                .unwrap()
                .mtu,
            Some(1450),
            "the key wins over the environment token"
        );
        let dns = |pairs: &[(&str, &'static str)]| match parse(pairs).unwrap().ipv4 {
            Ipv4Config::Static(fixed) => fixed.dns,
            Ipv4Config::Dhcp => panic!("expected static"),
        };
        let ip = ("ip", "10.0.0.2/24");
        assert_eq!(
            dns(&[ip, ("TORITO_DNS", "10.96.0.10")]),
            Some(Ipv4Address::new(10, 96, 0, 10))
        );
        assert_eq!(
            dns(&[ip, ("dns", "1.1.1.1"), ("TORITO_DNS", "10.96.0.10")]),
            Some(Ipv4Address::new(1, 1, 1, 1))
        );
    }

    #[test]
    fn hostile_orchestrator_values_are_refused_with_the_field_named() {
        type Case = (&'static str, &'static str, &'static str);
        // (key, value, what the message must name)
        let cases: &[Case] = &[
            ("ip", "10.0.0.2::10.0.0.1:255.0.255.0", "NETMASK"),
            ("ip", "10.0.0.2::10.0.0.1:255.255.255.0.0", "NETMASK"),
            ("ip", "10.0.0.2::10.0.0.1:33", "NETMASK"),
            ("ip", "10.0.0.2::10.0.0.1:-1", "NETMASK"),
            ("ip", "10.0.0.2::gw:255.255.255.0", "GATEWAY"),
            ("ip", "10.0.0.2::224.0.0.1:24", "GATEWAY"),
            ("ip", "10.0.0.256:::24", "CLIENT"),
            ("ip", "255.255.255.255:::24", "CLIENT"),
            ("ip", "10.0.0.2:x::24", "SERVER"),
            ("ip", "10.0.0.2:::24:::bootp", "AUTOCONF"),
            ("ip", "10.0.0.2:::24:::off:dns", "DNS0"),
            ("ip", "10.0.0.2:::24:::off::dns", "DNS1"),
            ("ip", "10.0.0.2:::24:::off:::ntp", "NTP0"),
            ("ip", "10.0.0.2:::24:::off::::extra", "at most 10 fields"),
            ("ip", "10.0.0.2::10.0.0.1", "CLIENT and NETMASK"),
            ("ip", "::10.0.0.1:24", "CLIENT and NETMASK"),
            ("ip", ":", "CLIENT and NETMASK"),
            ("ip", "10.0.0.2:::24:::dhcp", "AUTOCONF dhcp"),
            ("ip", "off", "ip=dhcp"),
            ("ip", "none", "ip=dhcp"),
            ("ip", "/24", "ADDRESS/PREFIX"),
            ("mtu", "9000", "576 to 1500"),
            ("mtu", "100", "576 to 1500"),
            ("mtu", "", "576 to 1500"),
            ("mtu", "1450b", "576 to 1500"),
            ("TORITO_MTU", "big", "576 to 1500"),
            ("gateway", "10.0.0.300", "IPv4 address"),
            ("TORITO_DNS", "dns.example", "IPv4 address"),
        ];
        for &(key, value, named) in cases {
            let mut pairs = vec![(key, value)];
            if key != "ip" {
                pairs.push(("ip", "10.0.0.2/24"));
            }
            let text = match parse(&pairs) {
                Err(error) => error.to_string(),
                Ok(config) => panic!("{key}={value} accepted: {config:?}"),
            };
            assert!(text.contains(&format!("{key}={value}")), "{text:?}");
            assert!(text.contains(named), "{text:?} lacks {named:?}");
        }
        // Two names that disagree; a gateway key with DHCP.
        let text = parse(&[
            ("ip", "10.0.0.2/24"),
            ("gw", "10.0.0.1"),
            ("gateway", "10.0.0.9"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("gateway=10.0.0.9") && text.contains("gw="),
            "{text}"
        );
        let text = parse(&[("gateway", "10.0.0.1")]).unwrap_err().to_string();
        assert!(
            text.contains("gateway=10.0.0.1") && text.contains("ip=dhcp"),
            "{text}"
        );
    }

    #[test]
    fn netmasks() {
        assert_eq!(parse_netmask("255.255.255.255"), Some(32));
        assert_eq!(parse_netmask("255.255.255.0"), Some(24));
        assert_eq!(parse_netmask("255.255.240.0"), Some(20));
        assert_eq!(parse_netmask("128.0.0.0"), Some(1));
        assert_eq!(parse_netmask("0.0.0.0"), Some(0));
        assert_eq!(parse_netmask("0"), Some(0));
        assert_eq!(parse_netmask("32"), Some(32));
        for bad in [
            "255.0.255.0",
            "0.0.0.1",
            "255.255.255.254.0",
            "33",
            "",
            "+24",
            "x",
        ] {
            assert_eq!(parse_netmask(bad), None, "{bad}");
        }
    }

    /// Seeded fuzzing: any `ip=`, `gw=`, `gateway=`, `dns=` and `mtu=` text built from
    /// the characters that matter gives a configuration or an error naming a key, never
    /// a panic; an accepted static address keeps its prefix within 0..=32.
    #[test]
    fn network_keys_never_panic() {
        let alphabet = b"0123456789.:/dhcpnofaxy-+ ";
        let mut state = 0x5eed_0010_u64;
        let mut next = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        let text = |next: &mut dyn FnMut(usize) -> usize| -> &'static str {
            let len = next(40);
            let bytes: String = (0..len)
                .map(|_| alphabet[next(alphabet.len())] as char)
                .collect();
            Box::leak(bytes.into_boxed_str())
        };
        for _ in 0..4000 {
            let pairs = [
                ("ip", text(&mut next)),
                ("gw", text(&mut next)),
                ("gateway", text(&mut next)),
                ("dns", text(&mut next)),
                ("mtu", text(&mut next)),
            ];
            let count = next(pairs.len() + 1);
            match parse(&pairs[..count]) {
                Ok(config) => {
                    if let Ipv4Config::Static(fixed) = config.ipv4 {
                        assert!(fixed.address.prefix_len() <= 32);
                    }
                    assert!(config.mtu.is_none_or(|mtu| MTU_RANGE.contains(&mtu)));
                }
                Err(error) => {
                    assert!(CONFIG_KEYS.contains(&error.key) || error.key.starts_with("TORITO_"))
                }
            }
        }
    }

    fn parse_nic(nic: usize, pairs: &[(&str, &'static str)]) -> Result<Config, ConfigError> {
        Config::for_nic(nic, |key| {
            pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        })
    }

    /// NIC 1's keys mirror NIC 0's: static (both forms), gateway, DNS, MTU, DHCP with a
    /// timeout; each NIC reads only its own keys, and NIC 0 reads exactly what it did.
    #[test]
    fn second_nic_keys_mirror_the_first() {
        let line = [
            ("ip", "dhcp"),
            ("dhcp.timeout", "30"),
            ("ip1", "10.0.3.15/24"),
            ("gw1", "10.0.3.2"),
            ("dns1", "10.0.3.3"),
            ("mtu1", "1400"),
        ];
        let first = parse_nic(0, &line).unwrap();
        assert_eq!(first, parse(&line).unwrap());
        assert_eq!(first.ipv4, Ipv4Config::Dhcp);
        assert_eq!((first.nic, first.mtu), (0, None));
        assert_eq!(first.dhcp_timeout, Some(Duration::from_secs(30)));
        let second = parse_nic(1, &line).unwrap();
        assert_eq!(
            second.ipv4,
            Ipv4Config::Static(StaticConfig {
                address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 3, 15), 24),
                gateway: Some(Ipv4Address::new(10, 0, 3, 2)),
                dns: Some(Ipv4Address::new(10, 0, 3, 3)),
            })
        );
        assert_eq!(
            (second.nic, second.mtu, second.dhcp_timeout),
            (1, Some(1400), None)
        );
        // NIC 2 has no keys: DHCP, without NIC 0's or NIC 1's settings.
        let third = parse_nic(2, &line).unwrap();
        assert_eq!(
            (third.ipv4, third.mtu, third.nic),
            (Ipv4Config::Dhcp, None, 2)
        );

        // Linux's form and the `gateway1=` name, a netmask as the prefix.
        let linux = parse_nic(
            1,
            &[
                ("ip1", "10.0.3.15::10.0.3.1:255.255.0.0"),
                ("gateway1", "10.0.3.1"),
            ],
        );
        let Ipv4Config::Static(fixed) = linux.unwrap().ipv4 else {
            panic!("static expected")
        };
        assert_eq!(fixed.address.prefix_len(), 16);
        assert_eq!(fixed.gateway, Some(Ipv4Address::new(10, 0, 3, 1)));
        // A DHCP timeout for NIC 1 alone.
        let dhcp = parse_nic(1, &[("dhcp.timeout1", "20"), ("ip", "10.0.2.15/24")]).unwrap();
        assert_eq!(dhcp.ipv4, Ipv4Config::Dhcp);
        assert_eq!(dhcp.dhcp_timeout, Some(Duration::from_secs(20)));
        // The environment tokens stand in for NIC 0's keys only.
        let env = [("TORITO_MTU", "1400"), ("TORITO_DNS", "10.0.2.3")];
        assert_eq!(parse_nic(0, &env).unwrap().mtu, Some(1400));
        assert_eq!(
            parse_nic(1, &env).unwrap(),
            Config {
                nic: 1,
                ..Config::default()
            }
        );
        // Past the table: DHCP.
        assert_eq!(
            parse_nic(CONFIGURABLE_NICS, &line).unwrap().ipv4,
            Ipv4Config::Dhcp
        );
    }

    /// A bad or hostile NIC 1 value is an error naming NIC 1's key, as NIC 0's are; NIC
    /// 0's configuration is not affected by it (the kernel stops the boot on either).
    #[test]
    fn second_nic_bad_values_name_its_key() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static str,
            &'static str,
        );
        let cases: [Case; 10] = [
            (
                &[("ip1", "10.0.3.15")],
                "ip1=10.0.3.15",
                "prefix is required",
            ),
            (
                &[("ip1", "10.0.3.300/24")],
                "ip1=10.0.3.300/24",
                "ADDRESS/PREFIX",
            ),
            (&[("ip1", "off")], "ip1=off", "an address"),
            (
                &[("ip1", "10.0.3.15:::255.0.255.0")],
                "ip1=10.0.3.15:::255.0.255.0",
                "NETMASK",
            ),
            (
                &[("ip1", "1:2:3:4:5:6:7:8:9:10:11")],
                "ip1=1:2:3",
                "at most 10 fields",
            ),
            (&[("gw1", "10.0.3.2")], "gw1=10.0.3.2", "ip=dhcp"),
            (
                &[("ip1", "10.0.3.15/24"), ("gw1", "255.255.255.255")],
                "gw1=255.255.255.255",
                "IPv4",
            ),
            (
                &[
                    ("ip1", "10.0.3.15/24"),
                    ("gw1", "10.0.3.2"),
                    ("gateway1", "10.0.3.9"),
                ],
                "gateway1=10.0.3.9",
                "same address",
            ),
            (
                &[("ip1", "10.0.3.15/24"), ("mtu1", "9000")],
                "mtu1=9000",
                "576 to 1500",
            ),
            (
                &[("ip1", "10.0.3.15/24"), ("dhcp.timeout1", "5")],
                "dhcp.timeout1=5",
                "ip=dhcp",
            ),
        ];
        for (pairs, shown, expected) in cases {
            let error = parse_nic(1, pairs).unwrap_err();
            let text = error.to_string();
            assert!(text.contains(shown), "{text}");
            assert!(text.contains(expected), "{text}");
            assert!(error.key.ends_with('1'), "{error:?}");
            assert!(parse_nic(0, pairs).is_ok(), "NIC 0 reads none of {pairs:?}");
        }
    }
}
