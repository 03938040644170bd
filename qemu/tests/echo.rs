//! The TCP echo servers, probed from the host through QEMU's user-mode networking: many
//! connections at once, a bulk stream, every byte value, resets, half-close, and the
//! service still answering afterwards.
//!
//! Needs `build/echo.elf` and `build/echo-blocking.elf` (`make images`): both serve TCP
//! echo on guest port 5555 (one async task, or one blocking task, per connection) and
//! print `echo: listening on port 5555` once they accept connections. Each test boots
//! one image on one machine (microvm = virtio-mmio, q35 = virtio-pci; one CPU and four),
//! forwards a free host port to 5555 and runs these steps in order, each against a
//! deadline:
//!
//! 1. 50 connections at once, each echoing 10 messages of 1..=4096 bytes, one at a time;
//! 2. one connection echoing 8 MiB, written by one thread while another reads;
//! 3. binary input: every byte value, runs of 0x00 and of 0xff, random bytes;
//! 4. 10 connections closed with a reset while the server still echoes to them;
//! 5. half-close: a message, then `shutdown(Write)`: the whole echo, then end of stream;
//! 6. a fresh connection still echoes;
//! 7. 50 connections at once again: the resets and closes leaked no server capacity.
//!
//! Then the console must show no `!!!` line (panic or CPU exception).
//!
//! Data comes from a seeded generator, so a failure repeats with the same bytes; the
//! messages name the step, the connection and the offset. Deadlines only bound how long
//! a broken guest can hang the run (TCG on a loaded two-core machine); nothing asserts a
//! timing.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use torito_qemu_tests::{
    Failure, Guest, RunOptions, SplitMix64, Step, echo_round_trip, failed_connections, run_clients,
    run_steps,
};

/// The guest port both images serve.
const GUEST_PORT: u16 = 5555;
/// What the images print once they accept connections.
const LISTENING: &str = "echo: listening on port 5555";
/// Bound for boot plus DHCP to reach the listening line.
const BOOT: Duration = Duration::from_secs(60);
/// Bound for one ordinary step.
const STEP: Duration = Duration::from_secs(60);
/// Bound for the bulk step (8 MiB through slirp and an emulated NIC under TCG).
const BULK_STEP: Duration = Duration::from_secs(120);

/// Step 1 and 7: connections at once, messages per connection, largest message.
const CONCURRENT_CONNECTIONS: usize = 50;
const MESSAGES_PER_CONNECTION: usize = 10;
const MAX_MESSAGE: usize = 4096;
/// Step 2: bytes through one connection.
const BULK_BYTES: usize = 8 << 20;
/// Step 4: connections ended with a reset.
const RESET_CONNECTIONS: usize = 10;
/// Step 4: what odd-numbered reset connections send, so that the server is still
/// echoing when the reset arrives.
const RESET_LARGE: usize = 64 << 10;

/// Seeds, one per step, so that each step's data is fixed.
const SEED_CONCURRENT: u64 = 0x7e57_0001;
const SEED_BULK: u64 = 0x7e57_0002;
const SEED_BINARY: u64 = 0x7e57_0003;
const SEED_RESET: u64 = 0x7e57_0004;
const SEED_HALF_CLOSE: u64 = 0x7e57_0005;
const SEED_FRESH: u64 = 0x7e57_0006;
const SEED_CONCURRENT_AGAIN: u64 = 0x7e57_0007;

const STEPS: [Step; 7] = [
    ("50 concurrent connections", concurrent),
    ("8 MiB bulk stream", bulk),
    ("every byte value", binary),
    ("connections reset by the client", resets),
    ("half-close", half_close),
    ("a fresh connection after all that", fresh),
    ("50 concurrent connections again", concurrent_again),
];

/// Boots `image` with `options` and runs every step against it.
fn echo_service(image: &str, options: RunOptions) -> Result<(), Failure> {
    let (guest, port) = Guest::start_forwarded(image, &options, GUEST_PORT, LISTENING, BOOT)?;
    run_steps(
        &guest,
        &format!("{image} {}", options.args().join(" ")),
        port,
        &STEPS,
    )
}

#[test]
fn echo_microvm() -> Result<(), Failure> {
    echo_service("echo", RunOptions::default())
}

/// No ACPI (as on Firecracker): the device comes from QEMU's `virtio_mmio.device=`
/// command-line entry and its interrupt from the I/O APIC at the default address; the
/// two CPUs from the MP table.
#[test]
fn echo_microvm_without_acpi() -> Result<(), Failure> {
    echo_service("echo", RunOptions::default().without_acpi().smp(2))
}

#[test]
fn echo_q35() -> Result<(), Failure> {
    echo_service("echo", RunOptions::default().machine("q35"))
}

#[test]
fn echo_smp4_microvm() -> Result<(), Failure> {
    echo_service("echo", RunOptions::default().smp(4))
}

#[test]
fn echo_smp4_q35() -> Result<(), Failure> {
    echo_service("echo", RunOptions::default().machine("q35").smp(4))
}

/// With a vsock device attached as well (and so a memfd-backed RAM shared with the
/// vhost-user backend): discovery takes both devices, the TCP service is unaffected.
#[test]
fn echo_microvm_with_vsock() -> Result<(), Failure> {
    let socket =
        std::env::temp_dir().join(format!("torito-echo-vsock-{}.sock", std::process::id()));
    echo_service("echo", RunOptions::default().vsock(3, &socket))
}

#[test]
fn echo_q35_with_vsock() -> Result<(), Failure> {
    let socket =
        std::env::temp_dir().join(format!("torito-echo-vsock-q35-{}.sock", std::process::id()));
    echo_service(
        "echo",
        RunOptions::default().machine("q35").vsock(3, &socket),
    )
}

#[test]
fn echo_blocking_microvm() -> Result<(), Failure> {
    echo_service("echo-blocking", RunOptions::default())
}

#[test]
fn echo_blocking_q35() -> Result<(), Failure> {
    echo_service("echo-blocking", RunOptions::default().machine("q35"))
}

#[test]
fn echo_blocking_smp4_microvm() -> Result<(), Failure> {
    echo_service("echo-blocking", RunOptions::default().smp(4))
}

#[test]
fn echo_blocking_smp4_q35() -> Result<(), Failure> {
    echo_service("echo-blocking", RunOptions::default().machine("q35").smp(4))
}

/// The steps themselves against an echo server on the host (threads, std only): a
/// failure above is then the guest's, not the client's.
#[test]
fn the_steps_pass_against_a_host_echo_server() {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Serves for the rest of the test process.
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0; 4096];
                // Echo until end of stream (or a reset), then close.
                while let Ok(count @ 1..) = stream.read(&mut buffer) {
                    if stream.write_all(&buffer[..count]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    for (number, (name, step)) in STEPS.iter().enumerate() {
        if let Err(error) = step(port) {
            panic!(
                "step {} ({name}) against the host echo server: {error}",
                number + 1
            );
        }
    }
}

// ---- the steps ----

/// Step 1: [`CONCURRENT_CONNECTIONS`] connections at once, each echoing its messages.
fn concurrent(port: u16) -> Result<(), String> {
    many_connections(port, SEED_CONCURRENT)
}

/// Step 7: step 1 again, with other data.
fn concurrent_again(port: u16) -> Result<(), String> {
    many_connections(port, SEED_CONCURRENT_AGAIN)
}

fn many_connections(port: u16, seed: u64) -> Result<(), String> {
    let deadline = Deadline::after(STEP);
    at_once(
        port,
        CONCURRENT_CONNECTIONS,
        deadline,
        |index, mut stream| {
            let mut random = SplitMix64(seed ^ ((index as u64) << 32));
            for message in 0..MESSAGES_PER_CONNECTION {
                let size = random.range(1, MAX_MESSAGE);
                let data = random.bytes(size);
                echo_message(&mut stream, &data, deadline)
                    .map_err(|error| format!("message {message} ({size} bytes): {error}"))?;
            }
            Ok(())
        },
    )
}

/// Step 2: [`BULK_BYTES`] through one connection, written and read at the same time.
fn bulk(port: u16) -> Result<(), String> {
    let deadline = Deadline::after(BULK_STEP);
    let data = SplitMix64(SEED_BULK).bytes(BULK_BYTES);
    let stream = connect(port, deadline)?;
    echo_stream(stream, &data, deadline)
}

/// Step 3: binary input the server must not interpret: every byte value up and down,
/// runs of 0x00 and 0xff, alternating 0x00/0xff, line ends and random bytes.
fn binary(port: u16) -> Result<(), String> {
    let deadline = Deadline::after(STEP);
    let mut data: Vec<u8> = (0..=255).collect();
    data.extend((0..=255).rev());
    data.extend([0x00; 4096]);
    data.extend([0xff; 4096]);
    data.extend([0x00, 0xff].repeat(1024));
    data.extend(b"\r\n\r\0\n\x04\x1a\x1b\xff\xfd\x18\xff\xff\x00");
    data.extend(SplitMix64(SEED_BINARY).bytes(8192));
    data.extend(0..=255);
    let stream = connect(port, deadline)?;
    echo_stream(stream, &data, deadline)
}

/// Step 4: [`RESET_CONNECTIONS`] connections at once that send data and then close
/// with a reset. Linux resets rather than closes a socket that still holds unread
/// received data (RFC 2525, 2.17), so each waits until echoed bytes are waiting and then
/// drops the socket without reading them: no `SO_LINGER` needed. The odd-numbered ones
/// send [`RESET_LARGE`] bytes, so the server is still echoing when the reset arrives.
/// (QEMU's slirp turns the host's reset into a reset or a FIN towards the guest; either
/// way the server must survive, which the later steps check.)
fn resets(port: u16) -> Result<(), String> {
    let deadline = Deadline::after(STEP);
    at_once(port, RESET_CONNECTIONS, deadline, |index, mut stream| {
        let mut random = SplitMix64(SEED_RESET ^ ((index as u64) << 32));
        let size = if index % 2 == 1 {
            RESET_LARGE
        } else {
            random.range(1, MAX_MESSAGE)
        };
        write_all(&mut stream, &random.bytes(size), deadline)
            .map_err(|error| format!("sending {size} bytes: {error}"))?;
        wait_readable(&stream, deadline)
            .map_err(|error| format!("waiting for the echo of {size} bytes: {error}"))?;
        // Dropped with unread data: the kernel sends RST.
        drop(stream);
        Ok(())
    })
}

/// Step 5: a message, then `shutdown(Write)`: the server must see end of stream, finish
/// echoing, and close, so the client reads the whole echo and then end of stream.
fn half_close(port: u16) -> Result<(), String> {
    let deadline = Deadline::after(STEP);
    let data = SplitMix64(SEED_HALF_CLOSE).bytes(3000);
    let mut stream = connect(port, deadline)?;
    write_all(&mut stream, &data, deadline).map_err(|error| format!("sending: {error}"))?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|error| format!("shutdown(Write) failed: {error}"))?;
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        match read_some(&mut stream, &mut buffer, deadline) {
            Ok(0) => break,
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            Err(error) => {
                let echoed = if received == data {
                    "the whole echo arrived, but no end of stream followed: the server did \
                     not close after the client's shutdown(Write)"
                        .to_string()
                } else {
                    format!("{} of {} echoed bytes arrived", received.len(), data.len())
                };
                return Err(format!("{error}; {echoed}"));
            }
        }
    }
    if received.len() != data.len() {
        return Err(format!(
            "end of stream after {} bytes, but {} were sent{}",
            received.len(),
            data.len(),
            difference(&data, &received)
                .map(|offset| format!("; first difference at offset {offset}"))
                .unwrap_or_default()
        ));
    }
    compare(&data, &received, 0)
}

/// Step 6: a fresh connection still echoes: a short text, then 1000 random bytes.
fn fresh(port: u16) -> Result<(), String> {
    let deadline = Deadline::after(STEP);
    let mut random = SplitMix64(SEED_FRESH);
    let mut stream = connect(port, deadline)?;
    let mut message = b"still there?".to_vec();
    echo_message(&mut stream, &message, deadline)?;
    message = random.bytes(1000);
    echo_message(&mut stream, &message, deadline)
}

// ---- client helpers ----

/// An instant a step must finish by.
#[derive(Debug, Clone, Copy)]
struct Deadline(Instant);

impl Deadline {
    fn after(duration: Duration) -> Self {
        Self(Instant::now() + duration)
    }

    /// The time left, as a socket timeout (never zero: std refuses a zero timeout).
    fn left(self) -> Result<Duration, String> {
        let left = self.0.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err("the step's deadline passed".into())
        } else {
            Ok(left)
        }
    }
}

/// Connects to the forwarded port. (QEMU accepts at once; the guest's answer shows in
/// the first read.)
fn connect(port: u16, deadline: Deadline) -> Result<TcpStream, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&address, deadline.left()?)
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    // Small messages go out at once rather than waiting for the previous echo's ACK.
    stream
        .set_nodelay(true)
        .map_err(|error| format!("set_nodelay: {error}"))?;
    Ok(stream)
}

/// Opens `count` connections, then runs `client` on each in a thread of its own, all
/// at once; Ok when every one succeeded.
///
/// The connections are opened one after another, not from the threads, and each echoes
/// a short greeting before the next is opened. QEMU's `hostfwd` listens with a backlog
/// of 1 (`ss -ltn` shows it) and slirp does not always accept at once: with two
/// connections waiting, Linux drops the next SYN (a 1 s retransmission) or, worse, the
/// handshake's last ACK while the client already counts the connection as open; such a
/// connection stalls for tens of seconds or dies before slirp ever sends a SYN to the
/// guest (seen with 50 simultaneous connects, even against a guest that never answers).
/// The echoed greeting proves slirp has accepted the connection and the guest serves
/// it, so the host's queue is empty for the next one. All `count` connections are still
/// open in the guest at once.
fn at_once<F>(port: u16, count: usize, deadline: Deadline, client: F) -> Result<(), String>
where
    F: Fn(usize, TcpStream) -> Result<(), String> + Sync,
{
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        let mut stream = connect(port, deadline)
            .map_err(|error| format!("opening connection {index}: {error}"))?;
        let greeting = format!("hello from connection {index}");
        echo_message(&mut stream, greeting.as_bytes(), deadline).map_err(|error| {
            format!(
                "opening connection {index} ({} open): the greeting: {error}",
                streams.len()
            )
        })?;
        streams.push(stream);
    }
    failed_connections(&run_clients(streams, client))
}

/// One read with the time left as its timeout; timeouts and errors become messages.
fn read_some(
    stream: &mut TcpStream,
    buffer: &mut [u8],
    deadline: Deadline,
) -> Result<usize, String> {
    loop {
        stream
            .set_read_timeout(Some(deadline.left()?))
            .map_err(|error| format!("set_read_timeout: {error}"))?;
        match stream.read(buffer) {
            Ok(count) => return Ok(count),
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err("nothing more arrived before the step's deadline".into());
            }
            Err(error) => return Err(format!("read failed: {error}")),
        }
    }
}

/// Writes all of `data` before the deadline.
fn write_all(stream: &mut TcpStream, data: &[u8], deadline: Deadline) -> Result<(), String> {
    let mut sent = 0;
    while sent < data.len() {
        stream
            .set_write_timeout(Some(deadline.left()?))
            .map_err(|error| format!("set_write_timeout: {error}"))?;
        match stream.write(&data[sent..]) {
            Ok(0) => {
                return Err(format!(
                    "write returned 0 after {sent} of {} bytes",
                    data.len()
                ));
            }
            Ok(count) => sent += count,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "only {sent} of {} bytes were accepted before the step's deadline \
                     (the server stopped reading)",
                    data.len()
                ));
            }
            Err(error) => {
                return Err(format!(
                    "write failed after {sent} of {} bytes: {error}",
                    data.len()
                ));
            }
        }
    }
    Ok(())
}

/// Reads exactly `buffer.len()` bytes before the deadline.
fn read_exact(stream: &mut TcpStream, buffer: &mut [u8], deadline: Deadline) -> Result<(), String> {
    let mut got = 0;
    while got < buffer.len() {
        match read_some(stream, &mut buffer[got..], deadline) {
            Ok(0) => {
                return Err(format!(
                    "end of stream after {got} of {} echoed bytes",
                    buffer.len()
                ));
            }
            Ok(count) => got += count,
            Err(error) => {
                return Err(format!(
                    "{error} ({got} of {} echoed bytes arrived)",
                    buffer.len()
                ));
            }
        }
    }
    Ok(())
}

/// Waits until at least one byte can be read, without reading it.
fn wait_readable(stream: &TcpStream, deadline: Deadline) -> Result<(), String> {
    let mut byte = [0];
    loop {
        stream
            .set_read_timeout(Some(deadline.left()?))
            .map_err(|error| format!("set_read_timeout: {error}"))?;
        match stream.peek(&mut byte) {
            Ok(0) => return Err("end of stream before any echo".into()),
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err("no echo before the step's deadline".into());
            }
            Err(error) => return Err(format!("peek failed: {error}")),
        }
    }
}

/// Sends `data` and reads its echo before sending anything else.
fn echo_message(stream: &mut TcpStream, data: &[u8], deadline: Deadline) -> Result<(), String> {
    write_all(stream, data, deadline).map_err(|error| format!("sending: {error}"))?;
    let mut echo = vec![0; data.len()];
    read_exact(stream, &mut echo, deadline)?;
    compare(data, &echo, 0)
}

/// Writes `data` from one thread while this one reads the echo and compares it as it
/// arrives, so neither side waits for the other's buffers.
fn echo_stream(stream: TcpStream, data: &[u8], deadline: Deadline) -> Result<(), String> {
    let mut writer = stream
        .try_clone()
        .map_err(|error| format!("cannot clone the socket: {error}"))?;
    let mut reader = stream;
    thread::scope(|scope| {
        let written = scope.spawn(move || write_all(&mut writer, data, deadline));
        let read = read_and_compare(&mut reader, data, deadline);
        if read.is_err() {
            // Unblock the writer rather than let it wait for the deadline.
            let _ = reader.shutdown(Shutdown::Both);
        }
        let written = written
            .join()
            .unwrap_or_else(|_| Err("the writer thread panicked".into()));
        match (read, written) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(read), Ok(())) => Err(format!("all {} bytes were sent; {read}", data.len())),
            (Err(read), Err(written)) => Err(format!("{read}; the writer: {written}")),
            (Ok(()), Err(written)) => Err(format!("the writer: {written}")),
        }
    })
}

/// Reads `data.len()` bytes and compares each chunk with `data` as it arrives.
fn read_and_compare(stream: &mut TcpStream, data: &[u8], deadline: Deadline) -> Result<(), String> {
    let mut buffer = vec![0; 64 << 10];
    let mut got = 0;
    while got < data.len() {
        let want = buffer.len().min(data.len() - got);
        match read_some(stream, &mut buffer[..want], deadline) {
            Ok(0) => {
                return Err(format!(
                    "end of stream after {got} of {} echoed bytes",
                    data.len()
                ));
            }
            Ok(count) => {
                compare(&data[got..got + count], &buffer[..count], got)?;
                got += count;
            }
            Err(error) => {
                return Err(format!(
                    "{error} ({got} of {} echoed bytes arrived)",
                    data.len()
                ));
            }
        }
    }
    Ok(())
}

/// Checks that `got` equals `expected`; `offset` is where they start in the stream.
fn compare(expected: &[u8], got: &[u8], offset: usize) -> Result<(), String> {
    match difference(expected, got) {
        None => Ok(()),
        Some(at) => {
            let window = |bytes: &[u8]| bytes[at..bytes.len().min(at + 16)].to_vec();
            Err(format!(
                "the echo differs at stream offset {}: expected {:02x?}, got {:02x?}",
                offset + at,
                window(expected),
                window(got)
            ))
        }
    }
}

/// The first offset where `a` and `b` differ (a length difference counts).
fn difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// Memory exhaustion: in a 2 MiB guest, holding 100 connections open runs the heap out.
/// The connections that do not fit are refused (and counted as refused for memory); the
/// kernel survives, and once they close, a new connection is served again.
#[test]
fn echo_out_of_memory_refuses_connections_and_survives() -> Result<(), Failure> {
    out_of_memory_case("2M")
}

/// The same at every size from 2 MiB to 3 MiB in 64 KiB steps. Which allocation fails
/// first depends on where the heap ends: a connection's buffers, its task, or smoltcp's
/// socket table doubling (59 KiB from 64 to 128 slots, which stopped the kernel in
/// 2800 KiB before `netstack/src/sockets.rs`). Every one must be a refusal.
#[test]
fn echo_out_of_memory_at_every_size_from_2_to_3_mib() -> Result<(), Failure> {
    for kib in (2048 + 64..=3072).step_by(64) {
        out_of_memory_case(&format!("{kib}K"))?;
    }
    Ok(())
}

fn out_of_memory_case(mem: &str) -> Result<(), Failure> {
    let options = RunOptions::default().mem(mem).append("app.stats=1");
    let (guest, port) = Guest::start_forwarded("echo", &options, GUEST_PORT, LISTENING, BOOT)?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        // A connection counts as served once it echoes a byte; refused otherwise.
        let served =
            TcpStream::connect_timeout(&address, Duration::from_secs(5)).and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                stream.write_all(b"x")?;
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte)?;
                Ok(stream)
            });
        match served {
            Ok(stream) => open.push(stream),
            Err(_) => refused += 1,
        }
    }
    if open.is_empty() || refused == 0 {
        return Err(guest.failure(format!(
            "expected some connections served and some refused in {mem}; served {}, refused {refused}",
            open.len()
        )));
    }
    drop(open);
    let counted = guest.wait_for_line("refused_no_memory: ", STEP)?;
    if counted.contains("refused_no_memory: 0,") {
        // The stats line comes every second: wait for one printed after the refusals.
        thread::sleep(Duration::from_millis(1500));
        if guest
            .console()
            .lines()
            .rev()
            .find(|line| line.contains("refused_no_memory"))
            .is_some_and(|line| line.contains("refused_no_memory: 0,"))
        {
            return Err(guest.failure("refused connections were not counted as refused for memory"));
        }
    }
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .map_err(|error| guest.failure(format!("no connection after the exhaustion: {error}")))?;
    stream
        .set_read_timeout(Some(STEP))
        .map_err(|error| guest.failure(error.to_string()))?;
    echo_round_trip(&mut stream, b"still here")
        .map_err(|error| guest.failure(format!("after the exhaustion: {error}")))?;
    if guest.console().contains("!!!") {
        return Err(guest.failure("the kernel reported a fault"));
    }
    Ok(())
}

/// A key given without a value reads as present (`torito::boot::arg` gives `Some("")`):
/// `app.stats` alone turns echo's statistics on, as `app.stats=1` does.
#[test]
fn a_bare_app_key_reads_as_present() -> Result<(), Failure> {
    let options = RunOptions::default().append("app.stats");
    let (guest, _port) = Guest::start_forwarded("echo", &options, GUEST_PORT, LISTENING, BOOT)?;
    guest.wait_for_line("echo: net0 frames_in: ", STEP)?;
    Ok(())
}
