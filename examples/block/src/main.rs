//! Block: writes a seeded pattern over every writable disk with many requests in flight,
//! flushes, reads it back and verifies it; reads every read-only disk whole and prints its
//! checksum; checks that a write to a read-only disk and a read past the end are refused
//! with an error, and that reads dropped while in flight leave the disk working (every
//! request posted comes back). Exits 0 when everything held, 1 with a `block: FAILED:`
//! line otherwise.
//!
//! Command line (after the kernel's keys):
//!
//! * `app.seed=N` (decimal or 0x-hex): the pattern's seed (default `0x7041e57b10c5eed`).
//!   The pattern is a function of the seed and the byte's offset on the disk: 8-byte
//!   little-endian words, word `i` = SplitMix64 of `seed + (i + 1) * 0x9e3779b97f4a7c15`,
//!   so the host can check a disk image with its own copy of the generator;
//! * `app.depth=N`: tasks issuing requests at once (default 32), each with one request in
//!   flight at a time, spread over the cores (past the disk's limit, they wait for a free
//!   entry);
//! * `app.bench=1`: instead of the checks, time sequential writes and reads and 4 KiB
//!   random reads at depth 1 and 32 on disk 0 (it must be writable), and print MiB/s and
//!   IOPS (`make bench` runs this).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use torito::block::{self, BlockError, Buffer, Disk, SECTOR_SIZE};

const DEFAULT_SEED: u64 = 0x0704_1e57_b10c_5eed;
const DEFAULT_DEPTH: usize = 32;
/// Sectors per request when writing and verifying (16 KiB).
const CHUNK: u64 = 32;

#[torito::main]
async fn main() -> i32 {
    match run().await {
        Ok(()) => 0,
        Err(message) => {
            torito::println!("block: FAILED: {}", message);
            1
        }
    }
}

fn number(key: &str, default: u64) -> Result<u64, String> {
    let Some(value) = torito::boot::arg(key) else {
        return Ok(default);
    };
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    parsed.map_err(|_| format!("{key}={value}: not a number (decimal, or hex with 0x)"))
}

async fn run() -> Result<(), String> {
    let seed = number("app.seed", DEFAULT_SEED)?;
    let depth = number("app.depth", DEFAULT_DEPTH as u64)?.clamp(1, 1024) as usize;
    let count = block::disks();
    if count == 0 {
        return Err(String::from(
            "no disks; attach one with qemu/run.sh --disk FILE (virtio-blk)",
        ));
    }
    if torito::boot::arg("app.bench").is_some() {
        return bench(&Disk::open(0).map_err(|error| format!("{error}"))?).await;
    }
    for index in 0..count {
        let disk = Disk::open(index).map_err(|error| format!("{error}"))?;
        torito::println!(
            "block: disk {}: {} sectors ({} KiB), {}",
            index,
            disk.capacity(),
            disk.capacity() * SECTOR_SIZE as u64 / 1024,
            if disk.read_only() {
                "read-only"
            } else {
                "read-write"
            }
        );
        if disk.capacity() == 0 {
            // Nothing to write or read: only the end can be checked.
            past_the_end(&disk).await?;
            continue;
        }
        drop_midway(&disk).await?;
        if disk.read_only() {
            read_only(&disk, depth).await?;
        } else {
            pattern_round_trip(&disk, seed, depth).await?;
        }
        past_the_end(&disk).await?;
        blocking_read(&disk).await?;
        let stats = disk.stats();
        // Every request posted came back, the dropped ones included (their entries and
        // buffers were the driver's until then).
        if stats.posted != stats.completed {
            return Err(format!(
                "disk {index}: {} requests posted but {} completed",
                stats.posted, stats.completed
            ));
        }
        torito::println!(
            "block: disk {}: {} requests, at most {} in flight, {} notifications, {} \
             interrupts, {} untrusted used entries, {} times full",
            index,
            stats.completed,
            stats.peak_in_flight,
            stats.notifications,
            disk.interrupts(),
            stats.bad_used,
            stats.full
        );
    }
    torito::println!("block: all {} disks passed", count);
    Ok(())
}

/// Word `index` of the pattern (SplitMix64).
fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `bytes` with the pattern of the disk's bytes from sector `sector` on.
fn fill(seed: u64, sector: u64, bytes: &mut [u8]) {
    let first = sector * (SECTOR_SIZE as u64 / 8);
    for (index, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&word(seed, first + index as u64).to_le_bytes());
    }
}

/// The first byte of `bytes` (from sector `sector`) that differs from the pattern.
fn mismatch(seed: u64, sector: u64, bytes: &[u8]) -> Option<(u64, u8, u8)> {
    let first = sector * (SECTOR_SIZE as u64 / 8);
    for (index, chunk) in bytes.chunks_exact(8).enumerate() {
        let expected = word(seed, first + index as u64).to_le_bytes();
        if let Some(at) = (0..8).find(|&at| chunk[at] != expected[at]) {
            let offset = sector * SECTOR_SIZE as u64 + (index * 8 + at) as u64;
            return Some((offset, chunk[at], expected[at]));
        }
    }
    None
}

/// What a worker does with each chunk.
#[derive(Clone, Copy)]
enum Pass {
    Write(u64),
    Verify(u64),
    Checksum,
}

/// Runs `pass` over the whole disk with `depth` requests in flight: `depth` tasks, spread
/// over the cores, each taking every `depth`-th chunk. Returns the per-chunk checksums
/// (FNV-1a of each chunk, in chunk order) for `Pass::Checksum`.
async fn whole_disk(disk: &Disk, pass: Pass, depth: usize) -> Result<Vec<u64>, String> {
    let chunks = disk.capacity().div_ceil(CHUNK);
    let cores = torito::task::cores();
    let mut workers = Vec::new();
    for worker in 0..depth as u64 {
        let disk = disk.clone();
        let work = async move {
            let mut sums = Vec::new();
            let mut chunk = worker;
            while chunk < chunks {
                let sector = chunk * CHUNK;
                let sectors = CHUNK.min(disk.capacity() - sector) as usize;
                let mut buffer = Buffer::new(sectors).map_err(|error| format!("{error}"))?;
                match pass {
                    Pass::Write(seed) => {
                        fill(seed, sector, &mut buffer);
                        disk.write(sector, buffer).await.map_err(|error| {
                            format!("disk {}: write at sector {sector}: {error}", disk.index())
                        })?;
                    }
                    Pass::Verify(seed) => {
                        let buffer = disk.read(sector, buffer).await.map_err(|error| {
                            format!("disk {}: read at sector {sector}: {error}", disk.index())
                        })?;
                        if let Some((offset, found, expected)) = mismatch(seed, sector, &buffer) {
                            return Err(format!(
                                "disk {}: byte {offset} reads {found:#04x}, the pattern has \
                                 {expected:#04x}",
                                disk.index()
                            ));
                        }
                    }
                    Pass::Checksum => {
                        let buffer = disk.read(sector, buffer).await.map_err(|error| {
                            format!("disk {}: read at sector {sector}: {error}", disk.index())
                        })?;
                        sums.push((chunk, fnv1a(0xcbf2_9ce4_8422_2325, &buffer)));
                    }
                }
                chunk += depth as u64;
            }
            Ok::<_, String>(sums)
        };
        let core = worker as usize % cores;
        workers.push(match torito::task::spawn_on(core, work) {
            Ok(handle) => handle,
            Err(work) => torito::task::spawn(work),
        });
    }
    let mut sums = Vec::new();
    for worker in workers {
        sums.extend(worker.await?);
    }
    sums.sort_unstable();
    Ok(sums.into_iter().map(|(_, sum)| sum).collect())
}

/// FNV-1a, 64-bit, continuing from `hash`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

async fn pattern_round_trip(disk: &Disk, seed: u64, depth: usize) -> Result<(), String> {
    whole_disk(disk, Pass::Write(seed), depth).await?;
    disk.flush()
        .await
        .map_err(|error| format!("disk {}: flush: {error}", disk.index()))?;
    whole_disk(disk, Pass::Verify(seed), depth).await?;
    torito::println!(
        "block: disk {}: wrote, flushed and verified {} sectors (seed {:#x}, {} tasks with a \
         request each)",
        disk.index(),
        disk.capacity(),
        seed,
        depth
    );
    Ok(())
}

async fn read_only(disk: &Disk, depth: usize) -> Result<(), String> {
    // The whole disk's FNV-1a, chunk by chunk in order (the host computes it over the file).
    let sums = whole_disk(disk, Pass::Checksum, depth).await?;
    let checksum = sums.iter().fold(0xcbf2_9ce4_8422_2325, |hash, sum| {
        fnv1a(hash, &sum.to_le_bytes())
    });
    torito::println!(
        "block: disk {}: read {} sectors, checksum {:#018x}",
        disk.index(),
        disk.capacity(),
        checksum
    );
    let buffer = Buffer::new(1).map_err(|error| format!("{error}"))?;
    match disk.write(0, buffer).await {
        Err(error @ BlockError::ReadOnly { .. }) => {
            torito::println!("block: disk {}: write refused: {}", disk.index(), error);
            Ok(())
        }
        Err(error) => Err(format!(
            "disk {}: a write to the read-only disk failed with another error: {error}",
            disk.index()
        )),
        Ok(_) => Err(format!(
            "disk {}: a write to the read-only disk succeeded",
            disk.index()
        )),
    }
}

/// Starts reads, polls each once (posting it) and drops them while the device may still
/// be writing their buffers: the driver keeps each buffer until the device returns it.
async fn drop_midway(disk: &Disk) -> Result<(), String> {
    let mut reads = Vec::new();
    for index in 0..8u64 {
        let buffer = Buffer::new(8).map_err(|error| format!("{error}"))?;
        reads.push(Box::pin(disk.read(index * 8 % disk.capacity(), buffer)));
    }
    core::future::poll_fn(|cx| {
        for read in &mut reads {
            let _ = read.as_mut().poll(cx);
        }
        core::task::Poll::Ready(())
    })
    .await;
    drop(reads);
    torito::println!(
        "block: disk {}: dropped 8 reads after posting them",
        disk.index()
    );
    Ok(())
}

async fn past_the_end(disk: &Disk) -> Result<(), String> {
    let end = disk.capacity();
    // At the end, and straddling it.
    let checks: &[(u64, usize)] = if end == 0 {
        &[(0, 1)]
    } else {
        &[(end, 1), (end - 1, 2)]
    };
    for &(sector, sectors) in checks {
        let buffer = Buffer::new(sectors).map_err(|error| format!("{error}"))?;
        match disk.read(sector, buffer).await {
            Err(error @ BlockError::OutOfRange { .. }) => {
                torito::println!(
                    "block: disk {}: read past the end refused: {}",
                    disk.index(),
                    error
                );
            }
            Err(error) => {
                return Err(format!(
                    "disk {}: a read past the end failed with another error: {error}",
                    disk.index()
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "disk {}: a read of sectors {sector}..{} past the end ({end}) succeeded",
                    disk.index(),
                    sector + sectors as u64
                ));
            }
        }
    }
    Ok(())
}

/// Reads the first 8 sectors from a blocking task (`spawn_blocking`) and checks them
/// against an async read; the same call outside a blocking task must be refused.
async fn blocking_read(disk: &Disk) -> Result<(), String> {
    let index = disk.index();
    let sectors = 8.min(disk.capacity()) as usize;
    let blocking = torito::task::spawn_blocking(move || {
        let disk = block::blocking::Disk::open(index)?;
        disk.read(0, Buffer::new(sectors)?)
    })
    .await
    .map_err(|error| format!("disk {index}: a blocking read: {error}"))?;
    let buffer = Buffer::new(sectors).map_err(|error| format!("{error}"))?;
    let expected = disk
        .read(0, buffer)
        .await
        .map_err(|error| format!("disk {index}: read: {error}"))?;
    if blocking != expected {
        return Err(format!(
            "disk {index}: the blocking read returned other bytes than the async one"
        ));
    }
    let outside = block::blocking::Disk::open(index).and_then(|disk| disk.read(0, Buffer::new(1)?));
    match outside {
        Err(BlockError::WouldBlockCore) => {
            torito::println!(
                "block: disk {}: a blocking task read {} sectors; outside one the call is refused",
                index,
                sectors
            );
            Ok(())
        }
        other => Err(format!(
            "disk {index}: a blocking read outside a blocking task returned {other:?}"
        )),
    }
}

/// Microseconds since `start`, at least 1.
fn micros_since(start: torito::time::Instant) -> u64 {
    (torito::time::now()
        .saturating_duration_since(start)
        .as_micros() as u64)
        .max(1)
}

/// The benchmark: sequential write and read of the whole disk (64 KiB requests, 32 in
/// flight), then 4 KiB random reads at depth 1 and 32.
async fn bench(disk: &Disk) -> Result<(), String> {
    if disk.read_only() {
        return Err(String::from(
            "the benchmark writes: give it a writable disk",
        ));
    }
    let bytes = disk.capacity() * SECTOR_SIZE as u64;
    for (name, write) in [("sequential write", true), ("sequential read", false)] {
        let start = torito::time::now();
        sequential(disk, write).await?;
        if write {
            disk.flush()
                .await
                .map_err(|error| format!("flush: {error}"))?;
        }
        let micros = micros_since(start);
        torito::println!(
            "bench: {}: {} KiB in {} us: {} KiB/s",
            name,
            bytes / 1024,
            micros,
            bytes * 1_000_000 / 1024 / micros
        );
    }
    for depth in [1usize, 32] {
        let requests = 2000u64;
        let start = torito::time::now();
        random_reads(disk, depth, requests).await?;
        let micros = micros_since(start);
        torito::println!(
            "bench: 4 KiB random reads, depth {}: {} in {} us: {} IOPS",
            depth,
            requests,
            micros,
            requests * 1_000_000 / micros
        );
    }
    Ok(())
}

/// 64 KiB requests over the whole disk, 32 in flight (all on this core).
async fn sequential(disk: &Disk, write: bool) -> Result<(), String> {
    const SECTORS: u64 = 128;
    const DEPTH: u64 = 32;
    let chunks = disk.capacity() / SECTORS;
    let mut workers = Vec::new();
    for worker in 0..DEPTH {
        let disk = disk.clone();
        workers.push(torito::task::spawn(async move {
            let mut buffer = Buffer::new(SECTORS as usize).map_err(|error| format!("{error}"))?;
            let mut chunk = worker;
            while chunk < chunks {
                buffer = if write {
                    disk.write(chunk * SECTORS, buffer).await
                } else {
                    disk.read(chunk * SECTORS, buffer).await
                }
                .map_err(|error| format!("chunk {chunk}: {error}"))?;
                chunk += DEPTH;
            }
            Ok::<_, String>(())
        }));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(())
}

/// `requests` reads of 4 KiB at pseudo-random aligned offsets, `depth` in flight.
async fn random_reads(disk: &Disk, depth: usize, requests: u64) -> Result<(), String> {
    let slots = disk.capacity() / 8;
    let mut workers = Vec::new();
    for worker in 0..depth as u64 {
        let disk = disk.clone();
        workers.push(torito::task::spawn(async move {
            let mut buffer = Buffer::new(8).map_err(|error| format!("{error}"))?;
            let mut request = worker;
            while request < requests {
                let sector = word(0xbe7c, request) % slots * 8;
                buffer = disk
                    .read(sector, buffer)
                    .await
                    .map_err(|error| format!("sector {sector}: {error}"))?;
                request += depth as u64;
            }
            Ok::<_, String>(())
        }));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(())
}
