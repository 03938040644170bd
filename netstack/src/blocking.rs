//! Blocking sockets: the async sockets, each call run to completion by a [`Park`].
//!
//! The stack itself never blocks. Whoever can suspend the calling thread of control
//! (the kernel parking a task on its own stack, or a host test pumping the network)
//! implements [`Park`]; every method here is `park.block_on(async_method())`.

use alloc::sync::Arc;
use core::future::Future;
use core::net::SocketAddr;
use core::ops::Deref;

use torito_executor::Duration;

use crate::error::Error;
use crate::state::Stack;

/// Runs a future to completion on the caller's thread of control.
///
/// The implementation polls `future` with a waker that resumes the parked caller and
/// suspends it (without spinning) while the future is pending. For socket timeouts
/// (executor timers) to work, it polls inside a torito executor task, with that task's
/// waker, as the kernel's fiber park does. The stack's
/// [`Runner`](crate::Runner) must make progress meanwhile: on another task or core,
/// or driven by the implementation itself.
pub trait Park {
    /// Polls `future` until it completes and returns its output.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlockCore`] when the caller cannot be parked here (for the kernel:
    /// it is not a blocking task); the future is then dropped unpolled. Every blocking
    /// socket method returns that error as it is.
    fn block_on<F: Future>(&self, future: F) -> Result<F::Output, Error>;
}

/// A blocking [`crate::TcpListener`].
pub struct TcpListener<'p, P: Park> {
    inner: crate::TcpListener,
    park: &'p P,
}

impl<'p, P: Park> TcpListener<'p, P> {
    /// See [`crate::TcpListener::bind`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpListener::bind`].
    pub fn bind(stack: &Stack, port: u16, backlog: usize, park: &'p P) -> Result<Self, Error> {
        let inner = crate::TcpListener::bind(stack, port, backlog)?;
        Ok(TcpListener { inner, park })
    }

    /// Blocks until a connection is established; see [`crate::TcpListener::accept`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpListener::accept`].
    pub fn accept(&mut self) -> Result<TcpStream<'p, P>, Error> {
        let inner = self.park.block_on(self.inner.accept())??;
        Ok(TcpStream {
            inner,
            park: self.park,
        })
    }

    /// See [`crate::TcpListener::set_reserve`].
    pub fn set_reserve(&mut self, bytes: usize) {
        self.inner.set_reserve(bytes);
    }

    /// See [`crate::TcpListener::set_timeouts`].
    pub fn set_timeouts(&mut self, timeouts: crate::TcpTimeouts) {
        self.inner.set_timeouts(timeouts);
    }

    /// The async listener underneath.
    pub fn as_async(&mut self) -> &mut crate::TcpListener {
        &mut self.inner
    }
}

/// A blocking [`crate::TcpStream`]. Dropping it closes in the background, as the async
/// stream does.
pub struct TcpStream<'p, P: Park> {
    inner: crate::TcpStream,
    park: &'p P,
}

impl<'p, P: Park> TcpStream<'p, P> {
    /// See [`crate::TcpStream::connect`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::connect`].
    pub fn connect(stack: &Stack, remote: SocketAddr, park: &'p P) -> Result<Self, Error> {
        let inner = park.block_on(crate::TcpStream::connect(stack, remote))??;
        Ok(TcpStream { inner, park })
    }

    /// Wraps an async stream.
    pub fn from_async(inner: crate::TcpStream, park: &'p P) -> Self {
        TcpStream { inner, park }
    }

    /// The async stream underneath.
    pub fn as_async(&mut self) -> &mut crate::TcpStream {
        &mut self.inner
    }

    /// See [`crate::TcpStream::read`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::read`].
    pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        self.park.block_on(self.inner.read(buffer))?
    }

    /// See [`crate::TcpStream::write`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::write`].
    pub fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        self.park.block_on(self.inner.write(buffer))?
    }

    /// See [`crate::TcpStream::write_all`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::write_all`].
    pub fn write_all(&mut self, buffer: &[u8]) -> Result<(), Error> {
        self.park.block_on(self.inner.write_all(buffer))?
    }

    /// See [`crate::TcpStream::flush`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::flush`].
    pub fn flush(&mut self) -> Result<(), Error> {
        self.park.block_on(self.inner.flush())?
    }

    /// See [`crate::TcpStream::shutdown`].
    pub fn shutdown(&mut self) {
        self.inner.shutdown();
    }

    /// See [`crate::TcpStream::close`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::close`].
    pub fn close(self) -> Result<(), Error> {
        self.park.block_on(self.inner.close())?
    }

    /// Splits the stream into a read half and a write half usable at the same time;
    /// see [`crate::TcpStream::split`]. A blocking call parks its whole thread of
    /// control, so "at the same time" means: from two blocking tasks, each with its
    /// own [`Park`] ([`TcpReadHalf::with_park`]), or one after the other from this one.
    pub fn split(
        &mut self,
    ) -> (
        TcpReadHalf<'p, &crate::TcpStream, P>,
        TcpWriteHalf<'p, &crate::TcpStream, P>,
    ) {
        let (read, write) = self.inner.split();
        (
            TcpReadHalf {
                inner: read,
                park: self.park,
            },
            TcpWriteHalf {
                inner: write,
                park: self.park,
            },
        )
    }

    /// Splits the stream into two owned halves, for two blocking tasks (give each its
    /// own park with `with_park`); see [`crate::TcpStream::into_split`].
    pub fn into_split(
        self,
    ) -> (
        TcpReadHalf<'p, Arc<crate::TcpStream>, P>,
        TcpWriteHalf<'p, Arc<crate::TcpStream>, P>,
    ) {
        let (read, write) = self.inner.into_split();
        (
            TcpReadHalf {
                inner: read,
                park: self.park,
            },
            TcpWriteHalf {
                inner: write,
                park: self.park,
            },
        )
    }

    /// See [`crate::TcpStream::set_timeout`].
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.inner.set_timeout(timeout);
    }

    /// See [`crate::TcpStream::peer_addr`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> Result<SocketAddr, Error> {
        self.inner.peer_addr()
    }

    /// See [`crate::TcpStream::local_addr`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::local_addr`].
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.inner.local_addr()
    }
}

impl<P: Park> embedded_io::ErrorType for TcpStream<'_, P> {
    type Error = Error;
}

impl<P: Park> embedded_io::Read for TcpStream<'_, P> {
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        TcpStream::read(self, buffer)
    }
}

impl<P: Park> embedded_io::Write for TcpStream<'_, P> {
    fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        TcpStream::write(self, buffer)
    }

    fn flush(&mut self) -> Result<(), Error> {
        TcpStream::flush(self)
    }
}

/// The read half of a blocking [`TcpStream`] (see [`TcpStream::split`]).
pub struct TcpReadHalf<'p, S: Deref<Target = crate::TcpStream>, P: Park> {
    inner: crate::TcpReadHalf<S>,
    park: &'p P,
}

/// The write half of a blocking [`TcpStream`] (see [`TcpStream::split`]).
pub struct TcpWriteHalf<'p, S: Deref<Target = crate::TcpStream>, P: Park> {
    inner: crate::TcpWriteHalf<S>,
    park: &'p P,
}

impl<'p, S: Deref<Target = crate::TcpStream>, P: Park> TcpReadHalf<'p, S, P> {
    /// The same half, parked by `park` (the park of the task that will use it).
    pub fn with_park<'q, Q: Park>(self, park: &'q Q) -> TcpReadHalf<'q, S, Q> {
        TcpReadHalf {
            inner: self.inner,
            park,
        }
    }

    /// See [`crate::TcpStream::read`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::read`].
    pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        self.park.block_on(self.inner.read(buffer))?
    }
}

impl<'p, S: Deref<Target = crate::TcpStream>, P: Park> TcpWriteHalf<'p, S, P> {
    /// The same half, parked by `park` (the park of the task that will use it).
    pub fn with_park<'q, Q: Park>(self, park: &'q Q) -> TcpWriteHalf<'q, S, Q> {
        TcpWriteHalf {
            inner: self.inner,
            park,
        }
    }

    /// See [`crate::TcpStream::write`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::write`].
    pub fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        self.park.block_on(self.inner.write(buffer))?
    }

    /// See [`crate::TcpStream::write_all`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::write_all`].
    pub fn write_all(&mut self, buffer: &[u8]) -> Result<(), Error> {
        self.park.block_on(self.inner.write_all(buffer))?
    }

    /// See [`crate::TcpStream::flush`].
    ///
    /// # Errors
    ///
    /// As [`crate::TcpStream::flush`].
    pub fn flush(&mut self) -> Result<(), Error> {
        self.park.block_on(self.inner.flush())?
    }

    /// See [`crate::TcpWriteHalf::shutdown`].
    pub fn shutdown(&mut self) {
        self.inner.shutdown();
    }
}

impl<S: Deref<Target = crate::TcpStream>, P: Park> embedded_io::ErrorType
    for TcpReadHalf<'_, S, P>
{
    type Error = Error;
}

impl<S: Deref<Target = crate::TcpStream>, P: Park> embedded_io::Read for TcpReadHalf<'_, S, P> {
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        TcpReadHalf::read(self, buffer)
    }
}

impl<S: Deref<Target = crate::TcpStream>, P: Park> embedded_io::ErrorType
    for TcpWriteHalf<'_, S, P>
{
    type Error = Error;
}

impl<S: Deref<Target = crate::TcpStream>, P: Park> embedded_io::Write for TcpWriteHalf<'_, S, P> {
    fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        TcpWriteHalf::write(self, buffer)
    }

    fn flush(&mut self) -> Result<(), Error> {
        TcpWriteHalf::flush(self)
    }
}

/// A blocking [`crate::UdpSocket`].
pub struct UdpSocket<'p, P: Park> {
    inner: crate::UdpSocket,
    park: &'p P,
}

impl<'p, P: Park> UdpSocket<'p, P> {
    /// See [`crate::UdpSocket::bind`].
    ///
    /// # Errors
    ///
    /// As [`crate::UdpSocket::bind`].
    pub fn bind(stack: &Stack, port: u16, park: &'p P) -> Result<Self, Error> {
        let inner = crate::UdpSocket::bind(stack, port)?;
        Ok(UdpSocket { inner, park })
    }

    /// See [`crate::UdpSocket::send_to`].
    ///
    /// # Errors
    ///
    /// As [`crate::UdpSocket::send_to`].
    pub fn send_to(&self, buffer: &[u8], to: SocketAddr) -> Result<usize, Error> {
        self.park.block_on(self.inner.send_to(buffer, to))?
    }

    /// See [`crate::UdpSocket::recv_from`].
    ///
    /// # Errors
    ///
    /// As [`crate::UdpSocket::recv_from`].
    pub fn recv_from(&self, buffer: &mut [u8]) -> Result<(usize, SocketAddr), Error> {
        self.park.block_on(self.inner.recv_from(buffer))?
    }

    /// The async socket underneath.
    pub fn as_async(&mut self) -> &mut crate::UdpSocket {
        &mut self.inner
    }
}
