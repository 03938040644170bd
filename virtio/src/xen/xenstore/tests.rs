//! The xenstore client against a simulated xenstored on the same page.
//!
//! The harness polls a call only when its waker was woken, and the simulated daemon
//! "raises the event channel" (wakes the interrupt waker, as the kernel's upcall would)
//! only after it wrote something: a call that forgets to register is a stall, which
//! the harness reports.

use alloc::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::Wake;

use super::*;
use crate::xen::VecPage;

/// Counts notifications; has no ports to allocate.
#[derive(Default)]
pub(crate) struct Bell {
    pub(crate) rung: AtomicU32,
}

impl EventChannel for Bell {
    fn notify(&self, _port: u32) {
        self.rung.fetch_add(1, Ordering::SeqCst);
    }
    fn alloc_unbound(&self, _remote: u16) -> Result<u32, i32> {
        Err(-38)
    }
    fn close(&self, port: u32) {
        panic!("xenstore closed port {port}, which it never allocated");
    }
}

/// A simulated xenstored: a flat map of nodes, watches, and knobs for misbehaving.
pub(crate) struct Daemon {
    page: VecPage,
    pub(crate) nodes: BTreeMap<String, String>,
    pub(crate) watches: Vec<(String, String)>,
    input: Vec<u8>,
    /// Messages waiting for room in the response ring.
    output: VecDeque<u8>,
    /// Replies held back (to answer out of order).
    pub(crate) hold: bool,
    held: Vec<Vec<u8>>,
    /// Requests seen, by type.
    pub(crate) seen: Vec<u32>,
    /// Write at most this many bytes of output per round.
    pub(crate) trickle: usize,
}

pub(crate) fn message(kind: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for value in [kind, req_id, tx_id, payload.len() as u32] {
        bytes.extend(value.to_le_bytes());
    }
    bytes.extend_from_slice(payload);
    bytes
}

impl Daemon {
    pub(crate) fn new(page: VecPage) -> Self {
        Self {
            page,
            nodes: BTreeMap::new(),
            watches: Vec::new(),
            input: Vec::new(),
            output: VecDeque::new(),
            hold: false,
            held: Vec::new(),
            seen: Vec::new(),
            trickle: usize::MAX,
        }
    }

    /// Queues raw bytes for the response ring, as a misbehaving daemon would.
    pub(crate) fn inject(&mut self, bytes: &[u8]) {
        self.output.extend(bytes);
    }

    /// Sends the held replies, last first.
    pub(crate) fn release_reversed(&mut self) {
        self.hold = false;
        while let Some(reply) = self.held.pop() {
            self.output.extend(reply);
        }
    }

    /// Sets a node as another domain would, firing watches.
    pub(crate) fn set(&mut self, path: &str, value: &str) {
        self.nodes.insert(path.into(), value.into());
        self.fire(path);
    }

    fn fire(&mut self, path: &str) {
        let events: Vec<Vec<u8>> = self
            .watches
            .iter()
            .filter(|(watched, _)| path == watched || path.starts_with(&format!("{watched}/")))
            .map(|(_, token)| message(XS_WATCH_EVENT, 0, 0, &nul_terminated(&[path, token])))
            .collect();
        for event in events {
            self.output.extend(event);
        }
    }

    /// One round: consumes requests, answers them, writes what fits of the output.
    /// Returns whether it consumed or wrote anything (xenstored then notifies the
    /// guest: consuming makes room for the rest of a long request).
    pub(crate) fn step(&mut self) -> bool {
        let page = self.page.clone();
        let page = &page;
        let cons = page.load_u32(REQ_CONS);
        let prod = page.load_u32(REQ_PROD);
        let ready = prod.wrapping_sub(cons);
        assert!(ready <= RING_SIZE, "the client overran the request ring");
        let mut bytes = vec![0; ready as usize];
        copy_out(page, REQ, RING_SIZE, cons, &mut bytes);
        page.store_u32(REQ_CONS, prod);
        let consumed = !bytes.is_empty();
        self.input.extend(bytes);
        while self.input.len() >= HEADER {
            let header: [u8; HEADER] = self.input[..HEADER].try_into().unwrap();
            let len = field(&header, 3) as usize;
            assert!(len <= PAYLOAD_MAX, "the client sent an oversized request");
            if self.input.len() < HEADER + len {
                break;
            }
            let body: Vec<u8> = self.input[HEADER..HEADER + len].to_vec();
            self.input.drain(..HEADER + len);
            self.handle(
                field(&header, 0),
                field(&header, 1),
                field(&header, 2),
                &body,
            );
        }
        let cons = page.load_u32(RSP_CONS);
        let prod = page.load_u32(RSP_PROD);
        let room = RING_SIZE - prod.wrapping_sub(cons);
        let count = self.output.len().min(room as usize).min(self.trickle);
        if count == 0 {
            return consumed;
        }
        let bytes: Vec<u8> = self.output.drain(..count).collect();
        copy_in(page, RSP, RING_SIZE, prod, &bytes);
        page.store_u32(RSP_PROD, prod.wrapping_add(count as u32));
        true
    }

    fn handle(&mut self, kind: u32, req_id: u32, tx_id: u32, body: &[u8]) {
        self.seen.push(kind);
        let strings = split_strings(body).unwrap_or_default();
        let first = strings.first().cloned().unwrap_or_default();
        let (reply_kind, payload): (u32, Vec<u8>) = match kind {
            XS_READ => match self.nodes.get(&first) {
                Some(value) => (XS_READ, value.as_bytes().to_vec()),
                None => (XS_ERROR, b"ENOENT\0".to_vec()),
            },
            XS_WRITE if first.starts_with("/forbidden") => (XS_ERROR, b"EACCES\0".to_vec()),
            XS_WRITE => {
                let at = body.iter().position(|&byte| byte == 0).unwrap();
                let value = String::from_utf8(body[at + 1..].to_vec()).unwrap();
                self.set(&first, &value);
                (XS_WRITE, b"OK\0".to_vec())
            }
            XS_DIRECTORY => {
                let prefix = format!("{first}/");
                let mut children: Vec<&str> = self
                    .nodes
                    .keys()
                    .filter_map(|key| key.strip_prefix(&prefix))
                    .map(|rest| rest.split('/').next().unwrap())
                    .collect();
                children.dedup();
                (XS_DIRECTORY, nul_terminated(&children))
            }
            XS_WATCH => {
                let token = strings[1].clone();
                self.watches.push((first.clone(), token.clone()));
                // Reply first, then the initial event, as xenstored does.
                self.output
                    .extend(message(XS_WATCH, req_id, tx_id, b"OK\0"));
                self.output.extend(message(
                    XS_WATCH_EVENT,
                    0,
                    0,
                    &nul_terminated(&[&first, &token]),
                ));
                return;
            }
            XS_UNWATCH => {
                self.watches
                    .retain(|(path, token)| !(*path == first && *token == strings[1]));
                (XS_UNWATCH, b"OK\0".to_vec())
            }
            XS_TRANSACTION_START => (XS_TRANSACTION_START, b"17\0".to_vec()),
            XS_TRANSACTION_END if tx_id != 17 => (XS_ERROR, b"ENOENT\0".to_vec()),
            XS_TRANSACTION_END => (XS_TRANSACTION_END, b"OK\0".to_vec()),
            _ => (XS_ERROR, b"EINVAL\0".to_vec()),
        };
        let reply = message(reply_kind, req_id, tx_id, &payload);
        if self.hold {
            self.held.push(reply);
        } else {
            self.output.extend(reply);
        }
    }
}

/// A waker that records that it was woken.
pub(crate) struct Flag(pub(crate) AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub(crate) fn interrupt() -> &'static AtomicWaker {
    Box::leak(Box::new(AtomicWaker::new()))
}

/// Runs `future` to completion against `daemon`, polling it only when woken; the daemon
/// runs between polls, `each` too (for tests that change things mid-way). Panics if
/// nothing can make progress (a lost wake-up) or after many rounds.
pub(crate) fn run_with<F: Future>(
    future: F,
    interrupt: &AtomicWaker,
    daemon: &mut Daemon,
    mut each: impl FnMut(&mut Daemon),
) -> F::Output {
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = core::pin::pin!(future);
    // Rounds in a row in which nobody was woken: past a few, nothing ever will be.
    let mut idle = 0;
    for _ in 0..10_000 {
        if flag.0.swap(false, Ordering::SeqCst) {
            idle = 0;
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
        each(daemon);
        if daemon.step() {
            // The kernel's upcall for the xenstore port.
            interrupt.wake();
        }
        if !flag.0.load(Ordering::SeqCst) {
            idle += 1;
            assert!(
                idle < 50,
                "stalled: the call waits and nothing will wake it"
            );
        }
    }
    panic!("no result after 10000 rounds");
}

pub(crate) fn run<F: Future>(future: F, interrupt: &AtomicWaker, daemon: &mut Daemon) -> F::Output {
    run_with(future, interrupt, daemon, |_| {})
}

fn setup() -> (
    XenStore<VecPage, Arc<Bell>>,
    Daemon,
    &'static AtomicWaker,
    Arc<Bell>,
) {
    let page = VecPage::new();
    let bell = Arc::new(Bell::default());
    let interrupt = interrupt();
    let store = XenStore::new(page.clone(), bell.clone(), 3, interrupt);
    (store, Daemon::new(page), interrupt, bell)
}

#[test]
fn read_write_directory() {
    let (store, mut daemon, interrupt, bell) = setup();
    daemon.set("device/vif/0/mac", "00:16:3e:00:00:01");
    assert_eq!(
        run(store.read("device/vif/0/mac"), interrupt, &mut daemon).unwrap(),
        "00:16:3e:00:00:01"
    );
    run(
        store.write("device/vif/0/state", "1"),
        interrupt,
        &mut daemon,
    )
    .unwrap();
    assert_eq!(daemon.nodes["device/vif/0/state"], "1");
    daemon.set("device/vbd/768/state", "1");
    let mut names = run(store.directory("device"), interrupt, &mut daemon).unwrap();
    names.sort();
    assert_eq!(names, ["vbd", "vif"]);
    assert_eq!(
        run(store.directory("device/vif/0/mac"), interrupt, &mut daemon).unwrap(),
        Vec::<String>::new()
    );
    assert!(
        bell.rung.load(Ordering::SeqCst) >= 4,
        "the daemon was told of each request"
    );
    let stats = store.stats();
    assert_eq!(
        (stats.requests, stats.replies, stats.unknown_replies),
        (4, 4, 0)
    );
}

#[test]
fn transactions() {
    let (store, mut daemon, interrupt, _bell) = setup();
    let transaction = run(store.transaction_start(), interrupt, &mut daemon).unwrap();
    assert_eq!(transaction, Transaction(17));
    run(
        store.write_in(transaction, "a", "b"),
        interrupt,
        &mut daemon,
    )
    .unwrap();
    run(
        store.transaction_end(transaction, true),
        interrupt,
        &mut daemon,
    )
    .unwrap();
    assert_eq!(
        run(
            store.transaction_end(Transaction(3), false),
            interrupt,
            &mut daemon
        ),
        Err(XenstoreError::Daemon(Errno::Enoent))
    );
}

#[test]
fn error_replies_name_the_errno() {
    let (store, mut daemon, interrupt, _bell) = setup();
    assert_eq!(
        run(store.read("missing"), interrupt, &mut daemon),
        Err(XenstoreError::Daemon(Errno::Enoent))
    );
    assert_eq!(
        run(store.write("/forbidden/x", "1"), interrupt, &mut daemon),
        Err(XenstoreError::Daemon(Errno::Eacces))
    );
    assert_eq!(Errno::parse(b"EWHAT\0"), Errno::Unknown);
    assert_eq!(Errno::parse(b"E2BIG"), Errno::E2big);
    assert_eq!(Errno::Eacces.name(), "EACCES");
    // The connection is fine afterwards.
    daemon.set("x", "y");
    assert_eq!(run(store.read("x"), interrupt, &mut daemon).unwrap(), "y");
}

#[test]
fn messages_longer_than_the_ring_go_in_pieces() {
    let (store, mut daemon, interrupt, _bell) = setup();
    let value: String = (0..4000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    run(store.write("big", &value), interrupt, &mut daemon).unwrap();
    assert_eq!(daemon.nodes["big"], value);
    assert_eq!(
        run(store.read("big"), interrupt, &mut daemon).unwrap(),
        value
    );
}

#[test]
fn oversized_requests_are_refused_before_sending() {
    let (store, mut daemon, interrupt, _bell) = setup();
    let value = "v".repeat(PAYLOAD_MAX);
    assert_eq!(
        run(store.write("key", &value), interrupt, &mut daemon),
        Err(XenstoreError::TooLong {
            len: 4 + PAYLOAD_MAX
        })
    );
    assert!(daemon.seen.is_empty());
    assert_eq!(store.stats().requests, 0);
}

#[test]
fn an_oversized_reply_stops_the_client() {
    let (store, mut daemon, interrupt, _bell) = setup();
    daemon.inject(&message(XS_READ, 1, 0, &[])[..12]);
    daemon.inject(&5000_u32.to_le_bytes());
    let broken = XenstoreError::Broken(Violation::ReplyTooLong { len: 5000 });
    assert_eq!(run(store.read("x"), interrupt, &mut daemon), Err(broken));
    // Every later call fails at once, without touching the ring.
    let seen = daemon.seen.len();
    assert_eq!(run(store.read("x"), interrupt, &mut daemon), Err(broken));
    assert_eq!(daemon.seen.len(), seen);
    assert_eq!(
        run(store.next_event("t"), interrupt, &mut daemon),
        Err(broken)
    );
}

#[test]
fn replies_for_unknown_ids_are_dropped_and_counted() {
    let (store, mut daemon, interrupt, _bell) = setup();
    daemon.set("k", "real");
    daemon.inject(&message(XS_READ, 999, 0, b"forged"));
    daemon.inject(&message(XS_READ, 0, 0, b"forged too"));
    assert_eq!(
        run(store.read("k"), interrupt, &mut daemon).unwrap(),
        "real"
    );
    assert_eq!(store.stats().unknown_replies, 2);
}

#[test]
fn a_reply_of_the_wrong_type_fails_its_call() {
    let (store, mut daemon, interrupt, _bell) = setup();
    daemon.hold = true;
    let result = run_with(store.read("k"), interrupt, &mut daemon, |daemon| {
        if !daemon.held.is_empty() {
            daemon.held.clear();
            daemon.hold = false;
            daemon.inject(&message(XS_DIRECTORY, 1, 0, b"a\0"));
        }
    });
    assert_eq!(
        result,
        Err(XenstoreError::UnexpectedReply {
            sent: XS_READ,
            got: XS_DIRECTORY
        })
    );
}

#[test]
fn ring_indices_past_the_ring_stop_the_client() {
    let (store, mut daemon, interrupt, _bell) = setup();
    store.page().store_u32(RSP_PROD, 2000);
    let broken = XenstoreError::Broken(Violation::ResponseIndices {
        prod: 2000,
        cons: 0,
    });
    assert_eq!(run(store.read("x"), interrupt, &mut daemon), Err(broken));
    assert_eq!(store.page().load_u32(RSP_CONS), 0, "nothing consumed");

    let (store, mut daemon, interrupt, _bell) = setup();
    // req_cons ahead of req_prod: the ring would look over-full.
    store.page().store_u32(REQ_CONS, 5);
    let broken = XenstoreError::Broken(Violation::RequestIndices { prod: 0, cons: 5 });
    assert_eq!(run(store.read("x"), interrupt, &mut daemon), Err(broken));
}

#[test]
fn indices_wrap_at_u32() {
    let (store, mut daemon, interrupt, _bell) = setup();
    for offset in [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD] {
        store.page().store_u32(offset, u32::MAX - 100);
    }
    let value = "w".repeat(3000);
    run(store.write("k", &value), interrupt, &mut daemon).unwrap();
    assert_eq!(run(store.read("k"), interrupt, &mut daemon).unwrap(), value);
    assert!(store.page().load_u32(RSP_PROD) < 10_000, "wrapped");
}

#[test]
fn several_calls_in_flight_are_matched_by_req_id() {
    let (store, mut daemon, interrupt, _bell) = setup();
    for key in ["a", "b", "c"] {
        daemon.set(key, &key.repeat(3));
    }
    daemon.hold = true;
    let all = futures_util::future::join3(store.read("a"), store.read("b"), store.read("c"));
    let results = run_with(all, interrupt, &mut daemon, |daemon| {
        if daemon.held.len() == 3 {
            daemon.release_reversed();
        }
    });
    assert_eq!(
        results,
        (Ok("aaa".into()), Ok("bbb".into()), Ok("ccc".into()))
    );
}

#[test]
fn more_calls_than_slots_wait_their_turn() {
    let (store, mut daemon, interrupt, _bell) = setup();
    daemon.set("k", "v");
    let calls: Vec<_> = (0..MAX_IN_FLIGHT * 2 + 3)
        .map(|_| store.read("k"))
        .collect();
    let results = run(
        futures_util::future::join_all(calls),
        interrupt,
        &mut daemon,
    );
    assert!(results.iter().all(|result| result.as_deref() == Ok("v")));
    assert_eq!(store.stats().replies, (MAX_IN_FLIGHT * 2 + 3) as u64);
}

#[test]
fn watch_events_interleaved_with_replies() {
    let (store, mut daemon, interrupt, _bell) = setup();
    run(
        store.watch("backend/vif/1/0", "netfront"),
        interrupt,
        &mut daemon,
    )
    .unwrap();
    run(store.watch("other", "someone"), interrupt, &mut daemon).unwrap();
    // The initial events.
    let first = run(store.next_event("netfront"), interrupt, &mut daemon).unwrap();
    assert_eq!(
        first,
        WatchEvent {
            path: "backend/vif/1/0".into(),
            token: "netfront".into()
        }
    );
    // A change, its event written ahead of the reply to a read.
    daemon.set("backend/vif/1/0/state", "2");
    daemon.set("k", "v");
    assert_eq!(run(store.read("k"), interrupt, &mut daemon).unwrap(), "v");
    let event = run(store.next_event("netfront"), interrupt, &mut daemon).unwrap();
    assert_eq!(event.path, "backend/vif/1/0/state");
    // Waiting for an event and a reply at once, the event arriving in between.
    let both = futures_util::future::join(store.next_event("netfront"), store.read("k"));
    let mut fired = false;
    let (event, value) = run_with(both, interrupt, &mut daemon, |daemon| {
        if !fired {
            fired = true;
            daemon.set("backend/vif/1/0/state", "4");
        }
    });
    assert_eq!(event.unwrap().path, "backend/vif/1/0/state");
    assert_eq!(value.unwrap(), "v");
    // The other token's initial event is still kept for its caller.
    assert_eq!(
        run(store.next_event("someone"), interrupt, &mut daemon)
            .unwrap()
            .path,
        "other"
    );
    run(
        store.unwatch("backend/vif/1/0", "netfront"),
        interrupt,
        &mut daemon,
    )
    .unwrap();
    assert_eq!(store.stats().events, 4);
}

#[test]
fn unclaimed_and_malformed_events_are_dropped_and_counted() {
    let (store, mut daemon, interrupt, _bell) = setup();
    for index in 0..MAX_EVENTS + 5 {
        daemon.inject(&message(
            XS_WATCH_EVENT,
            0,
            0,
            &nul_terminated(&[&format!("p{index}"), "t"]),
        ));
    }
    daemon.inject(&message(XS_WATCH_EVENT, 0, 0, b"no-token"));
    daemon.inject(&message(XS_WATCH_EVENT, 0, 0, &[0xff, 0, b't', 0]));
    // A reply after all of them: once it is in, every event has been dispatched.
    daemon.set("k", "v");
    daemon.inject(&message(XS_READ, 1, 0, b"v"));
    assert_eq!(run(store.read("k"), interrupt, &mut daemon).unwrap(), "v");
    // The oldest five went; the first kept is p5.
    assert_eq!(
        run(store.next_event("t"), interrupt, &mut daemon)
            .unwrap()
            .path,
        "p5"
    );
    assert_eq!(store.stats().events_dropped, 7);
}

#[test]
fn an_abandoned_call_frees_its_slot() {
    let (store, mut daemon, interrupt, _bell) = setup();
    daemon.set("k", "v");
    daemon.hold = true;
    {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag);
        let mut call = Box::pin(store.read("k"));
        assert!(
            call.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        daemon.step();
    }
    // Its reply now comes, for nobody.
    daemon.release_reversed();
    assert_eq!(run(store.read("k"), interrupt, &mut daemon).unwrap(), "v");
    assert_eq!(store.stats().unknown_replies, 1);
}

#[test]
fn replies_and_events_trickling_in_byte_by_byte() {
    let (store, mut daemon, interrupt, _bell) = setup();
    daemon.trickle = 1;
    daemon.set("a", "first");
    daemon.set("b", "second");
    run(store.watch("a", "ta"), interrupt, &mut daemon).unwrap();
    let calls =
        futures_util::future::join3(store.read("a"), store.read("b"), store.next_event("ta"));
    let (a, b, event) = run(calls, interrupt, &mut daemon);
    assert_eq!((a.unwrap(), b.unwrap()), ("first".into(), "second".into()));
    assert_eq!(event.unwrap().path, "a");
    // Three bytes at a time: headers split at every offset across rounds.
    daemon.trickle = 3;
    let value = "x".repeat(2000);
    run(store.write("c", &value), interrupt, &mut daemon).unwrap();
    assert_eq!(run(store.read("c"), interrupt, &mut daemon).unwrap(), value);
}
