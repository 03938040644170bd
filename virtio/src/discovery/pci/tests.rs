//! PCI discovery against fake configuration spaces: the exact BAR-sizing sequence,
//! hostile capability lists, BARs and MSI-X tables over RAM, the kernel or another
//! device, bridges that loop, and virtio-drivers reading the snapshot.

use super::*;
use crate::discovery::Claims;
use crate::discovery::fake::{
    Access, FakeConfig, FakeFunction, FakeWindow, Rng, virtio_cap, virtio_net,
};
use virtio_drivers::transport::pci::bus::{BarInfo, ConfigurationAccess, DeviceFunction, PciRoot};

const NIC: Function = Function {
    bus: 0,
    device: 3,
    function: 0,
};
const NIC_BAR: u64 = 0x3fff_ff80_0000;
const MSIX_BAR: u32 = 0xfea0_0000;

fn claims() -> Claims {
    let mut claims = Claims::new();
    claims.add(Span::new(0, 0x1000).unwrap(), Owner::NullPage);
    claims.add(Span::new(0x10_0000, 0x4_0000).unwrap(), Owner::Kernel);
    claims.add(Span::new(0x10_0000, 0x7ef_0000).unwrap(), Owner::Ram);
    claims
}

fn scan(config: &mut FakeConfig) -> Discovery {
    let mut discovery = Discovery::new(claims());
    discovery.scan_pci(config, 0..=255);
    discovery
}

#[test]
fn bar_sizing_writes_in_an_order_no_vmm_takes_for_a_move() {
    let mut config = FakeConfig::default().with(NIC, virtio_net(NIC_BAR, MSIX_BAR));
    config.functions.get_mut(&NIC).unwrap().words[1] |= 0b111; // IO | MEMORY | BUS_MASTER
    let before = config.functions[&NIC].words;
    let bars = size_bars(&mut config, NIC).unwrap();
    let (low, high) = (NIC_BAR as u32 | 0b100, (NIC_BAR >> 32) as u32);
    assert_eq!(
        config.writes(),
        [
            (0x04, 0b100), // decoding off (bus mastering stays)
            (0x10, 0xffff_ffff),
            (0x10, 0),
            (0x14, 0xffff_ffff),
            (0x14, MSIX_BAR),
            (0x18, 0xffff_ffff),
            (0x18, 0),
            (0x1c, 0xffff_ffff),
            (0x1c, 0),
            (0x20, 0xffff_ffff), // BAR 4, low half
            (0x24, 0xffff_ffff), // BAR 4, high half
            (0x20, low),         // restored low half first ...
            (0x24, high),        // ... then the high half
            (0x04, 0b111),       // decoding back on
        ]
    );
    assert_eq!(
        config.functions[&NIC].words, before,
        "every register restored"
    );
    assert_eq!(
        bars[4],
        Some(Bar {
            address: NIC_BAR,
            size: 0x4000,
            kind: BarKind::Memory64
        })
    );
    assert_eq!(
        bars[1].map(|bar| (bar.address, bar.size)),
        Some((0xfea0_0000, 0x1000))
    );
    assert_eq!(bars[0], None);
    assert_eq!(bars[5], None);
}

/// Cloud Hypervisor's rule (pci/src/configuration.rs, `detect_bar_reprogramming`): a
/// write to a 64-bit BAR's high half that is not the all-ones probe is a move unless
/// both halves then hold the original address. Replayed over the write log.
#[test]
fn every_high_half_write_finds_the_low_half_restored() {
    let mut config = FakeConfig::default().with(NIC, virtio_net(NIC_BAR, MSIX_BAR));
    size_bars(&mut config, NIC).unwrap();
    let mut registers = virtio_net(NIC_BAR, MSIX_BAR).words;
    let original = registers;
    for access in &config.log {
        if let Access::Write(_, offset, value) = *access {
            registers[usize::from(offset / 4)] = value;
            if offset == 0x24 && value != 0xffff_ffff {
                assert_eq!(
                    registers[8], original[8],
                    "high half written before the low"
                );
                assert_eq!(value, original[9]);
            }
        }
    }
}

#[test]
fn a_64_bit_bar_in_the_last_slot_is_refused_and_restored() {
    let mut fake = FakeFunction::new(0x1af4, 0x1041);
    fake.words[9] = 0xfe00_0004;
    fake.writable[5] = 0xffff_f000;
    let mut config = FakeConfig::default().with(NIC, fake);
    assert_eq!(
        size_bars(&mut config, NIC),
        Err(DiscoveryError::BadBar {
            function: NIC,
            bar: 5
        })
    );
    assert_eq!(config.functions[&NIC].words[9], 0xfe00_0004);
}

#[test]
fn a_good_virtio_net_function_is_found_and_enabled() {
    let mut config = FakeConfig::default().with(NIC, virtio_net(NIC_BAR, MSIX_BAR));
    let discovery = scan(&mut config);
    assert!(discovery.skipped.is_empty(), "{:?}", discovery.skipped);
    let [device] = &discovery.devices[..] else {
        panic!("{:?}", discovery.devices)
    };
    assert_eq!(device.kind, Kind::NETWORK);
    assert_eq!(device.interrupt, Interrupt::Msix { entries: 3 });
    let Transport::Pci(pci) = &device.transport else {
        panic!()
    };
    assert_eq!(pci.common.address, NIC_BAR);
    assert_eq!(pci.isr.address, NIC_BAR + 0x1000);
    assert_eq!(pci.notify.address, NIC_BAR + 0x3000);
    assert_eq!(pci.device_config.unwrap().address, NIC_BAR + 0x2000);
    let msix = pci.msix.unwrap();
    assert_eq!((msix.capability, msix.entries), (0x40, 3));
    assert_eq!(msix.table.address, u64::from(MSIX_BAR));
    assert_eq!(msix.pba.address, u64::from(MSIX_BAR) + 0x800);
    assert_eq!(pci.intx_line, Some(10));
    assert_eq!(
        config.functions[&NIC].words[1] & 0b110,
        0b110,
        "memory + bus master"
    );
    assert_eq!(
        device.to_string(),
        "net (type 1): virtio-pci 00:03.0 at 0x3fffff800000, MSI-X (3 entries)"
    );
    // Its BARs are claimed: nothing else may overlap them.
    assert_eq!(
        discovery
            .claims
            .conflict(Span::new(NIC_BAR + 0x100, 4).unwrap()),
        Some((Span::new(NIC_BAR, 0x4000).unwrap(), Owner::Device))
    );
}

#[test]
fn capability_lists_that_loop_are_refused() {
    // 0x40 -> ... -> 0x84 -> 0x40, and a capability pointing at itself.
    for (fake, offset) in [
        (
            virtio_net(NIC_BAR, MSIX_BAR).capability(0x84, &[0x0014_4009]),
            0x40,
        ),
        (
            FakeFunction::new(0x1af4, 0x1041)
                .first_capability(0x80)
                .capability(0x80, &[0x0000_8009]),
            0x80,
        ),
    ] {
        let mut config = FakeConfig::default().with(NIC, fake);
        let discovery = scan(&mut config);
        assert!(discovery.devices.is_empty());
        assert_eq!(
            discovery.skipped,
            [DiscoveryError::CapabilityLoop {
                function: NIC,
                offset
            }]
        );
        assert!(discovery.skipped[0].to_string().contains("loop"));
    }
}

#[test]
fn capability_pointers_into_the_header_are_refused() {
    let fake = virtio_net(NIC_BAR, MSIX_BAR).capability(0x84, &[0x0014_0809]);
    let mut config = FakeConfig::default().with(NIC, fake);
    assert_eq!(
        scan(&mut config).skipped,
        [DiscoveryError::CapabilityOutOfRange {
            function: NIC,
            offset: 0x08
        }]
    );
    // A capability whose fields would run past 0xff.
    let fake = virtio_net(NIC_BAR, MSIX_BAR)
        .capability(0x84, &[0x0014_fc09])
        .capability(0xfc, &virtio_cap(0, 1, 4, 0, 0x1000)[..1]);
    let mut config = FakeConfig::default().with(NIC, fake);
    assert_eq!(
        scan(&mut config).skipped,
        [DiscoveryError::CapabilityOutOfRange {
            function: NIC,
            offset: 0xfc
        }]
    );
}

#[test]
fn bars_over_ram_the_kernel_or_the_null_page_are_refused() {
    for (address, owner) in [
        (0x0, Owner::NullPage),
        (0x10_2000, Owner::Kernel),
        (0x400_0000, Owner::Ram),
    ] {
        let mut config = FakeConfig::default().with(NIC, virtio_net(address, MSIX_BAR));
        let discovery = scan(&mut config);
        if address == 0 {
            // BAR 4 at 0 reads as unassigned: the structures in it are not reachable.
            assert!(matches!(
                discovery.skipped[..],
                [DiscoveryError::OutsideBar {
                    bar: 4,
                    bar_size: 0,
                    ..
                }]
            ));
            continue;
        }
        assert!(discovery.devices.is_empty());
        match &discovery.skipped[..] {
            [
                DiscoveryError::Overlaps {
                    owner: found, site, ..
                },
            ] => {
                assert_eq!(*found, owner);
                assert_eq!(
                    *site,
                    Site::PciBar {
                        function: NIC,
                        bar: 4
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            config.functions[&NIC].words[1] & 0b110,
            0,
            "a refused device is never enabled"
        );
    }
}

#[test]
fn an_msix_table_over_another_device_or_outside_its_bar_is_refused() {
    // A second NIC whose MSI-X BAR is the first one's virtio BAR.
    let second = Function { device: 4, ..NIC };
    let mut config = FakeConfig::default()
        .with(NIC, virtio_net(NIC_BAR, MSIX_BAR))
        .with(
            second,
            virtio_net(0x3fff_ff90_0000, 0).bar64(2, NIC_BAR, 0x1000),
        );
    config.functions.get_mut(&second).unwrap().words[0x40 / 4 + 1] = 2; // table in BAR 2
    let discovery = scan(&mut config);
    assert_eq!(discovery.devices.len(), 1);
    assert!(matches!(
        discovery.skipped[..],
        [DiscoveryError::Overlaps {
            owner: Owner::Device,
            site: Site::PciBar { bar: 2, .. },
            ..
        }]
    ));

    // A table of 3 entries at offset 0xff8 of a 4 KiB BAR.
    let fake = virtio_net(NIC_BAR, MSIX_BAR).capability(0x44, &[0x0000_0ff9]);
    let mut config = FakeConfig::default().with(NIC, fake);
    assert_eq!(
        scan(&mut config).skipped,
        [DiscoveryError::OutsideBar {
            function: NIC,
            what: "MSI-X table",
            bar: 1,
            offset: 0xff8,
            length: 48,
            bar_size: 0x1000
        }]
    );
}

#[test]
fn structures_must_fit_their_bar_and_the_common_configuration_must_exist() {
    let fake =
        virtio_net(NIC_BAR, MSIX_BAR).capability(0x50, &virtio_cap(0x60, 1, 4, 0x3f00, 0x1000));
    let mut config = FakeConfig::default().with(NIC, fake);
    assert!(matches!(
        scan(&mut config).skipped[..],
        [DiscoveryError::OutsideBar {
            what: "common configuration",
            offset: 0x3f00,
            bar_size: 0x4000,
            ..
        }]
    ));
    // The common configuration capability replaced by an unknown type.
    let fake = virtio_net(NIC_BAR, MSIX_BAR).capability(0x50, &virtio_cap(0x60, 9, 4, 0, 0x1000));
    let mut config = FakeConfig::default().with(NIC, fake);
    assert_eq!(
        scan(&mut config).skipped,
        [DiscoveryError::MissingStructure {
            function: NIC,
            what: "common configuration"
        }]
    );
}

#[test]
fn bridges_are_followed_once_even_when_they_loop() {
    let bridge = |secondary: u8| {
        let mut fake = FakeFunction::new(0x8086, 0x29c1);
        fake.words[3] = 1 << 16; // header type 1
        fake.words[6] = u32::from(secondary) << 8;
        fake
    };
    let behind = Function {
        bus: 1,
        device: 0,
        function: 0,
    };
    let mut config = FakeConfig::default()
        .with(
            Function {
                bus: 0,
                device: 1,
                function: 0,
            },
            bridge(1),
        )
        .with(
            Function {
                bus: 1,
                device: 5,
                function: 0,
            },
            bridge(0),
        ) // back to bus 0
        .with(
            Function {
                bus: 1,
                device: 6,
                function: 0,
            },
            bridge(1),
        ) // to itself
        .with(behind, virtio_net(NIC_BAR, MSIX_BAR));
    let found = functions(&mut config, 0..=255);
    assert_eq!(found.len(), 4);
    let discovery = scan(&mut config);
    assert_eq!(discovery.devices.len(), 1);
    // Outside the ECAM's bus range, a bus is not visited.
    assert_eq!(functions(&mut config, 0..=0).len(), 1);
}

#[test]
fn multi_function_devices_list_each_function() {
    let mut first = FakeFunction::new(0x1af4, 0x1044); // rng, function 0
    first.words[3] = 1 << 23;
    let mut config = FakeConfig::default()
        .with(
            Function {
                bus: 0,
                device: 2,
                function: 0,
            },
            first,
        )
        .with(
            Function {
                bus: 0,
                device: 2,
                function: 3,
            },
            virtio_net(NIC_BAR, MSIX_BAR),
        );
    assert_eq!(functions(&mut config, 0..=0).len(), 2);
    assert_eq!(virtio_kind(0x1af4, 0x1044), Some(Kind::ENTROPY));
    assert_eq!(virtio_kind(0x1af4, 0x1000), Some(Kind::NETWORK));
    assert_eq!(virtio_kind(0x1af4, 0x1040), None);
    assert_eq!(virtio_kind(0x8086, 0x1041), None);
}

/// virtio-drivers reads the snapshot: the same BARs and capabilities, and its sizing
/// never reaches the device.
#[test]
fn virtio_drivers_sees_the_checked_snapshot() {
    let mut config = FakeConfig::default().with(NIC, virtio_net(NIC_BAR, MSIX_BAR));
    let mut discovery = scan(&mut config);
    let Transport::Pci(pci) = discovery.take(Kind::NETWORK).remove(0).transport else {
        panic!()
    };
    let writes_before = config.writes().len();
    let function = DeviceFunction {
        bus: 0,
        device: 3,
        function: 0,
    };
    let mut root = PciRoot::new(pci.snapshot.clone());
    match root.bar_info(function, 4).unwrap() {
        Some(BarInfo::Memory { address, size, .. }) => {
            assert_eq!((address, size), (NIC_BAR, 0x4000));
        }
        other => panic!("{other:?}"),
    }
    match root.bar_info(function, 1).unwrap() {
        Some(BarInfo::Memory { address, size, .. }) => {
            assert_eq!((address, size), (u64::from(MSIX_BAR), 0x1000));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(root.bar_info(function, 0).unwrap(), None);
    let offsets: Vec<_> = root.capabilities(function).map(|cap| cap.offset).collect();
    assert_eq!(offsets, [0x40, 0x50, 0x60, 0x70, 0x84]);
    assert_eq!(
        config.writes().len(),
        writes_before,
        "nothing reached the device"
    );
    // Another function reads as absent.
    let other = DeviceFunction {
        device: 4,
        ..function
    };
    assert_eq!(pci.snapshot.read_word(other, 0), 0xffff_ffff);
}

#[test]
fn msix_is_enabled_masked_then_unmasked_after_the_entries() {
    let mut config = FakeConfig::default().with(NIC, virtio_net(NIC_BAR, MSIX_BAR));
    let mut discovery = scan(&mut config);
    let Transport::Pci(pci) = discovery.take(Kind::NETWORK).remove(0).transport else {
        panic!()
    };
    let msix = pci.msix.unwrap();
    config.log.clear();
    let table = FakeWindow::new(48);
    let message = Message {
        address: 0xfee0_1000,
        data: 48,
    };
    enable_msix(&mut config, NIC, &msix, &table, &[message]);
    let header = 0x0002_5011;
    assert_eq!(
        config.writes(),
        [(0x40, header | 0xc000_0000), (0x40, header | 0x8000_0000)]
    );
    assert_eq!(
        *table.writes.borrow(),
        [(0, 0xfee0_1000), (4, 0), (8, 48), (12, 0)]
    );
}

#[test]
fn queue_vectors_are_read_back() {
    let common = FakeWindow::new(0x38);
    common.write16(0x12, 3);
    assert_eq!(assign_queue_vectors(&common, 0), Ok(()));
    let writes: Vec<_> = common.writes.borrow().iter().skip(1).copied().collect();
    assert_eq!(
        writes,
        [
            (0x16, 0),
            (0x1a, 0),
            (0x16, 1),
            (0x1a, 0),
            (0x16, 2),
            (0x1a, 0)
        ]
    );
    let mut refusing = FakeWindow::new(0x38);
    refusing.write16(0x12, 2);
    refusing.write16(0x1a, 0xffff);
    refusing.read_only.push(0x1a);
    assert_eq!(
        assign_queue_vectors(&refusing, 0),
        Err(DiscoveryError::VectorRefused {
            queue: 0,
            read_back: 0xffff
        })
    );
    // A hostile queue count is bounded.
    let many = FakeWindow::new(0x38);
    many.write16(0x12, 0xffff);
    assign_queue_vectors(&many, 1).unwrap();
    assert_eq!(many.writes.borrow().len(), 1 + 2 * 64);
}

#[test]
fn mcfg_gives_segment_zeros_window() {
    let mut table = vec![0u8; 44];
    let mut entry = |base: u64, segment: u16, start: u8, end: u8| {
        table.extend_from_slice(&base.to_le_bytes());
        table.extend_from_slice(&segment.to_le_bytes());
        table.extend_from_slice(&[start, end, 0, 0, 0, 0]);
    };
    entry(0xc000_0000, 1, 0, 255);
    entry(0xb000_0000, 0, 0, 255);
    let ecam = parse_mcfg(&table).unwrap();
    assert_eq!(
        ecam,
        Ecam {
            base: 0xb000_0000,
            start_bus: 0,
            end_bus: 255
        }
    );
    assert_eq!(ecam.address(NIC), 0xb001_8000);
    assert_eq!(parse_mcfg(&table[..50]), None);
    assert_eq!(parse_mcfg(&[]), None);
}

/// Seeded fuzzing: a good virtio-net function with random words overwritten (capability
/// pointers, BARs, structure offsets, MSI-X fields), and a second function of pure noise.
/// Discovery must end (no loop), never panic, and accept only devices whose BARs avoid
/// every claim and whose structures fit their BARs.
#[test]
fn fuzz_hostile_configuration_spaces() {
    let mut rng = Rng(0x5eed_0c0f);
    let noise = Function { device: 7, ..NIC };
    let (mut accepted, mut refused) = (0, 0);
    for iteration in 0..5_000 {
        let mut fake = virtio_net(NIC_BAR, MSIX_BAR);
        for _ in 0..=rng.next() % 6 {
            let index = (rng.next() % 64) as usize;
            fake.words[index] = match rng.next() % 4 {
                0 => rng.next() as u32 & 0xff,
                1 => 0xffff_ffff,
                _ => rng.next() as u32,
            };
            if index != 0 {
                fake.words[0] = 0x1041_1af4;
            }
        }
        let mut junk = FakeFunction::new(0x1af4, 0x1041 + (rng.next() % 30) as u16);
        for word in junk.words.iter_mut().skip(1) {
            *word = rng.next() as u32;
        }
        junk.writable = [
            rng.next() as u32,
            0,
            rng.next() as u32,
            0,
            0,
            rng.next() as u32,
        ];
        let mut config = FakeConfig::default().with(NIC, fake).with(noise, junk);
        let discovery = scan(&mut config);
        accepted += discovery.devices.len();
        refused += discovery.skipped.len();
        let kernel_claims = claims();
        for device in &discovery.devices {
            let Transport::Pci(pci) = &device.transport else {
                panic!("iteration {iteration}: not PCI")
            };
            for bar in pci
                .bars
                .iter()
                .flatten()
                .filter(|bar| bar.kind != BarKind::Io)
            {
                if bar.address == 0 {
                    continue;
                }
                let span = Span::new(bar.address, bar.size).expect("checked");
                assert!(
                    kernel_claims.conflict(span).is_none(),
                    "iteration {iteration}: accepted a BAR over the kernel's memory: {span}"
                );
            }
            for region in [pci.common, pci.notify, pci.isr] {
                let bar = pci.bars[usize::from(region.bar)].expect("checked");
                assert!(
                    region.offset + region.length <= bar.size,
                    "iteration {iteration}"
                );
            }
        }
    }
    // Both outcomes happen, so the checks above ran.
    assert!(
        accepted > 500 && refused > 500,
        "{accepted} accepted, {refused} refused"
    );
}
