//! The harness itself, against the bench's do-nothing PVH kernel (bench/floor/floor.s,
//! assembled here with binutils' `as` and `ld`): exit codes and console come through, a
//! missing line fails as soon as QEMU ends, and a timeout leaves no QEMU behind.
//!
//! These do not need `make images`, so a harness bug shows up apart from kernel bugs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use torito_qemu_tests::{Failure, Guest, RunOptions, workspace_root};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The floor kernel (`hang`: the variant that never exits), built once per test run:
/// tests run in parallel threads and must not assemble into the same file at once.
fn floor(hang: bool) -> PathBuf {
    static FLOOR: OnceLock<PathBuf> = OnceLock::new();
    static HANG: OnceLock<PathBuf> = OnceLock::new();
    let once = if hang { &HANG } else { &FLOOR };
    once.get_or_init(|| build_floor(hang)).clone()
}

/// Assembles bench/floor/floor.s (with `--defsym HANG=1` when `hang`) and returns the
/// ELF's path.
fn build_floor(hang: bool) -> PathBuf {
    let source = workspace_root().join("bench/floor");
    let name = if hang { "floor-hang" } else { "floor" };
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let object = out.join(format!("{name}.o"));
    let elf = out.join(format!("{name}.elf"));
    let mut assemble = Command::new("as");
    assemble.arg("--64");
    if hang {
        assemble.args(["--defsym", "HANG=1"]);
    }
    assemble.arg("-o").arg(&object).arg(source.join("floor.s"));
    run(&mut assemble);
    run(Command::new("ld")
        .args(["-m", "elf_x86_64", "-nostdlib", "-static", "-T"])
        .arg(source.join("floor.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(&object));
    elf
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("cannot run {command:?} (binutils installed?): {error}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

#[test]
fn exit_code_and_console_come_through() -> Result<(), Failure> {
    let image = floor(false);
    let mut guest = Guest::start(image.to_str().unwrap(), &RunOptions::default());
    let line = guest.wait_for_line("torito: exit(", TIMEOUT)?;
    assert_eq!(line, "torito: exit(0)");
    let outcome = guest.expect_exit(0, TIMEOUT)?;
    assert_eq!(outcome.console, "torito: exit(0)\n");
    assert_eq!(outcome.line("exit"), Some("torito: exit(0)"));
    Ok(())
}

#[test]
fn a_missing_line_fails_when_qemu_ends_not_at_the_timeout() {
    let image = floor(false);
    let guest = Guest::start(image.to_str().unwrap(), &RunOptions::default());
    let started = Instant::now();
    let failure = guest.wait_for_line("never printed", TIMEOUT).unwrap_err();
    assert!(
        started.elapsed() < TIMEOUT / 2,
        "waited {:?}",
        started.elapsed()
    );
    assert!(failure.reason.contains("never printed"), "{failure}");
    assert!(failure.console.contains("torito: exit(0)"), "{failure}");
}

#[test]
fn a_timeout_kills_qemu_and_keeps_the_console() {
    let image = floor(true);
    let mut guest = Guest::start(image.to_str().unwrap(), &RunOptions::default());
    let group = guest.process_group();
    guest.wait_for_line("floor: hanging", TIMEOUT).unwrap();
    let failure = guest.wait_exit(Duration::from_millis(500)).unwrap_err();
    assert!(failure.reason.contains("did not exit"), "{failure}");
    assert!(failure.console.contains("floor: hanging"), "{failure}");
    assert!(
        !torito_qemu_tests::process_group_alive(group),
        "QEMU's process group {group} outlived the timeout"
    );
}

#[test]
fn dropping_a_running_guest_kills_qemu() {
    let image = floor(true);
    let guest = Guest::start(image.to_str().unwrap(), &RunOptions::default());
    let group = guest.process_group();
    guest.wait_for_line("floor: hanging", TIMEOUT).unwrap();
    drop(guest);
    assert!(
        !torito_qemu_tests::process_group_alive(group),
        "QEMU's process group {group} outlived the Guest"
    );
}

#[test]
fn a_forwarded_guest_has_its_host_port_bound() -> Result<(), Failure> {
    let image = floor(true);
    let (guest, port) = Guest::start_forwarded(
        image.to_str().unwrap(),
        &RunOptions::default(),
        5555,
        "floor: hanging",
        TIMEOUT,
    )?;
    // QEMU holds the port: nobody else can bind it, and a client can connect (QEMU's
    // user-mode networking accepts before the guest does anything).
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        return Err(guest.failure(format!("host port {port} is not bound by QEMU")));
    }
    std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|error| guest.failure(format!("cannot connect to port {port}: {error}")))?;
    Ok(())
}
