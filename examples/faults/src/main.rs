//! Faults: a test image that fails on purpose, to prove that failures are reported.
//!
//! `app.fault=` on the command line picks one: `page` (a null-page read), `divide` (a
//! hardware divide error), `overflow` (unbounded recursion into the stack's guard page),
//! `oom` (allocate until the heap is exhausted), `panic`, `write-text` (a write to the
//! read-only kernel code), `block-outside` (a blocking wait from an async task, which
//! must be refused with an error: exit 3). The deliberate faults need `unsafe`; that is the point of
//! this image, and why it is not an example to copy.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::hint::black_box;

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    if black_box(true) {
        recurse(depth + 1) + frame[7]
    } else {
        0
    }
}

#[torito::main]
async fn main() -> i32 {
    let fault = torito::boot::arg("app.fault").unwrap_or("");
    torito::println!("faults: triggering `{}`", fault);
    match fault {
        // SAFETY: deliberately reads page 0, which the kernel leaves unmapped.
        "page" => unsafe { core::ptr::read_volatile(black_box(0x10usize) as *const u64) as i32 },
        "divide" => {
            let (mut low, mut high) = (1u64, 0u64);
            // SAFETY: deliberately divides by zero to raise #DE; touches only registers.
            unsafe {
                core::arch::asm!("div {0}", in(reg) black_box(0u64), inout("rax") low, inout("rdx") high)
            };
            (low + high) as i32
        }
        "overflow" => recurse(0) as i32,
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(alloc::vec![1u8; 64 * 1024]);
                black_box(&hoard);
            }
        }
        "panic" => panic!("deliberate panic from the faults image"),
        // Not a crash: a blocking wait from an async task must be refused, not hang.
        "block-outside" => {
            match torito::task::block_on(torito::time::sleep(core::time::Duration::from_millis(1)))
            {
                Ok(()) => {
                    torito::println!(
                        "faults: a blocking wait outside a blocking task was not refused"
                    );
                    4
                }
                Err(error) => {
                    torito::println!("faults: refused: {}", error);
                    3
                }
            }
        }
        "write-text" => {
            let code = main as *const () as *mut u8;
            // SAFETY: deliberately writes to the kernel's read-only code to fault.
            unsafe { core::ptr::write_volatile(black_box(code), 0xcc) };
            0
        }
        other => {
            torito::println!(
                "faults: unknown fault `{}`; use app.fault=page|divide|overflow|oom|panic|write-text|block-outside",
                other
            );
            2
        }
    }
}
