//! Wakers that outlive their task, wakes of completed tasks, deferred freeing.

mod common;

use std::sync::Mutex;
use std::task::Waker;

use common::{DropCounter, leak, park_in, sim_executor};

#[test]
fn waking_a_completed_task_is_a_no_op() {
    let (executor, platform, _) = sim_executor(0);
    let slot: &'static Mutex<Option<Waker>> = leak(Mutex::new(None));
    let handle = executor.spawn(std::future::poll_fn(move |cx| {
        *slot.lock().unwrap() = Some(cx.waker().clone());
        std::task::Poll::Ready(())
    }));
    executor.run_once();
    assert!(handle.is_finished());
    let waker = slot.lock().unwrap().take().unwrap();
    let wakes_before = platform.wakes().len();
    waker.wake_by_ref();
    // Deliberately the clone-then-wake-by-value path of the vtable.
    #[allow(clippy::waker_clone_wake)]
    waker.clone().wake();
    assert!(!executor.has_ready(), "nothing queued");
    assert_eq!(platform.wakes().len(), wakes_before, "no core woken");
    assert_eq!(executor.run_once().polled, 0);
    drop(waker);
    drop(handle);
}

#[test]
fn a_waker_outliving_its_task_is_harmless_and_the_task_is_freed_by_the_executor() {
    let (executor, platform, _) = sim_executor(2);
    let slot: &'static Mutex<Option<Waker>> = leak(Mutex::new(None));
    let drops = DropCounter::default();
    let token = drops.token();
    let handle = executor.spawn(async move {
        let _token = token;
        // Leave a waker behind, as a device driver's interrupt slot would.
        let mut parked = false;
        std::future::poll_fn(|cx| {
            if parked {
                return std::task::Poll::Ready(());
            }
            parked = true;
            *slot.lock().unwrap() = Some(cx.waker().clone());
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        })
        .await;
    });
    executor.run_once();
    executor.run_once();
    assert!(handle.is_finished());
    assert_eq!(drops.dropped(), 1);
    drop(handle);
    assert!(!executor.has_ready());
    // The "interrupt handler" wakes and drops the last reference.
    let wakes_before = platform.wakes().len();
    slot.lock().unwrap().take().unwrap().wake();
    // The memory is handed back to the owning executor, which is told to run.
    assert!(executor.has_ready());
    assert_eq!(platform.wakes()[wakes_before..], [2]);
    assert_eq!(executor.run_once().polled, 0, "freeing is not a poll");
    assert!(!executor.has_ready());
}

#[test]
fn many_clones_and_wakes_of_a_pending_task_queue_it_once() {
    let (executor, _, _) = sim_executor(0);
    let slot: &'static Mutex<Option<Waker>> = leak(Mutex::new(None));
    let polls = leak(std::sync::atomic::AtomicUsize::new(0));
    executor
        .spawn(async move {
            polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            park_in(slot).await;
        })
        .detach();
    executor.run_once();
    let waker = slot.lock().unwrap().clone().unwrap();
    for _ in 0..100 {
        waker.wake_by_ref();
        // Deliberately the clone-then-wake-by-value path of the vtable.
        #[allow(clippy::waker_clone_wake)]
        waker.clone().wake();
    }
    assert_eq!(executor.run_once().polled, 1);
    assert_eq!(executor.run_once().polled, 0);
}
