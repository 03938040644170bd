//! The xenstore wire protocol (`io/xs_wire.h`) and an async client with watches.
//!
//! Why: a domU learns its devices (`device/vif/0/backend`, `.../mac`), tells backends
//! where its rings are, and follows their state, all through xenstore: a tree of
//! strings kept by xenstored in dom0, reached through one shared page and one event
//! channel.
//!
//! The page (`struct xenstore_domain_interface`): `req[1024]` at 0 (guest -> daemon),
//! `rsp[1024]` at 1024, then `req_cons`, `req_prod`, `rsp_cons`, `rsp_prod` at 2048..2064,
//! `server_features` at 2064 and `connection` at 2068 (neither is used: no reconnection
//! support is claimed). Both rings carry a byte stream of messages, each a 16-byte header
//! `{type, req_id, tx_id, len}` (little-endian `u32`s) followed by `len` bytes of payload,
//! at most [`PAYLOAD_MAX`]. A message may be longer than the ring: it is written and
//! read in pieces as the other side makes room.
//!
//! The client is transport-agnostic (only a [`SharedPage`] and an [`EventChannel`]) and
//! needs no task of its own: every pending call, when polled, moves what it can through
//! both rings (queued requests in, replies and watch events out), hands each reply to
//! the call that waits for it (matched by `req_id`, several in flight) and wakes it. The
//! last call to poll owns the port's waker; a call that finishes wakes the others so one
//! of them takes it over, so no event is lost whichever call the kernel's upcall wakes.
//!
//! What it trusts: nothing on the page. A ring index pair claiming more than the ring
//! holds, or a reply longer than [`PAYLOAD_MAX`], leaves the byte stream impossible to
//! follow: the client stops ([`XenstoreError::Broken`], every pending call fails with
//! it). A reply with an unknown `req_id`, a malformed watch event and unclaimed watch
//! events past [`MAX_EVENTS`] are dropped and counted ([`XenstoreStats`]).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;
use spin::Mutex;

use super::console::{copy_in, copy_out};
use super::{EventChannel, SharedPage};

/// `XS_DIRECTORY`: list a node's children.
pub const XS_DIRECTORY: u32 = 1;
/// `XS_READ`: read a node's value.
pub const XS_READ: u32 = 2;
/// `XS_WATCH`: be told when a subtree changes.
pub const XS_WATCH: u32 = 4;
/// `XS_UNWATCH`: stop being told.
pub const XS_UNWATCH: u32 = 5;
/// `XS_TRANSACTION_START`.
pub const XS_TRANSACTION_START: u32 = 6;
/// `XS_TRANSACTION_END`.
pub const XS_TRANSACTION_END: u32 = 7;
/// `XS_WRITE`: write a node's value.
pub const XS_WRITE: u32 = 11;
/// `XS_WATCH_EVENT`: a watched subtree changed (unsolicited, `req_id` 0).
pub const XS_WATCH_EVENT: u32 = 15;
/// `XS_ERROR`: the request failed; the payload is an errno name such as `ENOENT`.
pub const XS_ERROR: u32 = 16;

/// Size of each ring.
pub const RING_SIZE: u32 = 1024;
/// Largest payload of one message (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;
/// Size of a message header.
pub const HEADER: usize = 16;
/// Calls in flight at once; more wait for a free slot.
pub const MAX_IN_FLIGHT: usize = 16;
/// Watch events kept for callers that have not asked for them yet; the oldest goes.
pub const MAX_EVENTS: usize = 64;

const REQ: usize = 0;
const RSP: usize = 1024;
const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;

/// An error name xenstored replied with (`xsd_errors` in `xs_wire.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // each is the errno of the same name
pub enum Errno {
    Einval,
    Eacces,
    Eexist,
    Eisdir,
    Enoent,
    Enomem,
    Enospc,
    Eio,
    Enotempty,
    Enosys,
    Erofs,
    Ebusy,
    Eagain,
    Eisconn,
    E2big,
    /// A name not in the list (or not text).
    Unknown,
}

impl Errno {
    const NAMES: [(&'static str, Errno); 15] = [
        ("EINVAL", Errno::Einval),
        ("EACCES", Errno::Eacces),
        ("EEXIST", Errno::Eexist),
        ("EISDIR", Errno::Eisdir),
        ("ENOENT", Errno::Enoent),
        ("ENOMEM", Errno::Enomem),
        ("ENOSPC", Errno::Enospc),
        ("EIO", Errno::Eio),
        ("ENOTEMPTY", Errno::Enotempty),
        ("ENOSYS", Errno::Enosys),
        ("EROFS", Errno::Erofs),
        ("EBUSY", Errno::Ebusy),
        ("EAGAIN", Errno::Eagain),
        ("EISCONN", Errno::Eisconn),
        ("E2BIG", Errno::E2big),
    ];

    /// The errno named by an `XS_ERROR` payload (its trailing NUL optional).
    pub fn parse(payload: &[u8]) -> Self {
        let name = payload.strip_suffix(&[0]).unwrap_or(payload);
        Self::NAMES
            .iter()
            .find(|(text, _)| text.as_bytes() == name)
            .map_or(Errno::Unknown, |&(_, errno)| errno)
    }

    /// Its name, as xenstored spells it.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, errno)| *errno == self)
            .map_or("unknown", |(text, _)| text)
    }
}

/// How the daemon broke the protocol, making the byte stream impossible to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// `rsp_prod - rsp_cons` is more than the ring holds.
    ResponseIndices {
        /// The daemon's `rsp_prod`.
        prod: u32,
        /// Our `rsp_cons`.
        cons: u32,
    },
    /// `req_prod - req_cons` is more than the ring holds.
    RequestIndices {
        /// Our `req_prod`.
        prod: u32,
        /// The daemon's `req_cons`.
        cons: u32,
    },
    /// A message header announced a payload longer than [`PAYLOAD_MAX`].
    ReplyTooLong {
        /// The announced length.
        len: u32,
    },
}

/// What went wrong with a xenstore call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XenstoreError {
    /// xenstored refused the request (`ENOENT`: no such node; `EACCES`: not ours to
    /// read or write; `EAGAIN`: a transaction conflicted, run it again).
    Daemon(Errno),
    /// The request's payload is longer than [`PAYLOAD_MAX`]; shorten the path or value.
    TooLong {
        /// The payload's length.
        len: usize,
    },
    /// The daemon broke the protocol; the client is stopped and every call fails.
    /// Nothing short of reconnecting the domain's xenstore ring helps.
    Broken(Violation),
    /// A reply of another type than the request (`sent`, `got`).
    UnexpectedReply {
        /// The request's type.
        sent: u32,
        /// The reply's type.
        got: u32,
    },
    /// A reply's payload is not what its type promises (not UTF-8, not a number).
    Malformed {
        /// The request's type.
        request: u32,
    },
}

impl core::fmt::Display for XenstoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Daemon(errno) => write!(f, "xenstored refused the request: {}", errno.name()),
            Self::TooLong { len } => {
                write!(
                    f,
                    "xenstore request payload of {len} bytes exceeds {PAYLOAD_MAX}: shorten it"
                )
            }
            Self::Broken(violation) => write!(
                f,
                "xenstored broke the ring protocol ({violation:?}): the xenstore client is stopped"
            ),
            Self::UnexpectedReply { sent, got } => {
                write!(
                    f,
                    "xenstored answered a request of type {sent} with type {got}"
                )
            }
            Self::Malformed { request } => {
                write!(
                    f,
                    "xenstored's reply to a request of type {request} is malformed"
                )
            }
        }
    }
}

impl core::error::Error for XenstoreError {}

/// A watch fired: `path` changed (or the watch was just set: xenstored fires each new
/// watch once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The node that changed.
    pub path: String,
    /// The token given to [`XenStore::watch`].
    pub token: String,
}

/// A transaction id from [`XenStore::transaction_start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction(pub u32);

/// Counters of what the client dropped or saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XenstoreStats {
    /// Requests queued for the ring (sent as the ring makes room).
    pub requests: u64,
    /// Replies matched to a call.
    pub replies: u64,
    /// Replies whose `req_id` no call waited for: dropped.
    pub unknown_replies: u64,
    /// Watch events received.
    pub events: u64,
    /// Watch events dropped: malformed, or unclaimed past [`MAX_EVENTS`].
    pub events_dropped: u64,
    /// Event-channel notifications sent.
    pub notifications: u64,
}

/// One call in flight: its id, type, and reply once it came.
struct Slot {
    req_id: u32,
    kind: u32,
    reply: Option<Result<Vec<u8>, XenstoreError>>,
}

/// A message being read from the response ring.
struct Incoming {
    header: [u8; HEADER],
    have: usize,
    body: Vec<u8>,
}

struct State {
    next_id: u32,
    next_waiter: u64,
    slots: Vec<Slot>,
    outgoing: VecDeque<u8>,
    incoming: Incoming,
    events: VecDeque<WatchEvent>,
    waiters: Vec<(u64, Waker)>,
    broken: Option<Violation>,
    stats: XenstoreStats,
}

/// The xenstore client over its ring page `P`, signalling through `E`.
pub struct XenStore<P, E> {
    page: P,
    events: E,
    port: u32,
    interrupt: &'static AtomicWaker,
    state: Mutex<State>,
}

impl<P: SharedPage, E: EventChannel> XenStore<P, E> {
    /// The client of the xenstore ring on `page`, whose event channel is `port`; the
    /// kernel's upcall wakes `interrupt` when the port fires. The ring's indices are
    /// taken as they are (the toolstack set them up; xenstored may already be reading).
    pub fn new(page: P, events: E, port: u32, interrupt: &'static AtomicWaker) -> Self {
        Self {
            page,
            events,
            port,
            interrupt,
            state: Mutex::new(State {
                next_id: 1,
                next_waiter: 0,
                slots: Vec::new(),
                outgoing: VecDeque::new(),
                incoming: Incoming {
                    header: [0; HEADER],
                    have: 0,
                    body: Vec::new(),
                },
                events: VecDeque::new(),
                waiters: Vec::new(),
                broken: None,
                stats: XenstoreStats::default(),
            }),
        }
    }

    /// The shared page.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> XenstoreStats {
        self.state.lock().stats
    }

    /// Sends one request and returns the reply's payload.
    ///
    /// # Errors
    ///
    /// [`XenstoreError`]: the daemon's error reply, a reply of the wrong type, a
    /// payload over [`PAYLOAD_MAX`], a broken connection.
    pub fn request(&self, kind: u32, transaction: u32, payload: Vec<u8>) -> Call<'_, P, E> {
        Call {
            store: self,
            stage: Stage::Unsent {
                kind,
                transaction,
                payload,
            },
            waiter: None,
        }
    }

    /// The value of `path` (relative paths are under `/local/domain/<our id>/`).
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); [`XenstoreError::Malformed`] if it is not UTF-8.
    pub async fn read(&self, path: &str) -> Result<String, XenstoreError> {
        self.read_in(Transaction(0), path).await
    }

    /// [`read`](Self::read) inside a transaction.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    pub async fn read_in(
        &self,
        transaction: Transaction,
        path: &str,
    ) -> Result<String, XenstoreError> {
        let reply = self
            .request(XS_READ, transaction.0, nul_terminated(&[path]))
            .await?;
        String::from_utf8(reply).map_err(|_| XenstoreError::Malformed { request: XS_READ })
    }

    /// Sets `path` to `value`, creating it if needed.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    pub async fn write(&self, path: &str, value: &str) -> Result<(), XenstoreError> {
        self.write_in(Transaction(0), path, value).await
    }

    /// [`write`](Self::write) inside a transaction.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    pub async fn write_in(
        &self,
        transaction: Transaction,
        path: &str,
        value: &str,
    ) -> Result<(), XenstoreError> {
        let mut payload = nul_terminated(&[path]);
        payload.extend_from_slice(value.as_bytes());
        self.request(XS_WRITE, transaction.0, payload)
            .await
            .map(drop)
    }

    /// The names of `path`'s children.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); [`XenstoreError::Malformed`] if a name is not UTF-8.
    pub async fn directory(&self, path: &str) -> Result<Vec<String>, XenstoreError> {
        let reply = self
            .request(XS_DIRECTORY, 0, nul_terminated(&[path]))
            .await?;
        split_strings(&reply).ok_or(XenstoreError::Malformed {
            request: XS_DIRECTORY,
        })
    }

    /// Asks to be told when `path` or anything under it changes; the events carry
    /// `token` ([`next_event`](Self::next_event)). xenstored fires the watch once at once.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    pub async fn watch(&self, path: &str, token: &str) -> Result<(), XenstoreError> {
        self.request(XS_WATCH, 0, nul_terminated(&[path, token]))
            .await
            .map(drop)
    }

    /// Withdraws a watch set by [`watch`](Self::watch).
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    pub async fn unwatch(&self, path: &str, token: &str) -> Result<(), XenstoreError> {
        self.request(XS_UNWATCH, 0, nul_terminated(&[path, token]))
            .await
            .map(drop)
    }

    /// Starts a transaction.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); [`XenstoreError::Malformed`] if the id is not a number.
    pub async fn transaction_start(&self) -> Result<Transaction, XenstoreError> {
        let reply = self
            .request(XS_TRANSACTION_START, 0, alloc::vec![0])
            .await?;
        let text = reply.strip_suffix(&[0]).unwrap_or(&reply);
        core::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse().ok())
            .map(Transaction)
            .ok_or(XenstoreError::Malformed {
                request: XS_TRANSACTION_START,
            })
    }

    /// Ends a transaction, committing it if `commit`.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); [`XenstoreError::Daemon`] with [`Errno::Eagain`]
    /// when it conflicted with another writer: run it again.
    pub async fn transaction_end(
        &self,
        transaction: Transaction,
        commit: bool,
    ) -> Result<(), XenstoreError> {
        let payload = nul_terminated(&[if commit { "T" } else { "F" }]);
        self.request(XS_TRANSACTION_END, transaction.0, payload)
            .await
            .map(drop)
    }

    /// The next watch event carrying `token` (the oldest kept one, or the next to come).
    /// Events for other tokens stay for their callers.
    ///
    /// # Errors
    ///
    /// [`XenstoreError::Broken`].
    pub fn next_event<'a>(&'a self, token: &'a str) -> NextEvent<'a, P, E> {
        NextEvent {
            store: self,
            token,
            waiter: None,
        }
    }

    /// Moves what it can through both rings and dispatches what came back. Called with
    /// the state locked by every poll.
    fn pump(&self, state: &mut State) {
        if state.broken.is_some() {
            return;
        }
        let mut notify = false;
        // Requests in.
        if !state.outgoing.is_empty() {
            let cons = self.page.load_u32(REQ_CONS);
            let prod = self.page.load_u32(REQ_PROD);
            let used = prod.wrapping_sub(cons);
            if used > RING_SIZE {
                return self.stop(state, Violation::RequestIndices { prod, cons });
            }
            let count = state.outgoing.len().min((RING_SIZE - used) as usize);
            if count > 0 {
                let bytes: Vec<u8> = state.outgoing.drain(..count).collect();
                copy_in(&self.page, REQ, RING_SIZE, prod, &bytes);
                self.page.fence();
                self.page
                    .store_u32(REQ_PROD, prod.wrapping_add(count as u32));
                notify = true;
            }
        }
        // Replies and events out.
        let cons = self.page.load_u32(RSP_CONS);
        let prod = self.page.load_u32(RSP_PROD);
        let ready = prod.wrapping_sub(cons);
        if ready > RING_SIZE {
            return self.stop(state, Violation::ResponseIndices { prod, cons });
        }
        if ready > 0 {
            let mut bytes = [0; RING_SIZE as usize];
            let bytes = &mut bytes[..ready as usize];
            copy_out(&self.page, RSP, RING_SIZE, cons, bytes);
            // Read before the index that gives the room back.
            self.page.fence();
            self.page.store_u32(RSP_CONS, prod);
            notify = true;
            if let Err(violation) = self.receive(state, bytes) {
                return self.stop(state, violation);
            }
        }
        if notify {
            self.page.fence();
            self.events.notify(self.port);
            state.stats.notifications += 1;
        }
    }

    /// Feeds bytes from the response ring to the message being read, dispatching each
    /// message as it completes.
    fn receive(&self, state: &mut State, mut bytes: &[u8]) -> Result<(), Violation> {
        while !bytes.is_empty() {
            let incoming = &mut state.incoming;
            if incoming.have < HEADER {
                let take = bytes.len().min(HEADER - incoming.have);
                incoming.header[incoming.have..incoming.have + take]
                    .copy_from_slice(&bytes[..take]);
                incoming.have += take;
                bytes = &bytes[take..];
                if incoming.have < HEADER {
                    break;
                }
                let len = field(&incoming.header, 3);
                if len as usize > PAYLOAD_MAX {
                    return Err(Violation::ReplyTooLong { len });
                }
                incoming.body.clear();
                incoming.body.reserve(len as usize);
            }
            let len = field(&incoming.header, 3) as usize;
            let take = bytes.len().min(len - incoming.body.len());
            incoming.body.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if incoming.body.len() == len {
                let header = incoming.header;
                let body = core::mem::take(&mut incoming.body);
                incoming.have = 0;
                dispatch(state, &header, body);
            }
        }
        Ok(())
    }

    /// Stops the client: every pending call fails with `violation`.
    fn stop(&self, state: &mut State, violation: Violation) {
        log::warn!("xenstore: {violation:?}; client stopped");
        state.broken = Some(violation);
        for slot in &mut state.slots {
            if slot.reply.is_none() {
                slot.reply = Some(Err(XenstoreError::Broken(violation)));
            }
        }
        wake_all(state);
    }

    /// Registers a waiter's waker (a new id if it has none yet).
    fn park(state: &mut State, waiter: &mut Option<u64>, waker: &Waker) {
        let id = *waiter.get_or_insert_with(|| {
            state.next_waiter += 1;
            state.next_waiter
        });
        match state.waiters.iter_mut().find(|(other, _)| *other == id) {
            Some((_, slot)) => slot.clone_from(waker),
            None => state.waiters.push((id, waker.clone())),
        }
    }

    /// A waiter is done (or dropped): the others are woken, so one of them owns the
    /// port's waker from now on.
    fn leave(&self, waiter: Option<u64>) {
        let mut state = self.state.lock();
        if let Some(id) = waiter {
            state.waiters.retain(|(other, _)| *other != id);
        }
        wake_all(&state);
    }
}

fn wake_all(state: &State) {
    for (_, waker) in &state.waiters {
        waker.wake_by_ref();
    }
}

/// Hands a complete message to its call, or to the watch events.
fn dispatch(state: &mut State, header: &[u8; HEADER], body: Vec<u8>) {
    let kind = field(header, 0);
    let req_id = field(header, 1);
    if kind == XS_WATCH_EVENT {
        state.stats.events += 1;
        match split_strings(&body).as_deref() {
            Some([path, token, ..]) => {
                if state.events.len() == MAX_EVENTS {
                    state.events.pop_front();
                    state.stats.events_dropped += 1;
                }
                state.events.push_back(WatchEvent {
                    path: path.clone(),
                    token: token.clone(),
                });
            }
            _ => state.stats.events_dropped += 1,
        }
    } else if let Some(slot) = state
        .slots
        .iter_mut()
        .find(|slot| slot.req_id == req_id && slot.reply.is_none())
    {
        state.stats.replies += 1;
        slot.reply = Some(if kind == XS_ERROR {
            Err(XenstoreError::Daemon(Errno::parse(&body)))
        } else if kind != slot.kind {
            Err(XenstoreError::UnexpectedReply {
                sent: slot.kind,
                got: kind,
            })
        } else {
            Ok(body)
        });
    } else {
        state.stats.unknown_replies += 1;
        return;
    }
    // Whoever waits for this reply or event polls and takes it.
    wake_all(state);
}

/// The `index`th little-endian `u32` of a header.
fn field(header: &[u8; HEADER], index: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&header[index * 4..index * 4 + 4]);
    u32::from_le_bytes(bytes)
}

/// The strings, each followed by a NUL.
fn nul_terminated(parts: &[&str]) -> Vec<u8> {
    let mut payload = Vec::new();
    for part in parts {
        payload.extend_from_slice(part.as_bytes());
        payload.push(0);
    }
    payload
}

/// NUL-separated strings (a trailing NUL, or none, ends the last).
fn split_strings(payload: &[u8]) -> Option<Vec<String>> {
    let payload = payload.strip_suffix(&[0]).unwrap_or(payload);
    if payload.is_empty() {
        return Some(Vec::new());
    }
    payload
        .split(|&byte| byte == 0)
        .map(|part| core::str::from_utf8(part).ok().map(String::from))
        .collect()
}

enum Stage {
    Unsent {
        kind: u32,
        transaction: u32,
        payload: Vec<u8>,
    },
    Sent {
        req_id: u32,
    },
    Done,
}

/// A request in flight: resolves to the reply's payload ([`XenStore::request`]).
/// Dropped before it resolves, it frees its slot; a reply that comes later is counted
/// as unknown.
#[must_use = "a call is sent only when polled"]
pub struct Call<'a, P: SharedPage, E: EventChannel> {
    store: &'a XenStore<P, E>,
    stage: Stage,
    waiter: Option<u64>,
}

impl<P: SharedPage, E: EventChannel> Future for Call<'_, P, E> {
    type Output = Result<Vec<u8>, XenstoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let store = this.store;
        let mut state = store.state.lock();
        if let Stage::Unsent {
            kind,
            transaction,
            payload,
        } = &mut this.stage
        {
            let refused = match state.broken {
                Some(violation) => Some(XenstoreError::Broken(violation)),
                None if payload.len() > PAYLOAD_MAX => {
                    Some(XenstoreError::TooLong { len: payload.len() })
                }
                None => None,
            };
            if let Some(error) = refused {
                this.stage = Stage::Done;
                drop(state);
                store.leave(this.waiter.take());
                return Poll::Ready(Err(error));
            }
            if state.slots.len() < MAX_IN_FLIGHT {
                let req_id = state.next_id;
                // 0 is left out: it is the id of watch events.
                state.next_id = state.next_id.wrapping_add(1).max(1);
                for value in [*kind, req_id, *transaction, payload.len() as u32] {
                    state.outgoing.extend(value.to_le_bytes());
                }
                state.outgoing.extend(payload.iter());
                state.slots.push(Slot {
                    req_id,
                    kind: *kind,
                    reply: None,
                });
                state.stats.requests += 1;
                this.stage = Stage::Sent { req_id };
            }
        }
        // Registered before the rings are looked at: an event after the look wakes us.
        store.interrupt.register(cx.waker());
        store.pump(&mut state);
        if let Stage::Sent { req_id } = this.stage {
            let position = state
                .slots
                .iter()
                .position(|slot| slot.req_id == req_id && slot.reply.is_some());
            if let Some(position) = position {
                let slot = state.slots.swap_remove(position);
                this.stage = Stage::Done;
                drop(state);
                store.leave(this.waiter.take());
                return Poll::Ready(
                    slot.reply
                        .unwrap_or(Err(XenstoreError::Malformed { request: slot.kind })),
                );
            }
        }
        XenStore::<P, E>::park(&mut state, &mut this.waiter, cx.waker());
        Poll::Pending
    }
}

impl<P: SharedPage, E: EventChannel> Drop for Call<'_, P, E> {
    fn drop(&mut self) {
        if let Stage::Sent { req_id } = self.stage {
            // Abandoned: its reply, when it comes, is dropped as unknown. The slot is
            // freed now; a later call gets another id.
            self.store
                .state
                .lock()
                .slots
                .retain(|slot| slot.req_id != req_id);
        }
        if self.waiter.is_some() {
            self.store.leave(self.waiter.take());
        }
    }
}

/// Waits for a watch event with a given token ([`XenStore::next_event`]).
#[must_use = "an event is taken only when polled"]
pub struct NextEvent<'a, P: SharedPage, E: EventChannel> {
    store: &'a XenStore<P, E>,
    token: &'a str,
    waiter: Option<u64>,
}

impl<P: SharedPage, E: EventChannel> Future for NextEvent<'_, P, E> {
    type Output = Result<WatchEvent, XenstoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let store = this.store;
        let mut state = store.state.lock();
        store.interrupt.register(cx.waker());
        store.pump(&mut state);
        if let Some(position) = state
            .events
            .iter()
            .position(|event| event.token == this.token)
        {
            let event = state.events.remove(position);
            drop(state);
            store.leave(this.waiter.take());
            return Poll::Ready(event.ok_or(XenstoreError::Malformed {
                request: XS_WATCH_EVENT,
            }));
        }
        if let Some(violation) = state.broken {
            drop(state);
            store.leave(this.waiter.take());
            return Poll::Ready(Err(XenstoreError::Broken(violation)));
        }
        XenStore::<P, E>::park(&mut state, &mut this.waiter, cx.waker());
        Poll::Pending
    }
}

impl<P: SharedPage, E: EventChannel> Drop for NextEvent<'_, P, E> {
    fn drop(&mut self) {
        if self.waiter.is_some() {
            self.store.leave(self.waiter.take());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
