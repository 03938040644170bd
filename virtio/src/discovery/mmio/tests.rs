//! The `virtio_mmio.device=` parser (fuzzed too) and virtio-mmio discovery against fake
//! windows, with entries over the kernel, the null page, RAM and another device.

use super::*;
use crate::discovery::Claims;
use crate::discovery::fake::{FakeWindow, Rng};
use std::cell::RefCell;

fn slot(address: u64, size: u64, gsi: u32) -> MmioSlot {
    MmioSlot { address, size, gsi }
}

#[test]
fn entries_in_the_forms_vmms_write() {
    // QEMU microvm acpi=off, Firecracker, Linux's documented suffixes, a platform id.
    assert_eq!(
        parse_entry("512@0xfeb00e00:12"),
        Ok(slot(0xfeb0_0e00, 512, 12))
    );
    assert_eq!(
        parse_entry("4K@0xd0000000:5"),
        Ok(slot(0xd000_0000, 4096, 5))
    );
    assert_eq!(
        parse_entry("4k@0xD0000000:5"),
        Ok(slot(0xd000_0000, 4096, 5))
    );
    assert_eq!(
        parse_entry("1M@0x100000:5"),
        Ok(slot(0x10_0000, 1 << 20, 5))
    );
    assert_eq!(
        parse_entry("0x200@4273999360:0x20:3"),
        Ok(slot(0xfec0_0e00, 0x200, 32))
    );
    assert_eq!(parse_entry("1G@1G:7"), Ok(slot(1 << 30, 1 << 30, 7)));
}

#[test]
fn malformed_entries_name_the_part() {
    let problem = |entry| match parse_entry(entry) {
        Err(DiscoveryError::BadEntry { entry: e, problem }) => {
            assert_eq!(e, entry);
            problem
        }
        other => panic!("{entry}: {other:?}"),
    };
    assert!(problem("").contains("'@'"));
    assert!(problem("512").contains("'@'"));
    assert!(problem("512@0xfeb00e00").contains("':'"));
    assert!(problem("x@0x1000:5").contains("size"));
    assert!(problem("@0x1000:5").contains("size"));
    assert!(problem("512@zz:5").contains("address"));
    assert!(problem("512@0x:5").contains("address"));
    assert!(problem("512@0x1000:-1").contains("interrupt"));
    assert!(problem("512@0x1000:4294967296").contains("interrupt"));
    assert!(problem("512@0x1000:5K").contains("interrupt"));
    assert!(problem("512@0x1000:5:x").contains("device ID"));
    assert!(problem("16@0x1000:5").contains("0x100"));
    assert!(problem("0@0x1000:5").contains("0x100"));
    assert!(problem("1G@0xffffffffffffff00:5").contains("wraps"));
    assert!(problem("99999999999999999999G@0:5").contains("size"));
    let text = parse_entry("512").unwrap_err().to_string();
    assert!(text.contains("virtio_mmio.device=512") && text.contains("SIZE@ADDRESS:GSI"));
}

/// The kernel's claims as on QEMU microvm with 64 MiB: the null page, the kernel at
/// 1 MiB, RAM, the low 2 MiB.
fn microvm_claims() -> Claims {
    let mut claims = Claims::new();
    claims.add(Span::new(0, 0x1000).unwrap(), Owner::NullPage);
    claims.add(Span::new(0x10_0000, 0x4_0000).unwrap(), Owner::Kernel);
    claims.add(Span::new(0x1000, 0x9_f000).unwrap(), Owner::Ram);
    claims.add(Span::new(0x10_0000, 0x3f0_0000).unwrap(), Owner::Ram);
    claims.add(Span::new(0, 0x20_0000).unwrap(), Owner::LowMemory);
    claims
}

/// Runs `entries` through discovery over fake windows (`windows` by address); returns
/// the discovery and the ranges `map` was asked for.
fn discover(entries: &[&str], windows: &[(u64, FakeWindow)]) -> (Discovery, Vec<Span>) {
    let mapped = RefCell::new(Vec::new());
    let mut discovery = Discovery::new(microvm_claims());
    for entry in entries {
        discovery.add_mmio_entry(entry, |span: Span| {
            mapped.borrow_mut().push(span);
            windows
                .iter()
                .find(|(address, _)| *address == span.start)
                .map(|(_, window)| window)
        });
    }
    (discovery, mapped.into_inner())
}

impl Registers for &FakeWindow {
    fn read16(&self, offset: u64) -> u16 {
        (*self).read16(offset)
    }
    fn write16(&self, offset: u64, value: u16) {
        (*self).write16(offset, value)
    }
    fn read32(&self, offset: u64) -> u32 {
        (*self).read32(offset)
    }
    fn write32(&self, offset: u64, value: u32) {
        (*self).write32(offset, value)
    }
}

#[test]
fn an_entry_over_the_kernel_or_the_null_page_is_refused_before_mapping() {
    let net = FakeWindow::virtio_mmio(2, 1);
    let (discovery, mapped) = discover(
        &[
            "1M@0x100000:5",
            "4K@0:6",
            "4K@0x200000:7",
            "512@0xfeb00e00:12",
        ],
        &[(0xfeb0_0e00, net)],
    );
    // Only the real device's window was ever mapped.
    assert_eq!(mapped, [Span::new(0xfeb0_0e00, 512).unwrap()]);
    let owners: Vec<_> = discovery
        .skipped
        .iter()
        .map(|error| match error {
            DiscoveryError::Overlaps { owner, span, .. } => (*owner, span.start),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        owners,
        [
            (Owner::Kernel, 0x10_0000),
            (Owner::NullPage, 0),
            (Owner::Ram, 0x20_0000)
        ]
    );
    let text = discovery.skipped[0].to_string();
    assert!(
        text.contains("0x100000") && text.contains("the kernel image"),
        "{text}"
    );
    assert!(text.contains("the boot goes on"), "{text}");
    assert_eq!(discovery.devices.len(), 1);
    let device = &discovery.devices[0];
    assert_eq!(device.kind, Kind::NETWORK);
    assert_eq!(device.interrupt, Interrupt::Gsi(12));
    assert_eq!(
        device.to_string(),
        "net (type 1): virtio-mmio v2 at 0xfeb00e00 (0x200 bytes), GSI 12"
    );
}

#[test]
fn two_entries_for_one_window_keep_the_first() {
    let net = FakeWindow::virtio_mmio(1, 1);
    let (discovery, _) = discover(
        &["512@0xfeb00e00:12", "4K@0xfeb00000:13"],
        &[(0xfeb0_0e00, net)],
    );
    assert_eq!(discovery.devices.len(), 1);
    assert!(matches!(
        discovery.skipped[..],
        [DiscoveryError::Overlaps {
            owner: Owner::Device,
            ..
        }]
    ));
}

#[test]
fn windows_without_a_virtio_device_are_skipped_with_what_they_read() {
    let junk = FakeWindow::new(0x200);
    junk.set32(0, 0xdead_beef);
    let old = FakeWindow::virtio_mmio(3, 1);
    let (discovery, _) = discover(
        &[
            "512@0xd0000000:5",
            "512@0xd0001000:6",
            "512@0xd0002000:7",
            "512@0x800000000000:8",
        ],
        &[(0xd000_0000, junk), (0xd000_1000, old)],
    );
    assert!(discovery.devices.is_empty());
    assert_eq!(
        discovery.skipped,
        [
            DiscoveryError::NotVirtio {
                address: 0xd000_0000,
                magic: 0xdead_beef
            },
            DiscoveryError::BadVersion {
                address: 0xd000_1000,
                version: 3
            },
            DiscoveryError::Unmappable {
                site: Site::Mmio {
                    address: 0xd000_2000
                },
                span: Span::new(0xd000_2000, 512).unwrap()
            },
            DiscoveryError::OutOfReach {
                site: Site::Mmio {
                    address: 0x8000_0000_0000
                },
                address: 0x8000_0000_0000,
                size: 512
            },
        ]
    );
}

#[test]
fn microvm_slots_in_command_line_order_and_empty_ones_are_silent() {
    let slots: Vec<_> = MICROVM_SLOTS.into_iter().collect();
    assert_eq!(slots.len(), 24);
    assert_eq!(slots[0], slot(0xfeb0_2e00, 0x200, 47));
    assert_eq!(slots[23], slot(0xfeb0_0000, 0x200, 24));
    let net = FakeWindow::virtio_mmio(1, 1);
    let empty = FakeWindow::virtio_mmio(1, 0);
    let rng = FakeWindow::virtio_mmio(1, 4);
    let nothing = FakeWindow::new(0x200); // another VMM: no device at a slot's address
    let mut discovery = Discovery::new(microvm_claims());
    for slot in MICROVM_SLOTS {
        let window = match slot.address {
            0xfeb0_2e00 => &net,
            0xfeb0_2c00 => &rng,
            0xfeb0_0000 => &nothing,
            _ => &empty,
        };
        discovery.add_mmio(slot, Source::MicrovmSlot, |_| Some(window));
    }
    assert!(discovery.skipped.is_empty(), "{:?}", discovery.skipped);
    let kinds: Vec<_> = discovery.devices.iter().map(|device| device.kind).collect();
    assert_eq!(kinds, [Kind::NETWORK, Kind::ENTROPY]);
    assert_eq!(discovery.take(Kind::ENTROPY).len(), 1);
    assert_eq!(discovery.devices.len(), 1);
}

#[test]
fn fuzz_the_parser_never_panics_and_round_trips() {
    const ALPHABET: &[u8] = b"0123456789xXabcdefABCDEFkKmMgG@:-+ \xff";
    let mut rng = Rng(0x5eed_0a10);
    for iteration in 0..50_000u32 {
        let len = (rng.next() % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.next().is_multiple_of(8) {
                    rng.next() as u8
                } else {
                    ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize]
                }
            })
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        // Only Ok or Err: a panic fails the test, with the input in its message.
        let result = std::panic::catch_unwind(|| parse_entry(&text));
        assert!(result.is_ok(), "iteration {iteration}: {text:?} panicked");
        if let Ok(Ok(slot)) = result {
            assert!(slot.size >= MIN_SIZE, "{text:?}");
            assert!(slot.address.checked_add(slot.size).is_some(), "{text:?}");
        }
        // Valid entries, written the ways a VMM does, parse back to their values.
        let size = MIN_SIZE + rng.next() % (1 << 20);
        let address = rng.next() >> 20;
        let gsi = rng.next() as u32;
        let entry = if iteration.is_multiple_of(2) {
            format!("{size}@{address:#x}:{gsi}")
        } else {
            format!("{size:#x}@{address}:{gsi:#x}:{}", iteration % 7)
        };
        assert_eq!(parse_entry(&entry), Ok(slot(address, size, gsi)), "{entry}");
    }
}
