//! The network front end (`io/netif.h`), joined to the stack as a
//! [`torito_netstack::Driver`].
//!
//! Why: a Xen domU's NIC is a pair of shared rings to netback in dom0, set up through
//! xenstore ([`connect`]). It is the vif that `xl create` gives the guest.
//!
//! How frames move: every ring slot has its own buffer page, granted to the backend
//! once at connection and never again, so the hot path makes no grant and no
//! allocation. Receive uses copy mode (`request-rx-copy=1`): netback copies each frame
//! into a posted page and answers with its offset and length. Transmit writes the frame
//! into a free buffer page and posts its reference. Requests reach the backend at
//! [`Driver::flush`], one notification per batch and only if netback asked for it
//! (`req_event`).
//!
//! No `unsafe`, so no borrowed view of a shared page: a received frame is copied out of
//! its page into the driver's buffer (the [`RxToken`] lends that buffer) and the page
//! is posted again at once; a frame to send is written by the stack into the driver's
//! buffer, then copied into its page. One copy each way, of at most 1514 bytes.
//!
//! Checksums: the front end says `feature-no-csum-offload=1`, so netback hands over
//! frames with complete checksums (smoltcp checks them), and frames sent carry
//! smoltcp's. No scatter-gather, no GSO: one frame, one slot.
//!
//! What it trusts: nothing netback writes. A response id that was never posted (or is
//! not outstanding), a negative status, a length or offset that would reach past the
//! page or the frame buffer, a fragmented frame (never negotiated), are each dropped
//! and counted ([`NetFrontStats`]), the buffer posted again where it is ours. A
//! `rsp_prod` past the requests published stops the device ([`RingError`]): counted, and
//! the driver answers "not ready" from then on. None panics.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::Waker;

use futures_util::task::AtomicWaker;
use torito_netstack::{Driver, RxToken, TxToken};

use super::grant::{GrantError, GrantRef, Table};
use super::ring::{Entry, FrontRing, RingError};
use super::xenstore::{Errno, XenStore, XenstoreError};
use super::{EventChannel, GuestPage, PAGE_SIZE, SharedPage};

/// The IP MTU: frames are at most `MTU + 14` bytes.
pub const MTU: usize = 1500;
/// The longest frame, without FCS.
pub const FRAME_MAX: usize = MTU + 14;

/// `XenbusStateInitialising`.
pub const STATE_INITIALISING: u32 = 1;
/// `XenbusStateInitWait`: the backend waits for the front end's details.
pub const STATE_INIT_WAIT: u32 = 2;
/// `XenbusStateInitialised`: the front end's details are written.
pub const STATE_INITIALISED: u32 = 3;
/// `XenbusStateConnected`.
pub const STATE_CONNECTED: u32 = 4;
/// `XenbusStateClosing`.
pub const STATE_CLOSING: u32 = 5;

/// `NETRXF_more_data` / `NETTXF_more_data`: the frame continues in the next slot.
pub const MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info` / `NETTXF_extra_info`: an extra-info slot follows.
pub const EXTRA_INFO: u16 = 1 << 3;
/// `NETIF_RSP_OKAY`.
pub const RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL`: the response to an extra-info slot.
pub const RSP_NULL: i16 = 1;

/// `struct netif_tx_request`: a frame to send, in a granted page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRequest {
    /// The buffer page's grant.
    pub gref: u32,
    /// Where the frame starts in the page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// The frame's length.
    pub size: u16,
}

/// `struct netif_tx_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxResponse {
    /// The request's id.
    pub id: u16,
    /// `NETIF_RSP_*`: 0 sent, negative dropped or failed.
    pub status: i16,
}

/// `struct netif_rx_request`: a granted page to receive into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// The page's grant.
    pub gref: u32,
}

/// `struct netif_rx_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxResponse {
    /// The request's id.
    pub id: u16,
    /// Where the frame starts in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// The frame's length if not negative, else `NETIF_RSP_*`.
    pub status: i16,
}

impl Entry for TxRequest {
    const SIZE: usize = 12;
    fn load<P: SharedPage + ?Sized>(page: &P, offset: usize) -> Self {
        Self {
            gref: page.load_u32(offset),
            offset: page.load_u16(offset + 4),
            flags: page.load_u16(offset + 6),
            id: page.load_u16(offset + 8),
            size: page.load_u16(offset + 10),
        }
    }
    fn store<P: SharedPage + ?Sized>(&self, page: &P, offset: usize) {
        page.store_u32(offset, self.gref);
        page.store_u16(offset + 4, self.offset);
        page.store_u16(offset + 6, self.flags);
        page.store_u16(offset + 8, self.id);
        page.store_u16(offset + 10, self.size);
    }
}

impl Entry for TxResponse {
    const SIZE: usize = 4;
    fn load<P: SharedPage + ?Sized>(page: &P, offset: usize) -> Self {
        Self {
            id: page.load_u16(offset),
            status: page.load_u16(offset + 2) as i16,
        }
    }
    fn store<P: SharedPage + ?Sized>(&self, page: &P, offset: usize) {
        page.store_u16(offset, self.id);
        page.store_u16(offset + 2, self.status as u16);
    }
}

impl Entry for RxRequest {
    const SIZE: usize = 8;
    fn load<P: SharedPage + ?Sized>(page: &P, offset: usize) -> Self {
        Self {
            id: page.load_u16(offset),
            gref: page.load_u32(offset + 4),
        }
    }
    fn store<P: SharedPage + ?Sized>(&self, page: &P, offset: usize) {
        page.store_u16(offset, self.id);
        page.store_u16(offset + 2, 0);
        page.store_u32(offset + 4, self.gref);
    }
}

impl Entry for RxResponse {
    const SIZE: usize = 8;
    fn load<P: SharedPage + ?Sized>(page: &P, offset: usize) -> Self {
        Self {
            id: page.load_u16(offset),
            offset: page.load_u16(offset + 2),
            flags: page.load_u16(offset + 4),
            status: page.load_u16(offset + 6) as i16,
        }
    }
    fn store<P: SharedPage + ?Sized>(&self, page: &P, offset: usize) {
        page.store_u16(offset, self.id);
        page.store_u16(offset + 2, self.offset);
        page.store_u16(offset + 4, self.flags);
        page.store_u16(offset + 6, self.status as u16);
    }
}

/// The transmit ring.
pub type TxRing<P> = FrontRing<P, TxRequest, TxResponse>;
/// The receive ring.
pub type RxRing<P> = FrontRing<P, RxRequest, RxResponse>;

/// The pages a [`NetFront`] runs on, each with its guest frame number: the two ring
/// pages and one buffer page per transmit and per receive slot (1 to 256 of each; more
/// buffers, more frames in flight).
pub struct NetPages<P> {
    /// The transmit ring's page.
    pub tx_ring: GuestPage<P>,
    /// The receive ring's page.
    pub rx_ring: GuestPage<P>,
    /// Pages frames are sent from.
    pub tx_buffers: Vec<GuestPage<P>>,
    /// Pages frames are received into.
    pub rx_buffers: Vec<GuestPage<P>>,
}

/// What went wrong connecting a vif.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetFrontError {
    /// A xenstore call failed (`ENOENT` on `device/vif/N/backend`: no such vif).
    Xenstore {
        /// The node.
        path: String,
        /// The error.
        error: XenstoreError,
    },
    /// A node holds something unusable (a MAC that is not six hex pairs, a domain id
    /// that is not a number).
    BadValue {
        /// The node.
        path: String,
        /// Its value.
        value: String,
    },
    /// Buffer pages: there must be 1 to 256 of each.
    BadPages {
        /// Transmit buffers given.
        tx: usize,
        /// Receive buffers given.
        rx: usize,
    },
    /// Granting a page failed.
    Grant(GrantError),
    /// The hypervisor refused an event channel (Xen's errno).
    EventChannel(i32),
    /// The backend left (`Closing` or `Closed`) or reached an impossible state.
    BackendState {
        /// The state it wrote.
        state: String,
    },
    /// The backend broke the ring protocol while connecting (responses before any
    /// request: a backend that runs ahead of the handshake).
    Ring(RingError),
}

impl core::fmt::Display for NetFrontError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Xenstore { path, error } => write!(f, "netfront: xenstore {path}: {error}"),
            Self::BadValue { path, value } => {
                write!(f, "netfront: {path} holds {value:?}, which is unusable")
            }
            Self::BadPages { tx, rx } => {
                write!(
                    f,
                    "netfront: {tx} transmit and {rx} receive buffer pages given; 1 to 256 of each"
                )
            }
            Self::Grant(error) => write!(f, "netfront: {error}"),
            Self::EventChannel(code) => {
                write!(f, "netfront: EVTCHNOP_alloc_unbound failed ({code})")
            }
            Self::BackendState { state } => {
                write!(
                    f,
                    "netfront: the backend went to state {state:?} instead of connecting"
                )
            }
            Self::Ring(error) => write!(f, "netfront: {error}"),
        }
    }
}

impl core::error::Error for NetFrontError {}

/// Counters of frames moved and of what the backend got wrong.
#[derive(Debug, Default)]
pub struct NetFrontStats {
    /// Frames received and handed to the stack.
    pub rx_frames: AtomicU64,
    /// Frames queued for transmission.
    pub tx_frames: AtomicU64,
    /// Receive responses with a negative status (netback's error).
    pub rx_errors: AtomicU64,
    /// Receive responses whose length or offset reaches past the page or the frame
    /// buffer, or that claim fragments: dropped.
    pub rx_bad: AtomicU64,
    /// Transmit responses with a status other than OKAY (netback dropped the frame).
    pub tx_errors: AtomicU64,
    /// Frames the stack asked to send that were longer than [`FRAME_MAX`]: not sent.
    pub tx_too_long: AtomicU64,
    /// Responses naming an id that was not outstanding: dropped.
    pub unknown_ids: AtomicU64,
    /// Times a ring was found broken (responses past the requests): the device stops.
    pub ring_errors: AtomicU64,
    /// Event-channel notifications sent.
    pub notifications: AtomicU64,
}

impl NetFrontStats {
    /// Every counter with its name, in declaration order.
    pub fn named(&self) -> [(&'static str, u64); 9] {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        [
            ("rx_frames", load(&self.rx_frames)),
            ("tx_frames", load(&self.tx_frames)),
            ("rx_errors", load(&self.rx_errors)),
            ("rx_bad", load(&self.rx_bad)),
            ("tx_errors", load(&self.tx_errors)),
            ("tx_too_long", load(&self.tx_too_long)),
            ("unknown_ids", load(&self.unknown_ids)),
            ("ring_errors", load(&self.ring_errors)),
            ("notifications", load(&self.notifications)),
        ]
    }
}

/// `name: value` pairs separated by `, ` (one log line), as the netstack's counters.
impl core::fmt::Display for NetFrontStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (name, value)) in self.named().iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{name}: {value}")?;
        }
        Ok(())
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Buffer<P> {
    page: P,
    grant: GrantRef,
}

/// The transmit side, borrowed by a [`NetTx`] beside a [`NetRx`].
struct TxSide<P> {
    ring: TxRing<P>,
    buffers: Vec<Buffer<P>>,
    free: Vec<u16>,
    in_flight: Vec<bool>,
    scratch: Vec<u8>,
}

/// A connected vif ([`connect`]).
pub struct NetFront<P, E: EventChannel> {
    tx: TxSide<P>,
    rx: RxRing<P>,
    rx_buffers: Vec<Buffer<P>>,
    rx_posted: Vec<bool>,
    frame: Vec<u8>,
    events: E,
    port: u32,
    interrupt: &'static AtomicWaker,
    mac: [u8; 6],
    backend: String,
    backend_id: u16,
    tx_ring_ref: GrantRef,
    rx_ring_ref: GrantRef,
    stats: Arc<NetFrontStats>,
    dead: bool,
}

/// Connects vif `index` (`device/vif/<index>` in our xenstore directory) over `pages`,
/// with grants from `grants` and an event channel from `events`, whose port wakes
/// `interrupt`:
///
/// 1. reads `backend`, `backend-id` and `mac`, and says `state = 1` (Initialising);
/// 2. waits (watching `<backend>/state`) until netback is in InitWait or later;
/// 3. initialises both rings, grants the ring pages and every buffer page to the
///    backend, and allocates the event channel;
/// 4. writes `tx-ring-ref`, `rx-ring-ref`, `event-channel`, `request-rx-copy = 1`,
///    `feature-rx-notify = 1`, `feature-no-csum-offload = 1`, posts every receive
///    buffer, and says `state = 3` (Initialised);
/// 5. says `state = 4` (Connected), then waits until netback says Connected (Linux's
///    netback connects only once the front end says Connected).
///
/// # Errors
///
/// [`NetFrontError`]. After a failure past step 1 the front end says `state = 5`
/// (Closing), then closes the event channel if step 3 allocated it. Grants made are ended, except those the backend still maps: their
/// references stay allocated, and their pages (dropped with the error) may still be
/// written by the backend, so their memory must never be reused (the kernel never
/// frees these pages).
pub async fn connect<P, E, S, SE, G>(
    store: &XenStore<S, SE>,
    grants: &Table<G>,
    events: E,
    interrupt: &'static AtomicWaker,
    index: u32,
    pages: NetPages<P>,
) -> Result<NetFront<P, E>, NetFrontError>
where
    P: SharedPage,
    E: EventChannel,
    S: SharedPage,
    SE: EventChannel,
    G: SharedPage,
{
    let front = format!("device/vif/{index}");
    let read = |key: &'static str| {
        let path = format!("{front}/{key}");
        async move {
            match store.read(&path).await {
                Ok(value) => Ok((path, value)),
                Err(error) => Err(NetFrontError::Xenstore { path, error }),
            }
        }
    };
    let (_, backend) = read("backend").await?;
    let (path, value) = read("backend-id").await?;
    let backend_id: u16 = value
        .parse()
        .map_err(|_| NetFrontError::BadValue { path, value })?;
    let (path, value) = read("mac").await?;
    let mac = parse_mac(&value).ok_or(NetFrontError::BadValue { path, value })?;
    let (tx_count, rx_count) = (pages.tx_buffers.len(), pages.rx_buffers.len());
    let limit = TxRing::<P>::SIZE.min(RxRing::<P>::SIZE) as usize;
    if !(1..=limit).contains(&tx_count) || !(1..=limit).contains(&rx_count) {
        return Err(NetFrontError::BadPages {
            tx: tx_count,
            rx: rx_count,
        });
    }
    write(store, &front, "state", STATE_INITIALISING).await?;

    let token = format!("netfront-{index}");
    let backend_state = format!("{backend}/state");
    watch(store, &backend_state, &token).await?;
    // The device lives outside the block, so that a failure after its port was
    // allocated can say Closing before the port is closed.
    let mut built = None;
    let result = async {
        wait_for_backend(store, &backend_state, &token, STATE_INIT_WAIT).await?;
        let mut granted = Granted {
            table: grants,
            refs: Vec::new(),
        };
        let device = built.insert(NetFront::build(
            pages,
            &mut granted,
            backend_id,
            events,
            interrupt,
            mac,
            backend.clone(),
        )?);
        write(store, &front, "tx-ring-ref", device.tx_ring_ref.0).await?;
        write(store, &front, "rx-ring-ref", device.rx_ring_ref.0).await?;
        write(store, &front, "event-channel", device.port).await?;
        write(store, &front, "request-rx-copy", 1).await?;
        write(store, &front, "feature-rx-notify", 1).await?;
        write(store, &front, "feature-no-csum-offload", 1).await?;
        device.post_all_rx()?;
        write(store, &front, "state", STATE_INITIALISED).await?;
        // Linux's netback connects only when the front end says Connected (its
        // frontend_changed ignores Initialised), so the front end says it first, as
        // Linux's netfront does, and then waits (found under xl on Debian's 6.1 dom0:
        // waiting first, both sides waited for ever).
        write(store, &front, "state", STATE_CONNECTED).await?;
        wait_for_backend(store, &backend_state, &token, STATE_CONNECTED).await?;
        granted.refs.clear();
        Ok(())
    }
    .await;
    // The watch is not needed either way; a failure to remove it changes nothing.
    let _ = store.unwatch(&backend_state, &token).await;
    if let Err(error) = result {
        // Tell the backend to let go (as xenbus_dev_fatal does); best effort: the
        // error being reported matters more than this one. Only then is the port closed:
        // closed first, it could be handed to the next vif while this backend, reading
        // the `event-channel` written above, still binds to it.
        let _ = write(store, &front, "state", STATE_CLOSING).await;
        if let Some(device) = built {
            device.events.close(device.port);
        }
        return Err(error);
    }
    let Some(mut device) = built else {
        unreachable!("a connect that succeeded built its device");
    };
    device.flush();
    Ok(device)
}

/// Grants made while connecting, ended if connecting fails.
struct Granted<'a, G: SharedPage> {
    table: &'a Table<G>,
    refs: Vec<GrantRef>,
}

impl<G: SharedPage> Granted<'_, G> {
    fn grant(&mut self, domid: u16, frame: u64, readonly: bool) -> Result<GrantRef, NetFrontError> {
        let reference = self
            .table
            .grant_access(domid, frame, readonly)
            .map_err(NetFrontError::Grant)?;
        self.refs.push(reference);
        Ok(reference)
    }
}

impl<G: SharedPage> Drop for Granted<'_, G> {
    fn drop(&mut self) {
        for reference in self.refs.drain(..) {
            // A backend that mapped a page it was never told of keeps it: the
            // reference is leaked rather than reused.
            let _ = self.table.end_access(reference);
        }
    }
}

async fn write<S: SharedPage, SE: EventChannel>(
    store: &XenStore<S, SE>,
    front: &str,
    key: &str,
    value: impl core::fmt::Display,
) -> Result<(), NetFrontError> {
    let path = format!("{front}/{key}");
    let value = format!("{value}");
    store
        .write(&path, &value)
        .await
        .map_err(|error| NetFrontError::Xenstore { path, error })
}

async fn watch<S: SharedPage, SE: EventChannel>(
    store: &XenStore<S, SE>,
    path: &str,
    token: &str,
) -> Result<(), NetFrontError> {
    store
        .watch(path, token)
        .await
        .map_err(|error| NetFrontError::Xenstore {
            path: path.into(),
            error,
        })
}

/// Waits until the backend's state is `wanted` or a later connecting state, reading
/// it again at every event of the watch on it (the first event comes at once).
async fn wait_for_backend<S: SharedPage, SE: EventChannel>(
    store: &XenStore<S, SE>,
    path: &str,
    token: &str,
    wanted: u32,
) -> Result<(), NetFrontError> {
    loop {
        // Read first, then wait: the watch was set before, so a change in between is
        // an event already queued.
        match store.read(path).await {
            Ok(state) => match state.trim_end_matches('\0').parse::<u32>() {
                Ok(number) if (wanted..=STATE_CONNECTED).contains(&number) => return Ok(()),
                Ok(number) if number < wanted => {}
                _ => return Err(NetFrontError::BackendState { state }),
            },
            // Not written yet: wait for the next change.
            Err(XenstoreError::Daemon(Errno::Enoent)) => {}
            Err(error) => {
                return Err(NetFrontError::Xenstore {
                    path: path.into(),
                    error,
                });
            }
        }
        store
            .next_event(token)
            .await
            .map_err(|error| NetFrontError::Xenstore {
                path: path.into(),
                error,
            })?;
    }
}

impl<P: SharedPage, E: EventChannel> NetFront<P, E> {
    /// Initialises the rings, grants every page to `backend_id` and allocates the port.
    fn build<G: SharedPage>(
        pages: NetPages<P>,
        granted: &mut Granted<'_, G>,
        backend_id: u16,
        events: E,
        interrupt: &'static AtomicWaker,
        mac: [u8; 6],
        backend: String,
    ) -> Result<Self, NetFrontError> {
        let NetPages {
            tx_ring,
            rx_ring,
            tx_buffers,
            rx_buffers,
        } = pages;
        // The rings are reset before the backend may map them.
        let tx = TxRing::new(tx_ring.page);
        let rx = RxRing::new(rx_ring.page);
        let tx_ring_ref = granted.grant(backend_id, tx_ring.frame, false)?;
        let rx_ring_ref = granted.grant(backend_id, rx_ring.frame, false)?;
        let mut tx_granted = Vec::with_capacity(tx_buffers.len());
        for buffer in tx_buffers {
            // netback only reads what we send.
            let grant = granted.grant(backend_id, buffer.frame, true)?;
            tx_granted.push(Buffer {
                page: buffer.page,
                grant,
            });
        }
        let mut rx_granted = Vec::with_capacity(rx_buffers.len());
        for buffer in rx_buffers {
            let grant = granted.grant(backend_id, buffer.frame, false)?;
            rx_granted.push(Buffer {
                page: buffer.page,
                grant,
            });
        }
        let port = events
            .alloc_unbound(backend_id)
            .map_err(NetFrontError::EventChannel)?;
        let tx_count = tx_granted.len();
        let rx_count = rx_granted.len();
        Ok(Self {
            tx: TxSide {
                ring: tx,
                buffers: tx_granted,
                free: (0..tx_count as u16).rev().collect(),
                in_flight: alloc::vec![false; tx_count],
                scratch: alloc::vec![0; FRAME_MAX],
            },
            rx,
            rx_buffers: rx_granted,
            rx_posted: alloc::vec![false; rx_count],
            frame: alloc::vec![0; FRAME_MAX],
            events,
            port,
            interrupt,
            mac,
            backend,
            backend_id,
            tx_ring_ref,
            rx_ring_ref,
            stats: Arc::new(NetFrontStats::default()),
            dead: false,
        })
    }

    /// Posts every receive buffer (published at the next flush). A backend that wrote
    /// responses before it was given any request is refused here.
    fn post_all_rx(&mut self) -> Result<(), NetFrontError> {
        let rx = self.rx.unconsumed_responses();
        let tx = self.tx.ring.unconsumed_responses();
        if let Err(error) = rx.and(tx) {
            count(&self.stats.ring_errors);
            return Err(NetFrontError::Ring(error));
        }
        for id in 0..self.rx_buffers.len() {
            self.post_rx(id as u16);
        }
        Ok(())
    }

    fn post_rx(&mut self, id: u16) {
        let request = RxRequest {
            id,
            gref: self.rx_buffers[id as usize].grant.0,
        };
        // Never full: there are no more buffers than slots, and each is posted once.
        if self.rx.push_request(&request) {
            self.rx_posted[id as usize] = true;
        }
    }

    /// The counters.
    pub fn stats(&self) -> &NetFrontStats {
        &self.stats
    }

    /// The counters, to keep after the driver has moved into the stack's runner.
    pub fn stats_handle(&self) -> Arc<NetFrontStats> {
        self.stats.clone()
    }

    /// The backend's xenstore directory.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The backend's domain id.
    pub fn backend_id(&self) -> u16 {
        self.backend_id
    }

    /// The event channel it was connected with.
    pub fn events(&self) -> &E {
        &self.events
    }

    /// The event-channel port.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Whether a ring broke and the device stopped.
    pub fn is_stopped(&self) -> bool {
        self.dead
    }

    fn stop(&mut self, error: RingError) {
        if !self.dead {
            log::warn!("netfront: {error}");
            count(&self.stats.ring_errors);
            self.dead = true;
        }
    }

    /// Takes the transmit responses, freeing their buffers.
    fn reclaim_tx(&mut self) -> Result<(), RingError> {
        while let Some(response) = self.tx.ring.take_response()? {
            let id = response.id as usize;
            if !self.tx.in_flight.get(id).copied().unwrap_or(false) {
                count(&self.stats.unknown_ids);
                continue;
            }
            self.tx.in_flight[id] = false;
            self.tx.free.push(response.id);
            if response.status != RSP_OKAY {
                count(&self.stats.tx_errors);
            }
        }
        Ok(())
    }

    /// Whether a transmit buffer is free; if none is, registers `waker`, makes sure
    /// netback has seen the queued frames and asked to notify us of the next
    /// completion, and looks once more.
    fn tx_ready(&mut self, waker: &Waker) -> bool {
        if !self.tx.free.is_empty() {
            return true;
        }
        let result = (|| {
            self.reclaim_tx()?;
            if !self.tx.free.is_empty() {
                return Ok(true);
            }
            self.interrupt.register(waker);
            self.flush();
            if self.tx.ring.final_check_for_responses()? {
                self.reclaim_tx()?;
            }
            Ok(!self.tx.free.is_empty())
        })();
        result.unwrap_or_else(|error| {
            self.stop(error);
            false
        })
    }

    /// Copies the next good received frame into `self.frame`, posting its buffer again;
    /// its length, or `None` (after registering `waker`) when none is waiting.
    fn next_frame(&mut self, waker: &Waker) -> Result<Option<usize>, RingError> {
        // Bounded: a backend writing bad responses gets a ring's worth per call.
        for _ in 0..=RxRing::<P>::SIZE {
            let response = match self.rx.take_response()? {
                Some(response) => response,
                None => {
                    self.interrupt.register(waker);
                    if !self.rx.final_check_for_responses()? {
                        return Ok(None);
                    }
                    continue;
                }
            };
            let id = response.id as usize;
            if !self.rx_posted.get(id).copied().unwrap_or(false) {
                count(&self.stats.unknown_ids);
                continue;
            }
            self.rx_posted[id] = false;
            let length = match usize::try_from(response.status) {
                Err(_) => {
                    count(&self.stats.rx_errors);
                    self.post_rx(id as u16);
                    continue;
                }
                Ok(length) => length,
            };
            let offset = response.offset as usize;
            if length == 0
                || length > FRAME_MAX
                || offset + length > PAGE_SIZE
                || response.flags & (MORE_DATA | EXTRA_INFO) != 0
            {
                count(&self.stats.rx_bad);
                self.post_rx(id as u16);
                continue;
            }
            self.rx_buffers[id]
                .page
                .read(offset, &mut self.frame[..length]);
            self.post_rx(id as u16);
            count(&self.stats.rx_frames);
            return Ok(Some(length));
        }
        // Come back for the rest.
        waker.wake_by_ref();
        Ok(None)
    }
}

/// A received frame, copied out of its page ([`RxToken`]).
pub struct NetRx<'a> {
    frame: &'a [u8],
}

impl RxToken for NetRx<'_> {
    fn frame(&self) -> &[u8] {
        self.frame
    }
}

/// Room for one frame in a free transmit buffer ([`TxToken`]).
pub struct NetTx<'a, P> {
    tx: &'a mut TxSide<P>,
    stats: &'a NetFrontStats,
}

impl<P: SharedPage> TxToken for NetTx<'_, P> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let tx = self.tx;
        if len > FRAME_MAX {
            count(&self.stats.tx_too_long);
            let mut elsewhere = alloc::vec![0; len];
            return f(&mut elsewhere);
        }
        // A token exists only while a buffer is free, so this cannot fail; if it did,
        // the frame would be dropped like one too long.
        let Some(id) = tx.free.pop() else {
            count(&self.stats.tx_too_long);
            let mut elsewhere = alloc::vec![0; len];
            return f(&mut elsewhere);
        };
        let result = f(&mut tx.scratch[..len]);
        let buffer = &tx.buffers[id as usize];
        buffer.page.write(0, &tx.scratch[..len]);
        let request = TxRequest {
            gref: buffer.grant.0,
            offset: 0,
            flags: 0,
            id,
            size: len as u16,
        };
        // Never full: no more buffers than slots.
        if tx.ring.push_request(&request) {
            tx.in_flight[id as usize] = true;
            count(&self.stats.tx_frames);
        } else {
            tx.free.push(id);
        }
        result
    }
}

impl<P: SharedPage, E: EventChannel> Driver for NetFront<P, E> {
    type RxToken<'a>
        = NetRx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = NetTx<'a, P>
    where
        Self: 'a;

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> usize {
        MTU
    }

    fn receive(&mut self, waker: &Waker) -> Option<(NetRx<'_>, NetTx<'_, P>)> {
        if self.dead {
            // Nothing will come: the waker is kept only to honour the contract.
            self.interrupt.register(waker);
            return None;
        }
        if !self.tx_ready(waker) {
            return None;
        }
        let length = match self.next_frame(waker) {
            Ok(length) => length?,
            Err(error) => {
                self.stop(error);
                return None;
            }
        };
        Some((
            NetRx {
                frame: &self.frame[..length],
            },
            NetTx {
                tx: &mut self.tx,
                stats: &self.stats,
            },
        ))
    }

    fn transmit(&mut self, waker: &Waker) -> Option<NetTx<'_, P>> {
        if self.dead || !self.tx_ready(waker) {
            if self.dead {
                self.interrupt.register(waker);
            }
            return None;
        }
        Some(NetTx {
            tx: &mut self.tx,
            stats: &self.stats,
        })
    }

    fn flush(&mut self) {
        let notify = self.tx.ring.push_requests_and_check_notify()
            | self.rx.push_requests_and_check_notify();
        if notify {
            self.events.notify(self.port);
            count(&self.stats.notifications);
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = text.trim_end_matches('\0').split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests;
