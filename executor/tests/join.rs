//! Join handles: values, detaching, who drops the output, when the future is dropped.

mod common;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use common::{CountingWaker, DropCounter, leak, sim_executor, yield_now};

#[test]
fn join_handle_returns_the_output() {
    let (executor, _, _) = sim_executor(0);
    let sum = executor.block_on(async {
        let a = executor.spawn(async { 40 });
        let b = executor.spawn(async {
            yield_now().await;
            yield_now().await;
            2
        });
        // `b` is awaited while still running: the join waker path, waking `main`.
        b.await + a.await
    });
    assert_eq!(sum, 42);
}

#[test]
fn is_finished_follows_completion() {
    let (executor, _, _) = sim_executor(0);
    let handle = executor.spawn(async { yield_now().await });
    assert!(!handle.is_finished());
    executor.run_once();
    assert!(!handle.is_finished());
    executor.run_once();
    assert!(handle.is_finished());
}

#[test]
fn a_detached_task_still_runs_to_completion() {
    let (executor, _, _) = sim_executor(0);
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = finished.clone();
    executor
        .spawn(async move {
            yield_now().await;
            flag.store(true, SeqCst);
        })
        .detach();
    executor.run_once();
    assert!(!finished.load(SeqCst));
    executor.run_once();
    assert!(finished.load(SeqCst));
}

#[test]
fn the_future_is_dropped_right_after_completion_even_if_the_handle_lives() {
    let (executor, _, _) = sim_executor(0);
    let future_drops = DropCounter::default();
    let token = future_drops.token();
    let handle = executor.spawn(async move {
        let _held_by_the_future = token;
        yield_now().await;
        5
    });
    executor.run_once();
    assert_eq!(future_drops.dropped(), 0, "still running");
    executor.run_once();
    assert_eq!(
        future_drops.dropped(),
        1,
        "dropped at completion, not at free"
    );
    assert_eq!(executor.block_on(handle), 5);
}

#[test]
fn output_of_a_task_detached_before_completion_is_dropped_at_completion() {
    let (executor, _, _) = sim_executor(0);
    let output_drops = DropCounter::default();
    let counter = output_drops.clone();
    let handle = executor.spawn(async move {
        yield_now().await;
        counter.token()
    });
    executor.run_once();
    drop(handle);
    assert_eq!(output_drops.dropped(), 0);
    executor.run_once();
    assert_eq!(output_drops.dropped(), 1);
}

#[test]
fn output_of_a_completed_task_is_dropped_when_the_handle_is() {
    let (executor, _, _) = sim_executor(0);
    let output_drops = DropCounter::default();
    let counter = output_drops.clone();
    let handle = executor.spawn(async move { counter.token() });
    executor.run_once();
    assert!(handle.is_finished());
    assert_eq!(output_drops.dropped(), 0, "kept for the handle");
    drop(handle);
    assert_eq!(output_drops.dropped(), 1);
}

/// A task that leaves a clone of its waker in `slot` (as a driver's interrupt slot
/// would), so its memory outlives both its completion and its join handle.
async fn leave_waker_behind(slot: &'static Mutex<Option<Waker>>) {
    poll_fn(|cx| {
        *slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    })
    .await;
}

#[test]
fn a_detached_output_is_dropped_at_completion_even_while_a_waker_keeps_the_task() {
    let (executor, _, _) = sim_executor(0);
    let slot: &'static Mutex<Option<Waker>> = leak(Mutex::new(None));
    let output_drops = DropCounter::default();
    let counter = output_drops.clone();
    let handle = executor.spawn(async move {
        yield_now().await;
        leave_waker_behind(slot).await;
        counter.token()
    });
    executor.run_once();
    handle.detach();
    executor.run_once();
    assert!(
        slot.lock().unwrap().is_some(),
        "the task's memory is still referenced"
    );
    assert_eq!(output_drops.dropped(), 1, "but its output is already gone");
}

#[test]
fn a_completed_output_is_dropped_with_its_handle_even_while_a_waker_keeps_the_task() {
    let (executor, _, _) = sim_executor(0);
    let slot: &'static Mutex<Option<Waker>> = leak(Mutex::new(None));
    let output_drops = DropCounter::default();
    let counter = output_drops.clone();
    let handle = executor.spawn(async move {
        leave_waker_behind(slot).await;
        counter.token()
    });
    executor.run_once();
    assert_eq!(output_drops.dropped(), 0, "kept for the handle");
    drop(handle);
    assert!(
        slot.lock().unwrap().is_some(),
        "the task's memory is still referenced"
    );
    assert_eq!(
        output_drops.dropped(),
        1,
        "but its output went with the handle"
    );
}

#[test]
fn joined_output_is_dropped_exactly_once() {
    let (executor, _, _) = sim_executor(0);
    let output_drops = DropCounter::default();
    let counter = output_drops.clone();
    let handle = executor.spawn(async move { counter.token() });
    let token = executor.block_on(handle);
    assert_eq!(output_drops.dropped(), 0);
    drop(token);
    executor.run_once();
    assert_eq!(output_drops.dropped(), 1);
}

#[test]
fn only_the_latest_join_waker_is_woken() {
    let (executor, _, _) = sim_executor(0);
    let handle = executor.spawn(async {
        yield_now().await;
        9
    });
    let first = Arc::new(CountingWaker::default());
    let second = Arc::new(CountingWaker::default());
    let first_waker = Waker::from(first.clone());
    let second_waker = Waker::from(second.clone());
    let mut handle = pin!(handle);
    // Joined from "another executor": foreign wakers are fine for join handles.
    assert!(
        handle
            .as_mut()
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending()
    );
    assert!(
        handle
            .as_mut()
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending()
    );
    assert!(
        handle
            .as_mut()
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending()
    );
    executor.run_once();
    executor.run_once();
    assert_eq!(first.wakes.load(SeqCst), 0);
    assert_eq!(second.wakes.load(SeqCst), 1);
    assert_eq!(
        handle
            .as_mut()
            .poll(&mut Context::from_waker(&second_waker)),
        Poll::Ready(9)
    );
}

#[test]
#[should_panic(expected = "polled again after it returned")]
fn polling_a_join_handle_after_ready_panics() {
    let (executor, _, _) = sim_executor(0);
    let handle = executor.spawn(async { 1 });
    executor.run_once();
    let mut handle = pin!(handle);
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(handle.as_mut().poll(&mut cx), Poll::Ready(1));
    let _ = handle.as_mut().poll(&mut cx);
}

#[test]
fn a_join_handle_can_be_awaited_on_another_thread() {
    let (executor, _, _) = sim_executor(0);
    let handle = executor.spawn(async {
        yield_now().await;
        String::from("crossed")
    });
    let joiner = std::thread::spawn(move || common::block_on_thread(handle));
    // Drive the executor here until the other thread has its output.
    while !joiner.is_finished() {
        executor.run_once();
        std::thread::yield_now();
    }
    assert_eq!(joiner.join().unwrap(), "crossed");
}
