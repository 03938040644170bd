//! Stopping cleanly: the platform's stop requests reach `torito::shutdown()`, a service
//! that awaits it finishes what is in flight and exits 0, and one that does not is
//! powered off with 0.
//!
//! Every test boots an image with `run.sh --qmp PATH` and drives QEMU through that socket
//! ([`Qmp`]): `system_powerdown` presses the ACPI power button (the fixed PM1 event on
//! q35 and pc, the Generic Event Device on microvm), `send-key ctrl alt delete` types
//! Ctrl+Alt+Del on the i8042 keyboard (q35 and pc; microvm has no i8042).
//!
//! * `examples/echo` awaits the request: it prints `shutdown: requested by ...` (the
//!   kernel's line), stops accepting, lets its connections finish, prints
//!   `echo: stopped cleanly` and exits 0;
//! * under load (eight clients echoing, on two and on four cores) every request a client sent
//!   before the stop gets its whole answer, no answer is ever cut short, and every
//!   connection then ends with a clean end of stream;
//! * `examples/echo-blocking` never calls `torito::shutdown()`: the request powers it off
//!   at once with status 0.
//!
//! QEMU runs with `-no-reboot`: had it (or the guest) answered Ctrl+Alt+Del with a reset,
//! QEMU would have ended without an exit line and the status would be 124, not 0.
//! Deadlines only bound hangs; nothing asserts a timing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;
use torito_qemu_tests::powerdown_under_load as powerdown_under_load_of;
use torito_qemu_tests::{
    Failure, Guest, LoadClient, POWER_BUTTON, Qmp, RunOptions, expect_end, expect_graceful_stop,
    failed_connections, read_up_to,
};

const GUEST_PORT: u16 = 5555;
const LISTENING: &str = "echo: listening on port 5555";
/// Bound for boot plus DHCP.
const BOOT: Duration = Duration::from_secs(60);
/// Bound for QMP's answers and for the guest to stop after the request.
const STOP: Duration = Duration::from_secs(60);
/// What the kernel prints on Ctrl+Alt+Del.
const CTRL_ALT_DEL: &str = "shutdown: requested by Ctrl+Alt+Del on the keyboard";
/// What echo prints once every connection has closed.
const STOPPED: &str = "echo: stopped cleanly";

/// A QMP socket path of this test's own.
fn qmp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("torito-qmp-{name}-{}.sock", std::process::id()))
}

/// Boots `image` with `options`, a forward to the echo port and a QMP socket; returns the
/// guest (listening), the host port and the QMP session.
fn boot(name: &str, image: &str, options: RunOptions) -> Result<(Guest, u16, Qmp), Failure> {
    let path = qmp_path(name);
    let (guest, port) =
        Guest::start_forwarded(image, &options.qmp(&path), GUEST_PORT, LISTENING, BOOT)?;
    let qmp = Qmp::connect(&path, STOP).map_err(|error| guest.failure(error))?;
    Ok((guest, port, qmp))
}

/// One echo exchange on a fresh connection: the service answers before the stop.
fn one_exchange(port: u16) -> Result<(), String> {
    let mut stream = connect(port)?;
    let message = b"before the stop\n";
    stream
        .write_all(message)
        .map_err(|error| format!("sending: {error}"))?;
    let mut reply = [0u8; 16];
    stream
        .read_exact(&mut reply)
        .map_err(|error| format!("no echo: {error}"))?;
    if &reply != message {
        return Err(format!("wrong echo: {reply:?}"));
    }
    Ok(())
}

fn connect(port: u16) -> Result<TcpStream, String> {
    torito_qemu_tests::connect(port, STOP)
}

/// Echo gets `system_powerdown` while idle (one connection open): the kernel's line,
/// echo's line, exit 0, and the open connection ends cleanly.
fn graceful_powerdown(name: &str, options: RunOptions) -> Result<(), Failure> {
    let (mut guest, port, mut qmp) = boot(name, "echo", options)?;
    one_exchange(port).map_err(|error| guest.failure(error))?;
    // A connection open and idle across the stop: echo closes it (end of stream).
    let mut idle = connect(port).map_err(|error| guest.failure(error))?;
    qmp.system_powerdown()
        .map_err(|error| guest.failure(error))?;
    guest.wait_for_line(POWER_BUTTON, STOP)?;
    let mut rest = Vec::new();
    match idle.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => {}
        Ok(_) => return Err(guest.failure(format!("unexpected bytes on close: {rest:?}"))),
        Err(error) => {
            return Err(guest.failure(format!("the idle connection did not end cleanly: {error}")));
        }
    }
    let outcome = guest.expect_exit(0, STOP)?;
    if outcome.line(STOPPED).is_none() {
        return Err(guest.failure(format!("no `{STOPPED}` line before the exit")));
    }
    Ok(())
}

#[test]
fn powerdown_stops_echo_on_q35() -> Result<(), Failure> {
    graceful_powerdown("q35", RunOptions::default().machine("q35"))
}

/// microvm has hardware-reduced ACPI: the button is its Generic Event Device.
#[test]
fn powerdown_stops_echo_on_microvm() -> Result<(), Failure> {
    graceful_powerdown("microvm", RunOptions::default())
}

#[test]
fn powerdown_stops_echo_on_pc() -> Result<(), Failure> {
    graceful_powerdown("pc", RunOptions::default().machine("pc"))
}

/// Ctrl+Alt+Del through QEMU's keyboard (i8042, scancode set 1 after translation) on
/// `machine`: the kernel's line, echo stops, exit 0 (no reset: see the module's docs).
fn ctrl_alt_del(machine: &str) -> Result<(), Failure> {
    let name = format!("{machine}-keys");
    let (mut guest, _, mut qmp) = boot(&name, "echo", RunOptions::default().machine(machine))?;
    qmp.send_keys(&["ctrl", "alt", "delete"])
        .map_err(|error| guest.failure(error))?;
    guest.wait_for_line(CTRL_ALT_DEL, STOP)?;
    let outcome = guest.expect_exit(0, STOP)?;
    if outcome.line(STOPPED).is_none() {
        return Err(guest.failure(format!("no `{STOPPED}` line before the exit")));
    }
    Ok(())
}

#[test]
fn ctrl_alt_del_stops_echo_on_q35() -> Result<(), Failure> {
    ctrl_alt_del("q35")
}

#[test]
fn ctrl_alt_del_stops_echo_on_pc() -> Result<(), Failure> {
    ctrl_alt_del("pc")
}

/// A service that never calls `torito::shutdown()` is powered off at once, status 0.
fn powers_off_without_listener(name: &str, options: RunOptions) -> Result<(), Failure> {
    let (mut guest, port, mut qmp) = boot(name, "echo-blocking", options)?;
    one_exchange(port).map_err(|error| guest.failure(error))?;
    qmp.system_powerdown()
        .map_err(|error| guest.failure(error))?;
    guest.wait_for_line("no task awaits torito::shutdown(): powering off", STOP)?;
    guest.expect_exit(0, STOP)?;
    Ok(())
}

#[test]
fn powerdown_powers_off_a_service_that_does_not_listen_on_q35() -> Result<(), Failure> {
    powers_off_without_listener("plain-q35", RunOptions::default().machine("q35"))
}

#[test]
fn powerdown_powers_off_a_service_that_does_not_listen_on_microvm() -> Result<(), Failure> {
    powers_off_without_listener("plain-microvm", RunOptions::default())
}

// ---- under load ----

/// Clients echoing at once, and round trips each client has done before the stop.
const LOAD_CLIENTS: usize = 8;
const ROUNDS_BEFORE_STOP: usize = 5;
const MAX_MESSAGE: usize = 4096;

/// What one load client saw.
#[derive(Debug, Default)]
struct Tally {
    /// Requests answered whole.
    answered: usize,
    /// A request sent after the stop that got no answer (the connection had closed).
    unanswered_after_stop: bool,
}

/// Echoes messages of 1..=4096 bytes one at a time until the stop (no new request
/// after that), then reads to the end of the stream. Fails on any answer cut short or
/// wrong, on a request written before the stop that gets no answer, and on a connection
/// that does not end cleanly.
fn load_client(port: u16, seed: u64, load: &LoadClient) -> Result<Tally, String> {
    let mut stream = connect(port)?;
    let mut random = seed;
    let mut tally = Tally::default();
    while !load.stopped() {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let size = 1 + (random % MAX_MESSAGE as u64) as usize;
        let message: Vec<u8> = (0..size).map(|at| (random >> (at % 56)) as u8).collect();
        let written = stream.write_all(&message);
        // Written whole before the stop was even requested: it must be answered.
        let before_stop = written.is_ok() && !load.stopped();
        if let Err(error) = written {
            // The server may close between our check and the write only after the stop.
            if load.stopped() {
                tally.unanswered_after_stop = true;
                return Ok(tally);
            }
            return Err(format!("request {}: sending: {error}", tally.answered));
        }
        // Closed before it read a request sent after the stop: allowed (an empty reply).
        let reply = read_up_to(&mut stream, size, !before_stop)
            .map_err(|error| format!("request {} ({size} bytes): {error}", tally.answered))?;
        if reply.is_empty() && !before_stop {
            tally.unanswered_after_stop = true;
            return Ok(tally);
        }
        if reply.len() < size {
            return Err(format!(
                "request {} ({size} bytes, sent {} the stop): answer cut after {} bytes",
                tally.answered,
                if before_stop { "before" } else { "after" },
                reply.len()
            ));
        }
        if reply != message {
            return Err(format!("request {}: wrong echo", tally.answered));
        }
        tally.answered += 1;
        load.round_done();
    }
    // Stopped: no new requests; the server closes once the line is quiet.
    expect_end(&mut stream)?;
    Ok(tally)
}

/// `system_powerdown` while [`LOAD_CLIENTS`] clients echo (connections spread over the
/// cores `options` gives).
fn powerdown_under_load(name: &str, options: RunOptions) -> Result<(), Failure> {
    let (mut guest, port, mut qmp) = boot(name, "echo", options)?;
    let seeds = (0..LOAD_CLIENTS as u64)
        .map(|index| 0x5107_0000 + index)
        .collect();
    let run = powerdown_under_load_of(
        &mut qmp,
        seeds,
        ROUNDS_BEFORE_STOP,
        STOP,
        |_, seed, load| load_client(port, seed, load),
    );
    run.powerdown
        .clone()
        .map_err(|error| guest.failure(error))?;
    let summary: Vec<Result<(), String>> = run
        .results
        .iter()
        .map(|result| result.as_ref().map(|_| ()).map_err(Clone::clone))
        .collect();
    failed_connections(&summary).map_err(|error| guest.failure(error))?;
    let answered: usize = run
        .results
        .iter()
        .flatten()
        .map(|tally| tally.answered)
        .sum();
    let cut_off = run
        .results
        .iter()
        .flatten()
        .filter(|tally| tally.unanswered_after_stop)
        .count();
    // Shown with --nocapture: how the run went, never asserted beyond the load itself.
    eprintln!(
        "{name}: {answered} requests answered, {cut_off} clients closed mid-request after the stop"
    );
    run.check_load(ROUNDS_BEFORE_STOP)
        .map_err(|error| guest.failure(error))?;
    expect_graceful_stop(&mut guest, STOPPED, STOP)?;
    Ok(())
}

#[test]
fn powerdown_under_load_on_q35_smp4() -> Result<(), Failure> {
    powerdown_under_load("load-q35", RunOptions::default().machine("q35").smp(4))
}

#[test]
fn powerdown_under_load_on_microvm_smp2() -> Result<(), Failure> {
    powerdown_under_load("load-microvm", RunOptions::default().smp(2))
}
