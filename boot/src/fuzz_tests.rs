//! Seeded fuzzing: corrupt valid boot images at random and check the parsers only ever
//! answer `Ok` or `Err` (a panic fails the test). Deterministic, so a failure reproduces;
//! the failing seed and iteration are in the panic message of the assertion below.

use crate::acpi::tests as acpi_tables;
use crate::bios::tests as bios_tables;
use crate::ged::tests as ged_tables;
use crate::multiboot2::tests as mb2;
use crate::pvh::tests as pvh;
use crate::{
    BootError, BootInfo, Cmdline, MAX_CMDLINE, MULTIBOOT2_MAGIC, PhysMemory, Protocol, SliceMemory,
    acpi, bios, parse_kernel_options, parse_multiboot2, parse_pvh,
};

/// xorshift64*: tiny, seedable, good enough to pick bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A byte that is often a boundary value.
    fn byte(&mut self) -> u8 {
        match self.below(4) {
            0 => 0,
            1 => 0xff,
            _ => self.next() as u8,
        }
    }
}

/// Flips 1..=8 random bytes within `range`.
fn corrupt(rng: &mut Rng, bytes: &mut [u8], range: core::ops::Range<usize>) {
    for _ in 0..=rng.below(8) {
        let at = range.start + rng.below(range.len());
        bytes[at] = rng.byte();
    }
}

const ITERATIONS: usize = 20_000;

#[test]
fn pvh_never_panics() {
    let mut rng = Rng(0x5eed_0001);
    let (mut ok, mut err) = (0, 0);
    for iteration in 0..ITERATIONS {
        let mut image = pvh::PvhImage::new(if rng.below(2) == 0 { 0 } else { 2 });
        let len = image.bytes.len();
        // Mostly the start_info's own fields (where pointers and counts live), sometimes
        // anywhere (memory map, command line, RSDP).
        let range = if rng.below(2) == 0 {
            let start = (pvh::START_INFO - pvh::BASE) as usize;
            start..start + 56
        } else {
            0..len
        };
        corrupt(&mut rng, &mut image.bytes, range);
        // Sometimes cut memory short.
        let visible = if rng.below(4) == 0 {
            rng.below(len + 1)
        } else {
            len
        };
        let mem = SliceMemory {
            base: pvh::BASE,
            bytes: &image.bytes[..visible],
        };
        let result = parse_pvh(&mem, pvh::START_INFO);
        match result {
            Ok(info) => {
                ok += 1;
                // Whatever got through is usable: the map is non-empty with usable RAM
                // (or, for version 0 only, empty: Xen's hypercall fills it), and the
                // command line goes through its own parser without panicking.
                let at = (pvh::START_INFO - pvh::BASE) as usize + 4;
                if image.bytes[at..at + 4] == [0; 4] {
                    assert!(info.memory_map().is_empty(), "iteration {iteration}");
                } else {
                    assert!(info.check_memory_map().is_ok(), "iteration {iteration}");
                }
                if let Ok(line) = Cmdline::parse(info.cmdline()) {
                    let _ = parse_kernel_options(&line, &[]).map(|(_, unknown)| unknown.count());
                }
            }
            Err(error) => {
                err += 1;
                assert!(!error.to_string().is_empty());
            }
        }
    }
    // The test must exercise both outcomes to mean anything.
    assert!(
        ok > ITERATIONS / 20 && err > ITERATIONS / 20,
        "ok {ok}, err {err}"
    );
}

#[test]
fn multiboot2_never_panics() {
    let mut rng = Rng(0x5eed_0002);
    let valid = mb2::mbi(&mb2::valid_tags(), None);
    let (mut ok, mut err) = (0, 0);
    for iteration in 0..ITERATIONS {
        let mut bytes = valid.clone();
        let len = bytes.len();
        match rng.below(4) {
            // Tag headers (type and size fields) are the interesting part.
            0 => {
                let tag_offsets: Vec<usize> = tag_offsets(&bytes);
                let at = tag_offsets[rng.below(tag_offsets.len())];
                corrupt(&mut rng, &mut bytes, at..at + 8);
            }
            // total_size.
            1 => corrupt(&mut rng, &mut bytes, 0..4),
            _ => corrupt(&mut rng, &mut bytes, 0..len),
        }
        let slack = rng.below(64);
        let image = mb2::image(&bytes, slack);
        let all = image.bytes();
        let visible = if rng.below(4) == 0 {
            rng.below(all.len() + 1)
        } else {
            all.len()
        };
        let mem = SliceMemory {
            base: mb2::BASE,
            bytes: &all[..visible],
        };
        match parse_multiboot2(&mem, MULTIBOOT2_MAGIC, mb2::MBI) {
            Ok(info) => {
                ok += 1;
                assert!(info.check_memory_map().is_ok(), "iteration {iteration}");
            }
            Err(error) => {
                err += 1;
                assert!(!error.to_string().is_empty());
            }
        }
    }
    assert!(
        ok > ITERATIONS / 20 && err > ITERATIONS / 20,
        "ok {ok}, err {err}"
    );
}

/// Offsets of the tags of a well-formed MBI.
fn tag_offsets(mbi: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 8;
    while at + 8 <= mbi.len() {
        offsets.push(at);
        let size = u32::from_le_bytes(mbi[at + 4..at + 8].try_into().unwrap()) as usize;
        at += size.max(8).next_multiple_of(8);
    }
    offsets
}

#[test]
fn cmdline_never_panics() {
    let mut rng = Rng(0x5eed_0003);
    let alphabet = b"ab=\" \t-.log=debuginfo\xc3\xa9app.AB_'";
    for _ in 0..ITERATIONS {
        let len = rng.below(40);
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let Ok(text) = core::str::from_utf8(&bytes) else {
            continue;
        };
        match Cmdline::parse(text) {
            Ok(line) => {
                // Every key is a non-empty slice without whitespace or quotes.
                for arg in line.args() {
                    assert!(
                        !arg.key.is_empty() && !arg.key.contains([' ', '\t', '"']),
                        "{text:?}"
                    );
                }
                let _ = line.get("log");
                let _ = parse_kernel_options(&line, &["ab"]).map(|(_, unknown)| unknown.count());
                // Environment names are what `is_env_key` promises; application words
                // never hold unquoted whitespace and never outnumber the bytes.
                for (name, _) in line.env() {
                    assert!(crate::is_env_key(name), "{text:?}");
                }
                assert!(
                    line.app_words().count() <= line.app_args().len(),
                    "{text:?}"
                );
                for word in line.app_words() {
                    assert!(line.app_args().contains(word), "{text:?}");
                }
            }
            Err(error) => assert!(!error.to_string().is_empty()),
        }
    }
}

/// The command line as the boot takes it, over the full byte range and every length up
/// to the maximum (and a little past it): stored (`set_cmdline` checks the length and
/// UTF-8), read back, parsed, checked against the kernel's keys. Nothing panics, a
/// refusal names the right reason, and whatever parses hands out keys and values that
/// are pieces of the line itself.
#[test]
fn cmdline_full_byte_range_and_length_never_panics() {
    let mut rng = Rng(0x5eed_0005);
    // Quotes are rarer than separators: an unbalanced one refuses the whole line.
    let structure = b"=== \t\n\r-\"";
    let (mut stored, mut parsed, mut refused) = (0, 0, 0);
    for _ in 0..ITERATIONS / 4 {
        // Near the maximum, past it, short (short lines parse more often: a long
        // random one nearly always holds a stray quote or an empty key), any.
        let len = match rng.below(5) {
            0 => MAX_CMDLINE - rng.below(4),
            1 => MAX_CMDLINE + 1 + rng.below(8),
            2 => rng.below(48),
            _ => rng.below(MAX_CMDLINE + 1),
        };
        let bytes: Vec<u8> = match rng.below(3) {
            // Any byte at all.
            0 => (0..len).map(|_| rng.next() as u8).collect(),
            // Structure (separators, quotes) among any bytes.
            1 => (0..len)
                .map(|_| match rng.below(3) {
                    0 => structure[rng.below(structure.len())],
                    _ => rng.next() as u8,
                })
                .collect(),
            // Valid UTF-8 from the whole Unicode range (control characters, NUL and
            // multi-byte characters included), cut at a character boundary.
            _ => {
                let mut text = String::new();
                while text.len() < len {
                    let scalar = match rng.below(4) {
                        0 => rng.below(0x80) as u32,
                        1 => u32::from(structure[rng.below(structure.len())]),
                        _ => rng.below(0x11_0000) as u32,
                    };
                    if let Some(character) = char::from_u32(scalar) {
                        if text.len() + character.len_utf8() > len {
                            break;
                        }
                        text.push(character);
                    }
                }
                text.into_bytes()
            }
        };
        let mut info = BootInfo::empty(Protocol::Pvh);
        let text = match info.set_cmdline(&bytes) {
            Ok(()) => {
                assert!(bytes.len() <= MAX_CMDLINE);
                assert_eq!(info.cmdline().as_bytes(), &bytes[..], "stored as given");
                stored += 1;
                info.cmdline()
            }
            Err(BootError::CmdlineTooLong { len, max }) => {
                assert!(bytes.len() > MAX_CMDLINE && max == MAX_CMDLINE && len > max);
                refused += 1;
                continue;
            }
            Err(BootError::CmdlineNotUtf8 { valid_up_to }) => {
                let error = core::str::from_utf8(&bytes).expect_err("refused valid UTF-8");
                assert_eq!(valid_up_to, error.valid_up_to());
                refused += 1;
                continue;
            }
            Err(other) => panic!("unexpected refusal {other:?} of {bytes:?}"),
        };
        let range = text.as_bytes().as_ptr_range();
        let inside = |piece: &str| {
            let piece = piece.as_bytes().as_ptr_range();
            range.start <= piece.start && piece.end <= range.end
        };
        match Cmdline::parse(text) {
            Ok(line) => {
                parsed += 1;
                for arg in line.args() {
                    assert!(!arg.key.is_empty() && inside(arg.key), "{text:?}");
                    assert!(
                        !arg.key
                            .contains(|c: char| c.is_ascii_whitespace() || c == '"')
                    );
                    assert!(arg.value.is_none_or(inside), "{text:?}");
                    assert!(line.get(arg.key).is_some());
                }
                for word in line.app_words() {
                    assert!(inside(word), "{text:?}");
                }
                let _ = line.env().count();
                assert!(line.app_args().is_empty() || inside(line.app_args()));
                let _ = parse_kernel_options(&line, &["app"]).map(|(_, unknown)| unknown.count());
            }
            Err(error) => assert!(!error.to_string().is_empty()),
        }
    }
    // Every path was taken (the length and byte mix above makes each likely).
    assert!(
        stored > 100 && parsed > 100 && refused > 100,
        "{stored} stored, {parsed} parsed, {refused} refused"
    );
}

/// The firmware tables of a machine (RSDP and MP table in the BIOS areas, XSDT, RSDT,
/// FADT, DSDT, MADT), corrupted at random, then read the way the kernel reads them: the
/// parsers answer, never panic, and never hand out more than the table holds.
#[test]
fn firmware_tables_never_panic() {
    let mut rng = Rng(0x5eed_0004);
    let mut valid = acpi_tables::tables();
    valid.0.extend(bios_tables::bios_memory().0);
    let (mut ok, mut err) = (0, 0);
    for iteration in 0..ITERATIONS / 4 {
        let mut memory = valid.clone();
        // Mostly one piece, in its first 64 bytes (headers, pointers, lengths), sometimes
        // anywhere in it; sometimes a piece is cut short or missing.
        let piece = rng.below(memory.0.len());
        let bytes = &mut memory.0[piece].1;
        let len = bytes.len();
        let range = if rng.below(2) == 0 {
            0..len.min(64)
        } else {
            0..len
        };
        corrupt(&mut rng, bytes, range);
        match rng.below(8) {
            0 => {
                let keep = rng.below(len + 1);
                bytes.truncate(keep);
            }
            1 => drop(memory.0.remove(piece)),
            _ => {}
        }
        let found = bios::scan_bios_areas(&memory, None);
        let root = found.rsdp.unwrap_or(acpi_tables::root(rng.below(2) == 0));
        let mut outcome = |result: Result<(), crate::BootError>| match result {
            Ok(()) => ok += 1,
            Err(error) => {
                err += 1;
                assert!(!error.to_string().is_empty());
            }
        };
        outcome(acpi::find_table(&memory, &root, *b"FACP").and_then(|fadt| {
            let Some(fadt) = fadt else { return Ok(()) };
            assert!(fadt.len() >= acpi::HEADER_LENGTH, "iteration {iteration}");
            let fadt = acpi::Fadt::parse(fadt);
            // What the power-button set-up relies on: a PM1 block with room for its two
            // halves, and the fixed button only with one.
            if let Some(events) = fadt.pm1_events {
                assert!(
                    events.length >= 4 && events.length % 2 == 0,
                    "iteration {iteration}"
                );
                let _ = events.b.map(|block| events.enable_port(block));
                let _ = events.enable_port(events.a);
            }
            assert!(fadt.pm1_events.is_some() || !fadt.fixed_power_button);
            for block in fadt.gpe_blocks.into_iter().flatten() {
                assert!(
                    block.length >= 2 && block.length % 2 == 0,
                    "iteration {iteration}"
                );
            }
            if let Some(address) = fadt.dsdt {
                let dsdt = acpi::read_table(&memory, address, *b"DSDT")?;
                let _ = (acpi::s5_sleep_type(dsdt), acpi::mentions(dsdt, b"LNRO0005"));
                let _ = crate::ged::find_ged_power_button(dsdt);
            }
            Ok(())
        }));
        outcome(acpi::find_table(&memory, &root, *b"APIC").map(|table| {
            let Some(table) = table else { return };
            let madt = acpi::Madt::new(table);
            // Every structure that yields something is at least 8 bytes long (local APIC
            // 8, override 10, I/O APIC 12, x2APIC 16; one override per IRQ) and lies
            // after the 44-byte header: more answers
            // than that would mean reading past a structure or the table.
            let overrides = (0..=u8::MAX)
                .filter_map(|irq| madt.isa_override(irq))
                .inspect(|found| {
                    let _ = found.mode(acpi::SCI_DEFAULT);
                })
                .count();
            let answers = madt.local_apics().count() + madt.io_apics().count() + overrides;
            assert!(
                answers <= table.len().saturating_sub(44) / 8,
                "iteration {iteration}: {answers} answers from {} bytes",
                table.len()
            );
            let _ = madt.defect().map(|error| error.to_string());
        }));
        if let Some(address) = found.mp_table {
            outcome(bios::read_mp_table(&memory, address).map(|table| {
                // A processor entry is 20 bytes after the 44-byte header.
                let length = memory.read(address + 4, 2).map_or(0, |bytes| {
                    usize::from(u16::from_le_bytes([bytes[0], bytes[1]]))
                });
                let processors = table.processors().count();
                assert!(
                    processors <= length.saturating_sub(44) / 20,
                    "iteration {iteration}: {processors} processors in {length} bytes"
                );
            }));
        }
    }
    assert!(
        ok > ITERATIONS / 40 && err > ITERATIONS / 40,
        "ok {ok}, err {err}"
    );
}

/// The GED power-button scan over QEMU microvm's and Cloud Hypervisor's AML, corrupted at
/// random and cut short: it answers or gives `None`, never panics, and what it answers is
/// usable (a register width the kernel reads, a non-zero address and bit).
#[test]
fn ged_scan_never_panics() {
    let mut rng = Rng(0x5eed_0005);
    let sources = [
        ged_tables::qemu_microvm_aml(),
        ged_tables::cloud_hypervisor_aml(),
    ];
    let mut found = 0;
    for iteration in 0..ITERATIONS {
        let mut aml = sources[rng.below(2)].clone();
        let len = aml.len();
        corrupt(&mut rng, &mut aml, 0..len);
        if rng.below(4) == 0 {
            aml.truncate(rng.below(len + 1));
        }
        let dsdt = acpi_tables::table(b"DSDT", &aml);
        if let Some(button) = crate::ged::find_ged_power_button(&dsdt) {
            found += 1;
            assert!(
                matches!(button.width, 1 | 2 | 4) && button.register != 0 && button.bit != 0,
                "iteration {iteration}: {button:?}"
            );
        }
    }
    // Most corruptions miss the few bytes that matter: the scan still finds the button.
    assert!(found > ITERATIONS / 4, "found {found} of {ITERATIONS}");
}

#[test]
fn xen_memory_map_never_panics() {
    let mut rng = Rng(0x5eed_0006);
    let (mut ok, mut err) = (0, 0);
    for iteration in 0..ITERATIONS {
        // A plausible reply, then corrupted; its count sometimes past the buffer.
        let entries = 1 + rng.below(8);
        let mut table = Vec::new();
        for i in 0..entries as u64 {
            table.extend_from_slice(&(i << 24).to_le_bytes());
            table.extend_from_slice(&(1u64 << 24).to_le_bytes());
            table.extend_from_slice(&(1 + rng.below(3) as u32).to_le_bytes());
        }
        corrupt(&mut rng, &mut table, 0..entries * 20);
        let count = match rng.below(4) {
            0 => rng.below(usize::MAX) as u32,
            _ => rng.below(entries + 1) as u32,
        };
        let mut info = crate::BootInfo::empty(crate::Protocol::Pvh);
        match crate::xen::fill_memory_map(&mut info, &table, count) {
            Ok(()) => {
                ok += 1;
                assert!(info.check_memory_map().is_ok(), "iteration {iteration}");
                assert!(info.memory_map().len() <= count as usize);
            }
            Err(error) => {
                err += 1;
                assert!(!error.to_string().is_empty());
            }
        }
    }
    assert!(
        ok > ITERATIONS / 20 && err > ITERATIONS / 20,
        "ok {ok}, err {err}"
    );
}
