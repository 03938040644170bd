//! Xen PVH: the images boot as Xen 4.17's PVH dom0 (`run.sh --boot xen`: Debian's Xen
//! under QEMU's emulator on q35), print through Xen's console, end with their exit
//! status, report faults, run on every vCPU and refuse a bad command line by name.
//!
//! Needs `build/hello.elf`, `build/faults.elf`, `build/intercore.elf` (`make images`) and
//! the Xen hypervisor binary (`qemu/xen.sh fetch`; `make setup` does). Timeouts only
//! bound a hung guest: Xen's own boot under TCG takes about 2 s alone, several times
//! that on a loaded machine.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use torito_qemu_tests::{Failure, Guest, RunOptions};

/// One Xen machine at a time: each emulates Xen's CPUs as well as the guest's, and the
/// build machines have two cores; eight at once took minutes each.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bound for one boot of Xen plus the guest to reach a line or exit.
const XEN: Duration = Duration::from_secs(180);

/// Exit code of a CPU exception report.
const EXIT_EXCEPTION: i32 = 102;
/// Exit code of a panic and of a refused boot.
const EXIT_PANIC: i32 = 101;

fn xen() -> RunOptions {
    RunOptions::default().boot("xen")
}

/// Fails unless the console shows that Xen ran and the kernel knew it was on Xen.
fn ran_on_xen(guest: &Guest) -> Result<(), Failure> {
    let console = guest.console();
    if !console.contains("(XEN) Xen version 4.17") {
        return Err(guest.failure("no Xen 4.17 banner: the guest did not run under Xen"));
    }
    Ok(())
}

#[test]
fn hello_as_xen_dom0() -> Result<(), Failure> {
    let _one = one_at_a_time();
    let mut guest = Guest::start("hello", &xen().append("log=debug"));
    // The kernel found Xen and took the memory map from it (start_info version 0).
    guest.wait_for_line("boot: PVH on Xen", XEN)?;
    guest.wait_for_line("Hello from Torito (", XEN)?;
    let slept = guest.wait_for_line("slept ", XEN)?;
    let micros: u64 = slept
        .split_once("slept ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| guest.failure(format!("no number in `{slept}`")))?;
    // Xen's clock scale drives the timer: a 10 ms sleep must not end early by it.
    if micros < 10_000 {
        return Err(guest.failure(format!("a 10 ms sleep returned after {micros} us")));
    }
    guest.expect_exit(0, XEN)?;
    ran_on_xen(&guest)
}

/// Runs faults with `app.fault=KIND` under Xen; waits for each `expected` line, then for
/// exit status `code`.
fn fault(kind: &str, expected: &[&str], code: i32) -> Result<(), Failure> {
    let _one = one_at_a_time();
    let mut guest = Guest::start("faults", &xen().append(&format!("app.fault={kind}")));
    guest.wait_for_line(&format!("faults: triggering `{kind}`"), XEN)?;
    for line in expected {
        guest.wait_for_line(line, XEN)?;
    }
    guest.expect_exit(code, XEN)?;
    ran_on_xen(&guest)
}

#[test]
fn fault_page_on_xen() -> Result<(), Failure> {
    let expected = [
        "!!! CPU exception 14: page fault",
        "page fault address (CR2) 0x0000000000000010",
        "backtrace:",
        "  0: 0x",
    ];
    fault("page", &expected, EXIT_EXCEPTION)
}

#[test]
fn fault_divide_on_xen() -> Result<(), Failure> {
    fault(
        "divide",
        &["!!! CPU exception 0: divide error"],
        EXIT_EXCEPTION,
    )
}

#[test]
fn fault_stack_overflow_on_xen() -> Result<(), Failure> {
    let expected = ["!!! stack overflow: the main stack of core 0 ran into its guard page"];
    fault("overflow", &expected, EXIT_EXCEPTION)
}

#[test]
fn fault_panic_on_xen() -> Result<(), Failure> {
    let expected = ["!!! panic: deliberate panic from the faults image"];
    fault("panic", &expected, EXIT_PANIC)
}

/// Round trips per pair of cores: 500 rather than intercore's 1000, because a round trip
/// under Xen under the emulator costs 0.4-15 ms on a loaded machine (against 0.1-1 ms on
/// plain QEMU). At 4 vCPUs that is 3,000 round trips: before the idle halt was guarded
/// against interrupts delivered in STI's shadow (`interrupts::enable_and_halt`), a loaded
/// machine lost about one wake-up in 3,000 to 7,000, and one lost on a pair's answering
/// side fails the run.
const ROUNDS: u32 = 500;

/// Runs intercore on `cores` vCPUs of dom0 and checks that every core ran a task, every
/// pair exchanged its messages, and the kernel started exactly `cores` cores.
fn intercore(cores: u32) -> Result<(), Failure> {
    let _one = one_at_a_time();
    let options = xen().smp(cores).append(&format!("app.rounds={ROUNDS}"));
    let mut guest = Guest::start("intercore", &options);
    let outcome = guest.expect_exit(0, XEN)?;
    let expected = format!("intercore: {cores} cores, {ROUNDS} round trips per pair");
    if outcome.line(&expected).is_none() {
        return Err(guest.failure(format!("no line `{expected}`")));
    }
    for core in 0..cores {
        let line = format!("intercore: core {core} up, ran a task");
        if outcome.line(&line).is_none() {
            return Err(guest.failure(format!("no line `{line}`")));
        }
    }
    if cores > 1 {
        let up = format!("smp: {cores} cores up; starting the other {}", cores - 1);
        if outcome.line(&up).is_none() {
            return Err(guest.failure(format!("no line `{up}`")));
        }
    }
    if outcome.line("intercore: all pairs ok").is_none() {
        return Err(guest.failure("no `intercore: all pairs ok`"));
    }
    ran_on_xen(&guest)
}

#[test]
fn intercore_one_vcpu_on_xen() -> Result<(), Failure> {
    intercore(1)
}

#[test]
fn intercore_four_vcpus_on_xen() -> Result<(), Failure> {
    intercore(4)
}

#[test]
fn bad_cmdline_value_is_reported_on_the_xen_console() -> Result<(), Failure> {
    let _one = one_at_a_time();
    let mut guest = Guest::start("hello", &xen().append("log=loud"));
    let refusal = guest.wait_for_line("cannot boot: command line", XEN)?;
    if !refusal.contains("loud") {
        return Err(guest.failure(format!("the refusal does not quote the value: `{refusal}`")));
    }
    guest.expect_exit(EXIT_PANIC, XEN)?;
    if guest.console().contains("Hello from Torito") {
        return Err(guest.failure("the application ran despite the refused command line"));
    }
    ran_on_xen(&guest)
}
