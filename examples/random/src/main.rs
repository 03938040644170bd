//! Random: fills buffers through `torito::random` and prints where the bytes came from
//! (virtio-rng with `qemu/run.sh --rng`, else RDSEED or RDRAND), then exits 0; exits
//! non-zero if there is no source or two fills repeat.
//!
//! Four tasks fill 1000 bytes each at once (more than one device request each), so the
//! callers take turns on the device and every one of them must finish.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use torito::random::{self, RandomError};

#[torito::main]
async fn main() -> Result<i32, RandomError> {
    let mut first = [0u8; 32];
    let mut second = [0u8; 32];
    let source = random::fill(&mut first).await?;
    random::fill(&mut second).await?;
    torito::println!("random: 32 bytes from {}: {:02x?}", source.name(), first);
    if first == second {
        torito::println!("random: two fills returned the same bytes");
        return Ok(1);
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            torito::task::spawn(async {
                let mut bytes = [0u8; 1000];
                random::fill(&mut bytes).await.map(|_| bytes)
            })
        })
        .collect();
    let mut filled = Vec::new();
    for task in tasks {
        filled.push(task.await?);
    }
    // 1000 random bytes are all zero, or two of them equal, with negligible probability.
    let distinct = filled
        .iter()
        .all(|bytes| bytes.iter().any(|byte| *byte != 0))
        && (1..filled.len()).all(|index| filled[index] != filled[index - 1]);
    if !distinct {
        torito::println!("random: the concurrent fills look wrong");
        return Ok(1);
    }
    torito::println!(
        "random: 4 concurrent fills of 1000 bytes from {}",
        source.name()
    );
    Ok(0)
}
