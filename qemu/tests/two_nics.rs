//! Two NICs at once: echo serves on each (one stack per NIC), probed through both
//! forwarded ports concurrently.
//!
//! Needs `build/echo.elf` (`make images`). Each test boots echo with a first NIC
//! (`--forward`) and a second one on a user network of its own (`--forward2`), waits for
//! both listening lines, then opens connections through both host ports (alternating)
//! and runs them all at once: each echoes seeded messages, and one connection per port
//! echoes 1 MiB written by one thread while another reads. Every byte must come back
//! unchanged, through the port it was sent to. Deadlines only bound a hung guest (TCG on
//! a loaded two-core machine); nothing asserts a timing.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::thread;
use std::time::Duration;
use torito_qemu_tests::{
    Failure, Guest, RunOptions, SplitMix64, failed_connections, free_port, run_clients,
};

const GUEST_PORT: u16 = 5555;
/// The first NIC's listening line (echo's, unchanged).
const LISTENING: &str = "echo: listening on port 5555";
/// The second NIC's.
const LISTENING_NIC1: &str = "echo: NIC 1 listening on port 5555";
const BOOT: Duration = Duration::from_secs(90);
/// Bound on any one read or write of a client.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections per port that echo messages.
const CONNECTIONS_PER_PORT: usize = 8;
const MESSAGES_PER_CONNECTION: usize = 8;
const MAX_MESSAGE: usize = 4096;
/// Bytes through the one bulk connection of each port.
const BULK_BYTES: usize = 1 << 20;
const SEED: u64 = 0x2_4e1c_0001;

/// Boots echo with two NICs, returns the guest and the host ports of NIC 0 and NIC 1.
fn start(options: RunOptions) -> Result<(Guest, u16, u16), Failure> {
    let second = Cell::new(0);
    let (guest, first) = Guest::start_forwarded_with(GUEST_PORT, LISTENING, BOOT, |port| {
        let port2 = free_port().map_err(|error| Failure {
            reason: format!("no free host port for the second NIC: {error}"),
            command: String::new(),
            console: String::new(),
            stderr: String::new(),
        })?;
        second.set(port2);
        Guest::try_start(
            "echo",
            &options
                .clone()
                .forward(port, GUEST_PORT)
                .forward2(port2, GUEST_PORT),
        )
    })?;
    guest.wait_for_line(LISTENING_NIC1, BOOT)?;
    Ok((guest, first, second.get()))
}

/// What one client does on its connection.
enum Job {
    Messages(u64),
    Bulk(u64),
}

fn connect(port: u16) -> Result<TcpStream, String> {
    torito_qemu_tests::connect(port, IO_TIMEOUT)
}

/// Writes `data` and reads the same number of bytes back; Err names the first
/// difference.
fn echo(stream: &mut TcpStream, data: &[u8]) -> Result<(), String> {
    stream
        .write_all(data)
        .map_err(|error| format!("write: {error}"))?;
    let mut echoed = vec![0; data.len()];
    stream
        .read_exact(&mut echoed)
        .map_err(|error| format!("read: {error}"))?;
    match echoed.iter().zip(data).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(offset) => Err(format!(
            "byte {offset} came back as {:#04x}, sent {:#04x}",
            echoed[offset], data[offset]
        )),
    }
}

/// `data` through `stream`, written by one thread while this one reads it back.
fn echo_stream(stream: TcpStream, data: &[u8]) -> Result<(), String> {
    let mut writer = stream
        .try_clone()
        .map_err(|error| format!("clone: {error}"))?;
    let mut reader = stream;
    thread::scope(|scope| {
        let written = scope.spawn(move || writer.write_all(data));
        let mut echoed = vec![0; data.len()];
        let read = reader.read_exact(&mut echoed);
        match written.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("bulk write: {error}")),
            Err(_) => return Err("the writer thread panicked".into()),
        }
        read.map_err(|error| format!("bulk read: {error}"))?;
        match echoed.iter().zip(data).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(offset) => Err(format!("bulk byte {offset} differs")),
        }
    })
}

fn run(stream: TcpStream, job: Job) -> Result<(), String> {
    match job {
        Job::Messages(seed) => {
            let mut stream = stream;
            let mut random = SplitMix64(seed);
            for message in 0..MESSAGES_PER_CONNECTION {
                let size = random.range(1, MAX_MESSAGE);
                echo(&mut stream, &random.bytes(size))
                    .map_err(|error| format!("message {message} ({size} bytes): {error}"))?;
            }
            Ok(())
        }
        Job::Bulk(seed) => echo_stream(stream, &SplitMix64(seed).bytes(BULK_BYTES)),
    }
}

/// Both ports at once: connections opened one after another, alternating between the
/// NICs, each confirmed by one echoed greeting (QEMU's hostfwd listens with a backlog
/// of 1, see docs/networking.md), then every connection's job on a thread of its own.
fn both_at_once(ports: [u16; 2]) -> Result<(), String> {
    let mut clients = Vec::new();
    for index in 0..=CONNECTIONS_PER_PORT {
        for (nic, &port) in ports.iter().enumerate() {
            let seed = SEED ^ ((nic as u64) << 40) ^ ((index as u64) << 32);
            let mut stream = connect(port)?;
            echo(&mut stream, format!("hello NIC {nic}\n").as_bytes())
                .map_err(|error| format!("NIC {nic} (host port {port}) greeting: {error}"))?;
            let job = match index {
                CONNECTIONS_PER_PORT => Job::Bulk(seed),
                _ => Job::Messages(seed),
            };
            clients.push((format!("NIC {nic} (host port {port})"), stream, job));
        }
    }
    let results = run_clients(clients, |_, (name, stream, job)| {
        run(stream, job).map_err(|error| format!("{name}: {error}"))
    });
    failed_connections(&results)
}

fn two_nics(options: RunOptions) -> Result<(), Failure> {
    let (guest, first, second) = start(options)?;
    both_at_once([first, second])
        .map_err(|error| guest.failure(format!("echo through both NICs: {error}")))?;
    let console = guest.console();
    if !console.contains("net: NIC 1: virtio-net") {
        return Err(guest.failure("no `net: NIC 1: virtio-net` line: the second NIC's stack"));
    }
    if let Some(line) = console.lines().find(|line| line.contains("!!!")) {
        return Err(guest.failure(format!("the guest reported a fault: `{line}`")));
    }
    Ok(())
}

/// microvm: two virtio-mmio NICs.
#[test]
fn two_nics_microvm() -> Result<(), Failure> {
    two_nics(RunOptions::default())
}

/// q35 with four CPUs: two virtio-pci NICs with MSI-X, connections served on every core.
#[test]
fn two_nics_q35_smp4() -> Result<(), Failure> {
    two_nics(RunOptions::default().machine("q35").smp(4))
}

/// The client against two echo servers on the host: a failure above is the guest's.
#[test]
fn the_clients_pass_against_host_echo_servers() {
    let ports = [0, 1].map(|_| {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut buffer = [0; 4096];
                    while let Ok(count @ 1..) = stream.read(&mut buffer) {
                        if stream.write_all(&buffer[..count]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    });
    both_at_once(ports).unwrap();
}
