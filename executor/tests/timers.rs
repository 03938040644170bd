//! Timers on a clock moved by hand: nothing here depends on real time.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Waker};

use common::{leak, sim_executor};
use torito_executor::{
    Clock, Duration, Elapsed, Instant, interval, interval_at, sleep, sleep_until, timeout,
};

fn ms(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

#[test]
fn sleep_fires_exactly_when_the_clock_reaches_the_deadline() {
    let (executor, _, clock) = sim_executor(0);
    let woke_at: &'static Mutex<Option<Instant>> = leak(Mutex::new(None));
    let handle = executor.spawn(async move {
        sleep(Duration::from_millis(10)).await;
        *woke_at.lock().unwrap() = Some(clock.now());
    });
    let round = executor.run_once();
    assert_eq!((round.polled, round.next_deadline), (1, Some(ms(10))));

    clock.set(ms(10) - Duration::from_nanos(1));
    let round = executor.run_once();
    assert_eq!(
        (round.polled, round.next_deadline),
        (0, Some(ms(10))),
        "1 ns early: nothing"
    );
    assert!(!handle.is_finished());

    clock.set(ms(10));
    let round = executor.run_once();
    assert_eq!((round.polled, round.next_deadline), (1, None));
    assert!(handle.is_finished());
    assert_eq!(*woke_at.lock().unwrap(), Some(ms(10)));
}

#[test]
fn a_relative_sleep_counts_from_its_first_poll() {
    let (executor, _, clock) = sim_executor(0);
    let nap = sleep(Duration::from_millis(10));
    assert_eq!(nap.deadline(), None);
    clock.set(ms(5));
    executor.spawn(nap).detach();
    assert_eq!(executor.run_once().next_deadline, Some(ms(15)));
}

#[test]
fn sleep_until_a_past_instant_is_ready_at_once() {
    let (executor, _, clock) = sim_executor(0);
    clock.set(ms(50));
    let handle = executor.spawn(sleep_until(ms(20)));
    let round = executor.run_once();
    assert!(handle.is_finished());
    assert_eq!(round.next_deadline, None);
}

#[test]
fn next_deadline_is_the_earliest_pending_timer() {
    let (executor, _, clock) = sim_executor(0);
    let handles: Vec<_> = [30, 10, 20]
        .map(|t| executor.spawn(sleep(Duration::from_millis(t))))
        .into();
    assert_eq!(executor.run_once().next_deadline, Some(ms(10)));
    clock.set(ms(10));
    let round = executor.run_once();
    assert_eq!((round.polled, round.next_deadline), (1, Some(ms(20))));
    assert!(handles[1].is_finished() && !handles[0].is_finished());
    clock.set(ms(25));
    assert_eq!(executor.run_once().next_deadline, Some(ms(30)));
    clock.set(ms(30));
    assert_eq!(executor.run_once().next_deadline, None);
    assert!(handles.iter().all(|h| h.is_finished()));
}

#[test]
fn timers_of_one_task_share_its_deadline_and_wake_it_for_the_earliest() {
    let (executor, _, clock) = sim_executor(0);
    let order: &'static Mutex<Vec<u64>> = leak(Mutex::new(Vec::new()));
    executor
        .spawn(async move {
            let mut late = pin!(sleep(Duration::from_millis(20)));
            let mut early = pin!(sleep_until(ms(5)));
            // Poll both in one poll (a hand-made select); the early one wins, then the
            // late one is awaited alone.
            std::future::poll_fn(|cx| {
                let _ = late.as_mut().poll(cx);
                early.as_mut().poll(cx)
            })
            .await;
            let first = clock.now();
            order.lock().unwrap().push(first.as_nanos());
            late.await;
            let second = clock.now();
            order.lock().unwrap().push(second.as_nanos());
        })
        .detach();
    assert_eq!(executor.run_once().next_deadline, Some(ms(5)));
    clock.set(ms(5));
    assert_eq!(executor.run_once().next_deadline, Some(ms(20)));
    clock.set(ms(20));
    executor.run_once();
    assert_eq!(
        *order.lock().unwrap(),
        [ms(5).as_nanos(), ms(20).as_nanos()]
    );
}

#[test]
fn timeout_is_err_elapsed_when_the_inner_future_is_slower() {
    let (executor, _, clock) = sim_executor(0);
    let handle = executor.spawn(timeout(
        Duration::from_millis(5),
        sleep(Duration::from_millis(10)),
    ));
    assert_eq!(executor.run_once().next_deadline, Some(ms(5)));
    clock.set(ms(5));
    executor.run_once();
    let elapsed: Elapsed = executor.block_on(handle).unwrap_err();
    assert_eq!(elapsed.deadline(), ms(5));
}

#[test]
fn timeout_is_ok_when_the_inner_future_is_faster() {
    let (executor, _, clock) = sim_executor(0);
    let handle = executor.spawn(timeout(Duration::from_millis(10), async {
        sleep(Duration::from_millis(5)).await;
        "done"
    }));
    assert_eq!(executor.run_once().next_deadline, Some(ms(5)));
    clock.set(ms(5));
    let round = executor.run_once();
    assert!(handle.is_finished());
    // The 10 ms guard left with the completed task: no stale deadline is reported.
    assert_eq!(round.next_deadline, None);
    assert_eq!(executor.block_on(handle), Ok("done"));
}

#[test]
fn timeout_prefers_the_output_when_both_are_ready() {
    let (executor, _, clock) = sim_executor(0);
    clock.set(ms(100));
    let result = executor.block_on(timeout_after_ready());
    assert_eq!(result, Ok(1));

    async fn timeout_after_ready() -> Result<i32, Elapsed> {
        torito_executor::timeout_at(Instant::ZERO, async { 1 }).await
    }
}

#[test]
fn interval_ticks_on_schedule_and_skips_missed_ticks() {
    let (executor, _, clock) = sim_executor(0);
    let ticks: &'static Mutex<Vec<u64>> = leak(Mutex::new(Vec::new()));
    executor
        .spawn(async move {
            let mut every_10ms = interval(Duration::from_millis(10));
            loop {
                let tick = every_10ms.tick().await;
                ticks.lock().unwrap().push(tick.as_nanos() / 1_000_000);
            }
        })
        .detach();
    let snapshot = || ticks.lock().unwrap().clone();

    assert_eq!(executor.run_once().next_deadline, Some(ms(10)));
    assert_eq!(snapshot(), [0], "the first tick is immediate");
    clock.set(ms(10));
    assert_eq!(executor.run_once().next_deadline, Some(ms(20)));
    assert_eq!(snapshot(), [0, 10]);
    // The core slept through 20 and 30: one late tick (for 20), then back on schedule
    // at 40 (30 is skipped, no burst).
    clock.set(ms(35));
    assert_eq!(executor.run_once().next_deadline, Some(ms(40)));
    assert_eq!(snapshot(), [0, 10, 20]);
    clock.set(ms(40));
    assert_eq!(executor.run_once().next_deadline, Some(ms(50)));
    assert_eq!(snapshot(), [0, 10, 20, 40]);
}

#[test]
fn interval_at_starts_at_the_given_instant() {
    let (executor, _, clock) = sim_executor(0);
    let handle = executor.spawn(async {
        let mut ticker = interval_at(ms(7), Duration::from_millis(3));
        (ticker.tick().await, ticker.tick().await)
    });
    assert_eq!(executor.run_once().next_deadline, Some(ms(7)));
    clock.set(ms(7));
    assert_eq!(executor.run_once().next_deadline, Some(ms(10)));
    clock.set(ms(10));
    executor.run_once();
    assert_eq!(executor.block_on(handle), (ms(7), ms(10)));
}

#[test]
#[should_panic(expected = "interval period must be non-zero")]
fn a_zero_interval_panics() {
    let _ = interval(Duration::ZERO);
}

#[test]
fn block_on_idles_until_the_next_deadline() {
    let (executor, platform, clock) = sim_executor(0);
    let background = executor.spawn(async {
        sleep(Duration::from_millis(700)).await;
        clock.now()
    });
    let finished_at = executor.block_on(async {
        sleep(Duration::from_secs(1)).await;
        sleep(Duration::from_millis(500)).await;
        clock.now()
    });
    assert_eq!(finished_at, ms(1500));
    assert_eq!(clock.now(), ms(1500));
    // Simulated idles jump to each earliest deadline in turn: task, then main twice.
    assert_eq!(
        platform.idles(),
        [Some(ms(700)), Some(ms(1000)), Some(ms(1500))]
    );
    assert_eq!(executor.block_on(background), ms(700));
}

#[test]
#[should_panic(expected = "torito timers must be polled inside a torito executor task")]
fn a_sleep_polled_outside_a_torito_task_panics() {
    let mut nap = pin!(sleep(Duration::from_millis(1)));
    let _ = nap.as_mut().poll(&mut Context::from_waker(Waker::noop()));
}
