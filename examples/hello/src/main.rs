//! Hello: prints a greeting and the time from kernel entry to `main`, its arguments and
//! environment when it has any (the words after `--` and the `NAME=value` tokens of the
//! command line, as an orchestrator passes a container's), sleeps 10 ms on the timer
//! (proving the interrupt path), and exits 0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use torito::time::{self, Duration};

#[torito::main]
async fn main() {
    let entered = time::since_boot();
    torito::println!(
        "Hello from Torito ({} us from kernel entry to main)",
        entered.as_micros() as u64
    );
    for (index, word) in torito::boot::app_words().enumerate() {
        torito::println!("hello: arg {} = {}", index, word);
    }
    for (name, value) in torito::boot::env_vars() {
        torito::println!("hello: env {} = {}", name, value);
    }
    let before = time::now();
    time::sleep(Duration::from_millis(10)).await;
    let slept = time::now().duration_since(before);
    torito::println!("slept {} us on the timer", slept.as_micros() as u64);
}
