//! Every task allocation is freed: a counting global allocator checks the reference
//! counting end to end. One test per binary, so the count is not shared with others;
//! the count is per thread, so the test harness's own allocations do not interfere.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::poll_fn;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::task::{Poll, Waker};

use common::{leak, watchdog, yield_now};
use torito_executor::{Clock, Duration, Executor, Instant, Platform, sleep, timeout};

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

struct Counting;

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: forwards every call to `System` unchanged; counting touches a const-initialised
// thread local without a destructor, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(1);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-1);
        // SAFETY: same contract as ours; `ptr` came from `System.alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Simulated time without recording (recording would allocate).
struct Sim {
    nanos: AtomicU64,
}

impl Clock for Sim {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.nanos.load(SeqCst))
    }
}

impl Platform for Sim {
    fn idle(&self, deadline: Option<Instant>, has_work: &dyn Fn() -> bool) {
        if !has_work() {
            let deadline = deadline.expect("idle with no work and no timer");
            self.nanos.fetch_max(deadline.as_nanos(), SeqCst);
        }
    }
    fn wake_core(&self, _: usize) {}
}

#[test]
fn every_task_allocation_is_freed() {
    watchdog();
    let sim = leak(Sim {
        nanos: AtomicU64::new(0),
    });
    let executor: &'static Executor = leak(Executor::new(0, sim, sim));
    let slot: &'static Mutex<Option<Waker>> = leak(Mutex::new(None));
    let baseline = live();

    // Joined tasks, including one awaited while still running (join waker stored).
    let total = executor.block_on(async {
        let quick = executor.spawn(async { String::from("output") });
        let slow = executor.spawn(async {
            yield_now().await;
            vec![1u8; 64]
        });
        slow.await.len() + quick.await.len()
    });
    assert_eq!(total, 70);
    // `main`'s header was last held by the slow task's join slot, a waker: its memory
    // goes back through the queue and is freed by the next round.
    executor.run_once();
    assert_eq!(
        live(),
        baseline,
        "joined tasks and block_on's task are freed"
    );

    // Detached tasks, with outputs nobody takes.
    for i in 0..100 {
        executor
            .spawn(async move {
                yield_now().await;
                vec![i; 10]
            })
            .detach();
    }
    executor.run_once();
    assert!(live() > baseline);
    executor.run_once();
    assert_eq!(
        live(),
        baseline,
        "detached tasks and their outputs are freed"
    );

    // A waker outliving its task: the memory waits for the waker, then for a round.
    let handle = executor.spawn(poll_fn(move |cx| {
        *slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    }));
    executor.run_once();
    drop(handle);
    assert!(
        live() > baseline,
        "the stored waker keeps the task's memory"
    );
    let waker = slot.lock().unwrap().take().unwrap();
    drop(waker);
    assert!(
        live() > baseline,
        "freed by the executor, not by the waker's dropper"
    );
    executor.run_once();
    assert_eq!(live(), baseline, "freed in the next round");

    // Tasks on the timer list: a completed timeout, a sleep in block_on's future.
    let output = executor.block_on(async {
        let guarded = executor.spawn(timeout(Duration::from_millis(10), async {
            sleep(Duration::from_millis(5)).await;
            7
        }));
        sleep(Duration::from_millis(20)).await;
        guarded.await
    });
    assert_eq!(output, Ok(7));
    executor.run_once();
    assert_eq!(live(), baseline, "timer-list references are released");
}
