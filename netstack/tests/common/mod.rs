//! Fakes shared by the integration tests: a queue-backed wire between two fake drivers
//! with explicit time and optional faults, and a harness that drives two stacks by
//! calling `Runner::poll` with explicit time.
#![allow(dead_code)] // each test binary uses a different subset

pub mod raw;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use torito_executor::{Clock, Executor, Platform};
use torito_netstack::blocking::Park;
use torito_netstack::{
    Config, Driver, Duration, Error, Instant, Ipv4Cidr, Ipv4Config, Runner, RxToken, Stack,
    StaticConfig, TxToken,
};

/// xorshift64: a tiny deterministic PRNG for fault injection.
#[derive(Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What the wire does to frames.
#[derive(Clone)]
pub struct Faults {
    pub loss_percent: u64,
    /// Each frame is delayed by a random 0..=max_delay; different delays reorder.
    pub max_delay: Duration,
    pub rng: XorShift,
}

impl Faults {
    pub fn none() -> Self {
        Faults {
            loss_percent: 0,
            max_delay: Duration::ZERO,
            rng: XorShift(1),
        }
    }
}

struct InFlight {
    deliver_at: Instant,
    frame: Vec<u8>,
}

/// Two one-way queues; side `i` receives from `queues[i]`.
pub struct Wire {
    pub now: Instant,
    queues: [VecDeque<InFlight>; 2],
    faults: Faults,
    /// Free transmit descriptors per side; `None`: unlimited.
    pub tx_free: [Option<usize>; 2],
    rx_wakers: [Option<Waker>; 2],
    tx_wakers: [Option<Waker>; 2],
    pub rx_registrations: [usize; 2],
    pub tx_registrations: [usize; 2],
    pub delivered: [usize; 2],
    pub dropped: usize,
    /// Frames transmitted but not yet flushed: the device has not heard of them, so they
    /// are not on the wire (a runner that forgot `Driver::flush` would never deliver).
    unflushed: [Vec<Vec<u8>>; 2],
}

impl Wire {
    pub fn new(faults: Faults) -> Arc<Mutex<Wire>> {
        Arc::new(Mutex::new(Wire {
            now: Instant::ZERO,
            queues: [VecDeque::new(), VecDeque::new()],
            faults,
            tx_free: [None, None],
            rx_wakers: [None, None],
            tx_wakers: [None, None],
            rx_registrations: [0, 0],
            tx_registrations: [0, 0],
            delivered: [0, 0],
            dropped: 0,
            unflushed: [Vec::new(), Vec::new()],
        }))
    }

    /// Moves time; wakes receivers whose frames came due.
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
        for side in 0..2 {
            if self.deliverable(side)
                && let Some(waker) = self.rx_wakers[side].take()
            {
                waker.wake();
            }
        }
    }

    fn deliverable(&self, side: usize) -> bool {
        self.queues[side].iter().any(|f| f.deliver_at <= self.now)
    }

    pub fn next_delivery(&self) -> Option<Instant> {
        self.queues.iter().flatten().map(|f| f.deliver_at).min()
    }

    pub fn in_flight(&self) -> usize {
        self.queues[0].len() + self.queues[1].len()
    }

    /// Removes and returns every frame queued for `side`.
    pub fn take(&mut self, side: usize) -> Vec<Vec<u8>> {
        self.queues[side].drain(..).map(|f| f.frame).collect()
    }

    /// Queues `frame` for `side` at once, waking its receiver.
    pub fn inject(&mut self, side: usize, frame: Vec<u8>) {
        let deliver_at = self.now;
        self.queues[side].push_back(InFlight { deliver_at, frame });
        if let Some(waker) = self.rx_wakers[side].take() {
            waker.wake();
        }
    }

    /// Gives `side` `n` more transmit descriptors (`None`: unlimited) and wakes it, as a
    /// transmit-completion interrupt would.
    pub fn free_tx(&mut self, side: usize, n: Option<usize>) {
        self.tx_free[side] = n;
        if let Some(waker) = self.tx_wakers[side].take() {
            waker.wake();
        }
    }
}

pub struct FakeDriver {
    pub side: usize,
    pub wire: Arc<Mutex<Wire>>,
}

impl FakeDriver {
    /// Whether a transmit descriptor is free; if not, registers `waker` for the next
    /// completion and makes sure the device sees what is queued (the contract).
    fn tx_ready(&mut self, waker: &Waker) -> bool {
        let mut wire = self.wire.lock().unwrap();
        if wire.tx_free[self.side] != Some(0) {
            return true;
        }
        wire.tx_registrations[self.side] += 1;
        wire.tx_wakers[self.side] = Some(waker.clone());
        drop(wire);
        self.flush();
        false
    }
}

/// A received frame: the fake's own copy (the virtio driver lends its buffer).
pub struct FakeRx(Vec<u8>);

impl RxToken for FakeRx {
    fn frame(&self) -> &[u8] {
        &self.0
    }
}

/// A free transmit descriptor on `side`.
pub struct FakeTx<'a> {
    side: usize,
    wire: &'a Mutex<Wire>,
}

impl TxToken for FakeTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut wire = self.wire.lock().unwrap();
        if let Some(n) = &mut wire.tx_free[self.side] {
            *n = n
                .checked_sub(1)
                .expect("a token only for a free descriptor");
        }
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        wire.unflushed[self.side].push(frame);
        result
    }
}

impl Driver for FakeDriver {
    type RxToken<'a> = FakeRx;
    type TxToken<'a> = FakeTx<'a>;

    fn mac(&self) -> [u8; 6] {
        [0x02, 0, 0, 0, 0, self.side as u8 + 1]
    }

    fn mtu(&self) -> usize {
        1500
    }

    fn receive(&mut self, waker: &Waker) -> Option<(FakeRx, FakeTx<'_>)> {
        let mut wire = self.wire.lock().unwrap();
        let now = wire.now;
        let queue = &mut wire.queues[self.side];
        let next = (0..queue.len())
            .filter(|&i| queue[i].deliver_at <= now)
            .min_by_key(|&i| queue[i].deliver_at);
        let Some(i) = next else {
            wire.rx_registrations[self.side] += 1;
            wire.rx_wakers[self.side] = Some(waker.clone());
            return None;
        };
        drop(wire);
        // A frame comes with a transmit token or not at all (it stays pending).
        if !self.tx_ready(waker) {
            return None;
        }
        let mut wire = self.wire.lock().unwrap();
        let frame = wire.queues[self.side].remove(i).unwrap().frame;
        wire.delivered[self.side] += 1;
        drop(wire);
        let tx = FakeTx {
            side: self.side,
            wire: &self.wire,
        };
        Some((FakeRx(frame), tx))
    }

    fn transmit(&mut self, waker: &Waker) -> Option<FakeTx<'_>> {
        self.tx_ready(waker).then_some(FakeTx {
            side: self.side,
            wire: &self.wire,
        })
    }

    /// Puts the frames transmitted since the last flush on the wire.
    fn flush(&mut self) {
        let mut wire = self.wire.lock().unwrap();
        let wire = &mut *wire;
        let to = 1 - self.side;
        for frame in wire.unflushed[self.side].drain(..) {
            let faults = &mut wire.faults;
            if faults.loss_percent > 0 && faults.rng.chance(faults.loss_percent) {
                // Lost on the wire: the device did send it.
                wire.dropped += 1;
                continue;
            }
            let delay = match faults.max_delay.as_nanos() as u64 {
                0 => 0,
                max => faults.rng.next() % (max + 1),
            };
            let deliver_at = Instant::from_nanos(wire.now.as_nanos() + delay);
            wire.queues[to].push_back(InFlight { deliver_at, frame });
            if deliver_at <= wire.now
                && let Some(waker) = wire.rx_wakers[to].take()
            {
                waker.wake();
            }
        }
    }
}

pub const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

pub fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

pub fn static_config(ip: Ipv4Addr) -> Config {
    Config {
        ipv4: Ipv4Config::Static(StaticConfig {
            address: Ipv4Cidr::new(ip, 24),
            gateway: None,
            dns: None,
        }),
        ..Config::default()
    }
}

/// A waker that counts its wakes.
#[derive(Default)]
pub struct CountingWaker(pub AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Two stacks on one wire, driven by hand with explicit time.
pub struct Net {
    pub wire: Arc<Mutex<Wire>>,
    pub a: Stack,
    pub b: Stack,
    pub runner_a: Runner<FakeDriver>,
    pub runner_b: Runner<FakeDriver>,
    pub now: Instant,
    pub steps: usize,
}

impl Net {
    pub fn new(faults: Faults) -> Net {
        Net::with_configs(faults, static_config(IP_A), static_config(IP_B))
    }

    pub fn with_configs(faults: Faults, config_a: Config, config_b: Config) -> Net {
        let wire = Wire::new(faults);
        let driver = |side| FakeDriver {
            side,
            wire: wire.clone(),
        };
        let (a, runner_a) = torito_netstack::new(driver(0), config_a, 1, Instant::ZERO);
        let (b, runner_b) = torito_netstack::new(driver(1), config_b, 2, Instant::ZERO);
        Net {
            wire,
            a,
            b,
            runner_a,
            runner_b,
            now: Instant::ZERO,
            steps: 0,
        }
    }

    /// Polls both runners at the current time, then moves time to the next event: the
    /// earliest runner deadline or frame delivery (1 ms if there is none). Time does not
    /// move while something is due now.
    pub fn step(&mut self) {
        self.steps += 1;
        let deadline_a = self.runner_a.poll(self.now);
        let deadline_b = self.runner_b.poll(self.now);
        let mut wire = self.wire.lock().unwrap();
        let next = [deadline_a, deadline_b, wire.next_delivery()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(at) if at > self.now => self.now = at,
            Some(_) => {}
            None => self.now += Duration::from_millis(1),
        }
        wire.set_now(self.now);
    }

    /// Polls `future` (with a no-op waker) and steps the network until it completes;
    /// panics after `max_steps` steps.
    pub fn run<F: Future>(&mut self, max_steps: usize, future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..max_steps {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            self.step();
        }
        panic!(
            "not done after {max_steps} steps (time {:?}); deadlines {:?} {:?}",
            self.now,
            self.runner_a.poll(self.now),
            self.runner_b.poll(self.now)
        );
    }
}

/// Polls two futures together to completion.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            out_a = Some(v);
        }
        if out_b.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            out_b = Some(v);
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready((out_a.take().unwrap(), out_b.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// A `Park` for host tests: each `block_on` polls the future and steps the network
/// until it completes.
pub struct Pump<'n>(pub RefCell<&'n mut Net>);

impl Park for Pump<'_> {
    fn block_on<F: Future>(&self, future: F) -> Result<F::Output, Error> {
        let mut future: Pin<&mut F> = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100_000 {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Ok(output);
            }
            self.0.borrow_mut().step();
        }
        panic!("block_on: not done after 100000 steps");
    }
}

/// A `Park` that cannot park (like a kernel task that is not a blocking task).
pub struct NoPark;

impl Park for NoPark {
    fn block_on<F: Future>(&self, _future: F) -> Result<F::Output, Error> {
        Err(Error::WouldBlockCore)
    }
}

/// A clock that moves only when [`SimPlatform`] idles.
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.load(SeqCst))
    }
}

/// Idles by jumping the clock to the next timer; idling with neither work nor a timer
/// means a wake was lost, and would hang a real core: panic.
pub struct SimPlatform(pub &'static ManualClock);

impl Platform for SimPlatform {
    fn idle(&self, deadline: Option<Instant>, has_work: &dyn Fn() -> bool) {
        if has_work() {
            return;
        }
        let deadline = deadline.expect("idle with no work and no timer: a wake was lost");
        self.0.0.fetch_max(deadline.as_nanos(), SeqCst);
    }

    fn wake_core(&self, _core: usize) {}
}

/// A torito executor on simulated time, running both runners as tasks: for what needs
/// executor timers (socket timeouts) or checks that every wake reaches its task.
pub struct Sim {
    pub executor: &'static Executor,
    pub clock: &'static ManualClock,
    pub a: Stack,
    pub b: Stack,
}

impl Sim {
    /// Moves `net`'s runners onto a fresh executor whose clock starts at `net`'s time.
    pub fn from_net(net: Net) -> Sim {
        let clock: &'static ManualClock = Box::leak(Box::default());
        clock.0.store(net.now.as_nanos(), SeqCst);
        let platform: &'static SimPlatform = Box::leak(Box::new(SimPlatform(clock)));
        let executor: &'static Executor = Box::leak(Box::new(Executor::new(0, platform, clock)));
        executor.spawn(net.runner_a.run()).detach();
        executor.spawn(net.runner_b.run()).detach();
        Sim {
            executor,
            clock,
            a: net.a,
            b: net.b,
        }
    }
}
