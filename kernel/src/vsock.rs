//! vsock: stream sockets to the host, without a network (virtio-vsock).
//!
//! The host reaches a guest port through its VMM (QEMU with `vhost-device-vsock`:
//! connect to its Unix socket and send `CONNECT PORT\n`; Firecracker's hybrid vsock
//! is the same), so a service needs no NIC, no address and no firewall rule.
//!
//! Shaped like the TCP sockets of `torito::net`: [`VsockListener::bind`] (port, backlog),
//! `accept`, [`VsockStream::connect`] (the guest opens a connection to a host port:
//! [`HOST_CID`]), and a [`VsockStream`] with `read`, `write`, `write_all`, `flush`,
//! `shutdown`, `close` and `embedded_io_async::{Read, Write}`; [`blocking`] has the same
//! for code in `torito::task::spawn_blocking`. With `vhost-device-vsock` (and
//! Firecracker) a connection to host port P reaches the program listening on the Unix
//! socket `<uds-path>_P` (`qemu/run.sh --vsock-socket PATH` sets the uds path).
//!
//! On the first `bind` or `connect` the kernel takes the first virtio-vsock device discovery found,
//! sets it up and spawns the vsock task, which the device's interrupt wakes: it moves
//! packets between the device and the connections (`torito_virtio::vsock`) and wakes
//! the sockets that can go on. A closed connection whose peer never answers is reset
//! after 8 s (Linux's close timeout) by a second task, which sleeps on a timer only
//! while such a connection waits. A socket call that must wait registers its waker and
//! sleeps; nothing polls in a loop. The device and all connections sit behind one lock,
//! held only to copy bytes.

use crate::arch::virtio::{DeviceInterrupt, KernelHal};
use crate::devices;
use core::future::poll_fn;
use core::task::{Poll, Waker};
use torito_virtio::DeviceTransport;
use torito_virtio::discovery::Kind;
use torito_virtio::vsock::{Connections, Handle, Polled};
use torito_virtio::{StepwiseStatus, VsockDevice};

pub use torito_virtio::VsockError as Error;
pub use torito_virtio::vsock::Counters;

/// The host's CID (`VMADDR_CID_HOST`): where [`VsockStream::connect`] reaches the
/// host's programs.
pub const HOST_CID: u64 = 2;

/// How long [`VsockStream::connect`] waits for the peer's answer. Linux waits 2 s; the
/// userspace backends answer from a host process that a loaded machine may not run at
/// once, so the wait is longer ([`VsockStream::connect_timeout`] picks another).
pub const CONNECT_TIMEOUT: crate::time::Duration = crate::time::Duration::from_secs(10);

/// Each connection's receive buffer (the credit the peer gets) and send buffer. 64 KiB
/// is Linux's default and what the backends announce: a bulk transfer keeps a whole
/// window in flight.
const CONNECTION_BUFFER: u32 = 64 * 1024;

type Device = VsockDevice<KernelHal, StepwiseStatus<DeviceTransport>>;

struct Inner {
    device: Option<Device>,
    connections: Connections,
    /// The vsock task, woken when a socket call left something to send.
    task: Option<Waker>,
    /// The close-timeout task, waiting for a connection to be released.
    reaper: Option<Waker>,
}

impl Inner {
    fn kick(&mut self) {
        if self.connections.wants_transmit()
            && let Some(task) = &self.task
        {
            task.wake_by_ref();
        }
    }

    /// A connection was released: the close-timeout task starts its clock.
    fn released(&mut self) {
        self.kick();
        if let Some(reaper) = self.reaper.take() {
            reaper.wake();
        }
    }
}

struct Vsock {
    inner: spin::Mutex<Inner>,
    interrupt: &'static DeviceInterrupt,
}

static VSOCK: spin::Once<Option<Vsock>> = spin::Once::new();

fn vsock() -> Result<&'static Vsock, Error> {
    VSOCK.call_once(start).as_ref().ok_or(Error::NoDevice)
}

fn start() -> Option<Vsock> {
    let (device, interrupt) = devices::take(Kind::SOCKET).into_iter().find_map(|found| {
        let opened = devices::open(&found)
            .map_err(|error| log::error!("vsock: {}", error))
            .ok()?;
        let device = Device::new(StepwiseStatus(opened.transport), opened.interrupt.waker())
            .map_err(|error| log::error!("vsock: {}", error))
            .ok()?;
        // Only after the queues exist: a reset clears their MSI-X vectors.
        if let Err(error) = opened.queues.assign() {
            log::error!("vsock: {}", error);
        }
        Some((device, opened.interrupt))
    })?;
    log::info!("vsock: virtio-vsock, guest CID {}", device.cid());
    let connections = Connections::new(device.cid(), CONNECTION_BUFFER);
    crate::task::spawn(run()).detach();
    crate::task::spawn(reap()).detach();
    Some(Vsock {
        inner: spin::Mutex::new(Inner {
            device: Some(device),
            connections,
            task: None,
            reaper: None,
        }),
        interrupt,
    })
}

/// The vsock task: moves packets whenever the device interrupts or a socket call left
/// bytes to send; yields after a budget of packets so other tasks on the core run.
async fn run() {
    let Ok(vsock) = vsock() else { return };
    poll_fn(|cx| {
        let mut inner = vsock.inner.lock();
        let Inner {
            device,
            connections,
            task,
            ..
        } = &mut *inner;
        if task
            .as_ref()
            .is_none_or(|known| !known.will_wake(cx.waker()))
        {
            *task = Some(cx.waker().clone());
        }
        let Some(active) = device.as_mut() else {
            return Poll::Ready(());
        };
        match active.poll(connections, cx.waker()) {
            Polled::Idle => Poll::Pending,
            Polled::Busy => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Polled::Broken => {
                log::error!(
                    "vsock: the device returned a used entry it cannot have; it is no \
                     longer used and every connection was reset"
                );
                *device = None;
                Poll::Ready(())
            }
        }
    })
    .await
}

/// The close-timeout task: resets closed connections whose peer never ends them
/// (`Connections::expire`). It sleeps on a timer only while such a connection waits,
/// and otherwise until the next release: no periodic wakeup.
async fn reap() {
    let Ok(vsock) = vsock() else { return };
    loop {
        let (deadline, now) = poll_fn(|cx| {
            let mut inner = vsock.inner.lock();
            let now = millis();
            let next = inner.connections.expire(now);
            // An expiry queued RSTs.
            inner.kick();
            match next {
                Some(deadline) => Poll::Ready((deadline, now)),
                None => {
                    inner.reaper = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        crate::time::sleep(crate::time::Duration::from_millis(deadline - now)).await;
    }
}

fn millis() -> u64 {
    crate::time::since_boot().as_millis() as u64
}

/// The guest's CID (starts the device on first call).
///
/// # Errors
/// [`Error::NoDevice`] without a vsock device.
pub fn guest_cid() -> Result<u64, Error> {
    Ok(vsock()?.inner.lock().connections.cid())
}

/// The connections' counters: accepted, refused, malformed packets dropped, bytes.
///
/// # Errors
/// [`Error::NoDevice`] without a vsock device.
pub fn counters() -> Result<Counters, Error> {
    Ok(vsock()?.inner.lock().connections.counters())
}

/// How many interrupts the vsock device raised (0 without one).
pub fn device_interrupts() -> u64 {
    VSOCK
        .get()
        .and_then(Option::as_ref)
        .map_or(0, |vsock| vsock.interrupt.count())
}

/// Accepts connections from the host on one port.
#[derive(Debug)]
pub struct VsockListener {
    port: u32,
}

impl VsockListener {
    /// Listens on `port`, keeping up to `backlog` connections not yet accepted (more are
    /// refused with a reset). Starts the device on first use.
    ///
    /// # Errors
    /// [`Error::NoDevice`] without a vsock device; [`Error::PortInUse`] when another
    /// listener has the port.
    ///
    /// # Examples
    ///
    /// ```ignore
    /// let mut listener = torito::vsock::VsockListener::bind(5555, 64)?;
    /// let stream = listener.accept().await?;
    /// ```
    pub fn bind(port: u32, backlog: usize) -> Result<Self, Error> {
        vsock()?.inner.lock().connections.listen(port, backlog)?;
        Ok(Self { port })
    }

    /// The port listened on.
    pub fn local_port(&self) -> u32 {
        self.port
    }

    /// The next connection (waits for one).
    ///
    /// # Errors
    /// [`Error::NoDevice`] without a device (not after a successful `bind`).
    pub async fn accept(&mut self) -> Result<VsockStream, Error> {
        let vsock = vsock()?;
        let handle = poll_fn(|cx| vsock.inner.lock().connections.poll_accept(self.port, cx)).await;
        let (peer_cid, peer_port, port) = vsock
            .inner
            .lock()
            .connections
            .addresses(handle)
            .unwrap_or((0, 0, self.port));
        Ok(VsockStream {
            vsock,
            handle: Some(handle),
            peer: (peer_cid, peer_port),
            port,
        })
    }
}

impl Drop for VsockListener {
    fn drop(&mut self) {
        if let Ok(vsock) = vsock() {
            let mut inner = vsock.inner.lock();
            inner.connections.unlisten(self.port);
            inner.released();
        }
    }
}

/// One connection with the host.
pub struct VsockStream {
    vsock: &'static Vsock,
    /// `None` once closed.
    handle: Option<Handle>,
    peer: (u64, u32),
    port: u32,
}

impl core::fmt::Debug for VsockStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VsockStream")
            .field("peer", &self.peer)
            .field("port", &self.port)
            .finish()
    }
}

impl VsockStream {
    fn handle(&self) -> Result<Handle, Error> {
        self.handle.ok_or(Error::Closed { port: self.port })
    }

    /// The peer's (CID, port).
    pub fn peer_addr(&self) -> (u64, u32) {
        self.peer
    }

    /// Our port (the listener's, or the one [`connect`](Self::connect) took).
    pub fn local_port(&self) -> u32 {
        self.port
    }

    /// Opens a connection to port `port` of `cid` ([`HOST_CID`] for the host), from a
    /// free local port, waiting up to [`CONNECT_TIMEOUT`] for the answer. Starts the
    /// device on first use.
    ///
    /// # Errors
    /// [`Error::NoDevice`] without a vsock device; [`Error::Refused`] when nothing listens
    /// there (the peer answered with a reset); [`Error::TimedOut`] without an answer;
    /// [`Error::NoPorts`] or [`Error::NoMemory`] when no connection can be opened.
    ///
    /// # Examples
    ///
    /// ```ignore
    /// use torito::vsock::{HOST_CID, VsockStream};
    /// let mut stream = VsockStream::connect(HOST_CID, 7000).await?;
    /// stream.write_all(b"hello").await?;
    /// ```
    pub async fn connect(cid: u64, port: u32) -> Result<Self, Error> {
        Self::connect_timeout(cid, port, CONNECT_TIMEOUT).await
    }

    /// As [`connect`](Self::connect), waiting up to `limit` for the answer.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_timeout(
        cid: u64,
        port: u32,
        limit: crate::time::Duration,
    ) -> Result<Self, Error> {
        let vsock = vsock()?;
        let (handle, local) = {
            let mut inner = vsock.inner.lock();
            let handle = inner.connections.connect(cid, port)?;
            let local = inner
                .connections
                .addresses(handle)
                .map_or(0, |(_, _, local)| local);
            inner.kick();
            (handle, local)
        };
        // Held by a stream at once: a timeout, an error or a dropped future releases it
        // (a connection given up before the answer is reset and freed).
        let stream = VsockStream {
            vsock,
            handle: Some(handle),
            peer: (cid, port),
            port: local,
        };
        let answered = crate::time::timeout(
            limit,
            poll_fn(|cx| vsock.inner.lock().connections.poll_connect(handle, cx)),
        )
        .await;
        match answered {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::TimedOut { cid, port }),
        }
    }

    /// Reads what has arrived (waits for at least one byte); 0 once the peer has shut
    /// its side down and everything was read.
    ///
    /// # Errors
    /// [`Error::Reset`] when the peer reset the connection.
    pub async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        let handle = self.handle()?;
        poll_fn(|cx| {
            let mut inner = self.vsock.inner.lock();
            let result = inner.connections.poll_read(handle, cx, buffer);
            // A read may have queued a credit update.
            inner.kick();
            result
        })
        .await
    }

    /// Queues bytes for sending (waits while the send buffer is full); returns how many
    /// were taken (at least one).
    ///
    /// # Errors
    /// [`Error::Reset`], [`Error::PeerClosed`] or [`Error::Closed`] when the connection
    /// no longer carries bytes this way.
    pub async fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        let handle = self.handle()?;
        poll_fn(|cx| {
            let mut inner = self.vsock.inner.lock();
            let result = inner.connections.poll_write(handle, cx, buffer);
            inner.kick();
            result
        })
        .await
    }

    /// Queues all of `buffer`.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub async fn write_all(&mut self, mut buffer: &[u8]) -> Result<(), Error> {
        while !buffer.is_empty() {
            let written = self.write(buffer).await?;
            buffer = &buffer[written..];
        }
        Ok(())
    }

    /// Waits until everything written was handed to the device (within the peer's
    /// credit).
    ///
    /// # Errors
    /// [`Error::Reset`] when the connection was reset with bytes unsent.
    pub async fn flush(&mut self) -> Result<(), Error> {
        let handle = self.handle()?;
        poll_fn(|cx| {
            let mut inner = self.vsock.inner.lock();
            inner.kick();
            inner.connections.poll_flush(handle, cx)
        })
        .await
    }

    /// Half-close: the peer reads end-of-stream after the bytes written so far; reading
    /// goes on.
    pub fn shutdown(&mut self) {
        if let Some(handle) = self.handle {
            let mut inner = self.vsock.inner.lock();
            inner.connections.shutdown(handle);
            inner.kick();
        }
    }

    /// Sends what is queued, then closes (the peer sees end-of-stream).
    ///
    /// # Errors
    /// [`Error::Reset`] when the connection was reset with bytes unsent.
    pub async fn close(mut self) -> Result<(), Error> {
        let flushed = self.flush().await;
        self.release();
        flushed
    }

    fn release(&mut self) {
        if let Some(handle) = self.handle.take() {
            let mut inner = self.vsock.inner.lock();
            inner.connections.release(handle);
            inner.released();
        }
    }
}

impl Drop for VsockStream {
    fn drop(&mut self) {
        self.release();
    }
}

impl embedded_io::ErrorType for VsockStream {
    type Error = Error;
}

impl embedded_io_async::Read for VsockStream {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        VsockStream::read(self, buffer).await
    }
}

impl embedded_io_async::Write for VsockStream {
    async fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
        VsockStream::write(self, buffer).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        VsockStream::flush(self).await
    }
}

/// Blocking vsock sockets: the async ones, waited on by parking the calling blocking
/// task (see `torito::net::blocking`).
///
/// Call them only from a task started with `torito::task::spawn_blocking`; anywhere else
/// they return [`Error::WouldBlockCore`] instead of stalling the core.
pub mod blocking {
    use super::Error;

    fn park<F: core::future::Future>(future: F) -> Result<F::Output, Error> {
        crate::task::block_on(future).map_err(|_| Error::WouldBlockCore)
    }

    /// Starts the device (once) on a task of this core, not on the calling blocking task:
    /// the start-up (three queues, their buffers) needs more stack than a fiber's 32 KiB,
    /// and a task runs on the core's own stack.
    fn start_off_fiber() -> Result<(), Error> {
        park(crate::task::spawn(async { super::vsock().map(|_| ()) }))?
    }

    /// A blocking vsock listener.
    #[derive(Debug)]
    pub struct VsockListener(super::VsockListener);

    impl VsockListener {
        /// As [`super::VsockListener::bind`].
        ///
        /// # Errors
        /// As [`super::VsockListener::bind`].
        pub fn bind(port: u32, backlog: usize) -> Result<Self, Error> {
            start_off_fiber()?;
            super::VsockListener::bind(port, backlog).map(Self)
        }

        /// The next connection (blocks until one comes).
        ///
        /// # Errors
        /// As [`super::VsockListener::accept`], and [`Error::WouldBlockCore`].
        pub fn accept(&mut self) -> Result<VsockStream, Error> {
            park(self.0.accept())?.map(VsockStream)
        }

        /// The async listener inside.
        pub fn as_async(&mut self) -> &mut super::VsockListener {
            &mut self.0
        }
    }

    impl VsockStream {
        /// As [`super::VsockStream::connect`], blocking.
        ///
        /// # Errors
        /// As the async call, and [`Error::WouldBlockCore`].
        pub fn connect(cid: u64, port: u32) -> Result<Self, Error> {
            start_off_fiber()?;
            park(super::VsockStream::connect(cid, port))?.map(Self)
        }

        /// As [`super::VsockStream::connect_timeout`], blocking.
        ///
        /// # Errors
        /// As the async call, and [`Error::WouldBlockCore`].
        pub fn connect_timeout(
            cid: u64,
            port: u32,
            limit: crate::time::Duration,
        ) -> Result<Self, Error> {
            start_off_fiber()?;
            park(super::VsockStream::connect_timeout(cid, port, limit))?.map(Self)
        }
    }

    /// A blocking vsock connection.
    #[derive(Debug)]
    pub struct VsockStream(super::VsockStream);

    impl VsockStream {
        /// As [`super::VsockStream::read`], blocking.
        ///
        /// # Errors
        /// As the async call, and [`Error::WouldBlockCore`].
        pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
            park(self.0.read(buffer))?
        }

        /// As [`super::VsockStream::write`], blocking.
        ///
        /// # Errors
        /// As the async call, and [`Error::WouldBlockCore`].
        pub fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
            park(self.0.write(buffer))?
        }

        /// As [`super::VsockStream::write_all`], blocking.
        ///
        /// # Errors
        /// As the async call, and [`Error::WouldBlockCore`].
        pub fn write_all(&mut self, buffer: &[u8]) -> Result<(), Error> {
            park(self.0.write_all(buffer))?
        }

        /// As [`super::VsockStream::flush`], blocking.
        ///
        /// # Errors
        /// As the async call, and [`Error::WouldBlockCore`].
        pub fn flush(&mut self) -> Result<(), Error> {
            park(self.0.flush())?
        }

        /// Half-close (does not block).
        pub fn shutdown(&mut self) {
            self.0.shutdown();
        }

        /// As [`super::VsockStream::close`], blocking.
        ///
        /// # Errors
        /// As the async call, and [`Error::WouldBlockCore`].
        pub fn close(self) -> Result<(), Error> {
            park(self.0.close())?
        }

        /// The async stream inside.
        pub fn as_async(&mut self) -> &mut super::VsockStream {
            &mut self.0
        }
    }

    impl embedded_io::ErrorType for VsockStream {
        type Error = Error;
    }

    impl embedded_io::Read for VsockStream {
        fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
            VsockStream::read(self, buffer)
        }
    }

    impl embedded_io::Write for VsockStream {
        fn write(&mut self, buffer: &[u8]) -> Result<usize, Error> {
            VsockStream::write(self, buffer)
        }

        fn flush(&mut self) -> Result<(), Error> {
            VsockStream::flush(self)
        }
    }
}
