//! The images as `make images` writes them: `build/NAME.elf` is the kernel as linked, with
//! the symbol table a backtrace is resolved with and no debug information (that is in
//! `build/NAME.debug`, which the image names), and with what both loaders look for.
//!
//! Needs `make images`. The ELF is read here by hand (section and program headers), so a
//! test does not trust the tools that wrote it.

use std::path::PathBuf;
use torito_qemu_tests::workspace_root;

const EXAMPLES: [&str; 5] = ["hello", "faults", "echo", "echo-blocking", "intercore"];
const SHT_SYMTAB: u32 = 2;
const PT_NOTE: u32 = 4;

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{}: {error} (run `make images` first)", path.display()))
}

/// A NUL-terminated string at `at`.
fn string_at(bytes: &[u8], at: usize) -> &str {
    let end = bytes[at..].iter().position(|&b| b == 0).expect("NUL") + at;
    std::str::from_utf8(&bytes[at..end]).expect("UTF-8 name")
}

/// One ELF64 section: its name, type and file bytes.
struct Section<'a> {
    name: &'a str,
    kind: u32,
    link: u32,
    bytes: &'a [u8],
}

fn section_table(elf: &[u8]) -> Vec<Section<'_>> {
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "ELF64");
    let (table, size, count, names) = (
        u64_at(elf, 0x28) as usize,
        usize::from(u16_at(elf, 0x3a)),
        usize::from(u16_at(elf, 0x3c)),
        usize::from(u16_at(elf, 0x3e)),
    );
    assert_eq!(size, 64, "ELF64 section header size");
    let raw = |index: usize| {
        let at = table + index * size;
        let (kind, offset, len) = (
            u32_at(elf, at + 4),
            u64_at(elf, at + 0x18) as usize,
            u64_at(elf, at + 0x20) as usize,
        );
        // NOBITS (.bss) has no bytes in the file.
        let bytes = if kind == 8 {
            &elf[0..0]
        } else {
            &elf[offset..offset + len]
        };
        (u32_at(elf, at), kind, u32_at(elf, at + 0x28), bytes)
    };
    let name_table = raw(names).3;
    (0..count)
        .map(|index| {
            let (name, kind, link, bytes) = raw(index);
            Section {
                name: string_at(name_table, name as usize),
                kind,
                link,
                bytes,
            }
        })
        .collect()
}

#[test]
fn images_keep_their_symbols_and_name_their_debug_information() {
    for name in EXAMPLES {
        let elf = read(workspace_root().join("build").join(format!("{name}.elf")));
        let sections = section_table(&elf);
        let debug: Vec<&str> = sections
            .iter()
            .map(|section| section.name)
            .filter(|name| name.starts_with(".debug"))
            .collect();
        assert!(
            debug.is_empty(),
            "{name}: debug sections in the image: {debug:?}"
        );

        // The symbol table names the kernel's entry and the application's main.
        let symtab = sections
            .iter()
            .find(|section| section.kind == SHT_SYMTAB)
            .unwrap_or_else(|| panic!("{name}: no symbol table"));
        let strings = sections[symtab.link as usize].bytes;
        let names: Vec<&str> = symtab
            .bytes
            .chunks_exact(24)
            .map(|symbol| string_at(strings, u32_at(symbol, 0) as usize))
            .collect();
        for wanted in ["torito_kernel_entry", "torito_app_main", "torito_pvh_entry"] {
            assert!(names.contains(&wanted), "{name}: no symbol {wanted}");
        }

        // .gnu_debuglink names build/NAME.debug, which exists and holds the line tables.
        let link = sections
            .iter()
            .find(|section| section.name == ".gnu_debuglink")
            .unwrap_or_else(|| panic!("{name}: no .gnu_debuglink"));
        let debug_name = string_at(link.bytes, 0);
        assert_eq!(debug_name, format!("{name}.debug"));
        let debug_file = read(workspace_root().join("build").join(debug_name));
        assert!(
            section_table(&debug_file)
                .iter()
                .any(|section| section.name == ".debug_line"),
            "{name}: {debug_name} has no line tables"
        );
    }
}

#[test]
fn images_carry_a_multiboot2_header_and_a_pvh_note() {
    for name in EXAMPLES {
        let elf = read(workspace_root().join("build").join(format!("{name}.elf")));
        // Multiboot2: 8-aligned in the first 32 KiB of the file, with a zero checksum.
        let header_at = (0..32 * 1024 - 16)
            .step_by(8)
            .find(|&at| u32_at(&elf, at) == 0xe852_50d6)
            .unwrap_or_else(|| panic!("{name}: no multiboot2 header"));
        let sum = (0..4).fold(0u32, |sum, word| {
            sum.wrapping_add(u32_at(&elf, header_at + 4 * word))
        });
        assert_eq!(sum, 0, "{name}: multiboot2 header checksum");

        // PVH: a PT_NOTE with XEN_ELFNOTE_PHYS32_ENTRY (18), "Xen", an 8-byte entry
        // that is torito_pvh_entry's address below 4 GiB.
        let (table, count) = (u64_at(&elf, 0x20) as usize, usize::from(u16_at(&elf, 0x38)));
        let note = (0..count)
            .map(|index| table + index * 56)
            .find(|&at| u32_at(&elf, at) == PT_NOTE)
            .unwrap_or_else(|| panic!("{name}: no PT_NOTE"));
        let offset = u64_at(&elf, note + 8) as usize;
        let note = &elf[offset..offset + u64_at(&elf, note + 32) as usize];
        assert_eq!(
            (u32_at(note, 0), u32_at(note, 4), u32_at(note, 8)),
            (4, 8, 18),
            "{name}: PVH note header"
        );
        assert_eq!(&note[12..16], b"Xen\0");
        let entry = u64_at(note, 16);
        assert!(
            (0x10_0000..1 << 32).contains(&entry),
            "{name}: PVH entry {entry:#x}"
        );
    }
}
