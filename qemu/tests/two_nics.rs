//! Two NICs at once: echo serves on each (one stack per NIC), probed through both
//! forwarded ports concurrently; and NIC 1 with a static address from the command line
//! (`ip1=`, `gw1=`) while NIC 0 asks DHCP, each NIC counting its own traffic.
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
    if !console.contains("net1: virtio-net") {
        return Err(guest.failure("no `net1: virtio-net` line: the second NIC's stack"));
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

/// NIC 1's static address: the one slirp's hostfwd on NIC 1's user network forwards to
/// (it would hand it out by DHCP too; the log line says which way it came).
const NIC1_KEYS: &str = "ip1=10.0.2.15/24 gw1=10.0.2.2 mtu1=1400 app.stats";
/// Bytes echoed through NIC 1 alone.
const NIC1_BYTES: usize = 256 * 1024;

/// One `echo: netN NAME: VALUE, ...` statistics line's counter `name`.
fn counter(line: &str, name: &str) -> Option<u64> {
    // The first pair follows the line's label (`echo: net1 `, `echo: net1 device `).
    line.split(", ")
        .find_map(|pair| {
            pair.rsplit(' ')
                .nth(1)?
                .strip_suffix(':')
                .filter(|n| *n == name)
                .and(pair.rsplit(' ').next())
        })
        .and_then(|value| value.parse().ok())
}

/// The last console line starting with `prefix`.
fn last_line(console: &str, prefix: &str) -> Option<String> {
    console
        .lines()
        .rev()
        .find(|line| line.starts_with(prefix))
        .map(str::to_string)
}

/// NIC 0 by DHCP, NIC 1 static from `ip1=`/`gw1=`/`mtu1=`: both come up, each stack says
/// how it got its address, NIC 1 serves, and traffic through NIC 1 alone shows in NIC 1's
/// stack and driver counters and not in NIC 0's.
fn static_second_nic(options: RunOptions) -> Result<(), Failure> {
    let (guest, _first, second) = start(options.append(NIC1_KEYS))?;
    guest.wait_for_line("net0: DHCP: ip=10.0.2.15/24", BOOT)?;
    guest.wait_for_line("net1: static ip=10.0.2.15/24 gw=10.0.2.2", BOOT)?;
    guest.wait_for_line("net1: MTU 1400", BOOT)?;
    let console = guest.console();
    if console.contains("net1: DHCP") || console.contains("net0: static") {
        return Err(guest.failure("a NIC took the other's configuration"));
    }
    let data = SplitMix64(SEED ^ 0x1).bytes(NIC1_BYTES);
    let stream = connect(second).map_err(|error| guest.failure(format!("NIC 1: {error}")))?;
    echo_stream(stream, &data).map_err(|error| guest.failure(format!("NIC 1: {error}")))?;
    // The statistics come every second: wait for a line that shows the bytes.
    let deadline = std::time::Instant::now() + BOOT;
    let (net0, net1, device0, device1) = loop {
        let console = guest.console();
        let lines = [
            "echo: net0 frames_in",
            "echo: net1 frames_in",
            "echo: net0 device",
            "echo: net1 device",
        ]
        .map(|prefix| last_line(&console, prefix));
        if let [Some(net0), Some(net1), Some(device0), Some(device1)] = lines
            && counter(&net1, "bytes_in").is_some_and(|bytes| bytes >= NIC1_BYTES as u64)
            && counter(&device1, "rx_frames")
                .is_some_and(|frames| frames >= (NIC1_BYTES / 1400) as u64)
        {
            break (net0, net1, device0, device1);
        }
        if std::time::Instant::now() > deadline {
            return Err(guest.failure("no statistics line with NIC 1's traffic counted"));
        }
        thread::sleep(Duration::from_millis(500));
    };
    let get = |line: &str, name: &str| {
        counter(line, name).ok_or_else(|| guest.failure(format!("no `{name}` in `{line}`")))
    };
    // NIC 0 saw DHCP and nothing else: a fraction of NIC 1's bytes, no connection.
    if get(&net0, "bytes_in")? * 4 >= get(&net1, "bytes_in")?
        || get(&net0, "accepted")? != 0
        || get(&net1, "accepted")? != 1
        || get(&device0, "rx_frames")? * 4 >= get(&device1, "rx_frames")?
        || get(&device0, "tx_frames")? * 4 >= get(&device1, "tx_frames")?
    {
        return Err(guest.failure(format!(
            "the counters do not tell the NICs apart:\n{net0}\n{net1}\n{device0}\n{device1}"
        )));
    }
    if let Some(line) = guest.console().lines().find(|line| line.contains("!!!")) {
        return Err(guest.failure(format!("the guest reported a fault: `{line}`")));
    }
    Ok(())
}

/// microvm: NIC 1 static, NIC 0 by DHCP, counted apart.
#[test]
fn static_second_nic_microvm() -> Result<(), Failure> {
    static_second_nic(RunOptions::default())
}

/// q35: the same over virtio-pci.
#[test]
fn static_second_nic_q35() -> Result<(), Failure> {
    static_second_nic(RunOptions::default().machine("q35"))
}

#[test]
fn statistics_lines_parse() {
    let line = "echo: net1 frames_in: 12, frames_out: 3, bytes_in: 4096, accepted: 1";
    assert_eq!(counter(line, "frames_in"), Some(12));
    assert_eq!(counter(line, "bytes_in"), Some(4096));
    assert_eq!(counter(line, "accepted"), Some(1));
    assert_eq!(counter(line, "active"), None);
    let device = "echo: net0 device rx_frames: 7, tx_frames: 5, notifications: 9, interrupts: 2";
    assert_eq!(counter(device, "rx_frames"), Some(7));
    assert_eq!(counter(device, "interrupts"), Some(2));
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
