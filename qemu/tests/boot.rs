//! Boot-log expectations: the images boot on every machine and boot path, report
//! failures by name with the documented exit codes, and honour the command line.
//!
//! Needs `build/hello.elf` and `build/faults.elf` (`make images`); every test fails with
//! that advice when they are missing. Timeouts are generous bounds for a hung guest under
//! TCG on a loaded machine, never timing assertions.

use std::time::Duration;
use torito_qemu_tests::{Failure, Guest, RunOptions};

/// Bound for one PVH boot to reach a line or exit (a healthy one takes well under 1 s).
const PVH: Duration = Duration::from_secs(60);
/// Bound for a GRUB ISO run: grub-mkrescue, SeaBIOS, GRUB, then the kernel.
const GRUB: Duration = Duration::from_secs(120);

/// Exit code of a CPU exception report.
const EXIT_EXCEPTION: i32 = 102;
/// Exit code of a panic (out of memory included) and of a refused boot.
const EXIT_PANIC: i32 = 101;

/// The number in `line` right after `prefix`, such as 12 in "slept 12 us" after "slept ".
fn number_after(guest: &Guest, line: &str, prefix: &str) -> Result<u64, Failure> {
    line.split_once(prefix)
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| guest.failure(format!("no number after `{prefix}` in `{line}`")))
}

/// Boots hello and checks everything it promises: the greeting with the entry-to-main
/// time, a 10 ms sleep that does not wake early, exit code 0.
fn hello(options: RunOptions, timeout: Duration) -> Result<Guest, Failure> {
    let mut guest = Guest::start("hello", &options);
    let greeting = guest.wait_for_line("Hello from Torito (", timeout)?;
    number_after(&guest, &greeting, "Hello from Torito (")?;
    if !greeting.contains(" us from kernel entry to main)") {
        return Err(guest.failure(format!("malformed greeting `{greeting}`")));
    }
    let slept = guest.wait_for_line("slept ", timeout)?;
    let micros = number_after(&guest, &slept, "slept ")?;
    if micros < 10_000 {
        return Err(guest.failure(format!(
            "woke early: a 10 ms sleep returned after {micros} us by the kernel's own clock"
        )));
    }
    guest.expect_exit(0, timeout)?;
    Ok(guest)
}

#[test]
fn hello_pvh_microvm() -> Result<(), Failure> {
    let guest = hello(RunOptions::default(), PVH)?;
    // The default log level is info: debug lines only with log=debug (see below).
    if let Some(line) = guest
        .console()
        .lines()
        .find(|line| line.contains("] DEBUG "))
    {
        return Err(guest.failure(format!("debug line at the default log level: `{line}`")));
    }
    Ok(())
}

#[test]
fn hello_pvh_q35() -> Result<(), Failure> {
    hello(RunOptions::default().machine("q35"), PVH).map(drop)
}

#[test]
fn hello_pvh_pc() -> Result<(), Failure> {
    hello(RunOptions::default().machine("pc"), PVH).map(drop)
}

#[test]
fn hello_grub_multiboot2_q35() -> Result<(), Failure> {
    hello(RunOptions::default().machine("q35").boot("grub"), GRUB).map(drop)
}

#[test]
fn hello_smp4_microvm() -> Result<(), Failure> {
    hello(RunOptions::default().smp(4), PVH).map(drop)
}

#[test]
fn hello_smp4_q35() -> Result<(), Failure> {
    hello(RunOptions::default().machine("q35").smp(4), PVH).map(drop)
}

/// Hello runs in 2 MiB of guest memory (the kernel is linked at 1 MiB; bench/run.sh
/// reports the actual floor, which is lower).
const SMALL_MEMORY: &str = "2M";

/// Without isa-debug-exit the kernel powers the VM off through ACPI S5, reading the FADT
/// only then. Past S5 it says that it resets the VM, so the absence of that line, with
/// the register the FADT named, shows that S5 ended QEMU.
fn powers_off_through_s5(machine: &str, register: &str) -> Result<(), Failure> {
    let options = RunOptions::default()
        .machine(machine)
        .append("log=debug")
        .without_exit_device();
    let guest = hello(options, PVH)?;
    let console = guest.console();
    let Some(fadt) = console
        .lines()
        .find(|line| line.contains("acpi: PM1a control"))
    else {
        return Err(guest.failure("the exit did not read the FADT"));
    };
    if !fadt.contains(register) {
        return Err(guest.failure(format!("FADT line `{fadt}` lacks `{register}`")));
    }
    if console.contains("torito: resetting the VM") {
        return Err(guest.failure("S5 did not end QEMU; the kernel fell back to a reset"));
    }
    Ok(())
}

#[test]
fn power_off_s5_q35() -> Result<(), Failure> {
    // q35's PM1a control block is I/O port 0x604.
    powers_off_through_s5("q35", "PM1a control 0x604,")
}

#[test]
fn power_off_s5_microvm() -> Result<(), Failure> {
    // microvm has hardware-reduced ACPI: a sleep control register, no PM1a block.
    powers_off_through_s5("microvm", "PM1a control 0x0, sleep control 0xfea")
}

#[test]
fn hello_runs_in_small_memory() -> Result<(), Failure> {
    hello(RunOptions::default().mem(SMALL_MEMORY), PVH).map(drop)
}

/// Runs the faults image with `app.fault=KIND`, waits for every `expected` line, then for
/// exit code `code`.
fn fault(kind: &str, options: RunOptions, expected: &[&str], code: i32) -> Result<Guest, Failure> {
    let options = options.append(&format!("app.fault={kind}"));
    let mut guest = Guest::start("faults", &options);
    guest.wait_for_line(&format!("faults: triggering `{kind}`"), PVH)?;
    for line in expected {
        guest.wait_for_line(line, PVH)?;
    }
    guest.expect_exit(code, PVH)?;
    Ok(guest)
}

/// An exception report ends with a backtrace of at least one frame.
const BACKTRACE: [&str; 2] = ["backtrace:", "  0: 0x"];

const PAGE_FAULT: [&str; 4] = [
    "!!! CPU exception 14: page fault",
    "page fault address (CR2) 0x0000000000000010",
    BACKTRACE[0],
    BACKTRACE[1],
];

const STACK_OVERFLOW: [&str; 3] = [
    "!!! stack overflow: the main stack of core 0 ran into its guard page",
    BACKTRACE[0],
    BACKTRACE[1],
];

#[test]
fn fault_page_microvm() -> Result<(), Failure> {
    fault("page", RunOptions::default(), &PAGE_FAULT, EXIT_EXCEPTION).map(drop)
}

#[test]
fn fault_page_q35() -> Result<(), Failure> {
    fault(
        "page",
        RunOptions::default().machine("q35"),
        &PAGE_FAULT,
        EXIT_EXCEPTION,
    )
    .map(drop)
}

#[test]
fn fault_divide() -> Result<(), Failure> {
    let expected = [
        "!!! CPU exception 0: divide error",
        BACKTRACE[0],
        BACKTRACE[1],
    ];
    fault("divide", RunOptions::default(), &expected, EXIT_EXCEPTION).map(drop)
}

#[test]
fn fault_stack_overflow_microvm() -> Result<(), Failure> {
    fault(
        "overflow",
        RunOptions::default(),
        &STACK_OVERFLOW,
        EXIT_EXCEPTION,
    )
    .map(drop)
}

#[test]
fn fault_stack_overflow_q35() -> Result<(), Failure> {
    let options = RunOptions::default().machine("q35");
    fault("overflow", options, &STACK_OVERFLOW, EXIT_EXCEPTION).map(drop)
}

#[test]
fn fault_out_of_memory() -> Result<(), Failure> {
    let guest = fault("oom", RunOptions::default(), &["!!! panic:"], EXIT_PANIC)?;
    // The image allocates 64 KiB vectors until the heap runs out: that is the request
    // the report must name.
    let report = guest.wait_for_line("!!! out of memory:", PVH)?;
    let size = number_after(&guest, &report, "!!! out of memory: ")?;
    if size != 64 * 1024 {
        return Err(guest.failure(format!(
            "the report names {size} bytes, not the 65536 requested"
        )));
    }
    Ok(())
}

#[test]
fn fault_panic() -> Result<(), Failure> {
    let expected = [
        "!!! panic: deliberate panic from the faults image",
        "!!! at examples/faults/src/main.rs:",
    ];
    fault("panic", RunOptions::default(), &expected, EXIT_PANIC).map(drop)
}

#[test]
fn fault_write_to_kernel_code() -> Result<(), Failure> {
    let expected = [
        "!!! CPU exception 14: page fault",
        "protection violation",
        BACKTRACE[0],
        BACKTRACE[1],
    ];
    fault(
        "write-text",
        RunOptions::default(),
        &expected,
        EXIT_EXCEPTION,
    )
    .map(drop)
}

#[test]
fn cmdline_bad_value_refuses_to_boot() -> Result<(), Failure> {
    let mut guest = Guest::start("hello", &RunOptions::default().append("log=loud"));
    let refusal = guest.wait_for_line("cannot boot: command line", PVH)?;
    if !refusal.contains("loud") {
        return Err(guest.failure(format!(
            "the refusal does not quote the bad value: `{refusal}`"
        )));
    }
    guest.expect_exit(EXIT_PANIC, PVH)?;
    if guest.console().contains("Hello from Torito") {
        return Err(guest.failure("the application ran despite the refused command line"));
    }
    Ok(())
}

#[test]
fn net_bad_ip_stops_the_network_service() -> Result<(), Failure> {
    let mut guest = Guest::start("echo", &RunOptions::default().append("ip=300.1.2.3/24"));
    let refusal = guest.wait_for_line("cannot boot: network configuration", PVH)?;
    if !refusal.contains("ip=300.1.2.3/24") || !refusal.contains("ADDRESS/PREFIX") {
        return Err(guest.failure(format!(
            "the refusal does not quote the bad value and what is expected: `{refusal}`"
        )));
    }
    guest.expect_exit(EXIT_PANIC, PVH)?;
    if guest.console().contains("listening") {
        return Err(guest.failure("the service started despite the refused network setting"));
    }
    Ok(())
}

#[test]
fn blocking_call_outside_a_blocking_task_is_refused() -> Result<(), Failure> {
    let mut guest = Guest::start(
        "faults",
        &RunOptions::default().append("app.fault=block-outside"),
    );
    let refusal = guest.wait_for_line("faults: refused:", PVH)?;
    if !refusal.contains("spawn_blocking") {
        return Err(guest.failure(format!("the refusal does not say what to use: `{refusal}`")));
    }
    guest.expect_exit(3, PVH)?;
    Ok(())
}

#[test]
fn cmdline_unknown_key_is_only_a_warning() -> Result<(), Failure> {
    let guest = hello(RunOptions::default().append("frobnicate=1"), PVH)?;
    let warning = guest.wait_for_line("unknown key", PVH)?;
    if !warning.contains("frobnicate") {
        return Err(guest.failure(format!("the warning does not name the key: `{warning}`")));
    }
    Ok(())
}

#[test]
fn cmdline_through_grub_multiboot2() -> Result<(), Failure> {
    // The multiboot2 command line reaches the kernel: the unknown key is named, and
    // nothing else GRUB passes (such as the image path) is mistaken for a key.
    let options = RunOptions::default()
        .machine("q35")
        .boot("grub")
        .append("frobnicate=1");
    let guest = hello(options, GRUB)?;
    let console = guest.console();
    let warnings: Vec<&str> = console
        .lines()
        .filter(|line| line.contains("unknown key"))
        .collect();
    if warnings.len() != 1 || !warnings[0].contains("frobnicate") {
        return Err(guest.failure(format!(
            "expected one unknown-key warning, naming `frobnicate`; got {warnings:?}"
        )));
    }
    Ok(())
}

#[test]
fn cmdline_log_debug_shows_debug_lines() -> Result<(), Failure> {
    let guest = hello(RunOptions::default().append("log=debug"), PVH)?;
    guest.wait_for_line("] DEBUG ", PVH)?;
    Ok(())
}
