//! [`VsockError`]: every way a vsock call can fail, one enum for the crate boundary.
#![deny(unsafe_code)]

/// Why a vsock call failed, for the device's setup and for every socket call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VsockError {
    /// The VM has no vsock device (or it could not be set up).
    NoDevice,
    /// virtio-drivers refused the device (queue setup, configuration space).
    Device(virtio_drivers::Error),
    /// The device refused the features asked for.
    Features {
        /// What the driver asked for.
        requested: u64,
    },
    /// Another listener has the port.
    PortInUse {
        /// The port.
        port: u32,
    },
    /// The peer reset the connection, or it broke (the peer sent past its credit).
    Reset {
        /// Our port.
        port: u32,
    },
    /// The peer said it receives no more.
    PeerClosed {
        /// Our port.
        port: u32,
    },
    /// Written after our own shutdown or close.
    Closed {
        /// Our port.
        port: u32,
    },
    /// No memory for the bytes written.
    NoMemory {
        /// Our port.
        port: u32,
    },
    /// The peer refused our connection: nothing listens on its port (it answered with
    /// a reset), or it broke off the handshake.
    Refused {
        /// The peer's CID.
        cid: u64,
        /// The peer's port.
        port: u32,
    },
    /// The peer did not answer our connection request in time.
    TimedOut {
        /// The peer's CID.
        cid: u64,
        /// The peer's port.
        port: u32,
    },
    /// Every local port is taken by a listener or a connection to the same peer port.
    NoPorts,
    /// A blocking call outside a blocking task (it would have stalled every task on the
    /// core).
    WouldBlockCore,
}

impl core::fmt::Display for VsockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VsockError::NoDevice => f.write_str(
                "no virtio-vsock device; add one (QEMU: vhost-user-vsock-device or -pci with \
                 vhost-device-vsock; qemu/run.sh --vsock CID)",
            ),
            VsockError::Device(error) => write!(
                f,
                "virtio-vsock setup failed: {error}; check the VMM's vsock device options"
            ),
            VsockError::Features { requested } => write!(
                f,
                "virtio-vsock refused features {requested:#x}; check the VMM's vsock options"
            ),
            VsockError::PortInUse { port } => write!(
                f,
                "vsock port {port} already has a listener; drop it first or pick another port"
            ),
            VsockError::Reset { port } => write!(
                f,
                "vsock connection on port {port} was reset by the peer; open a new one"
            ),
            VsockError::PeerClosed { port } => write!(
                f,
                "the peer of vsock port {port} receives no more; close the connection"
            ),
            VsockError::Closed { port } => write!(
                f,
                "vsock connection on port {port} was shut down on our side; no more writes"
            ),
            VsockError::NoMemory { port } => write!(
                f,
                "no memory to queue bytes on vsock port {port}; write less at once or give \
                 the VM more memory"
            ),
            VsockError::Refused { cid, port } => write!(
                f,
                "vsock connection to CID {cid} port {port} refused: nothing listens there \
                 (with vhost-device-vsock: a Unix socket at <uds-path>_{port} on the host)"
            ),
            VsockError::TimedOut { cid, port } => write!(
                f,
                "vsock connection to CID {cid} port {port} got no answer in time; is the host \
                 side running?"
            ),
            VsockError::NoPorts => f.write_str(
                "no free local vsock port for a new connection; close some connections first",
            ),
            VsockError::WouldBlockCore => f.write_str(
                "a blocking vsock call outside torito::task::spawn_blocking would stall the \
                 core; use the async calls, or call from spawn_blocking",
            ),
        }
    }
}

impl core::error::Error for VsockError {}

impl embedded_io::Error for VsockError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            VsockError::Reset { .. } => ErrorKind::ConnectionReset,
            VsockError::Refused { .. } => ErrorKind::ConnectionRefused,
            VsockError::TimedOut { .. } => ErrorKind::TimedOut,
            VsockError::NoPorts => ErrorKind::AddrInUse,
            VsockError::PeerClosed { .. } | VsockError::Closed { .. } => ErrorKind::BrokenPipe,
            VsockError::NoMemory { .. } => ErrorKind::OutOfMemory,
            VsockError::PortInUse { .. } => ErrorKind::AddrInUse,
            VsockError::WouldBlockCore => ErrorKind::Unsupported,
            VsockError::NoDevice | VsockError::Device(_) | VsockError::Features { .. } => {
                ErrorKind::NotConnected
            }
        }
    }
}
