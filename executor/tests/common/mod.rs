//! Fakes shared by the integration tests: a hand-driven clock, a recording platform
//! with simulated time, a condition-variable platform for real threads, drop counters.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Wake, Waker};

use torito_executor::{Clock, Executor, Instant, Platform};

/// How long a test binary may run before the watchdog fails it: a bug such as a lost
/// wakeup or a timer that never fires shows up as a hang, and a hang must fail. Far
/// above any binary's normal run time (well under a second each).
pub const BINARY_WATCHDOG: std::time::Duration = std::time::Duration::from_secs(300);

/// Starts (once per test binary) a thread that fails the whole binary after
/// [`BINARY_WATCHDOG`].
pub fn watchdog() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        std::thread::spawn(|| {
            std::thread::sleep(BINARY_WATCHDOG);
            // Straight to stderr: `eprintln!` output of test threads is captured and
            // would vanish with the process.
            let message =
                format!("watchdog: test binary still running after {BINARY_WATCHDOG:?}: a hang\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
            std::process::exit(101);
        });
    });
}

pub fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// A clock that only moves when the test moves it.
#[derive(Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    pub fn set(&self, at: Instant) {
        self.nanos.store(at.as_nanos(), SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.nanos.load(SeqCst))
    }
}

/// Records every `wake_core` and `idle` call. `idle` simulates time: it jumps the clock
/// to the deadline. Idling with no deadline and no work would hang a real core, so it
/// panics here.
pub struct SimPlatform {
    pub clock: &'static ManualClock,
    pub wakes: Mutex<Vec<usize>>,
    pub idles: Mutex<Vec<Option<Instant>>>,
}

impl SimPlatform {
    pub fn wakes(&self) -> Vec<usize> {
        self.wakes.lock().unwrap().clone()
    }
    pub fn idles(&self) -> Vec<Option<Instant>> {
        self.idles.lock().unwrap().clone()
    }
}

impl Platform for SimPlatform {
    fn idle(&self, deadline: Option<Instant>, has_work: &dyn Fn() -> bool) {
        self.idles.lock().unwrap().push(deadline);
        if has_work() {
            return;
        }
        match deadline {
            Some(deadline) => {
                if self.clock.now() < deadline {
                    self.clock.set(deadline);
                }
            }
            None => panic!("idle with no work and no timer: the test would hang"),
        }
    }

    fn wake_core(&self, core: usize) {
        self.wakes.lock().unwrap().push(core);
    }
}

/// A fresh executor on simulated time, for one test.
pub fn sim_executor(
    core: usize,
) -> (
    &'static Executor,
    &'static SimPlatform,
    &'static ManualClock,
) {
    let clock = leak(ManualClock::default());
    let platform = leak(SimPlatform {
        clock,
        wakes: Mutex::new(Vec::new()),
        idles: Mutex::new(Vec::new()),
    });
    (leak(Executor::new(core, platform, clock)), platform, clock)
}

/// A platform for real threads: `idle` waits on a condition variable, `wake_core`
/// notifies it. The generation counter is bumped under the lock by `wake_core` and
/// checked under the lock by `idle` after `has_work()`, which is the host analogue of
/// "interrupts off, check, sti; hlt": a wake between the check and the wait is not lost.
/// There is deliberately no timeout on the wait: a lost wakeup must hang (and the
/// test's watchdog must fail), not be papered over.
#[derive(Default)]
pub struct CondvarPlatform {
    generation: Mutex<u64>,
    condvar: Condvar,
    pub idles: AtomicUsize,
}

impl Platform for CondvarPlatform {
    fn idle(&self, deadline: Option<Instant>, has_work: &dyn Fn() -> bool) {
        assert!(deadline.is_none(), "these tests use no timers");
        let mut generation = self.generation.lock().unwrap();
        let seen = *generation;
        if has_work() {
            return;
        }
        self.idles.fetch_add(1, SeqCst);
        while *generation == seen {
            generation = self.condvar.wait(generation).unwrap();
        }
    }

    fn wake_core(&self, _core: usize) {
        *self.generation.lock().unwrap() += 1;
        self.condvar.notify_all();
    }
}

/// Counts drops of the values made by [`DropCounter::token`].
#[derive(Clone, Default)]
pub struct DropCounter {
    count: Arc<AtomicUsize>,
}

pub struct Token {
    count: Arc<AtomicUsize>,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.count.fetch_add(1, SeqCst);
    }
}

impl DropCounter {
    pub fn token(&self) -> Token {
        Token {
            count: self.count.clone(),
        }
    }
    pub fn dropped(&self) -> usize {
        self.count.load(SeqCst)
    }
}

/// Returns `Pending` once after waking its own task: the classic "yield".
pub fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// Never completes; remembers its waker in `slot` on every poll.
pub fn park_in(slot: &'static Mutex<Option<Waker>>) -> impl Future<Output = ()> {
    poll_fn(move |cx| {
        *slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::<()>::Pending
    })
}

/// A waker that counts its wakes: a stand-in for a foreign executor's waker.
#[derive(Default)]
pub struct CountingWaker {
    pub wakes: AtomicUsize,
    pub flag: AtomicBool,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
        self.flag.store(true, SeqCst);
    }
}

/// Runs `future` on the current std thread (not a torito executor): how a join handle
/// is awaited "from another core" in the tests.
pub fn block_on_thread<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
