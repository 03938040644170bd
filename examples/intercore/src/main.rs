//! Intercore: every core proves it runs tasks, then every pair of cores plays
//! ping-pong over channels and prints the round-trip time. Exits 0, or 1 if a message
//! was lost, duplicated or late beyond a generous timeout.
//!
//! Each core's counters (`torito::task::core_stats`) close the run: halts, wake IPIs,
//! and halts skipped because a hypervisor delivered an interrupt inside STI's shadow.
//!
//! `app.rounds=N` sets the round trips per pair (default 1000); the QEMU tests use it
//! for the cross-core wake stress.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use torito::sync::channel;
use torito::task::{cores, spawn_on};
use torito::time::{self, Duration};

/// How long one message may take before it counts as lost.
const PATIENCE: Duration = Duration::from_secs(10);

#[torito::main]
async fn main() -> i32 {
    let cores = cores();
    let rounds: u32 = torito::boot::arg("app.rounds")
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    torito::println!(
        "intercore: {} cores, {} round trips per pair",
        cores,
        rounds
    );
    for core in 0..cores {
        let ran_on = match spawn_on(core, async { torito::task::current_core() }) {
            Ok(handle) => handle.await,
            Err(_) => usize::MAX,
        };
        if ran_on != core {
            torito::println!(
                "intercore: core {} did not run its task (ran on {})",
                core,
                ran_on
            );
            return 1;
        }
        torito::println!("intercore: core {} up, ran a task", core);
    }
    let mut failures = 0;
    for a in 0..cores {
        for b in (a + 1)..cores {
            match ping_pong(a, b, rounds).await {
                Some((median, max)) => torito::println!(
                    "intercore: cores {}<->{}: {} round trips, median {} us, max {} us",
                    a,
                    b,
                    rounds,
                    median / 1000,
                    max / 1000
                ),
                None => {
                    torito::println!(
                        "intercore: cores {}<->{}: a message was lost or out of order",
                        a,
                        b
                    );
                    failures += 1;
                }
            }
        }
    }
    for core in 0..cores {
        torito::println!(
            "intercore: core {} {}",
            core,
            torito::task::core_stats(core)
        );
    }
    if failures == 0 {
        torito::println!("intercore: all pairs ok");
        0
    } else {
        1
    }
}

/// `rounds` round trips from core `a` to core `b` and back; (median, max) in ns.
async fn ping_pong(a: usize, b: usize, rounds: u32) -> Option<(u64, u64)> {
    let (to_b, mut at_b) = channel::<u32>(1);
    let (to_a, mut at_a) = channel::<u32>(1);
    let echo = spawn_on(b, async move {
        while let Some(value) = at_b.recv().await {
            if to_a.send(value.wrapping_add(1)).await.is_err() {
                break;
            }
        }
    })
    .ok()?;
    let player = spawn_on(a, async move {
        let mut times = Vec::with_capacity(rounds as usize);
        for round in 0..rounds {
            let start = time::now();
            to_b.send(round).await.ok()?;
            let answer = time::timeout(PATIENCE, at_a.recv()).await.ok()??;
            if answer != round.wrapping_add(1) {
                return None;
            }
            times.push(time::now().duration_since(start).as_nanos() as u64);
        }
        drop(to_b);
        times.sort_unstable();
        Some((times[times.len() / 2], times[times.len() - 1]))
    })
    .ok()?;
    let result = player.await;
    echo.await;
    result
}
