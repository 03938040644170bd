//! UDP: [`UdpSocket`], datagrams to and from any IPv4 address.

use alloc::vec::Vec;
use core::net::SocketAddr;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::Socket;
use smoltcp::socket::udp::{self, PacketBuffer, PacketMetadata, RecvError, SendError};
use smoltcp::wire::IpEndpoint;
use torito_executor::Duration;

use crate::error::Error;
use crate::state::Stack;
use crate::state::sockets::try_buffer;

/// The largest UDP payload a frame can carry on a device with IP MTU `mtu`.
fn udp_payload_max(mtu: usize) -> usize {
    // IPv4 header (20) and UDP header (8); no fragmentation.
    mtu.saturating_sub(28)
}

/// Payload bytes buffered in each direction.
const UDP_BUFFER: usize = 4096;
/// Datagrams buffered in each direction.
const UDP_PACKETS: usize = 8;

/// A UDP socket bound to a local port.
///
/// Each direction buffers up to 8 datagrams and 4 KiB; datagrams arriving when the
/// receive buffer is full are dropped (that is UDP). Dropping the socket frees it at
/// once, with anything still queued for sending.
pub struct UdpSocket {
    stack: Stack,
    handle: SocketHandle,
    port: u16,
    timeout: Option<Duration>,
}

fn packet_buffer() -> Option<PacketBuffer<'static>> {
    let mut metadata = Vec::new();
    metadata.try_reserve_exact(UDP_PACKETS).ok()?;
    metadata.resize(UDP_PACKETS, PacketMetadata::EMPTY);
    Some(PacketBuffer::new(metadata, try_buffer(UDP_BUFFER)?))
}

impl UdpSocket {
    /// Binds `port` on all addresses (0: any free ephemeral port).
    ///
    /// # Errors
    ///
    /// [`Error::AddressInUse`] if another UDP socket has `port`; [`Error::NoMemory`];
    /// [`Error::NoFreePort`].
    pub fn bind(stack: &Stack, port: u16) -> Result<UdpSocket, Error> {
        let mut inner = stack.lock();
        let port = if port == 0 {
            inner.ephemeral_port()?
        } else {
            port
        };
        let taken = inner.sockets.iter().any(|(_, socket)| match socket {
            Socket::Udp(udp) => udp.endpoint().port == port,
            _ => false,
        });
        if taken {
            return Err(Error::AddressInUse { port });
        }
        let (Some(rx), Some(tx)) = (packet_buffer(), packet_buffer()) else {
            return Err(Error::NoMemory);
        };
        let mut socket = udp::Socket::new(rx, tx);
        socket.bind(port).map_err(|_| Error::InvalidState)?;
        let handle = inner.sockets.add(socket)?;
        Ok(UdpSocket {
            stack: stack.clone(),
            handle,
            port,
            timeout: None,
        })
    }

    /// The bound port.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Makes `send_to` and `recv_from` fail with [`Error::TimedOut`] when they wait
    /// longer than `timeout` (`None`: wait for ever, the default).
    ///
    /// The timeout is an executor timer of the waiting task, like
    /// `torito_executor::timeout`.
    ///
    /// # Panics
    ///
    /// With a timeout set, those calls panic when polled outside a torito executor task
    /// (a blocking [`Park`](crate::blocking::Park) must poll inside one).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Queues `buffer` as one datagram to `to`, waiting for buffer room.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] beyond one frame's payload (no fragmentation) or the
    /// socket's buffer; [`Error::Unaddressable`] (IPv6, no route, no address yet);
    /// [`Error::TimedOut`].
    pub async fn send_to(&self, buffer: &[u8], to: SocketAddr) -> Result<usize, Error> {
        let SocketAddr::V4(to) = to else {
            return Err(Error::Unaddressable);
        };
        let to = IpEndpoint::from(to);
        let handle = self.handle;
        self.stack
            .wait(self.timeout, |inner, waker| {
                let max = udp_payload_max(inner.mtu).min(UDP_BUFFER);
                if buffer.len() > max {
                    return Poll::Ready(Err(Error::MessageTooLarge {
                        len: buffer.len(),
                        max,
                    }));
                }
                let socket = inner.sockets.get_mut::<udp::Socket>(handle);
                match socket.send_slice(buffer, to) {
                    Ok(()) => {
                        inner.wake_runner();
                        Poll::Ready(Ok(buffer.len()))
                    }
                    Err(SendError::BufferFull) => {
                        socket.register_send_waker(waker);
                        Poll::Pending
                    }
                    Err(SendError::Unaddressable) => Poll::Ready(Err(Error::Unaddressable)),
                }
            })
            .await
    }

    /// Waits for a datagram, copies it into `buffer` and returns its length and sender.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if `buffer` is shorter than the datagram (which is then
    /// dropped); [`Error::TimedOut`].
    pub async fn recv_from(&self, buffer: &mut [u8]) -> Result<(usize, SocketAddr), Error> {
        let handle = self.handle;
        self.stack
            .wait(self.timeout, |inner, waker| {
                let socket = inner.sockets.get_mut::<udp::Socket>(handle);
                match socket.recv_slice(buffer) {
                    Ok((n, meta)) => Poll::Ready(Ok((n, SocketAddr::from(meta.endpoint)))),
                    Err(RecvError::Exhausted) => {
                        socket.register_recv_waker(waker);
                        Poll::Pending
                    }
                    Err(RecvError::Truncated) => Poll::Ready(Err(Error::Truncated)),
                }
            })
            .await
    }
}

impl UdpSocket {
    /// Waits until a datagram is there to receive (without taking it).
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`].
    pub async fn readable(&self) -> Result<(), Error> {
        let handle = self.handle;
        self.stack
            .wait(self.timeout, |inner, waker| {
                let socket = inner.sockets.get_mut::<udp::Socket>(handle);
                if socket.can_recv() {
                    return Poll::Ready(Ok(()));
                }
                socket.register_recv_waker(waker);
                Poll::Pending
            })
            .await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.stack.lock().sockets.remove(self.handle);
    }
}
