//! Boots Torito images in QEMU and checks what they print and how they exit.
//!
//! Promises a test author can rely on:
//!
//! - A [`Guest`] runs `qemu/run.sh`, the same script the Makefile and CI use, so a test
//!   boots exactly what a person would boot by hand (same flags, same accelerator choice).
//! - The serial console (QEMU's stdout) and `run.sh`'s own messages (stderr) are read by
//!   background threads as they arrive; a test can wait for one line while the guest is
//!   still running.
//! - Every failure ([`Failure`]) carries the whole console so far and the stderr, so a
//!   failing test shows what the guest printed, not just "timed out".
//! - QEMU never outlives its [`Guest`]: `run.sh` is started in a process group of its own,
//!   and a timeout or a drop ends the whole group (SIGTERM, then SIGKILL).
//! - Nothing here asserts a timing: timeouts only bound how long a broken guest can hang a
//!   test run, and they are generous (QEMU under TCG on a loaded two-core machine).
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use torito_qemu_tests::{Guest, RunOptions};
//!
//! let mut guest = Guest::start("hello", &RunOptions::default().machine("q35"));
//! guest.wait_for_line("Hello from Torito", Duration::from_secs(30)).unwrap();
//! let outcome = guest.expect_exit(0, Duration::from_secs(30)).unwrap();
//! assert!(outcome.console.contains("slept"));
//! ```

mod clients;
mod cpu_time;
mod failure;
mod guest;
mod options;
mod output;
mod paths;
mod ports;
mod qmp;
mod seeded;
mod service;
mod tcp;
mod temp;

pub use clients::{echo_round_trip, failed_connections, run_clients};
pub use failure::Failure;
pub use guest::{Guest, Outcome, process_group_alive};
pub use options::RunOptions;
pub use paths::{image_path, workspace_root};
pub use ports::free_port;
pub use qmp::Qmp;
pub use seeded::{SplitMix64, seeded_bytes};
pub use service::{
    LoadClient, LoadRun, POWER_BUTTON, Step, expect_graceful_stop, powerdown_under_load, run_steps,
};
pub use tcp::{connect, expect_end, read_up_to};
pub use temp::TempDir;
