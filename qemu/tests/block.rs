//! `torito::block` in a booted guest (`build/block.elf`), checked from the host: the
//! example writes its seeded pattern over each writable disk (a sparse file this test
//! creates) with many requests in flight, flushes, reads it back; the test then reads the
//! file and compares it byte for byte with its own copy of the pattern generator. A
//! read-only disk (filled by the test) must be reported read-only, read whole with the
//! checksum the test computes, refuse a write with the read-only error and stay
//! unchanged; every disk must refuse reads past its end with the out-of-range error. On
//! microvm (with and without ACPI), q35 (-smp 4) and pc (INTx); an empty disk next to a
//! working one; no disk at all. Also: echo still serves with a disk and an rng attached.
//!
//! Needs `build/block.elf` and `build/echo.elf` (`make images`). Timeouts only bound a
//! hung guest (a lost interrupt would hang it; TCG on a loaded machine); nothing asserts a
//! timing.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;
use torito_qemu_tests::{Failure, Guest, RunOptions};

const BOOT: Duration = Duration::from_secs(120);
const SECTOR: usize = 512;
/// The example's request size when it verifies and checksums (sectors).
const CHUNK: usize = 32;

/// Word `index` of the example's pattern: SplitMix64 of `seed + (index + 1) * golden`.
fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pattern(seed: u64, bytes: usize) -> Vec<u8> {
    (0..bytes as u64 / 8)
        .flat_map(|index| word(seed, index).to_le_bytes())
        .collect()
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The example's checksum of a read-only disk: FNV-1a of each 16 KiB chunk, folded.
fn checksum(bytes: &[u8]) -> u64 {
    const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    bytes
        .chunks(CHUNK * SECTOR)
        .map(|chunk| fnv1a(BASIS, chunk))
        .fold(BASIS, |hash, sum| fnv1a(hash, &sum.to_le_bytes()))
}

/// A disk image in the temporary directory, removed on drop.
struct Image {
    path: PathBuf,
    bytes: usize,
}

impl Image {
    /// A sparse file of `bytes` zeros.
    fn sparse(name: &str, bytes: usize) -> Image {
        let path =
            std::env::temp_dir().join(format!("torito-block-{}-{name}.img", std::process::id()));
        File::create(&path)
            .and_then(|file| file.set_len(bytes as u64))
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        Image { path, bytes }
    }

    /// A file filled with `contents`.
    fn filled(name: &str, contents: &[u8]) -> Image {
        let image = Image::sparse(name, contents.len());
        File::create(&image.path)
            .and_then(|mut file| file.write_all(contents))
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", image.path.display()));
        image
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temporary directory")
    }

    fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", self.path.display()))
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Checks that `image` holds the pattern of `seed`, naming the first byte that does not.
fn check_pattern(guest: &Guest, image: &Image, seed: u64) -> Result<(), Failure> {
    let contents = image.contents();
    if contents.len() != image.bytes {
        return Err(guest.failure(format!(
            "{} is {} bytes, not {}",
            image.path(),
            contents.len(),
            image.bytes
        )));
    }
    let expected = pattern(seed, image.bytes);
    if let Some(offset) = (0..contents.len()).find(|&at| contents[at] != expected[at]) {
        return Err(guest.failure(format!(
            "{}: byte {offset} is {:#04x} on the host, the pattern of seed {seed:#x} has {:#04x}",
            image.path(),
            contents[offset],
            expected[offset]
        )));
    }
    Ok(())
}

/// The console must contain `line`.
fn expect_line(guest: &Guest, console: &str, line: &str) -> Result<(), Failure> {
    if console.contains(line) {
        Ok(())
    } else {
        Err(guest.failure(format!("no line `{line}` on the console")))
    }
}

/// Every disk (numbered as given) refused both reads past its end with the error.
fn expect_past_the_end_refused(
    guest: &Guest,
    console: &str,
    disks: &[&Image],
) -> Result<(), Failure> {
    for (index, image) in disks.iter().enumerate() {
        let sectors = image.bytes / SECTOR;
        for (first, end) in [(sectors, sectors + 1), (sectors - 1, sectors + 1)] {
            expect_line(
                guest,
                console,
                &format!(
                    "block: disk {index}: read past the end refused: sectors {first}..{end} \
                     are past the end of the disk ({sectors} sectors)"
                ),
            )?;
        }
    }
    Ok(())
}

/// Boots the example over writable disks, then checks each file against the pattern.
fn writable_disks(
    options: RunOptions,
    name: &str,
    sizes: &[usize],
    seed: u64,
) -> Result<(), Failure> {
    writable_disks_at_depth(options, name, sizes, seed, 32)
}

/// As [`writable_disks`], with `depth` tasks issuing requests at once.
fn writable_disks_at_depth(
    options: RunOptions,
    name: &str,
    sizes: &[usize],
    seed: u64,
    depth: usize,
) -> Result<(), Failure> {
    let images: Vec<Image> = sizes
        .iter()
        .enumerate()
        .map(|(index, bytes)| Image::sparse(&format!("{name}-{index}"), *bytes))
        .collect();
    let options = images
        .iter()
        .fold(options, |options, image| options.disk(image.path()))
        .append(&format!("app.seed={seed:#x} app.depth={depth}"));
    let mut guest = Guest::start("block", &options);
    let outcome = guest.expect_exit(0, BOOT)?;
    for (index, image) in images.iter().enumerate() {
        let sectors = image.bytes / SECTOR;
        expect_line(
            &guest,
            &outcome.console,
            &format!(
                "block: disk {index}: {sectors} sectors ({} KiB), read-write",
                image.bytes / 1024
            ),
        )?;
        expect_line(
            &guest,
            &outcome.console,
            &format!(
                "block: disk {index}: wrote, flushed and verified {sectors} sectors (seed \
                 {seed:#x}, {depth} tasks with a request each)"
            ),
        )?;
        for line in [
            "dropped 8 reads after posting them",
            "a blocking task read 8 sectors; outside one the call is refused",
        ] {
            expect_line(
                &guest,
                &outcome.console,
                &format!("block: disk {index}: {line}"),
            )?;
        }
        check_pattern(&guest, image, seed)?;
    }
    let disks: Vec<&Image> = images.iter().collect();
    expect_past_the_end_refused(&guest, &outcome.console, &disks)
}

#[test]
fn pattern_on_one_disk_microvm() -> Result<(), Failure> {
    writable_disks(RunOptions::default(), "microvm", &[4 << 20], 0x5eed_0001)
}

#[test]
fn pattern_on_two_disks_microvm() -> Result<(), Failure> {
    writable_disks(
        RunOptions::default(),
        "microvm-two",
        &[4 << 20, 3 << 20],
        0x5eed_0002,
    )
}

#[test]
fn pattern_on_two_disks_q35_smp4() -> Result<(), Failure> {
    writable_disks(
        RunOptions::default().machine("q35").smp(4),
        "q35-two",
        &[3 << 20, 4 << 20],
        0x5eed_0003,
    )
}

/// More tasks than the disk has request entries (128): the extra requests wait for a
/// free entry (backpressure), and every one still completes.
#[test]
fn more_tasks_than_request_entries_q35_smp4() -> Result<(), Failure> {
    writable_disks_at_depth(
        RunOptions::default().machine("q35").smp(4),
        "backpressure",
        &[4 << 20],
        0x5eed_0008,
        300,
    )
}

/// microvm without ACPI: the disk comes from a `virtio_mmio.device=` entry on the
/// command line, as on Firecracker.
#[test]
fn pattern_on_one_disk_microvm_without_acpi() -> Result<(), Failure> {
    writable_disks(
        RunOptions::default().without_acpi(),
        "microvm-no-acpi",
        &[2 << 20],
        0x5eed_0006,
    )
}

/// An empty disk (a file of 0 bytes) is reported with 0 sectors and refuses a read, and
/// the disk after it still works.
#[test]
fn an_empty_disk_refuses_reads_and_the_next_one_works() -> Result<(), Failure> {
    let seed = 0x5eed_0007;
    let empty = Image::sparse("empty", 0);
    let disk = Image::sparse("after-empty", 1 << 20);
    let options = RunOptions::default()
        .disk(empty.path())
        .disk(disk.path())
        .append(&format!("app.seed={seed:#x}"));
    let mut guest = Guest::start("block", &options);
    let outcome = guest.expect_exit(0, BOOT)?;
    for line in [
        "block: disk 0: 0 sectors (0 KiB), read-write",
        "block: disk 0: read past the end refused: sectors 0..1 are past the end of the disk \
         (0 sectors)",
        "block: disk 1: wrote, flushed and verified 2048 sectors",
    ] {
        expect_line(&guest, &outcome.console, line)?;
    }
    check_pattern(&guest, &disk, seed)
}

/// pc without MSI-X: the disk's interrupts come through INTx and the I/O APIC.
#[test]
fn pattern_on_one_disk_pc_intx() -> Result<(), Failure> {
    writable_disks(
        RunOptions::default().machine("pc").without_msix(),
        "pc-intx",
        &[2 << 20],
        0x5eed_0004,
    )
}

/// A writable disk and a read-only one: the read-only one is read whole (checksum), its
/// write is refused with the error, and its file is unchanged.
fn with_read_only_disk(options: RunOptions, name: &str) -> Result<(), Failure> {
    let seed = 0x5eed_0005;
    let writable = Image::sparse(&format!("{name}-rw"), 2 << 20);
    // The read-only disk holds bytes of another seed, so a mix-up shows.
    let original = pattern(0x0dd_5eed, 1 << 20);
    let read_only = Image::filled(&format!("{name}-ro"), &original);
    let options = options
        .disk(writable.path())
        .read_only_disk(read_only.path())
        .append(&format!("app.seed={seed:#x}"));
    let mut guest = Guest::start("block", &options);
    let outcome = guest.expect_exit(0, BOOT)?;
    let console = &outcome.console;
    expect_line(
        &guest,
        console,
        "block: disk 1: 2048 sectors (1024 KiB), read-only",
    )?;
    expect_line(
        &guest,
        console,
        &format!(
            "block: disk 1: read 2048 sectors, checksum {:#018x}",
            checksum(&original)
        ),
    )?;
    expect_line(
        &guest,
        console,
        "block: disk 1: write refused: write at sector 0 to a read-only disk",
    )?;
    if read_only.contents() != original {
        return Err(guest.failure("the read-only disk's file changed"));
    }
    check_pattern(&guest, &writable, seed)?;
    expect_past_the_end_refused(&guest, console, &[&writable, &read_only])
}

#[test]
fn read_only_disk_microvm() -> Result<(), Failure> {
    with_read_only_disk(RunOptions::default(), "ro-microvm")
}

#[test]
fn read_only_disk_q35() -> Result<(), Failure> {
    with_read_only_disk(RunOptions::default().machine("q35"), "ro-q35")
}

/// Without a disk the example fails with a message, not a hang or a fault.
#[test]
fn no_disk_is_a_clear_failure() -> Result<(), Failure> {
    let mut guest = Guest::start("block", &RunOptions::default());
    let outcome = guest.expect_exit(1, BOOT)?;
    expect_line(&guest, &outcome.console, "block: FAILED: no disks")
}

/// Echo still passes a probe with a disk and an rng attached next to its NIC.
fn echo_with_devices(options: RunOptions, name: &str) -> Result<(), Failure> {
    let disk = Image::sparse(name, 1 << 20);
    let options = options.disk(disk.path()).rng().append("log=debug");
    let (guest, port) =
        Guest::start_forwarded("echo", &options, 5555, "echo: listening on port 5555", BOOT)?;
    for kind in ["devices: block (type 2)", "devices: rng (type 4)"] {
        expect_line(&guest, &guest.console(), kind)?;
    }
    let message: Vec<u8> = pattern(0xec40, 4096);
    let run = || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.write_all(&message)?;
        let mut echoed = vec![0; message.len()];
        stream.read_exact(&mut echoed)?;
        Ok(echoed)
    };
    match run() {
        Ok(echoed) if echoed == message => Ok(()),
        Ok(_) => Err(guest.failure("echo answered other bytes")),
        Err(error) => Err(guest.failure(format!("echo through host port {port}: {error}"))),
    }
}

#[test]
fn echo_with_a_disk_and_an_rng_microvm() -> Result<(), Failure> {
    echo_with_devices(RunOptions::default(), "echo-microvm")
}

#[test]
fn echo_with_a_disk_and_an_rng_q35() -> Result<(), Failure> {
    echo_with_devices(RunOptions::default().machine("q35"), "echo-q35")
}
