//! The one error type of the socket API.

use core::fmt;

/// What went wrong in a socket operation, and what to do about it.
///
/// "Not ready" is never an error: operations wait instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Another socket of the same protocol is already bound to `port`.
    AddressInUse {
        /// The port asked for.
        port: u16,
    },
    /// Every ephemeral port (49152-65535) is in use by a TCP connection.
    NoFreePort,
    /// The memory for the socket's buffers could not be allocated; the connection was
    /// refused or closed (counted in [`Counters`](crate::Counters)). Retry later or
    /// lower [`TcpConfig`](crate::TcpConfig).
    NoMemory,
    /// The peer answered the connection attempt with a reset: nothing listens there.
    ConnectionRefused,
    /// The peer reset the connection (or it was aborted); data may have been lost.
    /// Open a new connection.
    ConnectionReset,
    /// The timeout set with `set_timeout` passed before the operation could complete.
    /// The socket is still usable: retry, or give up and close it.
    TimedOut,
    /// The socket has no connection (it was never connected or has fully closed).
    NotConnected,
    /// The operation does not fit the connection's state, e.g. writing after
    /// `shutdown`.
    InvalidState,
    /// No route to the address, or the interface has no IPv4 address yet: wait for
    /// [`Stack::wait_config_up`](crate::Stack::wait_config_up) or fix the destination.
    Unaddressable,
    /// The datagram does not fit in the socket's buffer: send less at once.
    MessageTooLarge {
        /// The datagram's length.
        len: usize,
        /// The largest datagram the socket can hold.
        max: usize,
    },
    /// The machine has no network device: give the VM a virtio-net device (for QEMU,
    /// `qemu/run.sh --forward HOST:GUEST`).
    NoDevice,
    /// A blocking call was made where the caller cannot be parked (an async task or the
    /// kernel): it would stall every task on the core. Run blocking code in a blocking
    /// task (`torito::task::spawn_blocking`), or use the async API.
    WouldBlockCore,
    /// A received datagram was longer than the buffer given to `recv_from`; it was
    /// dropped. Use a buffer as large as the largest expected datagram.
    Truncated,
    /// The stack does not implement `what` (multicast, say): do without it, or ask for
    /// it in an issue.
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },
    /// With `ip=dhcp`, no DHCP server answered within the `dhcp.timeout` limit: give a
    /// static address (`ip=ADDRESS/PREFIX gw=GATEWAY`), or check the network.
    NoDhcpAnswer {
        /// How long the stack waited, in seconds.
        waited_secs: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AddressInUse { port } => {
                write!(
                    f,
                    "port {port} is already bound; pick another or close the first socket"
                )
            }
            Error::NoFreePort => write!(f, "no free ephemeral port; close some connections"),
            Error::NoMemory => write!(
                f,
                "out of memory for socket buffers; retry later or use smaller buffers"
            ),
            Error::ConnectionRefused => write!(f, "connection refused by the peer"),
            Error::ConnectionReset => write!(f, "connection reset; open a new connection"),
            Error::TimedOut => write!(f, "socket timeout passed; retry or close"),
            Error::NotConnected => write!(f, "socket is not connected"),
            Error::InvalidState => {
                write!(
                    f,
                    "operation not valid in the connection's state (after shutdown?)"
                )
            }
            Error::Unaddressable => write!(
                f,
                "destination unreachable: no route, or no IPv4 address configured yet"
            ),
            Error::MessageTooLarge { len, max } => {
                write!(
                    f,
                    "datagram of {len} bytes exceeds the socket's {max} bytes"
                )
            }
            Error::Truncated => write!(f, "datagram truncated: the receive buffer was too small"),
            Error::NoDevice => write!(f, "no network device; give the VM a virtio-net device"),
            Error::Unsupported { what } => write!(f, "the network stack does not do {what}"),
            Error::NoDhcpAnswer { waited_secs } => write!(
                f,
                "no DHCP server answered within {waited_secs} s (dhcp.timeout); give a static \
                 address on the command line (ip=ADDRESS/PREFIX gw=GATEWAY) or check the network"
            ),
            Error::WouldBlockCore => write!(
                f,
                "blocking call outside a blocking task would stall the core; use spawn_blocking or the async API"
            ),
        }
    }
}

impl core::error::Error for Error {}

impl embedded_io::Error for Error {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            Error::AddressInUse { .. } => ErrorKind::AddrInUse,
            Error::NoFreePort => ErrorKind::AddrNotAvailable,
            Error::NoMemory => ErrorKind::OutOfMemory,
            Error::ConnectionRefused => ErrorKind::ConnectionRefused,
            Error::ConnectionReset => ErrorKind::ConnectionReset,
            Error::TimedOut => ErrorKind::TimedOut,
            Error::NotConnected => ErrorKind::NotConnected,
            Error::InvalidState => ErrorKind::BrokenPipe,
            Error::Unaddressable => ErrorKind::AddrNotAvailable,
            Error::MessageTooLarge { .. } => ErrorKind::InvalidInput,
            Error::Truncated => ErrorKind::InvalidData,
            Error::NoDevice => ErrorKind::NotFound,
            Error::NoDhcpAnswer { .. } => ErrorKind::TimedOut,
            Error::WouldBlockCore => ErrorKind::Unsupported,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
        }
    }
}
