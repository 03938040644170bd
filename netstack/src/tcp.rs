//! TCP: [`TcpListener`] with a bounded backlog (kept in `state::listeners`, which the
//! runner refreshes) and [`TcpStream`].
//!
//! Buffers are allocated fallibly: when memory runs out, the connection is refused
//! (counted as [`Counters::refused_no_memory`](crate::Counters::refused_no_memory)),
//! not the kernel.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::ops::Deref;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering::Relaxed;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, RecvError, State};
use smoltcp::wire::IpEndpoint;
use torito_executor::Duration;

use crate::config::TcpTimeouts;
use crate::counters::add;
use crate::error::Error;
use crate::state::listeners::{Listener, acceptable, arm, listening_socket};
use crate::state::shared::Watch;
use crate::state::sockets::new_tcp_socket;
use crate::state::{Closing, Inner, Stack};

/// Keep-alive interval set when our FIN goes out, as a rescue: smoltcp 0.14 can enter
/// fast retransmit with only the FIN unacknowledged (duplicate ACKs after a lost FIN),
/// which sends nothing and leaves no retransmission timer, so the connection would hang
/// in FIN-WAIT-1/CLOSING/LAST-ACK for ever. A keep-alive expiry makes it dispatch, which
/// resends the FIN and re-arms the timer. Costs one tiny probe per interval while the
/// peer keeps its side open.
const FIN_RESCUE: Duration = Duration::from_secs(3);

/// Queues our FIN (see [`FIN_RESCUE`]).
fn close_socket(socket: &mut tcp::Socket<'_>) {
    socket.close();
    socket.set_keep_alive(Some(FIN_RESCUE.into()));
}

/// A TCP socket listening for connections on one port.
///
/// Dropping it closes the port: connections not yet accepted are reset, accepted ones
/// go on.
pub struct TcpListener {
    stack: Stack,
    slot: usize,
    port: u16,
}

impl TcpListener {
    /// Listens on `port` (all addresses), queueing at most `backlog` connections
    /// (at least 1) that `accept` has not yet taken.
    ///
    /// # Errors
    ///
    /// [`Error::AddressInUse`] if another listener has `port`; [`Error::InvalidState`]
    /// for port 0; [`Error::NoMemory`] if the first listening socket's buffers cannot be
    /// allocated.
    pub fn bind(stack: &Stack, port: u16, backlog: usize) -> Result<TcpListener, Error> {
        if port == 0 {
            return Err(Error::InvalidState);
        }
        let mut guard = stack.lock();
        let inner = &mut *guard;
        if inner.listeners.iter().flatten().any(|l| l.port == port) {
            return Err(Error::AddressInUse { port });
        }
        let backlog = backlog.max(1);
        // Room for every pending handle and for the listener's slot, taken now (and
        // fallibly), so that the runner never grows these under a full heap.
        let mut pending = VecDeque::new();
        pending
            .try_reserve_exact(backlog)
            .map_err(|_| Error::NoMemory)?;
        inner
            .listeners
            .try_reserve(1)
            .map_err(|_| Error::NoMemory)?;
        let listening = listening_socket(&mut inner.sockets, inner.tcp, port, inner.tcp.reserve)
            .ok_or(Error::NoMemory)?;
        let listener = Listener {
            port,
            backlog,
            listening: Some(listening),
            pending,
            acceptors: Vec::new(),
            reserve: inner.tcp.reserve,
            timeouts: inner.tcp.timeouts,
        };
        let slot = match inner.listeners.iter().position(Option::is_none) {
            Some(slot) => {
                inner.listeners[slot] = Some(listener);
                slot
            }
            None => {
                inner.listeners.push(Some(listener));
                inner.listeners.len() - 1
            }
        };
        inner.wake_runner();
        Ok(TcpListener {
            stack: stack.clone(),
            slot,
            port,
        })
    }

    /// The port listened on.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Sets how many bytes of heap each incoming connection keeps, from its SYN until
    /// [`accept`](Self::accept) hands it out, for the task that will serve it (default
    /// [`TcpConfig::reserve`](crate::TcpConfig::reserve)): at least what spawning that
    /// task allocates (a blocking task's stack, say), so that every accepted connection
    /// can be served. Applies to the connections whose SYN comes after the call.
    pub fn set_reserve(&mut self, bytes: usize) {
        let mut guard = self.stack.lock();
        let inner = &mut *guard;
        if let Some(Some(listener)) = inner.listeners.get_mut(self.slot) {
            listener.reserve = bytes;
            // The listening socket's reserve was taken for the old size: make a new one
            // (unless a SYN has just taken it: that connection keeps the old reserve).
            if let Some((handle, _)) = &listener.listening
                && inner.sockets.get::<tcp::Socket>(*handle).state() == State::Listen
                && let Some((handle, _)) = listener.listening.take()
            {
                inner.sockets.remove(handle);
            }
            inner.wake_runner();
        }
    }

    /// Sets the timeouts of the connections this listener accepts from now on
    /// (default: the stack's [`TcpConfig::timeouts`](crate::TcpConfig::timeouts)).
    pub fn set_timeouts(&mut self, timeouts: TcpTimeouts) {
        let mut inner = self.stack.lock();
        if let Some(Some(listener)) = inner.listeners.get_mut(self.slot) {
            listener.timeouts = timeouts;
        }
    }

    /// Waits for an established connection and takes it off the backlog (which lets
    /// the runner listen again if the backlog was full).
    ///
    /// Several tasks may accept on one listener at once (each new connection goes to
    /// one of them; all of them are woken when one arrives and the others wait again),
    /// as edge-nal's servers do.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a closed listener.
    pub async fn accept(&self) -> Result<TcpStream, Error> {
        let slot = self.slot;
        let (handle, timeouts) = self
            .stack
            .wait(None, |inner, waker| {
                let taken = {
                    let Inner {
                        sockets, listeners, ..
                    } = &mut *inner;
                    let Some(Some(listener)) = listeners.get_mut(slot) else {
                        return Poll::Ready(Err(Error::NotConnected));
                    };
                    let position = listener.pending.iter().position(|pending| {
                        acceptable(sockets.get::<tcp::Socket>(pending.handle).state())
                    });
                    let taken = position.and_then(|position| listener.pending.remove(position));
                    if taken.is_none() {
                        listener.wait_accept(waker);
                    }
                    // Dropping the pending entry gives its reserve back to the heap,
                    // for the task the caller spawns next.
                    taken.map(|pending| (pending.handle, listener.timeouts))
                };
                match taken {
                    Some(taken) => {
                        // The backlog has room again: the runner may listen anew.
                        inner.wake_runner();
                        Poll::Ready(Ok(taken))
                    }
                    None => Poll::Pending,
                }
            })
            .await?;
        let counters = self.stack.counter_cells();
        add(&counters.accepted, 1);
        add(&counters.active, 1);
        Ok(TcpStream::new(&self.stack, handle, &timeouts))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut inner = self.stack.lock();
        if let Some(listener) = inner.listeners.get_mut(self.slot).and_then(Option::take) {
            let listening = listener.listening.into_iter().map(|(handle, _)| handle);
            let pending = listener.pending.into_iter().map(|pending| pending.handle);
            for handle in listening.chain(pending) {
                // Pending peers get a reset when their next segment finds no socket.
                inner.sockets.remove(handle);
            }
        }
    }
}

/// A TCP connection.
///
/// Dropping it closes it gracefully in the background: data already written is still
/// delivered, then a FIN is sent; the runner frees the socket once the connection
/// reaches CLOSED or TIME-WAIT, or resets it after its close timeout
/// ([`TcpTimeouts::close`]).
///
/// Its other timeouts ([`TcpTimeouts`]) come from its listener (or the stack, for
/// `connect`): keep-alive and dead-peer detection, the zero-window abort, and the
/// initial [`set_timeout`](Self::set_timeout) (`idle`).
pub struct TcpStream {
    stack: Stack,
    handle: SocketHandle,
    timeout: Option<Duration>,
    close_timeout: Duration,
    /// Set by `shutdown` (from the stream or its write half); read by both halves.
    shut_down: AtomicBool,
}

/// The error a connection in `state` reports when it can no longer transfer data.
fn broken(state: State, shut_down: bool) -> Error {
    match state {
        State::Closed if !shut_down => Error::ConnectionReset,
        State::Listen | State::SynSent | State::SynReceived => Error::NotConnected,
        _ if shut_down => Error::InvalidState,
        _ => Error::NotConnected,
    }
}

fn endpoint(address: SocketAddr) -> Result<IpEndpoint, Error> {
    match address {
        SocketAddr::V4(address) => Ok(address.into()),
        SocketAddr::V6(_) => Err(Error::Unaddressable),
    }
}

impl TcpStream {
    fn new(stack: &Stack, handle: SocketHandle, timeouts: &TcpTimeouts) -> TcpStream {
        let mut inner = stack.lock();
        // Without memory for the entry, the stream goes unwatched for a zero window (the
        // other timeouts still hold).
        if inner.streams.try_reserve(1).is_ok() {
            inner.streams.push(Watch {
                handle,
                zero_window: timeouts.zero_window,
                written: 0,
                acknowledged: 0,
                stalled_since: None,
            });
        }
        drop(inner);
        TcpStream {
            stack: stack.clone(),
            handle,
            timeout: timeouts.idle,
            close_timeout: timeouts.close,
            shut_down: AtomicBool::new(false),
        }
    }

    /// Connects to `remote` from an ephemeral port and waits until the connection is
    /// established. Wrap it in a timeout to bound the wait (SYNs are retransmitted
    /// with backoff).
    ///
    /// # Errors
    ///
    /// [`Error::Unaddressable`] without an IPv4 address or route (or for IPv6);
    /// [`Error::ConnectionRefused`] if the peer resets; [`Error::NoMemory`],
    /// [`Error::NoFreePort`].
    pub async fn connect(stack: &Stack, remote: SocketAddr) -> Result<TcpStream, Error> {
        let remote = endpoint(remote)?;
        let handle = {
            let mut guard = stack.lock();
            let inner = &mut *guard;
            let port = inner.ephemeral_port()?;
            // The reserve is a check here: the caller already runs its task.
            let Some((mut socket, _reserve)) = new_tcp_socket(inner.tcp, inner.tcp.reserve) else {
                add(&stack.counter_cells().refused_no_memory, 1);
                return Err(Error::NoMemory);
            };
            arm(&mut socket, &inner.tcp.timeouts);
            let Ok(handle) = inner.sockets.add(socket) else {
                add(&stack.counter_cells().refused_no_memory, 1);
                return Err(Error::NoMemory);
            };
            let socket = inner.sockets.get_mut::<tcp::Socket>(handle);
            if socket.connect(inner.iface.context(), remote, port).is_err() {
                inner.sockets.remove(handle);
                return Err(Error::Unaddressable);
            }
            inner.wake_runner();
            handle
        };
        add(&stack.counter_cells().active, 1);
        // From here on, dropping the stream (also by cancelling this future) reaps it.
        let timeouts = stack.lock().tcp.timeouts;
        let stream = TcpStream::new(stack, handle, &timeouts);
        stream
            .stack
            .wait(None, |inner, waker| {
                let socket = inner.sockets.get_mut::<tcp::Socket>(handle);
                match socket.state() {
                    State::SynSent | State::SynReceived => {
                        socket.register_send_waker(waker);
                        Poll::Pending
                    }
                    State::Closed => Poll::Ready(Err(Error::ConnectionRefused)),
                    _ => Poll::Ready(Ok(())),
                }
            })
            .await?;
        add(&stack.counter_cells().connected, 1);
        Ok(stream)
    }

    /// Makes `read`, `write`, `flush` and `close` fail with [`Error::TimedOut`] when
    /// they wait longer than `timeout` (`None`: wait for ever, the default).
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

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// [`Error::NotConnected`] once the connection is closed.
    pub fn peer_addr(&self) -> Result<SocketAddr, Error> {
        self.address(tcp::Socket::remote_endpoint)
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// [`Error::NotConnected`] once the connection is closed.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.address(tcp::Socket::local_endpoint)
    }

    /// One of the socket's endpoints (`which`), or [`Error::NotConnected`] without one.
    fn address(
        &self,
        which: fn(&tcp::Socket<'static>) -> Option<IpEndpoint>,
    ) -> Result<SocketAddr, Error> {
        let inner = self.stack.lock();
        which(inner.sockets.get::<tcp::Socket>(self.handle))
            .map(SocketAddr::from)
            .ok_or(Error::NotConnected)
    }

    /// Reads into `buffer`, waiting until at least one byte is there. `Ok(0)` means the
    /// peer closed its side (FIN) and everything it sent was read (or `buffer` is
    /// empty).
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionReset`], [`Error::TimedOut`].
    pub async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        self.receive(buffer).await
    }

    /// Queues bytes of `buffer` for sending, waiting until there is room for at least
    /// one; returns how many were queued.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionReset`], [`Error::InvalidState`] after
    /// [`shutdown`](Self::shutdown), [`Error::TimedOut`].
    pub async fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        self.send(buffer).await
    }

    /// Writes all of `buffer`.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write); some bytes may have been queued.
    pub async fn write_all(&mut self, buffer: &[u8]) -> Result<(), Error> {
        self.send_all(buffer).await
    }

    /// Waits until the peer has acknowledged every byte written so far.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionReset`] if the connection broke with data unacknowledged;
    /// [`Error::TimedOut`].
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.acknowledged().await
    }

    /// Closes the sending half: queued data is still sent, then a FIN. Reading goes
    /// on until the peer closes its side; writing fails with [`Error::InvalidState`].
    pub fn shutdown(&mut self) {
        self.shut_write();
    }

    /// Splits the stream into a read half and a write half that borrow it and may be
    /// used at the same time, by two futures of one task (`join`, `select`) or on two
    /// cores: a read waiting for data never holds up a write, nor the other way round.
    /// The stream itself is usable again once both halves are dropped.
    ///
    /// Dropping a half does nothing to the connection; [`TcpWriteHalf::shutdown`] sends
    /// the FIN.
    pub fn split(&mut self) -> (TcpReadHalf<&TcpStream>, TcpWriteHalf<&TcpStream>) {
        (
            TcpReadHalf { stream: &*self },
            TcpWriteHalf { stream: &*self },
        )
    }

    /// Splits the stream into two owned halves, for two tasks. The connection closes
    /// (gracefully, in the background, as a dropped stream does) when both halves are
    /// dropped; dropping only one does nothing to it.
    pub fn into_split(self) -> (TcpReadHalf<Arc<TcpStream>>, TcpWriteHalf<Arc<TcpStream>>) {
        let stream = Arc::new(self);
        (
            TcpReadHalf {
                stream: stream.clone(),
            },
            TcpWriteHalf { stream },
        )
    }

    /// Waits until there are bytes to read, or the peer closed its side, or the
    /// connection broke (the next read then tells which). Consumes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`].
    pub async fn readable(&mut self) -> Result<(), Error> {
        self.wait_readable().await
    }

    /// [`read`](Self::read) through a shared reference: the two halves' reads and writes
    /// use separate smoltcp wakers (receive and send), so one of each may wait at once.
    async fn receive(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        if buffer.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        self.stack
            .wait(self.timeout, |inner, waker| {
                let socket = inner.sockets.get_mut::<tcp::Socket>(handle);
                match socket.recv_slice(buffer) {
                    Ok(0) => {
                        socket.register_recv_waker(waker);
                        Poll::Pending
                    }
                    Ok(n) => {
                        // The window opened: the runner may owe the peer an update.
                        inner.wake_runner();
                        Poll::Ready(Ok(n))
                    }
                    Err(RecvError::Finished) => Poll::Ready(Ok(0)),
                    Err(RecvError::InvalidState) => {
                        Poll::Ready(Err(broken(socket.state(), self.shut_down.load(Relaxed))))
                    }
                }
            })
            .await
    }

    async fn wait_readable(&self) -> Result<(), Error> {
        let handle = self.handle;
        self.stack
            .wait(self.timeout, |inner, waker| {
                let socket = inner.sockets.get_mut::<tcp::Socket>(handle);
                if socket.recv_queue() > 0 || !socket.may_recv() {
                    return Poll::Ready(Ok(()));
                }
                socket.register_recv_waker(waker);
                Poll::Pending
            })
            .await
    }

    async fn send(&self, buffer: &[u8]) -> Result<usize, Error> {
        if buffer.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        self.stack
            .wait(self.timeout, |inner, waker| {
                let shut_down = self.shut_down.load(Relaxed);
                let socket = inner.sockets.get_mut::<tcp::Socket>(handle);
                if shut_down || !socket.may_send() {
                    return Poll::Ready(Err(broken(socket.state(), shut_down)));
                }
                match socket.send_slice(buffer) {
                    Ok(0) => {
                        socket.register_send_waker(waker);
                        Poll::Pending
                    }
                    Ok(n) => {
                        if let Some(watch) = inner.streams.iter_mut().find(|w| w.handle == handle) {
                            watch.written += n as u64;
                        }
                        inner.wake_runner();
                        Poll::Ready(Ok(n))
                    }
                    Err(tcp::SendError::InvalidState) => {
                        Poll::Ready(Err(broken(socket.state(), shut_down)))
                    }
                }
            })
            .await
    }

    async fn send_all(&self, mut buffer: &[u8]) -> Result<(), Error> {
        while !buffer.is_empty() {
            let n = self.send(buffer).await?;
            buffer = &buffer[n..];
        }
        Ok(())
    }

    async fn acknowledged(&self) -> Result<(), Error> {
        let handle = self.handle;
        self.stack
            .wait(self.timeout, |inner, waker| {
                let socket = inner.sockets.get_mut::<tcp::Socket>(handle);
                if socket.send_queue() == 0 {
                    return Poll::Ready(Ok(()));
                }
                if socket.state() == State::Closed {
                    return Poll::Ready(Err(broken(State::Closed, self.shut_down.load(Relaxed))));
                }
                socket.register_send_waker(waker);
                Poll::Pending
            })
            .await
    }

    fn shut_write(&self) {
        self.shut_down.store(true, Relaxed);
        let mut inner = self.stack.lock();
        close_socket(inner.sockets.get_mut::<tcp::Socket>(self.handle));
        inner.wake_runner();
    }

    /// Waits until our FIN and everything before it are acknowledged (see `close`).
    pub(crate) async fn wait_closed(&self) -> Result<(), Error> {
        let handle = self.handle;
        self.stack
            .wait(self.timeout, |inner, waker| {
                let socket = inner.sockets.get_mut::<tcp::Socket>(handle);
                match socket.state() {
                    State::FinWait2 | State::TimeWait => Poll::Ready(Ok(())),
                    State::Closed if socket.send_queue() == 0 => Poll::Ready(Ok(())),
                    State::Closed => Poll::Ready(Err(Error::ConnectionReset)),
                    _ => {
                        socket.register_send_waker(waker);
                        Poll::Pending
                    }
                }
            })
            .await
    }

    /// Resets the connection now, in place (see [`abort`](Self::abort)); the stream
    /// stays, and its reads and writes fail with [`Error::ConnectionReset`].
    pub(crate) fn reset_in_place(&self) {
        let mut inner = self.stack.lock();
        inner.sockets.get_mut::<tcp::Socket>(self.handle).abort();
        inner.wake_runner();
    }

    /// Closes gracefully: sends the remaining data and a FIN, and waits until the peer
    /// acknowledged both. Unread received data is discarded. The socket is freed in the
    /// background once the peer closed too (as on drop).
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionReset`] if the connection broke before everything was
    /// acknowledged; [`Error::TimedOut`] (the close then goes on in the background).
    pub async fn close(mut self) -> Result<(), Error> {
        self.shutdown();
        self.wait_closed().await
    }
}

impl TcpStream {
    /// Aborts the connection: the peer gets a reset (its reads and writes fail with
    /// [`Error::ConnectionReset`]), unsent and unread data is discarded.
    pub fn abort(self) {
        self.reset_in_place();
        // Dropping `self` queues the socket for reaping once the reset is out.
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut inner = self.stack.lock();
        inner.streams.retain(|watch| watch.handle != self.handle);
        if inner.closing.try_reserve(1).is_err() {
            // No memory to track a graceful close: drop the connection now. Its peer gets
            // a reset when its next segment finds no socket.
            inner.sockets.remove(self.handle);
            self.stack.counter_cells().connection_gone();
            return;
        }
        close_socket(inner.sockets.get_mut::<tcp::Socket>(self.handle));
        inner.closing.push(Closing {
            handle: self.handle,
            linger: self.close_timeout,
            deadline: None,
        });
        inner.wake_runner();
    }
}

impl embedded_io::ErrorType for TcpStream {
    type Error = Error;
}

impl embedded_io_async::Read for TcpStream {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        self.receive(buffer).await
    }
}

impl embedded_io_async::Write for TcpStream {
    async fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        self.send(buffer).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.acknowledged().await
    }

    async fn write_all(&mut self, buffer: &[u8]) -> Result<(), Error> {
        self.send_all(buffer).await
    }
}

/// The read half of a [`TcpStream`], from [`TcpStream::split`] (`S = &TcpStream`) or
/// [`TcpStream::into_split`] (`S = Arc<TcpStream>`).
pub struct TcpReadHalf<S: Deref<Target = TcpStream>> {
    stream: S,
}

/// The write half of a [`TcpStream`], from [`TcpStream::split`] (`S = &TcpStream`) or
/// [`TcpStream::into_split`] (`S = Arc<TcpStream>`).
pub struct TcpWriteHalf<S: Deref<Target = TcpStream>> {
    stream: S,
}

impl<S: Deref<Target = TcpStream>> TcpReadHalf<S> {
    /// See [`TcpStream::read`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::read`].
    pub async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        self.stream.receive(buffer).await
    }

    /// See [`TcpStream::readable`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::readable`].
    pub async fn readable(&mut self) -> Result<(), Error> {
        self.stream.wait_readable().await
    }

    /// The stream both halves belong to (its addresses, say).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl<S: Deref<Target = TcpStream>> TcpWriteHalf<S> {
    /// See [`TcpStream::write`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::write`].
    pub async fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        self.stream.send(buffer).await
    }

    /// See [`TcpStream::write_all`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::write_all`].
    pub async fn write_all(&mut self, buffer: &[u8]) -> Result<(), Error> {
        self.stream.send_all(buffer).await
    }

    /// See [`TcpStream::flush`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::flush`].
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.stream.acknowledged().await
    }

    /// Sends a FIN after the queued data, as [`TcpStream::shutdown`]: the peer reads
    /// the end of the stream, the read half goes on reading.
    pub fn shutdown(&mut self) {
        self.stream.shut_write();
    }

    /// The stream both halves belong to (its addresses, say).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl<S: Deref<Target = TcpStream>> embedded_io::ErrorType for TcpReadHalf<S> {
    type Error = Error;
}

impl<S: Deref<Target = TcpStream>> embedded_io_async::Read for TcpReadHalf<S> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        self.stream.receive(buffer).await
    }
}

impl<S: Deref<Target = TcpStream>> embedded_io::ErrorType for TcpWriteHalf<S> {
    type Error = Error;
}

impl<S: Deref<Target = TcpStream>> embedded_io_async::Write for TcpWriteHalf<S> {
    async fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        self.stream.send(buffer).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.stream.acknowledged().await
    }

    async fn write_all(&mut self, buffer: &[u8]) -> Result<(), Error> {
        self.stream.send_all(buffer).await
    }
}
