//! Bounded channels: order, backpressure at the exact moment, closing, drops, and a
//! multi-thread stress in which a lost wakeup hangs (and the watchdog fails the test).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{
    CondvarPlatform, CountingWaker, DropCounter, ManualClock, block_on_thread, leak, sim_executor,
};
use torito_executor::Executor;
use torito_executor::channel::{Closed, TryRecvError, TrySendError, channel};

const WATCHDOG: Duration = Duration::from_secs(60);

/// A waker that counts its wakes, and the counter to read them.
fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker::default());
    (counter.clone(), Waker::from(counter))
}

fn wakes(counter: &CountingWaker) -> usize {
    counter.wakes.load(SeqCst)
}

fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// Runs `body` on its own thread; fails if it panics or has not finished by `limit`.
fn within(limit: Duration, body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        body();
        done.send(()).unwrap();
    });
    match finished.recv_timeout(limit) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("no progress for {limit:?}: a lost wakeup (or a deadlock)")
        }
    }
}

// ---- order and backpressure ----------------------------------------------------------

#[test]
fn values_from_one_sender_arrive_in_order_and_never_exceed_the_capacity() {
    let (executor, _, _) = sim_executor(0);
    let (sender, mut receiver) = channel(3);
    executor
        .spawn(async move {
            for n in 0..1000 {
                sender.send(n).await.unwrap();
            }
        })
        .detach();
    let consumer = executor.spawn(async move {
        let (mut values, mut longest) = (Vec::new(), 0);
        loop {
            longest = longest.max(receiver.len());
            match receiver.recv().await {
                Some(n) => values.push(n),
                None => return (values, longest),
            }
        }
    });
    for _ in 0..10_000 {
        if consumer.is_finished() {
            break;
        }
        executor.run_once();
    }
    let (values, longest) = block_on_thread(consumer);
    assert_eq!(values, (0..1000).collect::<Vec<_>>());
    assert_eq!(
        longest, 3,
        "the producer filled the channel, and not beyond"
    );
}

#[test]
fn a_full_channel_makes_send_wait_until_exactly_one_value_is_taken() {
    let (sender, mut receiver) = channel(2);
    sender.try_send(1).unwrap();
    sender.try_send(2).unwrap();
    assert_eq!(sender.try_send(3), Err(TrySendError::Full(3)));

    let (counter, waker) = counting_waker();
    let mut send = sender.send(3);
    assert!(poll(&mut send, &waker).is_pending());
    assert!(
        poll(&mut send, &waker).is_pending(),
        "polled again: still full"
    );
    assert_eq!(wakes(&counter), 0, "waiting does not wake itself");
    assert_eq!(receiver.len(), 2);

    assert_eq!(receiver.try_recv(), Ok(1));
    assert_eq!(
        wakes(&counter),
        1,
        "taking a value wakes the waiting sender"
    );
    assert_eq!(poll(&mut send, &waker), Poll::Ready(Ok(())));

    assert_eq!(receiver.try_recv(), Ok(2));
    assert_eq!(receiver.try_recv(), Ok(3));
    assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(wakes(&counter), 1, "nobody waits any more: no further wake");
}

#[test]
fn waiting_senders_are_woken_one_per_taken_value_in_waiting_order() {
    let (sender, mut receiver) = channel(1);
    sender.try_send(0).unwrap();
    let wakers: Vec<_> = (0..3).map(|_| counting_waker()).collect();
    let mut sends: Vec<_> = (1..=3).map(|n| sender.send(n)).collect();
    for (send, (_, waker)) in sends.iter_mut().zip(&wakers) {
        assert!(poll(send, waker).is_pending());
    }
    let woken = || wakers.iter().map(|(c, _)| wakes(c)).collect::<Vec<_>>();

    for turn in 0..3 {
        assert_eq!(receiver.try_recv(), Ok(turn));
        let mut expected = vec![0; 3];
        expected[..=turn as usize].fill(1);
        assert_eq!(woken(), expected, "after taking value {turn}");
        let (_, waker) = &wakers[turn as usize];
        assert_eq!(poll(&mut sends[turn as usize], waker), Poll::Ready(Ok(())));
    }
    assert_eq!(receiver.try_recv(), Ok(3));
    assert_eq!(woken(), [1, 1, 1]);
}

#[test]
fn a_woken_sender_that_is_dropped_passes_the_free_slot_on() {
    let (sender, mut receiver) = channel(1);
    sender.try_send(0).unwrap();
    let ((first_counter, first_waker), (second_counter, second_waker)) =
        (counting_waker(), counting_waker());
    let mut first = sender.send(1);
    let mut second = sender.send(2);
    assert!(poll(&mut first, &first_waker).is_pending());
    assert!(poll(&mut second, &second_waker).is_pending());

    assert_eq!(receiver.try_recv(), Ok(0));
    assert_eq!((wakes(&first_counter), wakes(&second_counter)), (1, 0));
    drop(first);
    assert_eq!(
        wakes(&second_counter),
        1,
        "the slot went to the next waiter"
    );
    assert_eq!(poll(&mut second, &second_waker), Poll::Ready(Ok(())));
    assert_eq!(receiver.try_recv(), Ok(2));
}

#[test]
fn a_woken_sender_that_finds_its_slot_taken_waits_again() {
    let (sender, mut receiver) = channel(1);
    sender.try_send(0).unwrap();
    let (counter, waker) = counting_waker();
    let mut send = sender.send(1);
    assert!(poll(&mut send, &waker).is_pending());

    assert_eq!(receiver.try_recv(), Ok(0));
    assert_eq!(wakes(&counter), 1);
    sender.try_send(9).unwrap(); // takes the slot first
    assert!(poll(&mut send, &waker).is_pending());
    assert_eq!(wakes(&counter), 1);

    assert_eq!(receiver.try_recv(), Ok(9));
    assert_eq!(wakes(&counter), 2, "queued again, woken again");
    assert_eq!(poll(&mut send, &waker), Poll::Ready(Ok(())));
    assert_eq!(receiver.try_recv(), Ok(1));
}

#[test]
fn a_send_polled_by_a_new_task_is_woken_through_the_new_waker() {
    let (sender, mut receiver) = channel(1);
    sender.try_send(0).unwrap();
    let ((old_counter, old_waker), (new_counter, new_waker)) = (counting_waker(), counting_waker());
    let mut send = sender.send(1);
    assert!(poll(&mut send, &old_waker).is_pending());
    assert!(poll(&mut send, &new_waker).is_pending());

    assert_eq!(receiver.try_recv(), Ok(0));
    assert_eq!((wakes(&old_counter), wakes(&new_counter)), (0, 1));
    assert_eq!(poll(&mut send, &new_waker), Poll::Ready(Ok(())));
}

#[test]
fn recv_is_woken_once_by_the_first_value_and_not_again_until_it_waits_again() {
    let (sender, mut receiver) = channel(4);
    let (counter, waker) = counting_waker();
    {
        let mut recv = receiver.recv();
        assert!(poll(&mut recv, &waker).is_pending());
        assert_eq!(wakes(&counter), 0);
        sender.try_send(1).unwrap();
        assert_eq!(wakes(&counter), 1);
        sender.try_send(2).unwrap();
        assert_eq!(wakes(&counter), 1, "no busy re-wake");
        assert_eq!(poll(&mut recv, &waker), Poll::Ready(Some(1)));
    }
    assert_eq!(receiver.try_recv(), Ok(2));
    let mut recv = receiver.recv();
    assert!(poll(&mut recv, &waker).is_pending());
    sender.try_send(3).unwrap();
    assert_eq!(wakes(&counter), 2);
    assert_eq!(poll(&mut recv, &waker), Poll::Ready(Some(3)));
}

#[test]
fn a_value_taken_on_core_0_wakes_the_sender_waiting_on_core_1_and_back() {
    let (core0, platform0, _) = sim_executor(0);
    let (core1, platform1, _) = sim_executor(1);
    let (sender, mut receiver) = channel(1);
    let producer = core1.spawn(async move {
        sender.send(1).await.unwrap();
        sender.send(2).await.unwrap();
    });
    core1.run_once();
    assert!(!producer.is_finished(), "1 is queued, 2 waits for room");

    let consumer = core0.spawn(async move { (receiver.recv().await, receiver.recv().await) });
    let (before0, before1) = (platform0.wakes().len(), platform1.wakes().len());
    assert_eq!(core0.run_once().polled, 1);
    assert_eq!(platform1.wakes()[before1..], [1], "taking 1 woke core 1");
    assert_eq!(platform0.wakes().len(), before0, "core 0 waits for 2");

    assert_eq!(core1.run_once().polled, 1);
    assert!(producer.is_finished());
    assert_eq!(platform0.wakes()[before0..], [0], "sending 2 woke core 0");
    assert_eq!(core0.run_once().polled, 1);
    assert_eq!(block_on_thread(consumer), (Some(1), Some(2)));
}

// ---- closing ------------------------------------------------------------------------

#[test]
fn dropping_the_receiver_fails_sends_and_hands_the_value_back() {
    let (sender, receiver) = channel(2);
    assert!(!sender.is_closed());
    drop(receiver);
    assert!(sender.is_closed());
    assert_eq!(sender.try_send(1), Err(TrySendError::Closed(1)));
    let error = block_on_thread(sender.send(2)).unwrap_err();
    assert_eq!(error.into_inner(), 2);
}

#[test]
fn dropping_the_receiver_wakes_every_waiting_sender_with_its_value() {
    let (sender, receiver) = channel(1);
    sender.try_send(0).unwrap();
    let wakers: Vec<_> = (0..2).map(|_| counting_waker()).collect();
    let mut sends: Vec<_> = (1..=2).map(|n| sender.send(n)).collect();
    for (send, (_, waker)) in sends.iter_mut().zip(&wakers) {
        assert!(poll(send, waker).is_pending());
    }
    drop(receiver);
    for (n, (send, (counter, waker))) in (1..).zip(sends.iter_mut().zip(&wakers)) {
        assert_eq!(wakes(counter), 1);
        assert_eq!(poll(send, waker), Poll::Ready(Err(Closed(n))));
    }
}

#[test]
fn recv_ends_with_none_after_the_last_sender_and_the_last_value() {
    let (sender, mut receiver) = channel(4);
    let other = sender.clone();
    sender.try_send(1).unwrap();
    other.try_send(2).unwrap();
    drop(sender);
    assert_eq!(receiver.try_recv(), Ok(1));

    let (counter, waker) = counting_waker();
    let mut recv = receiver.recv();
    assert_eq!(poll(&mut recv, &waker), Poll::Ready(Some(2)));
    assert!(poll(&mut recv, &waker).is_pending(), "one sender is left");
    other.try_send(3).unwrap();
    drop(other);
    assert_eq!(wakes(&counter), 1);
    assert_eq!(
        poll(&mut recv, &waker),
        Poll::Ready(Some(3)),
        "values before the end"
    );
    assert_eq!(poll(&mut recv, &waker), Poll::Ready(None));
    assert_eq!(receiver.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn dropping_the_last_sender_wakes_a_waiting_receiver() {
    let (sender, mut receiver) = channel::<u8>(4);
    let other = sender.clone();
    let (counter, waker) = counting_waker();
    let mut recv = receiver.recv();
    assert!(poll(&mut recv, &waker).is_pending());
    drop(sender);
    assert_eq!(wakes(&counter), 0, "a sender remains: nothing changed");
    drop(other);
    assert_eq!(wakes(&counter), 1);
    assert_eq!(poll(&mut recv, &waker), Poll::Ready(None));
}

// ---- drops --------------------------------------------------------------------------

#[test]
fn values_still_queued_are_dropped_exactly_once() {
    let drops = DropCounter::default();
    let (sender, mut receiver) = channel(4);
    for _ in 0..3 {
        sender.try_send(drops.token()).unwrap();
    }
    drop(receiver.try_recv().unwrap());
    assert_eq!(drops.dropped(), 1);
    drop(receiver);
    assert_eq!(
        drops.dropped(),
        3,
        "the receiver's drop drops what is queued"
    );
    drop(sender);
    assert_eq!(drops.dropped(), 3, "and nothing twice");

    let (sender, receiver) = channel(4);
    sender.try_send(drops.token()).unwrap();
    drop(sender);
    assert_eq!(drops.dropped(), 3, "the receiver may still take it");
    drop(receiver);
    assert_eq!(drops.dropped(), 4);
}

#[test]
fn an_unsent_value_is_handed_back_or_dropped_once_with_its_future() {
    let drops = DropCounter::default();
    let (sender, receiver) = channel(1);
    sender.try_send(drops.token()).unwrap();
    let full = sender.try_send(drops.token()).unwrap_err();
    assert!(matches!(full, TrySendError::Full(_)));
    assert_eq!(drops.dropped(), 0, "the error carries the value");
    drop(full);
    assert_eq!(drops.dropped(), 1);

    let (_, waker) = counting_waker();
    let mut send = sender.send(drops.token());
    assert!(poll(&mut send, &waker).is_pending());
    drop(send);
    assert_eq!(drops.dropped(), 2, "a cancelled send drops its value");

    drop(receiver);
    assert_eq!(drops.dropped(), 3);
    let closed = block_on_thread(sender.send(drops.token())).unwrap_err();
    assert_eq!(drops.dropped(), 3);
    drop(closed);
    assert_eq!(drops.dropped(), 4);
}

// ---- stress -------------------------------------------------------------------------

const PRODUCERS: usize = 4;

/// Checks that every producer's messages arrive once each, in order.
fn check_all_arrived(received: &[(usize, u32)], per_producer: u32) {
    let mut next = [0; PRODUCERS];
    for &(producer, seq) in received {
        assert_eq!(
            seq, next[producer],
            "producer {producer}: out of order or twice"
        );
        next[producer] += 1;
    }
    assert_eq!(next, [per_producer; PRODUCERS], "every message arrived");
}

#[test]
fn four_producer_threads_into_a_capacity_16_channel_lose_nothing() {
    const MESSAGES: u32 = 50_000;
    within(WATCHDOG, || {
        let (sender, mut receiver) = channel::<(usize, u32)>(16);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let sender = sender.clone();
                std::thread::spawn(move || {
                    block_on_thread(async {
                        for seq in 0..MESSAGES {
                            sender.send((producer, seq)).await.unwrap();
                        }
                    })
                })
            })
            .collect();
        drop(sender);
        let received = block_on_thread(async {
            let mut received = Vec::with_capacity(PRODUCERS * MESSAGES as usize);
            while let Some(message) = receiver.recv().await {
                received.push(message);
            }
            received
        });
        for producer in producers {
            producer.join().unwrap();
        }
        check_all_arrived(&received, MESSAGES);
    });
}

/// One slot, one producer: every send races the receiver's take, so a wakeup lost in
/// either direction stalls both threads at once (and the watchdog fails the test).
#[test]
fn a_producer_thread_and_a_consumer_thread_through_one_slot_never_stall() {
    const MESSAGES: u32 = 100_000;
    within(WATCHDOG, || {
        let (sender, mut receiver) = channel::<u32>(1);
        let producer = std::thread::spawn(move || {
            block_on_thread(async {
                for seq in 0..MESSAGES {
                    sender.send(seq).await.unwrap();
                }
            })
        });
        let received = block_on_thread(async {
            let mut next = 0;
            while let Some(seq) = receiver.recv().await {
                assert_eq!(seq, next);
                next += 1;
            }
            next
        });
        producer.join().unwrap();
        assert_eq!(received, MESSAGES);
    });
}

#[test]
fn producer_tasks_on_four_cores_and_a_consumer_on_a_fifth_lose_nothing() {
    const MESSAGES: u32 = 20_000;
    let clock = leak(ManualClock::default());
    let core = |id| leak(Executor::new(id, leak(CondvarPlatform::default()), clock));
    let consumer_core = core(0);
    let (sender, mut receiver) = channel::<(usize, u32)>(16);
    for producer in 0..PRODUCERS {
        let executor = core(producer + 1);
        let sender = sender.clone();
        executor
            .spawn(async move {
                for seq in 0..MESSAGES {
                    sender.send((producer, seq)).await.unwrap();
                }
            })
            .detach();
        // Never returns: the thread outlives the test, idle on its condition variable.
        std::thread::spawn(move || executor.run());
    }
    drop(sender);
    let received: &'static Mutex<Vec<(usize, u32)>> = leak(Mutex::new(Vec::new()));
    within(WATCHDOG, move || {
        consumer_core.block_on(async {
            while let Some(message) = receiver.recv().await {
                received.lock().unwrap().push(message);
            }
        });
    });
    check_all_arrived(&received.lock().unwrap(), MESSAGES);
}
