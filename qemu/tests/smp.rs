//! Several cores: every core comes up and runs tasks, cross-core wakeups are never lost,
//! idle cores halt instead of polling, and the echo service works with its connections
//! spread over four cores.
//!
//! Needs `build/intercore.elf` and `build/echo.elf` (`make images`).
//!
//! - intercore prints `intercore: N cores, R round trips per pair`, a `core K up, ran a
//!   task` line per core, a line per pair of cores after R channel round trips between
//!   them, then `intercore: all pairs ok` and exits 0. A message that does not arrive
//!   within 10 s (a lost wakeup: the receiving core halted with work queued) makes it
//!   print `... a message was lost or out of order` and exit 1; a wakeup lost for good on
//!   the timer's core too shows as a hang, which the timeout here turns into a failure.
//! - The kernel prints `smp: N cores up; starting the other N-1 took T us` when N > 1.
//! - echo serves TCP echo on guest port 5555 and hands each accepted connection to the
//!   next core in turn.
//!
//! Timeouts only bound how long a broken guest can hang the run (TCG on a loaded
//! two-core machine); nothing asserts a latency. The one bound on a measurement is the
//! idle test's CPU budget, which a halting guest misses by two orders of magnitude.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use torito_qemu_tests::{Failure, Guest, Outcome, RunOptions, failed_connections, run_clients};

/// Bound for a boot plus the default 1000 round trips per pair (well under 1 s healthy).
const BOOT: Duration = Duration::from_secs(60);
/// Bound for a wake stress run (about 10 s alone under TCG here, a few times that when
/// the whole test suite shares the machine).
const STRESS: Duration = Duration::from_secs(300);

/// Wake stress on microvm, two cores: round trips between cores 0 and 1.
const STRESS_ROUNDS_SMP2: u32 = 200_000;
/// Wake stress on q35, four cores: round trips per pair, for each of the 6 pairs.
const STRESS_ROUNDS_SMP4: u32 = 40_000;
/// A round trip is two messages, each waking the other core.
const _: () = assert!(2 * STRESS_ROUNDS_SMP2 >= 100_000);
const _: () = assert!(6 * 2 * STRESS_ROUNDS_SMP4 >= 100_000);

/// The echo service's guest port and its ready line.
const ECHO_PORT: u16 = 5555;
const LISTENING: &str = "echo: listening on port 5555";
/// How long the idle guest is left alone while its CPU time is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(2);
/// The share of one host CPU an idle guest may use: halting cores cost QEMU almost
/// nothing, while one polling core alone costs a whole host CPU.
const IDLE_BUDGET_PERCENT: u32 = 10;

/// Concurrent-echo check: connections at once, round trips each, bytes per message.
const ECHO_CONNECTIONS: usize = 20;
const ECHO_ROUNDS: usize = 20;
const ECHO_MESSAGE: usize = 100;
/// Bound for all connections of the concurrent-echo check.
const ECHO_STEP: Duration = Duration::from_secs(60);

/// The number in `line` right after `prefix`, such as 4 in "smp: 4 cores up" after
/// "smp: ".
fn number_after(guest: &Guest, line: &str, prefix: &str) -> Result<u64, Failure> {
    line.split_once(prefix)
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| guest.failure(format!("no number after `{prefix}` in `{line}`")))
}

/// The first console line containing `substring`, or a failure naming it.
fn line<'a>(guest: &Guest, outcome: &'a Outcome, substring: &str) -> Result<&'a str, Failure> {
    outcome
        .line(substring)
        .ok_or_else(|| guest.failure(format!("no console line containing `{substring}`")))
}

/// Fails when the console shows a panic or CPU exception report (`!!!`).
fn no_fault_report(guest: &Guest) -> Result<(), Failure> {
    match guest.console().lines().find(|line| line.contains("!!!")) {
        Some(line) => Err(guest.failure(format!("the guest reported a fault: `{line}`"))),
        None => Ok(()),
    }
}

/// Runs intercore on `cores` cores with `rounds` round trips per pair (`None`: its
/// default of 1000) and checks everything it and the kernel promise: exit code 0, the
/// core count, a task run on every core, the kernel's SMP line, a result line for every
/// pair and the final `all pairs ok`. Returns the console and the wall-clock time.
fn intercore(
    options: RunOptions,
    cores: u32,
    rounds: Option<u32>,
    timeout: Duration,
) -> Result<(Outcome, Duration), Failure> {
    intercore_with_lines(options, cores, rounds, timeout, &[])
}

/// `intercore`, also waiting for every line of `extra` on the console.
fn intercore_with_lines(
    options: RunOptions,
    cores: u32,
    rounds: Option<u32>,
    timeout: Duration,
    extra: &[&str],
) -> Result<(Outcome, Duration), Failure> {
    let mut options = options.smp(cores);
    if let Some(rounds) = rounds {
        options = options.append(&format!("app.rounds={rounds}"));
    }
    let rounds = rounds.unwrap_or(1000);
    let started = Instant::now();
    let mut guest = Guest::start("intercore", &options);
    let outcome = guest.expect_exit(0, timeout)?;
    let elapsed = started.elapsed();

    let header = line(&guest, &outcome, "intercore: ")?;
    let expected = format!("intercore: {cores} cores, {rounds} round trips per pair");
    if header != expected {
        return Err(guest.failure(format!(
            "the first intercore line is `{header}`, expected `{expected}` (-smp {cores})"
        )));
    }
    for core in 0..cores {
        line(
            &guest,
            &outcome,
            &format!("intercore: core {core} up, ran a task"),
        )?;
    }
    if cores > 1 {
        let smp = line(&guest, &outcome, " cores up; starting the other ")?;
        let up = number_after(&guest, smp, "smp: ")?;
        let started_others = number_after(&guest, smp, "starting the other ")?;
        if up != u64::from(cores) || started_others != u64::from(cores - 1) {
            return Err(guest.failure(format!(
                "the kernel's SMP line `{smp}` does not say {cores} cores up, {} started",
                cores - 1
            )));
        }
        for a in 0..cores {
            for b in a + 1..cores {
                line(
                    &guest,
                    &outcome,
                    &format!("intercore: cores {a}<->{b}: {rounds} round trips, median "),
                )?;
            }
        }
    }
    line(&guest, &outcome, "intercore: all pairs ok")?;
    for wanted in extra {
        line(&guest, &outcome, wanted)?;
    }
    no_fault_report(&guest)?;
    Ok((outcome, elapsed))
}

// ---- 1. every core comes up and runs a task; every pair of cores talks ----

#[test]
fn intercore_smp1_microvm() -> Result<(), Failure> {
    intercore(RunOptions::default(), 1, None, BOOT).map(drop)
}

#[test]
fn intercore_smp2_microvm() -> Result<(), Failure> {
    intercore(RunOptions::default(), 2, None, BOOT).map(drop)
}

#[test]
fn intercore_smp4_microvm() -> Result<(), Failure> {
    intercore(RunOptions::default(), 4, None, BOOT).map(drop)
}

/// Runs intercore on `cores` cores and checks where the kernel found them (its debug
/// line `smp: CPUs from ...`): fw_cfg would hide a broken table parser.
fn cpus_from(options: RunOptions, cores: u32, source: &str) -> Result<(), Failure> {
    let options = options.append("log=debug");
    let wanted = format!("smp: {source}");
    intercore_with_lines(options, cores, None, BOOT, &[&wanted]).map(drop)
}

/// No ACPI (as on Firecracker): the CPUs come from the MP table.
#[test]
fn intercore_smp4_microvm_without_acpi() -> Result<(), Failure> {
    cpus_from(
        RunOptions::default().without_acpi(),
        4,
        "CPUs from the MP table",
    )
}

/// No ACPI on a BIOS machine: SeaBIOS's MP table lists only the boot CPU, so the
/// kernel asks fw_cfg for the count.
#[test]
fn intercore_smp2_pc_without_acpi() -> Result<(), Failure> {
    cpus_from(
        RunOptions::default().machine("pc").without_acpi(),
        2,
        "CPUs from fw_cfg's count",
    )
}

#[test]
fn intercore_smp1_q35() -> Result<(), Failure> {
    intercore(RunOptions::default().machine("q35"), 1, None, BOOT).map(drop)
}

#[test]
fn intercore_smp2_q35() -> Result<(), Failure> {
    intercore(RunOptions::default().machine("q35"), 2, None, BOOT).map(drop)
}

#[test]
fn intercore_smp4_q35() -> Result<(), Failure> {
    intercore(RunOptions::default().machine("q35"), 4, None, BOOT).map(drop)
}

// ---- 2. cross-core wake stress: no wakeup is ever lost ----

/// Prints how long a stress run took and its per-pair results (shown with
/// `--nocapture`, and kept with the test's output otherwise).
fn report_stress(name: &str, outcome: &Outcome, elapsed: Duration) {
    println!("{name}: {elapsed:.1?} wall clock");
    for pair in outcome
        .console
        .lines()
        .filter(|line| line.contains("round trips, median"))
    {
        println!("{name}:   {pair}");
    }
}

#[test]
fn wake_stress_smp2_microvm() -> Result<(), Failure> {
    let (outcome, elapsed) = intercore(RunOptions::default(), 2, Some(STRESS_ROUNDS_SMP2), STRESS)?;
    report_stress("wake_stress_smp2_microvm", &outcome, elapsed);
    Ok(())
}

#[test]
fn wake_stress_smp4_q35() -> Result<(), Failure> {
    let (outcome, elapsed) = intercore(
        RunOptions::default().machine("q35"),
        4,
        Some(STRESS_ROUNDS_SMP4),
        STRESS,
    )?;
    report_stress("wake_stress_smp4_q35", &outcome, elapsed);
    Ok(())
}

// ---- 3. idle cores halt ----

/// Boots echo on `cores` cores, leaves it alone for [`IDLE_WINDOW`] once it listens and
/// checks that QEMU used less than [`IDLE_BUDGET_PERCENT`] of one host CPU meanwhile;
/// then one echo proves the guest was idle, not dead, and wakes for a packet.
fn idle(cores: u32) -> Result<(), Failure> {
    let options = RunOptions::default().smp(cores);
    let (guest, port) = Guest::start_forwarded("echo", &options, ECHO_PORT, LISTENING, BOOT)?;
    let cpu_before = guest.qemu_cpu_time()?;
    let wall_before = Instant::now();
    thread::sleep(IDLE_WINDOW);
    let cpu_after = guest.qemu_cpu_time()?;
    let wall = wall_before.elapsed();
    let used = cpu_after.saturating_sub(cpu_before);
    let (used_seconds, wall_seconds) = (used.as_secs_f64(), wall.as_secs_f64());
    let percent = used_seconds * 100.0 / wall_seconds;
    println!(
        "idle, {cores} cores: QEMU used {used_seconds:.3} s of CPU in {wall_seconds:.3} s \
         ({percent:.1}% of one host CPU)"
    );
    if used * 100 >= wall * IDLE_BUDGET_PERCENT {
        return Err(guest.failure(format!(
            "the idle guest ({cores} cores) used {used_seconds:.3} s of host CPU in \
             {wall_seconds:.3} s ({percent:.1}% of one CPU, budget {IDLE_BUDGET_PERCENT}%): a core polls \
             instead of halting"
        )));
    }
    let deadline = Instant::now() + ECHO_STEP;
    echo_connection(port, 0, 1, deadline)
        .map_err(|error| guest.failure(format!("no echo after the idle period: {error}")))?;
    no_fault_report(&guest)
}

#[test]
fn idle_smp4_microvm_halts() -> Result<(), Failure> {
    idle(4)
}

#[test]
fn idle_smp1_microvm_halts() -> Result<(), Failure> {
    idle(1)
}

// ---- 4. networking with connections spread over cores ----

#[test]
fn echo_smp4_q35_concurrent_connections() -> Result<(), Failure> {
    let options = RunOptions::default().machine("q35").smp(4);
    let (guest, port) = Guest::start_forwarded("echo", &options, ECHO_PORT, LISTENING, BOOT)?;
    let deadline = Instant::now() + ECHO_STEP;
    // echo hands connection i to core (i + 1) % 4, so all four cores serve some.
    let results = run_clients((0..ECHO_CONNECTIONS).collect(), |index, _| {
        echo_connection(port, index, ECHO_ROUNDS, deadline)
    });
    if let Err(summary) = failed_connections(&results) {
        return Err(guest.failure(summary));
    }
    no_fault_report(&guest)
}

/// One connection to the forwarded `port`: `rounds` messages of [`ECHO_MESSAGE`] bytes,
/// each echoed and compared before the next is sent. The bytes depend on `index` and
/// the round, so a reply for another connection or an old round does not match.
fn echo_connection(
    port: u16,
    index: usize,
    rounds: usize,
    deadline: Instant,
) -> Result<(), String> {
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err("the deadline passed".to_string())
        } else {
            Ok(left)
        }
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, left()?)
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    stream
        .set_nodelay(true)
        .map_err(|error| format!("set_nodelay: {error}"))?;
    for round in 0..rounds {
        let message: Vec<u8> = (0..ECHO_MESSAGE)
            .map(|offset| (index * 131 + round * 31 + offset * 7) as u8)
            .collect();
        stream
            .set_write_timeout(Some(left()?))
            .map_err(|error| format!("set_write_timeout: {error}"))?;
        stream
            .write_all(&message)
            .map_err(|error| format!("round {round}: sending: {error}"))?;
        let mut echo = vec![0; ECHO_MESSAGE];
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|error| format!("set_read_timeout: {error}"))?;
        stream
            .read_exact(&mut echo)
            .map_err(|error| format!("round {round}: reading the echo: {error}"))?;
        if echo != message {
            let at = echo
                .iter()
                .zip(&message)
                .position(|(got, sent)| got != sent)
                .unwrap_or(0);
            return Err(format!(
                "round {round}: the echo differs at offset {at}: sent {:02x?}, got {:02x?}",
                &message[at..(at + 8).min(ECHO_MESSAGE)],
                &echo[at..(at + 8).min(ECHO_MESSAGE)]
            ));
        }
    }
    Ok(())
}
