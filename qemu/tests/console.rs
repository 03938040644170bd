//! The virtio console port (`torito::console::port`), probed from the host through the
//! Unix socket QEMU listens on (`run.sh --console-port PATH`), with
//! `build/console-echo.elf`, on microvm (virtio-mmio, with and without ACPI) and q35
//! (virtio-pci with MSI-X on four CPUs, and with INTx), and once through the blocking port
//! (`app.mode=blocking`).
//!
//! Each test boots the image, waits for its ready line on the serial console, connects
//! and checks, in order: a line comes back; every byte value comes back; 1 MiB of seeded
//! bytes comes back byte for byte. Then the serial console must show no `!!!` line
//! (panic or CPU exception).
//!
//! The bulk step keeps at most [`WINDOW`] bytes unanswered: QEMU drops what a console
//! port writes when its chardev cannot take it at once (hw/char/virtio-console.c
//! throttles only non-console ports), so a host that fell far behind in reading would
//! lose bytes. The window stays well below a Unix socket's send buffer (about 208 KiB),
//! so whatever the scheduling, QEMU's writes always fit.
//!
//! Deadlines only bound how long a broken guest can hang the run; nothing asserts a
//! timing.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use torito_qemu_tests::{Failure, Guest, RunOptions, TempDir, seeded_bytes};

/// What console-echo prints once it serves the port.
const READY: &str = "console-echo: ready on the virtio console port";
const BOOT: Duration = Duration::from_secs(60);
/// Bound for one read (a guest that stopped echoing fails the test after this).
const READ: Duration = Duration::from_secs(60);
/// Bytes echoed in the bulk step.
const BULK: usize = 1 << 20;
/// Most bytes unanswered at any time in the bulk step.
const WINDOW: usize = 64 << 10;

/// Sends `data` and reads the echo, at most `WINDOW` bytes ahead; the first difference
/// is an error naming its offset.
fn echo(guest: &Guest, stream: &mut UnixStream, step: &str, data: &[u8]) -> Result<(), Failure> {
    let mut sent = 0;
    let mut received = Vec::with_capacity(data.len());
    let mut buffer = vec![0u8; WINDOW];
    while received.len() < data.len() {
        let room = WINDOW - (sent - received.len());
        if sent < data.len() && room > 0 {
            let end = data.len().min(sent + room);
            stream
                .write_all(&data[sent..end])
                .map_err(|error| guest.failure(format!("{step}: write at {sent}: {error}")))?;
            sent = end;
        }
        let count = stream.read(&mut buffer).map_err(|error| {
            guest.failure(format!(
                "{step}: read after {} of {} bytes: {error}",
                received.len(),
                data.len()
            ))
        })?;
        if count == 0 {
            return Err(guest.failure(format!(
                "{step}: the port closed after {} bytes",
                received.len()
            )));
        }
        received.extend_from_slice(&buffer[..count]);
    }
    if let Some(offset) = (0..data.len()).find(|&index| received[index] != data[index]) {
        return Err(guest.failure(format!(
            "{step}: byte {offset} came back as {:#04x}, sent {:#04x}",
            received[offset], data[offset]
        )));
    }
    if received.len() > data.len() {
        return Err(guest.failure(format!(
            "{step}: {} bytes more came back than were sent",
            received.len() - data.len()
        )));
    }
    Ok(())
}

fn console_echo(name: &str, options: RunOptions, ready: &str) -> Result<(), Failure> {
    let directory = TempDir::new(&format!("console-{name}"));
    let append = format!("log=debug {}", options.append);
    let options = options.append(&append).console_port(directory.join("port"));
    let mut guest = Guest::start("console-echo", &options);
    guest.wait_for_line(ready, BOOT)?;
    let mut stream = UnixStream::connect(directory.join("port"))
        .map_err(|error| guest.failure(format!("connect to the port's socket: {error}")))?;
    stream
        .set_read_timeout(Some(READ))
        .map_err(|error| guest.failure(format!("set a read timeout: {error}")))?;
    echo(&guest, &mut stream, "line", b"hello, torito\n")?;
    let every_byte: Vec<u8> = (0..=255).collect();
    echo(&guest, &mut stream, "every byte value", &every_byte)?;
    echo(
        &guest,
        &mut stream,
        "1 MiB",
        &seeded_bytes(0x7e57_c0de, BULK),
    )?;
    if guest.console().lines().any(|line| line.contains("!!!")) {
        return Err(guest.failure("the guest reported a panic or exception"));
    }
    guest.kill();
    Ok(())
}

#[test]
fn console_port_echo_microvm() -> Result<(), Failure> {
    console_echo("microvm", RunOptions::default(), READY)
}

#[test]
fn console_port_echo_microvm_without_acpi() -> Result<(), Failure> {
    console_echo(
        "microvm-noacpi",
        RunOptions::default().without_acpi(),
        READY,
    )
}

#[test]
fn console_port_echo_q35_smp4() -> Result<(), Failure> {
    console_echo("q35", RunOptions::default().machine("q35").smp(4), READY)
}

/// The same through `torito::console::blocking`, from a blocking task (a fiber).
#[test]
fn console_port_echo_blocking_microvm() -> Result<(), Failure> {
    console_echo(
        "blocking",
        RunOptions::default().append("app.mode=blocking"),
        "console-echo: ready on the virtio console port (blocking)",
    )
}

#[test]
fn console_port_echo_q35_intx() -> Result<(), Failure> {
    console_echo(
        "q35-intx",
        RunOptions::default().machine("q35").without_msix(),
        READY,
    )
}

/// `app.case=upper`: what comes back is the upper-case of what was sent.
#[test]
fn console_port_upper_case_microvm() -> Result<(), Failure> {
    let directory = TempDir::new("console-upper");
    let options = RunOptions::default()
        .append("app.case=upper")
        .console_port(directory.join("port"));
    let mut guest = Guest::start("console-echo", &options);
    guest.wait_for_line(READY, BOOT)?;
    let mut stream = UnixStream::connect(directory.join("port"))
        .map_err(|error| guest.failure(format!("connect to the port's socket: {error}")))?;
    stream
        .set_read_timeout(Some(READ))
        .map_err(|error| guest.failure(format!("set a read timeout: {error}")))?;
    stream
        .write_all(b"Quiet torito 42\n")
        .map_err(|error| guest.failure(format!("write: {error}")))?;
    let mut back = [0u8; 16];
    stream
        .read_exact(&mut back)
        .map_err(|error| guest.failure(format!("read: {error}")))?;
    if &back != b"QUIET TORITO 42\n" {
        return Err(guest.failure(format!("came back as {:?}", String::from_utf8_lossy(&back))));
    }
    guest.kill();
    Ok(())
}
