//! `torito::random` in a booted guest (`build/random.elf`): with `--rng` the bytes come
//! from the virtio-rng device (virtio-mmio on microvm, virtio-pci on q35), through its
//! interrupt, and four tasks filling at once all finish; without a device they come from
//! the CPU (RDSEED or RDRAND, which QEMU's `-cpu max` offers).
//!
//! The image exits non-zero if a fill fails or two fills repeat. Timeouts only bound a
//! hung guest (a lost device interrupt would hang it); nothing asserts a timing.

use std::time::Duration;
use torito_qemu_tests::{Failure, Guest, RunOptions};

const BOOT: Duration = Duration::from_secs(60);

fn random(options: RunOptions, sources: &[&str]) -> Result<(), Failure> {
    let mut guest = Guest::start("random", &options.append("log=debug"));
    let outcome = guest.expect_exit(0, BOOT)?;
    let Some(line) = outcome.line("random: 4 concurrent fills of 1000 bytes from ") else {
        return Err(guest.failure("no line for the concurrent fills"));
    };
    if !sources.iter().any(|source| line.ends_with(source)) {
        return Err(guest.failure(format!("`{line}`: the bytes should come from {sources:?}")));
    }
    Ok(())
}

#[test]
fn random_from_virtio_rng_microvm() -> Result<(), Failure> {
    random(RunOptions::default().rng(), &["virtio-rng"])
}

#[test]
fn random_from_virtio_rng_microvm_without_acpi() -> Result<(), Failure> {
    random(RunOptions::default().rng().without_acpi(), &["virtio-rng"])
}

#[test]
fn random_from_virtio_rng_q35_smp4() -> Result<(), Failure> {
    random(
        RunOptions::default().machine("q35").smp(4).rng(),
        &["virtio-rng"],
    )
}

#[test]
fn random_from_the_cpu_without_a_device() -> Result<(), Failure> {
    random(RunOptions::default(), &["RDSEED", "RDRAND"])
}
