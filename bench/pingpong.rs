//! The host baseline for Torito's inter-core round trip: two threads exchanging a
//! counter through a pair of Rust channels (std::sync::mpsc, bounded to 1 like
//! examples/intercore's). Prints the median and max round trip in microseconds.
//!
//! usage: pingpong [ROUNDS]   (bench/smp.sh builds it with rustc and runs it)

use std::sync::mpsc::sync_channel;
use std::time::Instant;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(10_000);
    let (to_echo, at_echo) = sync_channel::<u32>(1);
    let (to_player, at_player) = sync_channel::<u32>(1);
    let echo = std::thread::spawn(move || {
        while let Ok(value) = at_echo.recv() {
            if to_player.send(value.wrapping_add(1)).is_err() {
                break;
            }
        }
    });
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds as u32 {
        let start = Instant::now();
        to_echo.send(round).expect("the echo thread lives");
        let answer = at_player.recv().expect("the echo thread answers");
        assert_eq!(
            answer,
            round.wrapping_add(1),
            "message lost or out of order"
        );
        times.push(start.elapsed().as_nanos() as u64);
    }
    drop(to_echo);
    echo.join().expect("the echo thread ends cleanly");
    times.sort_unstable();
    println!(
        "host threads: {} round trips, median {:.1} us, max {:.1} us",
        rounds,
        times[times.len() / 2] as f64 / 1000.0,
        times[times.len() - 1] as f64 / 1000.0
    );
}
