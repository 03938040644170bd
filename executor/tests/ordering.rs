//! Poll order and fairness, asserted event by event with a recording platform.

mod common;

use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Poll, Waker};

use common::{leak, sim_executor, yield_now};
use torito_executor::{Executor, RunOnce, current_executor};

type Log = &'static Mutex<Vec<&'static str>>;

fn log() -> Log {
    leak(Mutex::new(Vec::new()))
}

fn take(log: Log) -> Vec<&'static str> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// A task that records `name` on each poll and completes after `polls` polls, yielding
/// (waking itself) in between.
async fn worker(log: Log, name: &'static str, polls: usize) {
    for i in 0..polls {
        log.lock().unwrap().push(name);
        if i + 1 < polls {
            yield_now().await;
        }
    }
}

#[test]
fn tasks_are_polled_in_spawn_order_and_spawn_wakes_the_owning_core() {
    let (executor, platform, _) = sim_executor(3);
    let log = log();
    for name in ["A", "B", "C"] {
        executor.spawn(worker(log, name, 1)).detach();
    }
    assert_eq!(
        platform.wakes(),
        [3, 3, 3],
        "each spawn calls wake_core(core)"
    );
    assert!(executor.has_ready());
    assert_eq!(
        executor.run_once(),
        RunOnce {
            polled: 3,
            next_deadline: None
        }
    );
    assert_eq!(take(log), ["A", "B", "C"]);
    assert!(!executor.has_ready());
    assert_eq!(executor.run_once().polled, 0);
}

#[test]
fn tasks_are_polled_in_wake_order() {
    let (executor, _, _) = sim_executor(0);
    let log = log();
    let wakers: &'static Mutex<Vec<(&'static str, Waker)>> = leak(Mutex::new(Vec::new()));
    for name in ["A", "B", "C"] {
        let mut first = true;
        executor
            .spawn(poll_fn(move |cx| {
                log.lock().unwrap().push(name);
                if first {
                    first = false;
                    wakers.lock().unwrap().push((name, cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }))
            .detach();
    }
    executor.run_once();
    assert_eq!(take(log), ["A", "B", "C"]);
    let mut wakers = std::mem::take(&mut *wakers.lock().unwrap());
    wakers.sort_by_key(|(name, _)| match *name {
        "C" => 0,
        "A" => 1,
        _ => 2,
    });
    for (_, waker) in wakers {
        waker.wake();
    }
    assert_eq!(executor.run_once().polled, 3);
    assert_eq!(take(log), ["C", "A", "B"]);
}

#[test]
fn a_self_waking_task_does_not_starve_the_others() {
    let (executor, _, _) = sim_executor(0);
    let log = log();
    // "S" wakes itself forever; "A" and "B" need three polls each.
    executor.spawn(worker(log, "S", usize::MAX)).detach();
    executor.spawn(worker(log, "A", 3)).detach();
    executor.spawn(worker(log, "B", 3)).detach();
    for _ in 0..3 {
        assert_eq!(executor.run_once().polled, 3);
        assert_eq!(
            take(log),
            ["S", "A", "B"],
            "each ready task exactly once per round"
        );
    }
    assert_eq!(executor.run_once().polled, 1);
    assert_eq!(take(log), ["S"]);
}

#[test]
fn a_task_woken_while_running_is_polled_again_next_round_not_this_one() {
    let (executor, _, _) = sim_executor(0);
    let log = log();
    executor.spawn(worker(log, "A", 2)).detach();
    assert_eq!(executor.run_once().polled, 1);
    assert!(executor.has_ready(), "the wake during the poll was kept");
    assert_eq!(executor.run_once().polled, 1);
    assert_eq!(take(log), ["A", "A"]);
    assert!(!executor.has_ready());
}

#[test]
fn tasks_spawned_by_a_task_run_in_the_next_round() {
    let (executor, _, _) = sim_executor(0);
    let log = log();
    executor
        .spawn(async move {
            log.lock().unwrap().push("parent");
            let here = current_executor().await;
            here.spawn(worker(log, "child", 1)).detach();
            log.lock().unwrap().push("parent done");
        })
        .detach();
    assert_eq!(executor.run_once().polled, 1);
    assert_eq!(take(log), ["parent", "parent done"]);
    assert_eq!(executor.run_once().polled, 1);
    assert_eq!(take(log), ["child"]);
}

#[test]
fn current_executor_is_the_one_running_the_task() {
    let (executor, _, _) = sim_executor(0);
    let found = executor.block_on(async {
        let inner = executor.spawn(async { current_executor().await as *const Executor as usize });
        (
            current_executor().await as *const Executor as usize,
            inner.await,
        )
    });
    let expected = executor as *const Executor as usize;
    assert_eq!(found, (expected, expected));
}

#[test]
#[should_panic(expected = "must be awaited inside a torito executor task")]
fn current_executor_outside_a_task_panics() {
    common::block_on_thread(current_executor());
}

#[test]
#[should_panic(expected = "torito executor re-entered")]
fn driving_an_executor_from_inside_its_own_task_panics() {
    let (executor, _, _) = sim_executor(0);
    executor.block_on(async {
        executor.run_once();
    });
}

mod statics {
    use super::*;
    use torito_executor::{Clock, Instant, Platform};

    struct Nop;
    impl Platform for Nop {
        fn idle(&self, _: Option<Instant>, _: &dyn Fn() -> bool) {}
        fn wake_core(&self, _: usize) {}
    }
    impl Clock for Nop {
        fn now(&self) -> Instant {
            Instant::ZERO
        }
    }

    // The kernel's shape: one `static` executor per core, built at compile time.
    static CORE0: Executor = Executor::new(0, &Nop, &Nop);
    static CORE1: Executor = Executor::new(1, &Nop, &Nop);

    #[test]
    fn executors_are_const_constructible_statics_and_sync() {
        fn assert_sync<T: Sync>(_: &T) {}
        assert_sync(&CORE0);
        assert_eq!((CORE0.core(), CORE1.core()), (0, 1));
        // Spawn onto core 1's executor from core 0's main future; drive core 1 by hand.
        // The handle itself is the point: it is awaited later, from core 1's side.
        #[allow(clippy::async_yields_async)]
        let handle = CORE0.block_on(async { CORE1.spawn(async { 7 }) });
        assert!(!handle.is_finished());
        assert_eq!(CORE1.run_once().polled, 1);
        assert!(handle.is_finished());
        assert_eq!(CORE0.block_on(handle), 7);
    }
}
