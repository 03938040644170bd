//! Device discovery in a booted guest: every device listed at `log=debug`, and hostile
//! `virtio_mmio.device=` entries (over the kernel image, over the null page, over RAM)
//! refused with a message while the boot goes on and the real NIC still serves.
//!
//! Needs `build/echo.elf` (`make images`). Echo starts the network on its first line, so
//! discovery runs in every boot here. Timeouts only bound a hung guest (TCG on a loaded
//! machine); nothing asserts a timing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;
use torito_qemu_tests::{Failure, Guest, RunOptions};

const GUEST_PORT: u16 = 5555;
const LISTENING: &str = "echo: listening on port 5555";
const BOOT: Duration = Duration::from_secs(60);

/// Entries that once hung the boot (issue 12): over the kernel at 1 MiB, over the null
/// page, over RAM, and one that does not parse.
const HOSTILE: &str = "virtio_mmio.device=1M@0x100000:5 virtio_mmio.device=4K@0:6 \
                       virtio_mmio.device=4K@0x2000000:7 virtio_mmio.device=bogus";

/// What the kernel must print for each hostile entry.
const REFUSALS: [&str; 4] = [
    "virtio-mmio device at 0x100000 (0x100000-0x200000) overlaps the kernel image",
    "virtio-mmio device at 0x0 (0x0-0x1000) overlaps the null page",
    "virtio-mmio device at 0x2000000 (0x2000000-0x2001000) overlaps RAM",
    "virtio_mmio.device=bogus: no '@' between size and address",
];

/// One message through the guest's echo service.
fn echo_once(guest: &Guest, port: u16) -> Result<(), Failure> {
    let message = b"discovery still serves\n";
    let run = || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(message)?;
        let mut echoed = vec![0; message.len()];
        stream.read_exact(&mut echoed)?;
        Ok(echoed)
    };
    match run() {
        Ok(echoed) if echoed == message => Ok(()),
        Ok(echoed) => Err(guest.failure(format!(
            "echo answered {:?}",
            String::from_utf8_lossy(&echoed)
        ))),
        Err(error) => Err(guest.failure(format!("echo through host port {port}: {error}"))),
    }
}

/// Boots echo with the hostile entries, checks each refusal, the device list and that
/// echo serves; `device` is the debug line of the real NIC.
fn hostile_entries(options: RunOptions, device: &str) -> Result<(), Failure> {
    let options = options.append(&format!("log=debug {HOSTILE}"));
    let (guest, port) = Guest::start_forwarded("echo", &options, GUEST_PORT, LISTENING, BOOT)?;
    let console = guest.console();
    for refusal in REFUSALS {
        if !console.contains(refusal) {
            return Err(guest.failure(format!("no refusal `{refusal}` on the console")));
        }
    }
    if !console.contains(device) {
        return Err(guest.failure(format!("no device line `{device}` at log=debug")));
    }
    echo_once(&guest, port)?;
    if let Some(line) = console.lines().find(|line| line.contains("!!!")) {
        return Err(guest.failure(format!("the guest reported a fault: `{line}`")));
    }
    Ok(())
}

/// microvm with ACPI: the NIC comes from the DSDT's slots (the last one, GSI 47).
#[test]
fn hostile_entries_microvm() -> Result<(), Failure> {
    hostile_entries(
        RunOptions::default(),
        "devices: net (type 1): virtio-mmio v1 at 0xfeb02e00 (0x200 bytes), GSI 47",
    )
}

/// microvm without ACPI: QEMU appends the real entry after ours.
#[test]
fn hostile_entries_microvm_without_acpi() -> Result<(), Failure> {
    hostile_entries(
        RunOptions::default().without_acpi(),
        "devices: net (type 1): virtio-mmio v1 at 0xfeb00e00 (0x200 bytes), GSI 12",
    )
}

/// q35: the NIC is virtio-pci with MSI-X, found through ECAM; the entries are refused
/// all the same.
#[test]
fn hostile_entries_q35() -> Result<(), Failure> {
    hostile_entries(
        RunOptions::default().machine("q35").smp(4),
        "devices: net (type 1): virtio-pci 00:01.0 at 0x",
    )
}

/// pc: configuration space through ports 0xcf8/0xcfc (no MCFG).
#[test]
fn hostile_entries_pc() -> Result<(), Failure> {
    hostile_entries(
        RunOptions::default().machine("pc"),
        "devices: net (type 1): virtio-pci 00:02.0 at 0x",
    )
}

/// q35 without MSI-X: the INTx fallback (the firmware's line through the I/O APIC, the
/// ISR read to acknowledge) carries the NIC's interrupts.
#[test]
fn intx_fallback_q35() -> Result<(), Failure> {
    hostile_entries(
        RunOptions::default().machine("q35").without_msix(),
        ", INTx line ",
    )
}
