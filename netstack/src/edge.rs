//! edge-nal's traits for Torito's sockets, so that the edge-net family (edge-http,
//! edge-dhcp, edge-mdns, edge-mqtt, ...) and anything else written against `edge_nal`
//! runs on this stack unchanged.
//!
//! - [`Stack`] is a factory: `TcpBind` (a [`TcpListener`] with [`EDGE_BACKLOG`]),
//!   `TcpConnect` (a [`TcpStream`]) and `UdpBind` (a [`UdpSocket`]).
//! - [`TcpListener`] is `TcpAccept`; several tasks may accept on it at once, as
//!   edge-http's server does with its handler tasks.
//! - [`TcpStream`] is `Readable`, `TcpSplit` ([`TcpStream::split`]) and `TcpShutdown`.
//!   `close(Close::Read)` does nothing: smoltcp has no receive-side shutdown, and data
//!   that keeps arriving is acknowledged and may be left unread (dropping the stream
//!   frees it).
//! - [`UdpSocket`] is `UdpReceive`, `UdpSend`, `Readable` and `UdpSplit` (both halves
//!   are [`UdpHalf`], a shared reference: one receive and one send may wait at once).
//!   Multicast is not implemented by this stack: joining a group answers
//!   [`Error::Unsupported`].
//!
//! IPv6 addresses answer [`Error::Unaddressable`], as the sockets themselves do. A
//! local address other than `0.0.0.0` is accepted but not enforced: the stack has one
//! address per interface, and sockets listen on it.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use core::ops::Deref;

use edge_nal::{
    Close, MulticastV4, MulticastV6, Readable, TcpAccept, TcpBind, TcpConnect, TcpShutdown,
    TcpSplit, UdpBind, UdpReceive, UdpSend, UdpSplit,
};

use crate::error::Error;
use crate::state::Stack;
use crate::tcp::{TcpListener, TcpReadHalf, TcpStream, TcpWriteHalf};
use crate::udp::UdpSocket;

/// The backlog of a listener made by edge-nal's `TcpBind::bind` (which has no
/// parameter for it): connections waiting for `accept` before new ones are refused.
pub const EDGE_BACKLOG: usize = 16;

/// The port of a local address edge-nal asks to bind, IPv4 only.
fn local_port(local: SocketAddr) -> Result<u16, Error> {
    match local {
        SocketAddr::V4(local) => Ok(local.port()),
        SocketAddr::V6(_) => Err(Error::Unaddressable),
    }
}

impl TcpBind for Stack {
    type Error = Error;
    type Accept<'a> = TcpListener;

    async fn bind(&self, local: SocketAddr) -> Result<TcpListener, Error> {
        TcpListener::bind(self, local_port(local)?, EDGE_BACKLOG)
    }
}

impl TcpAccept for TcpListener {
    type Error = Error;
    type Socket<'a> = TcpStream;

    async fn accept(&self) -> Result<(SocketAddr, TcpStream), Error> {
        let stream = TcpListener::accept(self).await?;
        let peer = stream.peer_addr()?;
        Ok((peer, stream))
    }
}

impl TcpConnect for Stack {
    type Error = Error;
    type Socket<'a> = TcpStream;

    async fn connect(&self, remote: SocketAddr) -> Result<TcpStream, Error> {
        TcpStream::connect(self, remote).await
    }
}

impl Readable for TcpStream {
    async fn readable(&mut self) -> Result<(), Error> {
        TcpStream::readable(self).await
    }
}

impl<S: Deref<Target = TcpStream>> Readable for TcpReadHalf<S> {
    async fn readable(&mut self) -> Result<(), Error> {
        TcpReadHalf::readable(self).await
    }
}

impl TcpSplit for TcpStream {
    type Read<'a> = TcpReadHalf<&'a TcpStream>;
    type Write<'a> = TcpWriteHalf<&'a TcpStream>;

    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        TcpStream::split(self)
    }
}

impl TcpShutdown for TcpStream {
    async fn close(&mut self, what: Close) -> Result<(), Error> {
        match what {
            Close::Read => Ok(()),
            Close::Write => {
                self.shutdown();
                Ok(())
            }
            Close::Both => {
                self.shutdown();
                self.wait_closed().await
            }
        }
    }

    async fn abort(&mut self) -> Result<(), Error> {
        self.reset_in_place();
        Ok(())
    }
}

impl UdpBind for Stack {
    type Error = Error;
    type Socket<'a> = UdpSocket;

    async fn bind(&self, local: SocketAddr) -> Result<UdpSocket, Error> {
        UdpSocket::bind(self, local_port(local)?)
    }
}

/// A shared reference to a [`UdpSocket`], both halves of its `UdpSplit`.
pub struct UdpHalf<'a>(&'a UdpSocket);

/// `UdpReceive`, `UdpSend`, `Readable` and (refused) multicast, for the socket and its
/// halves alike.
macro_rules! udp_traits {
    ([$($lifetime:lifetime)?] $type:ty, $socket:ident => $get:expr) => {
        impl $(<$lifetime>)? embedded_io::ErrorType for $type {
            type Error = Error;
        }

        impl $(<$lifetime>)? UdpReceive for $type {
            async fn receive(&mut self, buffer: &mut [u8]) -> Result<(usize, SocketAddr), Error> {
                let $socket = &*self;
                $get.recv_from(buffer).await
            }
        }

        impl $(<$lifetime>)? UdpSend for $type {
            async fn send(&mut self, remote: SocketAddr, data: &[u8]) -> Result<(), Error> {
                let $socket = &*self;
                $get.send_to(data, remote).await.map(|_| ())
            }
        }

        impl $(<$lifetime>)? Readable for $type {
            async fn readable(&mut self) -> Result<(), Error> {
                let $socket = &*self;
                $get.readable().await
            }
        }

        impl $(<$lifetime>)? MulticastV4 for $type {
            async fn join_v4(&mut self, _group: Ipv4Addr, _interface: Ipv4Addr) -> Result<(), Error> {
                Err(Error::Unsupported { what: "multicast" })
            }

            async fn leave_v4(&mut self, _group: Ipv4Addr, _interface: Ipv4Addr) -> Result<(), Error> {
                Err(Error::Unsupported { what: "multicast" })
            }
        }

        impl $(<$lifetime>)? MulticastV6 for $type {
            async fn join_v6(&mut self, _group: Ipv6Addr, _interface: u32) -> Result<(), Error> {
                Err(Error::Unsupported { what: "multicast" })
            }

            async fn leave_v6(&mut self, _group: Ipv6Addr, _interface: u32) -> Result<(), Error> {
                Err(Error::Unsupported { what: "multicast" })
            }
        }
    };
}

udp_traits!([] UdpSocket, socket => socket);
udp_traits!(['a] UdpHalf<'a>, half => half.0);

impl UdpSplit for UdpSocket {
    type Receive<'a> = UdpHalf<'a>;
    type Send<'a> = UdpHalf<'a>;

    fn split(&mut self) -> (UdpHalf<'_>, UdpHalf<'_>) {
        (UdpHalf(self), UdpHalf(self))
    }
}

impl edge_nal::UdpSplitMulticast for UdpSocket {
    type MulticastV4<'a> = UdpHalf<'a>;
    type MulticastV6<'a> = UdpHalf<'a>;

    fn split_multicast(&mut self) -> (UdpHalf<'_>, UdpHalf<'_>, UdpHalf<'_>, UdpHalf<'_>) {
        (UdpHalf(self), UdpHalf(self), UdpHalf(self), UdpHalf(self))
    }
}
