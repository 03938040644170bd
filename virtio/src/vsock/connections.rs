//! The stream protocol of virtio-vsock (spec 5.10.6): listeners, connections, credit.
//!
//! Plain code with no device in sight: received packets go in through
//! [`Connections::receive`], packets to send come out of [`Connections::transmit`], and
//! the socket calls (`poll_accept`, `poll_read`, `poll_write`, ...) register wakers and
//! say `Pending` when they must wait. The device glue ([`super::VsockDevice`]) moves the
//! bytes; the kernel holds both under one lock and runs them from its vsock task. The
//! host tests drive this directly, hostile peers included.
//!
//! Flow control (spec 5.10.6.3): every packet carries the sender's `buf_alloc` (its
//! receive buffer) and `fwd_cnt` (payload it has consumed). We send payload only while
//! `buf_alloc - (tx_cnt - fwd_cnt)` of the peer's credit is left; with none left we ask
//! once (`CREDIT_REQUEST`) and wait for its update. Our own receive buffer is exactly
//! the `buf_alloc` we announce, so a peer that keeps to its credit always fits; one
//! that sends past it breaks the stream, which is then reset and counted. We announce
//! consumed bytes in every packet we send, and in a `CREDIT_UPDATE` of its own once the
//! application has read a quarter of the buffer since the last announcement: a peer at
//! zero credit (our buffer full) therefore always hears of the room made by the reads
//! that emptied it.
//!
//! Connecting (spec 5.10.6.4): [`Connections::connect`] takes a free local port, opens a
//! slot in the *connecting* state and queues a `REQUEST`; the peer's `RESPONSE` makes it
//! a stream ([`Connections::poll_connect`] is then `Ready(Ok)`), its `RST` a refusal,
//! and any other packet before the `RESPONSE` a broken handshake (reset, answered by
//! `RST`). No answer at all is the caller's timeout: releasing a connecting handle sends
//! `RST` and frees the slot at once.
//!
//! A connection's slot lives while a handle to it exists (a pending connection in a
//! listener's queue, or a stream). When the handle is released the connection sends
//! what it still holds, then `SHUTDOWN`, and is freed when the peer answers with `RST`
//! (or shuts down too, when we send the `RST`), or after [`CLOSE_TIMEOUT_MS`] without an
//! answer (we send the `RST`).
#![deny(unsafe_code)]

use super::error::VsockError;
use super::packet::{HEADER, Header, Malformed, Op, SHUTDOWN_RECEIVE, SHUTDOWN_SEND};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::task::{Context, Poll, Waker};

/// How long a closed connection waits for the peer to end it (our `SHUTDOWN` answered
/// by its `RST`, or its own `SHUTDOWN`) before we reset it: Linux's
/// `VSOCK_CLOSE_TIMEOUT`.
pub const CLOSE_TIMEOUT_MS: u64 = 8_000;

/// A connection, as the socket layer names it (its slot; unique while the handle lives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(usize);

/// The first local port [`Connections::connect`] tries (ports below it are for
/// listeners; Linux starts its own above 1023 and moves on from there).
pub const FIRST_LOCAL_PORT: u32 = 49_152;

/// What the protocol layer did and dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted into a listener's queue.
    pub accepted: u64,
    /// Connection requests refused (no listener, full backlog, no memory).
    pub refused: u64,
    /// Connections we opened that the peer accepted.
    pub connected: u64,
    /// Connections we opened that the peer refused, broke off in the handshake, or
    /// that were given up unanswered.
    pub connect_failed: u64,
    /// Packets dropped as malformed (short, bad length, unknown type or operation).
    pub malformed: u64,
    /// Packets for another CID, or from a connection we do not know (answered by RST).
    pub unknown: u64,
    /// Connections reset because the peer sent past the credit we gave it.
    pub credit_violations: u64,
    /// Closed connections reset because the peer did not answer our shutdown in time.
    pub close_timeouts: u64,
    /// Used-ring entries the device glue could not trust (another token, a length past
    /// the buffer): dropped.
    pub bad_used: u64,
    /// Payload bytes received and sent.
    pub bytes_in: u64,
    /// See `bytes_in`.
    pub bytes_out: u64,
    /// Packets received and sent.
    pub packets_in: u64,
    /// See `packets_in`.
    pub packets_out: u64,
}

struct Listener {
    port: u32,
    backlog: usize,
    pending: VecDeque<Handle>,
    acceptor: Option<Waker>,
}

/// A control packet waiting for a transmit buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// For a live connection (its header is filled in when sent, with fresh credit).
    Connection(Handle, Op),
    /// A reset to a peer we keep no state for: (peer cid, peer port, our port).
    Rst(u64, u32, u32),
}

struct Connection {
    peer_cid: u64,
    peer_port: u32,
    port: u32,
    /// A listener's queue or a stream holds the handle.
    held: bool,
    /// Received, not yet read.
    rx: VecDeque<u8>,
    /// Payload bytes the application has read (free-running, as on the wire).
    fwd_cnt: u32,
    /// The `fwd_cnt` the peer last heard from us.
    announced: u32,
    /// Written by the application, not yet sent.
    tx: VecDeque<u8>,
    /// Payload bytes sent (free-running).
    tx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    credit_requested: bool,
    credit_update_queued: bool,
    /// Shutdown flags the peer sent (it will send / receive no more).
    peer_shutdown: u32,
    /// Shutdown flags we want sent (once `tx` is empty), and those sent.
    shutdown_wanted: u32,
    shutdown_sent: u32,
    /// The peer reset the connection (or we did, over a broken stream).
    reset: bool,
    /// Ours, `REQUEST` queued or sent, no `RESPONSE` yet.
    connecting: bool,
    /// When [`Connections::expire`] first saw it released (milliseconds).
    released_at: Option<u64>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Connection {
    /// A held, open connection with nothing in it yet; the peer's credit as given.
    fn new(peer_cid: u64, peer_port: u32, port: u32, buf_alloc: u32, fwd_cnt: u32) -> Self {
        Connection {
            peer_cid,
            peer_port,
            port,
            held: true,
            rx: VecDeque::new(),
            fwd_cnt: 0,
            announced: 0,
            tx: VecDeque::new(),
            tx_cnt: 0,
            peer_buf_alloc: buf_alloc,
            peer_fwd_cnt: fwd_cnt,
            credit_requested: false,
            credit_update_queued: false,
            peer_shutdown: 0,
            shutdown_wanted: 0,
            shutdown_sent: 0,
            reset: false,
            connecting: false,
            released_at: None,
            reader: None,
            writer: None,
        }
    }

    /// Credit the peer gives us now. Saturating: a peer whose `fwd_cnt` runs ahead of
    /// what we sent gives none, rather than a wrapped-around flood.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn wake_reader(&mut self) {
        if let Some(waker) = self.reader.take() {
            waker.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    fn ended(&self) -> bool {
        self.reset || self.peer_shutdown & SHUTDOWN_SEND != 0
    }
}

/// Every listener and connection of one vsock device.
pub struct Connections {
    cid: u64,
    buffer: u32,
    listeners: Vec<Listener>,
    slots: Vec<Option<Connection>>,
    control: VecDeque<Control>,
    /// Where the round-robin over connections with data to send resumes.
    next: usize,
    /// The local port [`connect`](Self::connect) tries next.
    next_port: u32,
    counters: Counters,
}

impl Connections {
    /// No listeners yet; `cid` is the guest's (the device's configuration), `buffer` the
    /// receive and send buffer of each connection, in bytes.
    pub fn new(cid: u64, buffer: u32) -> Self {
        Self {
            cid,
            buffer,
            listeners: Vec::new(),
            slots: Vec::new(),
            control: VecDeque::new(),
            next: 0,
            next_port: FIRST_LOCAL_PORT,
            counters: Counters::default(),
        }
    }

    /// The guest's CID.
    pub fn cid(&self) -> u64 {
        self.cid
    }

    /// What was received, sent and dropped.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Connections with a slot (open, pending or closing).
    pub fn live(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Accepts connections to `port`, keeping up to `backlog` not yet accepted.
    ///
    /// # Errors
    /// [`VsockError::PortInUse`] when another listener has the port.
    pub fn listen(&mut self, port: u32, backlog: usize) -> Result<(), VsockError> {
        if self.listeners.iter().any(|listener| listener.port == port) {
            return Err(VsockError::PortInUse { port });
        }
        self.listeners.push(Listener {
            port,
            backlog: backlog.max(1),
            pending: VecDeque::new(),
            acceptor: None,
        });
        Ok(())
    }

    /// Stops listening on `port`; connections not yet accepted are closed.
    pub fn unlisten(&mut self, port: u32) {
        let Some(index) = self.listeners.iter().position(|l| l.port == port) else {
            return;
        };
        let listener = self.listeners.swap_remove(index);
        for handle in listener.pending {
            self.release(handle);
        }
    }

    /// The oldest connection waiting on `port`, or `Pending` with the waker registered.
    pub fn poll_accept(&mut self, port: u32, cx: &mut Context<'_>) -> Poll<Handle> {
        let Some(listener) = self.listeners.iter_mut().find(|l| l.port == port) else {
            return Poll::Pending;
        };
        match listener.pending.pop_front() {
            Some(handle) => Poll::Ready(handle),
            None => {
                listener.acceptor = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Opens a connection to `peer_cid`'s `peer_port` from a free local port: queues the
    /// `REQUEST`; [`poll_connect`](Self::poll_connect) says when the peer answered. The
    /// handle is held, as an accepted one: [`release`](Self::release) it when done (or
    /// when giving up on the answer).
    ///
    /// # Errors
    /// [`VsockError::NoPorts`] when every local port is taken; [`VsockError::NoMemory`]
    /// when no slot could be allocated.
    pub fn connect(&mut self, peer_cid: u64, peer_port: u32) -> Result<Handle, VsockError> {
        let port = self.free_port(peer_cid, peer_port)?;
        let connection = Connection {
            connecting: true,
            ..Connection::new(peer_cid, peer_port, port, 0, 0)
        };
        let handle = self
            .insert(connection)
            .ok_or(VsockError::NoMemory { port })?;
        self.control
            .push_back(Control::Connection(handle, Op::Request));
        Ok(handle)
    }

    /// A local port for a connection to (`peer_cid`, `peer_port`): no listener's, and no
    /// live connection's to the same peer port (the addresses must name one connection).
    fn free_port(&mut self, peer_cid: u64, peer_port: u32) -> Result<u32, VsockError> {
        // Ports from FIRST_LOCAL_PORT to u32::MAX - 1 (u32::MAX is VMADDR_PORT_ANY).
        let span = u32::MAX - FIRST_LOCAL_PORT;
        // As many tries as there are connections and listeners, plus one, always find
        // a free port: each of them takes at most one.
        let tries = self.slots.len() + self.listeners.len() + 1;
        for _ in 0..tries.min(span as usize) {
            let port = self.next_port;
            self.next_port = FIRST_LOCAL_PORT + (port - FIRST_LOCAL_PORT + 1) % span;
            let taken =
                self.listeners.iter().any(|l| l.port == port)
                    || self.slots.iter().flatten().any(|c| {
                        c.port == port && c.peer_cid == peer_cid && c.peer_port == peer_port
                    });
            if !taken {
                return Ok(port);
            }
        }
        Err(VsockError::NoPorts)
    }

    /// `Ready(Ok)` once the peer accepted the connection opened by
    /// [`connect`](Self::connect), else `Pending` with the waker registered.
    ///
    /// # Errors
    /// [`VsockError::Refused`] when the peer answered with `RST` (nothing listens on
    /// its port), broke off the handshake, or the transport was reset.
    ///
    /// # Panics
    /// When `handle` was already released (a broken invariant of the socket layer).
    pub fn poll_connect(
        &mut self,
        handle: Handle,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), VsockError>> {
        let connection = self.connection(handle);
        if connection.reset {
            Poll::Ready(Err(VsockError::Refused {
                cid: connection.peer_cid,
                port: connection.peer_port,
            }))
        } else if connection.connecting {
            connection.writer = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    /// Puts `connection` in a free slot (or a new one); `None` without memory.
    fn insert(&mut self, connection: Connection) -> Option<Handle> {
        match self.slots.iter().position(Option::is_none) {
            Some(slot) => {
                self.slots[slot] = Some(connection);
                Some(Handle(slot))
            }
            None => {
                self.slots.try_reserve(1).ok()?;
                self.slots.push(Some(connection));
                Some(Handle(self.slots.len() - 1))
            }
        }
    }

    /// The peer's (cid, port) and our port.
    pub fn addresses(&self, handle: Handle) -> Option<(u64, u32, u32)> {
        let connection = self.slots.get(handle.0)?.as_ref()?;
        Some((connection.peer_cid, connection.peer_port, connection.port))
    }

    fn connection(&mut self, handle: Handle) -> &mut Connection {
        // A handle always names a held slot: slots are freed only once released.
        self.slots[handle.0]
            .as_mut()
            .expect("vsock: a handle outlived its connection")
    }

    /// Copies received bytes into `buffer`: `Ready(Ok(0))` once the peer has shut its
    /// side down and everything was read.
    ///
    /// # Errors
    /// [`VsockError::Reset`] when the peer reset the connection (after the bytes that
    /// came before the reset were read).
    ///
    /// # Panics
    /// When `handle` was already released (a broken invariant of the socket layer,
    /// which releases a handle only when its stream is closed or dropped).
    pub fn poll_read(
        &mut self,
        handle: Handle,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<Result<usize, VsockError>> {
        let quarter = self.buffer / 4;
        let connection = self.connection(handle);
        if buffer.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if connection.rx.is_empty() {
            if connection.peer_shutdown & SHUTDOWN_SEND != 0 {
                return Poll::Ready(Ok(0));
            }
            if connection.reset {
                return Poll::Ready(Err(VsockError::Reset {
                    port: connection.port,
                }));
            }
            connection.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let (front, back) = connection.rx.as_slices();
        let count = buffer.len().min(connection.rx.len());
        let from_front = count.min(front.len());
        buffer[..from_front].copy_from_slice(&front[..from_front]);
        buffer[from_front..count].copy_from_slice(&back[..count - from_front]);
        connection.rx.drain(..count);
        connection.fwd_cnt = connection.fwd_cnt.wrapping_add(count as u32);
        let unannounced = connection.fwd_cnt.wrapping_sub(connection.announced);
        if unannounced >= quarter && !connection.credit_update_queued && !connection.ended() {
            connection.credit_update_queued = true;
            self.control
                .push_back(Control::Connection(handle, Op::CreditUpdate));
        }
        Poll::Ready(Ok(count))
    }

    /// Queues bytes from `buffer` for sending: `Ready(Ok(n))` with `n >= 1` when the
    /// connection's send buffer had room, else `Pending` with the waker registered.
    ///
    /// # Errors
    /// [`VsockError::Reset`] after a reset, [`VsockError::PeerClosed`] when the peer
    /// receives no more, [`VsockError::Closed`] after our own shutdown.
    ///
    /// # Panics
    /// When `handle` was already released (a broken invariant of the socket layer,
    /// which releases a handle only when its stream is closed or dropped).
    pub fn poll_write(
        &mut self,
        handle: Handle,
        cx: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<Result<usize, VsockError>> {
        let capacity = self.buffer as usize;
        let connection = self.connection(handle);
        let port = connection.port;
        if connection.reset {
            return Poll::Ready(Err(VsockError::Reset { port }));
        }
        if connection.peer_shutdown & SHUTDOWN_RECEIVE != 0 {
            return Poll::Ready(Err(VsockError::PeerClosed { port }));
        }
        if connection.shutdown_wanted & SHUTDOWN_SEND != 0 {
            return Poll::Ready(Err(VsockError::Closed { port }));
        }
        if buffer.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = capacity.saturating_sub(connection.tx.len());
        if room == 0 {
            connection.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let count = room.min(buffer.len());
        if connection.tx.try_reserve(count).is_err() {
            return Poll::Ready(Err(VsockError::NoMemory { port }));
        }
        connection.tx.extend(&buffer[..count]);
        Poll::Ready(Ok(count))
    }

    /// `Ready` once every byte written has been sent to the device (and the peer had the
    /// credit for it).
    ///
    /// # Errors
    /// [`VsockError::Reset`] when the connection was reset with bytes unsent.
    ///
    /// # Panics
    /// When `handle` was already released (a broken invariant of the socket layer,
    /// which releases a handle only when its stream is closed or dropped).
    pub fn poll_flush(
        &mut self,
        handle: Handle,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), VsockError>> {
        let connection = self.connection(handle);
        if connection.tx.is_empty() {
            Poll::Ready(Ok(()))
        } else if connection.reset {
            Poll::Ready(Err(VsockError::Reset {
                port: connection.port,
            }))
        } else {
            connection.writer = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Half-close: after the bytes written so far, tells the peer we send no more.
    ///
    /// # Panics
    /// When `handle` was already released (a broken invariant of the socket layer,
    /// which releases a handle only when its stream is closed or dropped).
    pub fn shutdown(&mut self, handle: Handle) {
        self.connection(handle).shutdown_wanted |= SHUTDOWN_SEND;
    }

    /// Gives the handle up (the stream was closed or dropped): what is queued is still
    /// sent, then `SHUTDOWN`; the slot is freed when the peer answers.
    ///
    /// # Panics
    /// When `handle` was already released (a broken invariant of the socket layer,
    /// which releases a handle only when its stream is closed or dropped).
    pub fn release(&mut self, handle: Handle) {
        let connection = self.connection(handle);
        if connection.connecting {
            // Given up before the peer answered: a reset tells it (spec 5.10.6.6), and
            // there is nothing to finish.
            if !connection.reset {
                let rst = Control::Rst(connection.peer_cid, connection.peer_port, connection.port);
                self.control.push_back(rst);
                self.counters.connect_failed += 1;
            }
            self.slots[handle.0] = None;
            return;
        }
        connection.held = false;
        connection.shutdown_wanted = SHUTDOWN_SEND | SHUTDOWN_RECEIVE;
        // Bytes that arrive from now on are read by nobody.
        let unread = connection.rx.len() as u32;
        // Give the buffer's memory back now: the slot may wait long for the peer's RST.
        connection.rx = VecDeque::new();
        connection.fwd_cnt = connection.fwd_cnt.wrapping_add(unread);
        self.settle(handle);
    }

    /// Resets and frees released connections whose peer has not ended them within
    /// [`CLOSE_TIMEOUT_MS`] of `now` (milliseconds, any fixed origin), so a silent peer
    /// cannot keep slots for ever; returns the next such deadline, `None` when no
    /// released connection is left (then nothing needs calling until the next release).
    pub fn expire(&mut self, now: u64) -> Option<u64> {
        let mut next: Option<u64> = None;
        for index in 0..self.slots.len() {
            let Some(connection) = self.slots[index].as_mut() else {
                continue;
            };
            if connection.held {
                continue;
            }
            let since = *connection.released_at.get_or_insert(now);
            let deadline = since.saturating_add(CLOSE_TIMEOUT_MS);
            if now >= deadline {
                let rst = Control::Rst(connection.peer_cid, connection.peer_port, connection.port);
                self.control.push_back(rst);
                self.slots[index] = None;
                self.counters.close_timeouts += 1;
            } else {
                next = Some(next.map_or(deadline, |earliest| earliest.min(deadline)));
            }
        }
        next
    }

    /// Frees a released connection that is over, answering the peer's shutdown with the
    /// `RST` that ends it (spec 5.10.6.6).
    fn settle(&mut self, handle: Handle) {
        let Some(connection) = self.slots[handle.0].as_ref() else {
            return;
        };
        if connection.held {
            return;
        }
        let both = SHUTDOWN_SEND | SHUTDOWN_RECEIVE;
        if connection.reset {
            self.slots[handle.0] = None;
        } else if connection.shutdown_sent == both && connection.peer_shutdown == both {
            self.control.push_back(Control::Rst(
                connection.peer_cid,
                connection.peer_port,
                connection.port,
            ));
            self.slots[handle.0] = None;
        }
    }

    fn find(&self, header: &Header) -> Option<Handle> {
        self.slots
            .iter()
            .position(|slot| {
                slot.as_ref().is_some_and(|c| {
                    c.peer_cid == header.src_cid
                        && c.peer_port == header.src_port
                        && c.port == header.dst_port
                })
            })
            .map(Handle)
    }

    /// Handles one packet as the device wrote it. A malformed one is dropped and
    /// counted; the reason is returned for the log.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), Malformed> {
        let (header, body) = match Header::parse(bytes) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.counters.malformed += 1;
                return Err(error);
            }
        };
        self.counters.packets_in += 1;
        if header.dst_cid != self.cid {
            self.counters.unknown += 1;
            return Ok(());
        }
        let Some(handle) = self.find(&header) else {
            self.unknown_connection(&header);
            return Ok(());
        };
        let capacity = self.buffer as usize;
        let connection = self.connection(handle);
        connection.peer_buf_alloc = header.buf_alloc;
        connection.peer_fwd_cnt = header.fwd_cnt;
        if connection.connecting {
            self.handshake(handle, header.op);
            return Ok(());
        }
        if connection.peer_credit() > 0 && !connection.tx.is_empty() {
            connection.credit_requested = false;
        }
        match header.op {
            Op::Rw => {
                if connection.peer_shutdown & SHUTDOWN_SEND != 0 || connection.reset {
                    self.counters.unknown += 1;
                } else if connection.rx.len() + body.len() > capacity
                    || connection.rx.try_reserve(body.len()).is_err()
                {
                    // Past the credit we gave (or no memory for it): the stream has a
                    // hole now, so it ends here.
                    self.counters.credit_violations += 1;
                    self.reset(handle);
                } else if !connection.held {
                    // Nobody will read it: consume it at once so the peer is not stalled.
                    connection.fwd_cnt = connection.fwd_cnt.wrapping_add(body.len() as u32);
                    self.counters.bytes_in += body.len() as u64;
                } else {
                    connection.rx.extend(body);
                    connection.wake_reader();
                    self.counters.bytes_in += body.len() as u64;
                }
            }
            Op::Shutdown => {
                connection.peer_shutdown |= header.flags & (SHUTDOWN_SEND | SHUTDOWN_RECEIVE);
                connection.wake_reader();
                connection.wake_writer();
            }
            Op::Rst => {
                connection.reset = true;
                connection.wake_reader();
                connection.wake_writer();
            }
            Op::CreditRequest => {
                // Answer, unless the answer would only repeat a full buffer the peer
                // already knows of: a peer that asks again at once (vhost-device-vsock
                // does, for every byte it holds) would otherwise ping-pong with us until
                // the application reads, which sends the update anyway (at a quarter).
                let repeat =
                    connection.announced == connection.fwd_cnt && connection.rx.len() >= capacity;
                if !connection.credit_update_queued && !repeat {
                    connection.credit_update_queued = true;
                    self.control
                        .push_back(Control::Connection(handle, Op::CreditUpdate));
                }
            }
            // The credit fields were taken above; a request or response on a live
            // connection carries nothing else for us.
            Op::CreditUpdate | Op::Request | Op::Response => {}
        }
        if let Some(connection) = self.slots[handle.0].as_mut()
            && connection.peer_credit() > 0
        {
            connection.credit_requested = false;
        }
        self.settle(handle);
        Ok(())
    }

    /// The peer's answer to our `REQUEST`: `RESPONSE` opens the stream, `RST` refuses
    /// it, anything else breaks the handshake (we reset). Its credit was taken already.
    fn handshake(&mut self, handle: Handle, op: Op) {
        let connection = self.connection(handle);
        connection.connecting = false;
        connection.wake_writer();
        match op {
            Op::Response => self.counters.connected += 1,
            Op::Rst => {
                connection.reset = true;
                self.counters.connect_failed += 1;
            }
            _ => {
                self.counters.connect_failed += 1;
                self.counters.unknown += 1;
                self.reset(handle);
            }
        }
    }

    /// Queues a reset answering the packet `header` came with (to its sender, from the
    /// port it was sent to), for a peer we keep no state for.
    fn reset_sender(&mut self, header: &Header) {
        self.control.push_back(Control::Rst(
            header.src_cid,
            header.src_port,
            header.dst_port,
        ));
    }

    /// A packet that matches no connection: a request for a listener opens one; anything
    /// else but a reset is answered with a reset.
    fn unknown_connection(&mut self, header: &Header) {
        if header.op == Op::Rst {
            return;
        }
        if header.op != Op::Request {
            self.counters.unknown += 1;
            self.reset_sender(header);
            return;
        }
        let Some(index) = self
            .listeners
            .iter()
            .position(|l| l.port == header.dst_port && l.pending.len() < l.backlog)
        else {
            self.counters.refused += 1;
            self.reset_sender(header);
            return;
        };
        let connection = Connection::new(
            header.src_cid,
            header.src_port,
            header.dst_port,
            header.buf_alloc,
            header.fwd_cnt,
        );
        let Some(handle) = self.insert(connection) else {
            self.counters.refused += 1;
            self.reset_sender(header);
            return;
        };
        self.counters.accepted += 1;
        self.control
            .push_back(Control::Connection(handle, Op::Response));
        let listener = &mut self.listeners[index];
        listener.pending.push_back(handle);
        if let Some(waker) = listener.acceptor.take() {
            waker.wake();
        }
    }

    /// Ends a connection at once (a broken stream): `RST` to the peer, errors to the
    /// stream's calls.
    fn reset(&mut self, handle: Handle) {
        let connection = self.connection(handle);
        connection.reset = true;
        connection.tx.clear();
        connection.wake_reader();
        connection.wake_writer();
        let rst = Control::Rst(connection.peer_cid, connection.peer_port, connection.port);
        self.control.push_back(rst);
    }

    /// The device was reset under us (event `VIRTIO_VSOCK_EVENT_TRANSPORT_RESET`, spec
    /// 5.10.6.7): every connection is gone.
    pub fn transport_reset(&mut self) {
        self.control.clear();
        for index in 0..self.slots.len() {
            if let Some(connection) = self.slots[index].as_mut() {
                connection.reset = true;
                connection.tx.clear();
                connection.wake_reader();
                connection.wake_writer();
                self.settle(Handle(index));
            }
        }
    }

    /// Whether [`transmit`](Self::transmit) has something to send.
    pub fn wants_transmit(&self) -> bool {
        !self.control.is_empty()
            || self
                .slots
                .iter()
                .flatten()
                .any(|c| Self::sendable(c).is_some())
    }

    /// What a connection would send next, if anything: payload (with credit), a credit
    /// request (without), or its shutdown.
    fn sendable(connection: &Connection) -> Option<Op> {
        if connection.reset || connection.connecting {
            return None;
        }
        if !connection.tx.is_empty() {
            return if connection.peer_credit() > 0 {
                Some(Op::Rw)
            } else if !connection.credit_requested {
                Some(Op::CreditRequest)
            } else {
                None
            };
        }
        (connection.shutdown_wanted & !connection.shutdown_sent != 0).then_some(Op::Shutdown)
    }

    /// Writes the next packet into `out` (header and payload; `out` holds at least a
    /// header) and returns its length, or `None` when there is nothing to send.
    pub fn transmit(&mut self, out: &mut [u8]) -> Option<usize> {
        while let Some(control) = self.control.pop_front() {
            let header = match control {
                Control::Rst(peer_cid, peer_port, port) => Header {
                    src_cid: self.cid,
                    dst_cid: peer_cid,
                    src_port: port,
                    dst_port: peer_port,
                    len: 0,
                    op: Op::Rst,
                    flags: 0,
                    buf_alloc: 0,
                    fwd_cnt: 0,
                },
                Control::Connection(handle, op) => {
                    let Some(connection) = self.slots[handle.0].as_mut() else {
                        continue;
                    };
                    if connection.reset {
                        continue;
                    }
                    if op == Op::CreditUpdate {
                        connection.credit_update_queued = false;
                    }
                    self.header(handle, op, 0)
                }
            };
            header.write(out);
            self.counters.packets_out += 1;
            return Some(HEADER);
        }
        let count = self.slots.len();
        for step in 0..count {
            let index = (self.next + step) % count;
            let Some(op) = self.slots[index].as_ref().and_then(Self::sendable) else {
                continue;
            };
            self.next = index + 1;
            let handle = Handle(index);
            let length = match op {
                Op::Rw => {
                    let room = out.len() - HEADER;
                    let connection = self.connection(handle);
                    let length = (connection.peer_credit() as usize)
                        .min(connection.tx.len())
                        .min(room);
                    let (front, back) = connection.tx.as_slices();
                    let from_front = length.min(front.len());
                    out[HEADER..HEADER + from_front].copy_from_slice(&front[..from_front]);
                    out[HEADER + from_front..HEADER + length]
                        .copy_from_slice(&back[..length - from_front]);
                    connection.tx.drain(..length);
                    connection.tx_cnt = connection.tx_cnt.wrapping_add(length as u32);
                    connection.wake_writer();
                    self.counters.bytes_out += length as u64;
                    length
                }
                Op::CreditRequest => {
                    self.connection(handle).credit_requested = true;
                    0
                }
                _ => {
                    let connection = self.connection(handle);
                    connection.shutdown_sent = connection.shutdown_wanted;
                    if !connection.held {
                        // Everything was sent (a shutdown waits for that): free the memory.
                        connection.tx = VecDeque::new();
                    }
                    connection.wake_writer();
                    0
                }
            };
            let mut header = self.header(handle, op, length as u32);
            if op == Op::Shutdown {
                header.flags = self.connection(handle).shutdown_sent;
            }
            header.write(out);
            self.counters.packets_out += 1;
            self.settle(handle);
            return Some(HEADER + length);
        }
        None
    }

    /// A header for `handle`'s connection, announcing our credit.
    fn header(&mut self, handle: Handle, op: Op, len: u32) -> Header {
        let (cid, buffer) = (self.cid, self.buffer);
        let connection = self.connection(handle);
        connection.announced = connection.fwd_cnt;
        Header {
            src_cid: cid,
            dst_cid: connection.peer_cid,
            src_port: connection.port,
            dst_port: connection.peer_port,
            len,
            op,
            flags: 0,
            buf_alloc: buffer,
            fwd_cnt: connection.fwd_cnt,
        }
    }
}

impl Connections {
    /// Counts a used-ring entry the device glue dropped.
    pub(super) fn count_bad_used(&mut self) {
        self.counters.bad_used += 1;
    }
}
