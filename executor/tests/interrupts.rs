//! Wakes from other threads ("interrupt handlers", "other cores") racing with `idle`.
//!
//! The platform idles on a condition variable with no timeout, so a lost wakeup hangs
//! the executor thread; the test thread waits with a generous timeout and fails.

mod common;

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, mpsc};
use std::task::{Poll, Waker};
use std::time::Duration;

use common::{CondvarPlatform, ManualClock, block_on_thread, leak};
use torito_executor::Executor;

const WATCHDOG: Duration = Duration::from_secs(120);

fn executor() -> (&'static Executor, &'static CondvarPlatform) {
    let platform = leak(CondvarPlatform::default());
    let clock = leak(ManualClock::default());
    (leak(Executor::new(0, platform, clock)), platform)
}

#[test]
fn ten_thousand_wakes_from_an_interrupt_thread_are_never_lost() {
    const WAKES: usize = 10_000;
    let (executor, platform) = executor();
    let produced = leak(AtomicUsize::new(0));
    let slot: &'static Mutex<Option<Waker>> = leak(Mutex::new(None));
    let polls = leak(AtomicUsize::new(0));

    // The core: main joins a spawned task that needs every single wake to progress,
    // because the producer only produces after taking the waker the task left.
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let seen = executor.block_on(async move {
            let consumer = executor.spawn(poll_fn(move |cx| {
                polls.fetch_add(1, SeqCst);
                let seen = produced.load(SeqCst);
                if seen == WAKES {
                    return Poll::Ready(seen);
                }
                *slot.lock().unwrap() = Some(cx.waker().clone());
                // Stay busy a varying while after leaving the waker, so that the wake
                // lands at every point: during the poll, during the rest of the
                // round, around the idle check, and while halted.
                for _ in 0..(seen % 64) * 40 {
                    std::hint::spin_loop();
                }
                Poll::Pending
            }));
            consumer.await
        });
        done.send(seen).unwrap();
    });

    // The interrupt handler: take the waker, record the event, wake (three ways).
    let interrupt = std::thread::spawn(move || {
        let give_up = std::time::Instant::now() + WATCHDOG;
        for event in 1..=WAKES {
            let waker = loop {
                if let Some(waker) = slot.lock().unwrap().take() {
                    break waker;
                }
                if std::time::Instant::now() > give_up {
                    return Err(event);
                }
                // Half the time spin, so the wake lands while the executor is still
                // finishing its round or checking for work; half the time yield, so
                // it lands while the executor is halted.
                if event % 2 == 0 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            };
            produced.store(event, SeqCst);
            match event % 3 {
                0 => waker.wake(),
                1 => waker.wake_by_ref(),
                // Deliberately the clone-then-wake-by-value path of the vtable.
                #[allow(clippy::waker_clone_wake)]
                _ => waker.clone().wake(),
            }
        }
        Ok(())
    });

    let seen = finished.recv_timeout(WATCHDOG);
    assert_eq!(
        seen,
        Ok(WAKES),
        "a wakeup was lost: the executor stayed idle"
    );
    assert_eq!(interrupt.join().unwrap(), Ok(()));
    assert_eq!(
        polls.load(SeqCst),
        WAKES + 1,
        "one poll per wake, plus the first"
    );
    let idles = platform.idles.load(SeqCst);
    assert!(idles > 0, "the executor really went idle between wakes");
}

#[test]
fn tasks_spawned_from_another_core_wake_the_idle_executor_and_can_be_joined_there() {
    const TASKS: usize = 2_000;
    let (executor, _) = executor();
    let ran = leak(AtomicUsize::new(0));
    let main_waker: &'static Mutex<Option<Waker>> = leak(Mutex::new(None));

    // Core 0: block_on until every task spawned by core 1 has run.
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        executor.block_on(poll_fn(|cx| {
            if ran.load(SeqCst) == TASKS {
                return Poll::Ready(());
            }
            *main_waker.lock().unwrap() = Some(cx.waker().clone());
            if ran.load(SeqCst) == TASKS {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        done.send(()).unwrap();
    });

    // Core 1: spawn onto core 0's executor, then join every handle from here.
    let (sum_sender, sum) = mpsc::channel();
    std::thread::spawn(move || {
        let handles: Vec<_> = (0..TASKS)
            .map(|i| {
                executor.spawn(async move {
                    ran.fetch_add(1, SeqCst);
                    if let Some(waker) = main_waker.lock().unwrap().as_ref() {
                        waker.wake_by_ref();
                    }
                    i
                })
            })
            .collect();
        let total = block_on_thread(async {
            let mut total = 0;
            for handle in handles {
                total += handle.await;
            }
            total
        });
        sum_sender.send(total).unwrap();
    });

    assert_eq!(
        finished.recv_timeout(WATCHDOG),
        Ok(()),
        "the executor missed a spawn"
    );
    assert_eq!(
        sum.recv_timeout(WATCHDOG),
        Ok((0..TASKS).sum()),
        "a join wake was lost"
    );
}
