//! Xen PVH domU: images run as an unprivileged guest of Debian's Linux dom0 with Xen's
//! own tools (`qemu/xen-domu.sh`: Xen 4.17 under QEMU's emulator, `xl create` of a PVH
//! domU with a vif on a bridge; docs/xen.md, "Running a domU"). The domU's console
//! reaches the test through dom0's xenconsoled, prefixed `domu: `; dom0 reports the
//! domU's end (`dom0: domU end: poweroff`) and its echo probe (`dom0: rtt: ...`, 64-byte
//! round trips whose every byte is checked by qemu/xen-domu/rtt.c).
//!
//! The Linux baseline (Debian's cloud kernel with bench/net's echo server) proves the
//! environment: dom0, xenstored, netback, the bridge and the probe. The Torito cases need
//! build/hello.elf and build/echo.elf (`make images`): hello prints through the PV
//! console ring and powers off; echo answers dom0 through netfront and Linux's netback,
//! then stops cleanly on `xl shutdown` (xenstore's control/shutdown); `xl reboot` stops
//! it the same way, and the domain it ends with `SHUTDOWN_reboot` is restarted by xl
//! and answers again.
//!
//! Needs `qemu/xen.sh fetch` and `qemu/xen-domu.sh fetch` (`make setup` runs both) and
//! gcc for the static helpers. One run takes 10-80 s under TCG here (Xen, then Linux as
//! dom0, then the domU); timeouts only bound a hang.

use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use torito_qemu_tests::{Failure, Guest, Outcome, image_path, workspace_root};

/// One machine at a time: each emulates Xen, a Linux dom0 and the domU on two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bound for a whole run. Dom0 destroys a domU still running after `DOMU_SECONDS`.
const RUN: Duration = Duration::from_secs(600);
const DOMU_SECONDS: u32 = 300;

/// Round trips of the probe: enough to see the ring turn over many times.
const ROUNDS: u32 = 50;

/// The ready line of bench/net/echo.c and of examples/echo.
const ECHO_READY: &str = "echo: listening on port 5555";

/// Runs `qemu/xen-domu.sh run ARGS...` to its end.
fn xen_domu(args: &[&str]) -> Result<(Guest, Outcome), Failure> {
    let script = workspace_root().join("qemu/xen-domu.sh");
    let timeout = DOMU_SECONDS.to_string();
    let mut command = Command::new(&script);
    command.arg("run").args(args).args(["--timeout", &timeout]);
    let description = format!(
        "{} run {} --timeout {timeout}",
        script.display(),
        args.join(" ")
    );
    let mut guest = Guest::start_command(command, description)?;
    let outcome = guest.wait_exit(RUN)?;
    Ok((guest, outcome))
}

/// Fails unless the run's console has a line containing `text`.
fn has_line(guest: &Guest, outcome: &Outcome, text: &str) -> Result<(), Failure> {
    match outcome.line(text) {
        Some(_) => Ok(()),
        None => Err(guest.failure(format!("no line containing `{text}`"))),
    }
}

/// Fails unless dom0 ended with status 0 (every step it took worked).
fn dom0_ok(guest: &Guest, outcome: &Outcome) -> Result<(), Failure> {
    if outcome.code == Some(0) {
        return Ok(());
    }
    Err(guest.failure(format!(
        "xen-domu.sh ended with {:?}, not 0 (1: probe or wait failed, 2: the domU did not \
         power off, 3: a Xen daemon did not start, 124: dom0 never reported)",
        outcome.code
    )))
}

/// The probe's line, checked: every round trip came back whole and equal.
fn probed(guest: &Guest, outcome: &Outcome) -> Result<(), Failure> {
    let expected = format!("dom0: rtt: {ROUNDS} rounds of 64 bytes, median ");
    has_line(guest, outcome, &expected)
}

/// Fails unless the console lines starting with `prefix` contain each of `texts`, in
/// this order (each after the line that matched the one before). Only one source's
/// lines are compared: dom0's lines and the domU's (followed from a log file) reach the
/// console on their own paths, so their relative order is not guaranteed.
fn in_order(guest: &Guest, outcome: &Outcome, prefix: &str, texts: &[&str]) -> Result<(), Failure> {
    let mut lines = outcome
        .console
        .lines()
        .filter(|line| line.starts_with(prefix));
    for (index, text) in texts.iter().enumerate() {
        if !lines.any(|line| line.contains(text)) {
            return Err(guest.failure(format!(
                "no `{prefix}` line containing `{text}` after {:?}",
                &texts[..index]
            )));
        }
    }
    Ok(())
}

fn ran_under_xen_and_dom0(guest: &Guest, outcome: &Outcome) -> Result<(), Failure> {
    has_line(guest, outcome, "(XEN) Xen version 4.17")?;
    // xl itself said the domU was created and watched it to its end.
    has_line(guest, outcome, "Waiting for domain domu")
}

#[test]
fn linux_domu_baseline_serves_echo_and_powers_off() -> Result<(), Failure> {
    let _one = one_at_a_time();
    let rounds = ROUNDS.to_string();
    let (guest, outcome) = xen_domu(&["--linux", "--wait", ECHO_READY, "--rounds", &rounds])?;
    ran_under_xen_and_dom0(&guest, &outcome)?;
    has_line(&guest, &outcome, &format!("domu: {ECHO_READY}"))?;
    probed(&guest, &outcome)?;
    // `xl shutdown` went through xenstore's control/shutdown and Linux powered off.
    has_line(&guest, &outcome, "dom0: domU end: poweroff")?;
    dom0_ok(&guest, &outcome)
}

#[test]
fn hello_as_domu_prints_and_powers_off() -> Result<(), Failure> {
    let _one = one_at_a_time();
    let image = image_path("hello");
    let image = image.to_string_lossy();
    let (guest, outcome) = xen_domu(&[&image])?;
    ran_under_xen_and_dom0(&guest, &outcome)?;
    // Through the PV console ring and xenconsoled.
    has_line(&guest, &outcome, "domu: Hello from Torito (")?;
    has_line(&guest, &outcome, "domu: torito: exit(0)")?;
    // SCHEDOP_shutdown with poweroff, as xl saw it.
    has_line(&guest, &outcome, "dom0: domU end: poweroff")?;
    dom0_ok(&guest, &outcome)
}

#[test]
fn echo_as_domu_answers_dom0() -> Result<(), Failure> {
    let _one = one_at_a_time();
    let image = image_path("echo");
    let image = image.to_string_lossy();
    let rounds = ROUNDS.to_string();
    let (guest, outcome) = xen_domu(&[
        &image,
        "--cmdline",
        "app.stats",
        "--wait",
        ECHO_READY,
        "--rounds",
        &rounds,
    ])?;
    ran_under_xen_and_dom0(&guest, &outcome)?;
    has_line(&guest, &outcome, &format!("domu: {ECHO_READY}"))?;
    probed(&guest, &outcome)?;
    // dom0's `xl shutdown` reached the service through xenstore's control/shutdown: it
    // stopped as on an ACPI power button and the domain powered off.
    has_line(&guest, &outcome, "domu: echo: stopped cleanly")?;
    has_line(&guest, &outcome, "dom0: domU end: poweroff")?;
    vif_counted(&guest)?;
    dom0_ok(&guest, &outcome)
}

/// Fails unless echo's last `app.stats` line for the vif (printed when it stopped)
/// counts at least one frame each way and one event per round trip, and no bad response
/// or broken ring: netfront's counters reach the service (a virtio-net device's would
/// be zeros here).
fn vif_counted(guest: &Guest) -> Result<(), Failure> {
    const LINE: &str = "domu: echo: net0 xen vif ";
    let console = guest.console();
    let Some(line) = console.lines().rev().find(|line| line.contains(LINE)) else {
        return Err(guest.failure(format!("no line containing `{LINE}`")));
    };
    let field = |name: &str| -> Option<u64> {
        let rest = &line[line.find(&format!(" {name}: "))? + name.len() + 3..];
        rest.split(',').next()?.trim().parse().ok()
    };
    let at_least = u64::from(ROUNDS);
    for name in ["rx_frames", "tx_frames", "interrupts"] {
        match field(name) {
            Some(count) if count >= at_least => {}
            other => {
                return Err(guest.failure(format!(
                    "`{name}` is {other:?} in `{line}`, not at least {at_least}"
                )));
            }
        }
    }
    for name in [
        "rx_errors",
        "rx_bad",
        "tx_errors",
        "unknown_ids",
        "ring_errors",
    ] {
        if field(name) != Some(0) {
            return Err(guest.failure(format!("`{name}` is not 0 in `{line}`")));
        }
    }
    Ok(())
}

#[test]
fn echo_as_domu_restarts_on_xl_reboot() -> Result<(), Failure> {
    let _one = one_at_a_time();
    let image = image_path("echo");
    let image = image.to_string_lossy();
    let rounds = ROUNDS.to_string();
    let (guest, outcome) = xen_domu(&[
        &image, "--wait", ECHO_READY, "--rounds", &rounds, "--reboot",
    ])?;
    ran_under_xen_and_dom0(&guest, &outcome)?;
    let probe = format!("rtt: {ROUNDS} rounds of 64 bytes, median ");
    // Dom0: the probe, `xl reboot`, the fresh domain ready and probed, then `xl
    // shutdown`; xl saw two domains end, the first rebooting, the second powered off.
    in_order(
        &guest,
        &outcome,
        "dom0: ",
        &[
            &probe,
            "asking the domU to reboot: xl reboot domu",
            "domU ready again",
            &probe,
            "Action for shutdown reason code 1 is restart",
            "domU ends, in order: reboot, poweroff",
        ],
    )?;
    // The domU: the service stopped cleanly on the reboot request and the kernel ended
    // the domain with SHUTDOWN_reboot (not a triple fault, which Xen also calls a
    // reboot); the second boot served, then stopped cleanly on `xl shutdown`.
    in_order(
        &guest,
        &outcome,
        "domu: ",
        &[
            ECHO_READY,
            "shutdown: requested by the Xen toolstack",
            "echo: stopped cleanly",
            "torito: exit(0)",
            "xen: the domain reboots",
            ECHO_READY,
            "shutdown: requested by the Xen toolstack",
            "echo: stopped cleanly",
            "torito: exit(0)",
        ],
    )?;
    dom0_ok(&guest, &outcome)
}

#[test]
fn intercore_two_vcpus_as_domu() -> Result<(), Failure> {
    let _one = one_at_a_time();
    let image = image_path("intercore");
    let image = image.to_string_lossy();
    let (guest, outcome) = xen_domu(&[&image, "--vcpus", "2"])?;
    ran_under_xen_and_dom0(&guest, &outcome)?;
    // The second vCPU started (INIT and start-up IPIs through Xen's emulated local APIC,
    // as libxl's MADT lists it) and both ran tasks and woke each other.
    has_line(&guest, &outcome, "domu: intercore: 2 cores, ")?;
    has_line(&guest, &outcome, "domu: intercore: core 1 up, ran a task")?;
    has_line(&guest, &outcome, "domu: intercore: all pairs ok")?;
    has_line(&guest, &outcome, "dom0: domU end: poweroff")?;
    dom0_ok(&guest, &outcome)
}

#[test]
fn panic_as_domu_ends_in_crash() -> Result<(), Failure> {
    let _one = one_at_a_time();
    let image = image_path("faults");
    let image = image.to_string_lossy();
    let (guest, outcome) = xen_domu(&[&image, "--cmdline", "app.fault=panic"])?;
    ran_under_xen_and_dom0(&guest, &outcome)?;
    // The report and the exit line reach the console ring before the domain goes ...
    has_line(&guest, &outcome, "domu: torito: exit(101)")?;
    // ... and a non-zero exit is SCHEDOP_shutdown's crash, which xl reports as such.
    has_line(&guest, &outcome, "dom0: domU end: crash")?;
    if outcome.code != Some(2) {
        return Err(guest.failure(format!(
            "xen-domu.sh ended with {:?}, not 2 (a domU that did not power off)",
            outcome.code
        )));
    }
    Ok(())
}
