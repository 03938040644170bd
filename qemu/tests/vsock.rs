//! The vsock echo server (`build/vsock-echo.elf`) probed from the host through the
//! vhost-device-vsock backend's Unix socket (`CONNECT 5555\n`, then the stream):
//!
//! 1. 50 connections at once, each echoing 10 messages of 1..=4096 bytes, one at a time;
//! 2. one connection echoing 8 MiB in 32 KiB rounds, compared byte for byte (128 credit
//!    windows each way, so credit must keep flowing both ways);
//! 3. a fresh connection still echoes (nothing leaked or wedged).
//!
//! The full-duplex variant of step 2 is ignored: it deadlocks in the backend (see
//! `vsock_full_duplex_bulk_microvm`).
//!
//! Step 2 runs only in the `vsock_bulk_*` tests, ignored for now: see there.
//!
//! On microvm (virtio-mmio) and q35 (virtio-pci, MSI-X), one CPU and four. Data comes
//! from a seeded generator; deadlines (socket timeouts) only bound a hung guest under
//! TCG on a loaded machine; nothing asserts a timing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};
use torito_qemu_tests::{Failure, Guest, RunOptions, seeded_bytes};

const GUEST_PORT: u32 = 5555;
const LISTENING: &str = "vsock-echo: listening on port 5555";
const CID: u32 = 3;
const BOOT: Duration = Duration::from_secs(60);
/// How long one read or write may block before the step fails.
const STALL: Duration = Duration::from_secs(60);
const CONNECTIONS: usize = 50;
const MESSAGES: usize = 10;
const MAX_MESSAGE: usize = 4096;
const BULK: usize = 8 << 20;
/// Bytes per round of the bulk step.
const ROUND: usize = 32 << 10;

/// A socket path of this run's own (tests run in parallel).
fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("torito-vsock-{}-{name}.sock", std::process::id()))
}

/// Connects to guest port 5555 through the backend: `CONNECT`, then its `OK` line.
fn connect(socket: &Path) -> Result<UnixStream, String> {
    let mut stream = UnixStream::connect(socket)
        .map_err(|error| format!("connecting to {socket:?}: {error}"))?;
    stream
        .set_read_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("CONNECT {GUEST_PORT}\n").as_bytes())
        .map_err(|error| format!("sending CONNECT: {error}"))?;
    // Byte by byte: nothing after the line may be swallowed by a buffer.
    let mut line = Vec::new();
    let mut byte = [0u8];
    while byte[0] != b'\n' {
        stream
            .read_exact(&mut byte)
            .map_err(|error| format!("waiting for the backend's OK: {error} after {line:?}"))?;
        line.push(byte[0]);
    }
    if !line.starts_with(b"OK ") {
        return Err(format!(
            "the backend answered {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    Ok(stream)
}

fn compare(expected: &[u8], got: &[u8], offset: usize) -> Result<(), String> {
    match expected.iter().zip(got).position(|(a, b)| a != b) {
        Some(at) => Err(format!(
            "byte {} differs: sent {:#04x}, echoed {:#04x}",
            offset + at,
            expected[at],
            got[at]
        )),
        None => Ok(()),
    }
}

fn echo_messages(socket: &Path, seed: u64) -> Result<(), String> {
    let mut stream = connect(socket)?;
    let sizes = seeded_bytes(seed, MESSAGES * 2);
    for message in 0..MESSAGES {
        let size = 1
            + (usize::from(sizes[2 * message]) << 8 | usize::from(sizes[2 * message + 1]))
                % MAX_MESSAGE;
        let data = seeded_bytes(seed ^ (message as u64 + 1) << 32, size);
        stream
            .write_all(&data)
            .map_err(|error| format!("message {message}: sending: {error}"))?;
        let mut echoed = vec![0; size];
        stream
            .read_exact(&mut echoed)
            .map_err(|error| format!("message {message} ({size} bytes): reading: {error}"))?;
        compare(&data, &echoed, 0).map_err(|error| format!("message {message}: {error}"))?;
    }
    Ok(())
}

fn concurrent(socket: &Path) -> Result<(), String> {
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|index| {
            let socket = socket.to_path_buf();
            thread::spawn(move || echo_messages(&socket, 0x7e57_0100 + index as u64))
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .enumerate()
        .filter_map(|(index, client)| match client.join() {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(format!("connection {index}: {error}")),
            Err(_) => Some(format!("connection {index}: the client thread panicked")),
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {CONNECTIONS} failed; first: {}",
            failures.len(),
            failures[0]
        ))
    }
}

/// 8 MiB through one connection in 32 KiB rounds: each round is written whole, then its
/// echo read back whole. Each direction carries 128 times the 64 KiB credit window, so
/// credit must keep flowing both ways, but the host never writes while it is behind on
/// reading (see [`vsock_full_duplex_bulk_microvm`]).
fn bulk(socket: &Path) -> Result<(), String> {
    echo_rounds(&mut connect(socket)?, 0x7e57_0200, BULK)
}

/// 8 MiB written by one thread while another reads the echo.
fn full_duplex_bulk(socket: &Path) -> Result<(), String> {
    let stream = connect(socket)?;
    let data = seeded_bytes(0x7e57_0200, BULK);
    let mut writer = stream.try_clone().map_err(|error| error.to_string())?;
    let sent = data.clone();
    let writing = thread::spawn(move || writer.write_all(&sent));
    let mut reader = stream;
    let mut got = 0;
    let mut buffer = vec![0; 64 << 10];
    while got < BULK {
        let count = reader
            .read(&mut buffer)
            .map_err(|error| format!("reading at offset {got}: {error}"))?;
        if count == 0 {
            return Err(format!("end of stream after {got} of {BULK} bytes"));
        }
        let count = count.min(BULK - got);
        compare(&data[got..got + count], &buffer[..count], got)?;
        got += count;
    }
    writing
        .join()
        .map_err(|_| "the writer panicked".to_string())?
        .map_err(|error| format!("writing: {error}"))
}

fn vsock_echo(name: &str, options: RunOptions, full_duplex: bool) -> Result<(), Failure> {
    let socket = socket_path(name);
    let options = options.vsock(CID, &socket);
    let guest = Guest::start("vsock-echo", &options);
    guest.wait_for_line(LISTENING, BOOT)?;
    type Step = (&'static str, fn(&Path) -> Result<(), String>);
    let bulk_step: Step = if full_duplex {
        (
            "8 MiB echoed full duplex, compared byte for byte",
            full_duplex_bulk,
        )
    } else {
        (
            "8 MiB echoed in 32 KiB rounds, compared byte for byte",
            bulk,
        )
    };
    let steps: [Step; 3] = [
        ("50 concurrent connections", concurrent),
        bulk_step,
        ("a fresh connection after all that", |socket| {
            echo_messages(socket, 0x7e57_0300)
        }),
    ];
    for (number, (step, run)) in steps.into_iter().enumerate() {
        let started = Instant::now();
        run(&socket)
            .map_err(|error| guest.failure(format!("step {} ({step}): {error}", number + 1)))?;
        // Shown with --nocapture: where the time goes, never asserted.
        eprintln!(
            "vsock-echo {name}: step {} ({step}) took {:?}",
            number + 1,
            started.elapsed()
        );
    }
    if let Some(line) = guest.console().lines().find(|line| line.contains("!!!")) {
        return Err(guest.failure(format!("the guest reported a fault: `{line}`")));
    }
    Ok(())
}

#[test]
fn vsock_echo_microvm() -> Result<(), Failure> {
    vsock_echo("microvm", RunOptions::default(), false)
}

#[test]
fn vsock_echo_smp4_microvm() -> Result<(), Failure> {
    vsock_echo("smp4-microvm", RunOptions::default().smp(4), false)
}

#[test]
fn vsock_echo_q35() -> Result<(), Failure> {
    vsock_echo("q35", RunOptions::default().machine("q35"), false)
}

#[test]
fn vsock_echo_smp4_q35() -> Result<(), Failure> {
    vsock_echo(
        "smp4-q35",
        RunOptions::default().machine("q35").smp(4),
        false,
    )
}

/// The same service written with the blocking sockets (`app.blocking`: one fiber per
/// connection).
#[test]
fn vsock_echo_blocking_microvm() -> Result<(), Failure> {
    vsock_echo(
        "blocking-microvm",
        RunOptions::default().append("app.blocking=1"),
        false,
    )
}

#[test]
fn vsock_echo_blocking_smp4_q35() -> Result<(), Failure> {
    vsock_echo(
        "blocking-smp4-q35",
        RunOptions::default()
            .machine("q35")
            .smp(4)
            .append("app.blocking=1"),
        false,
    )
}

/// No ACPI (as on Firecracker): the device from QEMU's `virtio_mmio.device=` entry.
#[test]
fn vsock_echo_microvm_without_acpi() -> Result<(), Failure> {
    vsock_echo(
        "microvm-no-acpi",
        RunOptions::default().without_acpi(),
        false,
    )
}

/// virtio-pci without MSI-X: the INTx fallback through the I/O APIC.
#[test]
fn vsock_echo_q35_without_msix() -> Result<(), Failure> {
    vsock_echo(
        "q35-no-msix",
        RunOptions::default().machine("q35").without_msix(),
        false,
    )
}

/// The host port the guest connects to (`app.connect`), where the test listens.
const HOST_PORT: u32 = 7000;
/// A host port nothing listens on: the guest's connection is refused.
const CLOSED_PORT: u32 = 7001;
/// Bytes the host sends through the guest's connection, in [`ROUND`]s.
const CONNECTED_BYTES: usize = 256 << 10;

/// Accepts one connection on `listener` within `limit`.
fn accept_within(listener: &UnixListener, limit: Duration) -> Result<UnixStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|error| error.to_string())?;
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_read_timeout(Some(STALL)))
                    .and_then(|()| stream.set_write_timeout(Some(STALL)))
                    .map_err(|error| error.to_string())?;
                return Ok(stream);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(format!("accept: {error}")),
        }
        if Instant::now() > deadline {
            return Err(format!("no connection from the guest in {limit:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Seeded bytes through `stream` in rounds (each written whole, then its echo read back
/// whole), compared byte for byte.
fn echo_rounds(stream: &mut UnixStream, seed: u64, length: usize) -> Result<(), String> {
    let data = seeded_bytes(seed, length);
    let mut echoed = vec![0; ROUND];
    for (round, chunk) in data.chunks(ROUND).enumerate() {
        let offset = round * ROUND;
        stream
            .write_all(chunk)
            .map_err(|error| format!("writing at offset {offset}: {error}"))?;
        stream
            .read_exact(&mut echoed[..chunk.len()])
            .map_err(|error| format!("reading at offset {offset}: {error}"))?;
        compare(chunk, &echoed[..chunk.len()], offset)?;
    }
    Ok(())
}

/// The guest connects out (`VsockStream::connect`, `app.connect`): to [`HOST_PORT`],
/// which the backend maps to the Unix socket `<uds-path>_7000` the test listens on, and
/// to [`CLOSED_PORT`], where nothing listens. The first echoes 256 KiB of seeded bytes,
/// compared byte for byte, and reports the count once the host hangs up; the second
/// ends in an error (the backend never answers it: the connect timeout), and the guest
/// goes on serving.
fn guest_connects(name: &str, options: RunOptions, blocking: bool) -> Result<(), Failure> {
    let socket = socket_path(name);
    let service = PathBuf::from(format!("{}_{HOST_PORT}", socket.display()));
    let _ = std::fs::remove_file(&service);
    let listener = UnixListener::bind(&service).map_err(|error| Failure {
        reason: format!("cannot listen on {service:?}: {error}"),
        command: String::new(),
        console: String::new(),
        stderr: String::new(),
    })?;
    let mut append = format!("app.connect={HOST_PORT},{CLOSED_PORT}");
    if blocking {
        append.push_str(" app.blocking");
    }
    let guest = Guest::start("vsock-echo", &options.vsock(CID, &socket).append(&append));
    let result = (|| {
        let mut stream = accept_within(&listener, BOOT).map_err(|error| guest.failure(error))?;
        guest.wait_for_line(
            &format!("vsock-echo: host port {HOST_PORT} connected"),
            BOOT,
        )?;
        echo_rounds(&mut stream, 0x7e57_0400, CONNECTED_BYTES)
            .map_err(|error| guest.failure(format!("through the guest's connection: {error}")))?;
        drop(stream);
        guest.wait_for_line(
            &format!("vsock-echo: host port {HOST_PORT} done, {CONNECTED_BYTES} bytes echoed"),
            STALL,
        )?;
        let refused =
            guest.wait_for_line(&format!("vsock-echo: host port {CLOSED_PORT}: "), BOOT)?;
        // vhost-device-vsock 0.3.0 does not answer a connection to a Unix socket that
        // does not exist (no RST): the guest gives up after its connect timeout. A
        // backend that answers with RST makes it a refusal. Either is an error, not a
        // hang.
        if !refused.contains("got no answer in time") && !refused.contains("refused") {
            return Err(guest.failure(format!("expected a refusal or a timeout: `{refused}`")));
        }
        // The listener still serves.
        echo_messages(&socket, 0x7e57_0500)
            .map_err(|error| guest.failure(format!("after the connects: {error}")))?;
        if let Some(line) = guest.console().lines().find(|line| line.contains("!!!")) {
            return Err(guest.failure(format!("the guest reported a fault: `{line}`")));
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&service);
    result
}

#[test]
fn vsock_guest_connects_microvm() -> Result<(), Failure> {
    guest_connects("connect-microvm", RunOptions::default(), false)
}

#[test]
fn vsock_guest_connects_q35() -> Result<(), Failure> {
    guest_connects("connect-q35", RunOptions::default().machine("q35"), false)
}

#[test]
fn vsock_guest_connects_blocking_microvm() -> Result<(), Failure> {
    guest_connects("connect-blocking-microvm", RunOptions::default(), true)
}

/// The 8 MiB echo with the host writing and reading at once stalls after 1-2 MiB: a
/// deadlock in vhost-device-vsock 0.3.0 (`vhu_vsock_thread.rs`, `handle_event`). Once
/// a write to the host's socket would block, the backend keeps the rest in its `tx_buf`
/// and flushes it only on an epoll event that is `EPOLLOUT` alone; while the host has
/// bytes to send, every event also has `EPOLLIN`, whose path unregisters the socket
/// instead. Here the host always has bytes to send (the guest, its receive buffer full,
/// waits for the credit those buffered bytes hold), so the flush never comes. A guest
/// cannot avoid it (a bigger receive buffer, such as Linux's 256 KiB, only makes it
/// rarer); the bulk step goes in rounds instead. Run with `--ignored` to check a newer
/// backend.
#[test]
#[ignore = "deadlocks in vhost-device-vsock 0.3.0 (see the comment)"]
fn vsock_full_duplex_bulk_microvm() -> Result<(), Failure> {
    vsock_echo("full-duplex-microvm", RunOptions::default(), true)
}

/// The steps against a host-side echo server that speaks the same `CONNECT` line: a
/// failure above is then the guest's, not the client's.
#[test]
fn the_steps_pass_against_a_host_echo_server() {
    let socket = socket_path("host-echo");
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut stream = stream;
                stream.write_all(b"OK 1024\n").unwrap();
                let mut buffer = [0; 4096];
                while let Ok(count @ 1..) = reader.read(&mut buffer) {
                    if stream.write_all(&buffer[..count]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    concurrent(&socket).unwrap();
    bulk(&socket).unwrap();
    full_duplex_bulk(&socket).unwrap();
    let _ = std::fs::remove_file(&socket);
}
