//! The packed images (`build/NAME.elf`, written by torito-pack from the linked kernels in
//! `build/unpacked/`): laid out so every loader keeps out of the kernel's memory, unpacking
//! to exactly the kernel that was linked, and, when damaged, stopping with a message
//! instead of running garbage.
//!
//! Needs `make images`. The program headers are read here by hand, independently of the
//! `object` crate the packer reads its input with.

use std::path::PathBuf;
use std::time::Duration;
use torito_boot::pack::{Descriptor, EXIT_CORRUPT_IMAGE, OVERRUN, checksums};
use torito_qemu_tests::{Failure, Guest, RunOptions, workspace_root};

const EXAMPLES: [&str; 5] = ["hello", "faults", "echo", "echo-blocking", "intercore"];
/// Bound for one PVH boot (a healthy one takes well under 1 s).
const PVH: Duration = Duration::from_secs(60);
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

/// One ELF64 program header.
#[derive(Debug)]
struct Header {
    kind: u32,
    offset: usize,
    addr: u64,
    file_len: usize,
    mem_len: u64,
}

impl Header {
    fn memory(&self) -> std::ops::Range<u64> {
        self.addr..self.addr + self.mem_len
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn headers(elf: &[u8]) -> Vec<Header> {
    assert_eq!(&elf[..4], b"\x7fELF");
    let (table, size, count) = (u64_at(elf, 32) as usize, u16_at(elf, 54), u16_at(elf, 56));
    assert_eq!(size, 56, "ELF64 program header size");
    (0..usize::from(count))
        .map(|index| {
            let at = table + index * 56;
            Header {
                kind: u32_at(elf, at),
                offset: u64_at(elf, at + 8) as usize,
                addr: u64_at(elf, at + 24),
                file_len: u64_at(elf, at + 32) as usize,
                mem_len: u64_at(elf, at + 40),
            }
        })
        .collect()
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{}: {error} (run `make images` first)", path.display()))
}

fn unpacked(name: &str) -> Vec<u8> {
    read(
        workspace_root()
            .join("build/unpacked")
            .join(format!("{name}.elf")),
    )
}

fn packed(name: &str) -> Vec<u8> {
    read(workspace_root().join("build").join(format!("{name}.elf")))
}

/// The memory `range` as the loader leaves it for `elf`: file bytes, zeros elsewhere.
fn memory(elf: &[u8], range: std::ops::Range<u64>) -> Vec<u8> {
    let mut bytes = vec![0u8; (range.end - range.start) as usize];
    for header in headers(elf).iter().filter(|header| header.kind == PT_LOAD) {
        let from = header.addr.max(range.start);
        let to = (header.addr + header.file_len as u64).min(range.end);
        if from < to {
            let source = header.offset + (from - header.addr) as usize;
            bytes[(from - range.start) as usize..(to - range.start) as usize]
                .copy_from_slice(&elf[source..source + (to - from) as usize]);
        }
    }
    bytes
}

#[test]
fn make_images_wrote_what_the_packer_writes() {
    for name in EXAMPLES {
        let again = torito_pack::pack(&unpacked(name)).expect("pack");
        assert!(
            again.image == packed(name),
            "{name}: build/{name}.elf is not the packer's output"
        );
    }
}

#[test]
fn packed_images_claim_all_the_kernel_memory_and_unpack_to_the_kernel() {
    for name in EXAMPLES {
        let kernel = unpacked(name);
        let image = packed(name);
        let packing = torito_pack::pack(&kernel).expect("pack");
        let descriptor = packing.descriptor;
        let loads: Vec<Header> = headers(&image)
            .into_iter()
            .filter(|header| header.kind == PT_LOAD)
            .collect();

        // Sorted, disjoint, and covering every byte the kernel's own segments claim, so
        // no loader puts its boot information where the kernel will be.
        for pair in loads.windows(2) {
            assert!(
                pair[0].memory().end <= pair[1].addr,
                "{name}: {pair:?} overlap or are unsorted"
            );
        }
        // So is every byte the unpacker may write.
        let written = u64::from(descriptor.dest)
            ..u64::from(descriptor.dest) + u64::from(descriptor.dest_len) + u64::from(OVERRUN);
        let kernel_segments = headers(&kernel)
            .into_iter()
            .filter(|header| header.kind == PT_LOAD);
        for range in kernel_segments
            .map(|segment| segment.memory())
            .chain([written])
        {
            let mut at = range.start;
            while at < range.end {
                let owner = loads.iter().find(|load| load.memory().contains(&at));
                let owner =
                    owner.unwrap_or_else(|| panic!("{name}: {at:#x} is claimed by no segment"));
                at = owner.memory().end;
            }
        }

        // The packed bytes, where the descriptor says, unpack to the kernel's memory
        // from the stub's end, and leave the unpacker its overrun.
        let source = loads
            .iter()
            .find(|load| load.addr == u64::from(descriptor.source))
            .unwrap_or_else(|| panic!("{name}: no segment at the descriptor's source"));
        assert_eq!(source.file_len, descriptor.source_len as usize);
        let stream = &image[source.offset..source.offset + source.file_len];
        let dest =
            u64::from(descriptor.dest)..u64::from(descriptor.dest) + u64::from(descriptor.dest_len);
        assert!(
            dest.end + u64::from(OVERRUN) <= source.addr,
            "{name}: no room for the overrun"
        );
        let expected = memory(&kernel, dest.clone());
        let unpacked = torito_pack::unpack(stream, expected.len()).expect("unpack");
        assert!(
            unpacked == expected,
            "{name}: the packed bytes do not unpack to the kernel"
        );
        assert_eq!(
            checksums(&unpacked),
            (descriptor.sum, descriptor.sum_of_sums)
        );
        // And the stub, up to the kernel's code, is the kernel's own, descriptor aside.
        let stub = &loads[0];
        let descriptor_offset = (packing.descriptor_at - stub.addr) as usize;
        let mut stub_bytes = image[stub.offset..stub.offset + stub.file_len].to_vec();
        assert_eq!(
            &stub_bytes[descriptor_offset..][..Descriptor::SIZE],
            &descriptor.to_bytes()
        );
        stub_bytes[descriptor_offset..][..Descriptor::SIZE].fill(0);
        assert!(
            stub_bytes == memory(&kernel, stub.memory()),
            "{name}: the stub differs"
        );

        // What loaders look for: the multiboot2 header in the first 32 KiB, 8-aligned,
        // with a valid checksum, and the PVH entry note pointing into the stub.
        let header_at = (0..32 * 1024 - 16)
            .step_by(8)
            .find(|&at| u32_at(&image, at) == 0xe852_50d6)
            .unwrap_or_else(|| panic!("{name}: no multiboot2 header"));
        let sum = (0..4).fold(0u32, |sum, word| {
            sum.wrapping_add(u32_at(&image, header_at + 4 * word))
        });
        assert_eq!(sum, 0, "{name}: multiboot2 header checksum");
        let note = headers(&image)
            .into_iter()
            .find(|header| header.kind == PT_NOTE)
            .expect("a note");
        let note = &image[note.offset..note.offset + note.file_len];
        assert_eq!(
            (u32_at(note, 0), u32_at(note, 4), u32_at(note, 8)),
            (4, 8, 18),
            "{name}: PVH note"
        );
        assert_eq!(&note[12..16], b"Xen\0");
        assert!(
            stub.memory().contains(&u64_at(note, 16)),
            "{name}: PVH entry outside the stub"
        );
    }
}

#[test]
fn packing_a_packed_image_or_something_else_is_refused() {
    // A packed image carries no symbols, so that is what the packer names.
    let error = torito_pack::pack(&packed("hello")).err();
    assert_eq!(error, Some(torito_pack::PackError::NoSymbols));
    // A kernel whose descriptor is already filled in.
    let mut kernel = unpacked("hello");
    let descriptor_at = torito_pack::pack(&kernel).expect("pack").descriptor_at;
    let text = headers(&kernel)
        .into_iter()
        .find(|header| header.kind == PT_LOAD)
        .expect("text");
    kernel[text.offset + (descriptor_at - text.addr) as usize] = 1;
    let error = torito_pack::pack(&kernel).err();
    assert_eq!(error, Some(torito_pack::PackError::AlreadyPacked));
    // Entry points outside the stub would run code not yet unpacked: the ELF entry
    // (multiboot2) and the PVH note's.
    let outside = 0x10_2000u64;
    let mut kernel = unpacked("hello");
    kernel[24..32].copy_from_slice(&outside.to_le_bytes());
    let error = torito_pack::pack(&kernel).err();
    assert_eq!(
        error,
        Some(torito_pack::PackError::EntryOutsideStub { entry: outside })
    );
    let mut kernel = unpacked("hello");
    let note = headers(&kernel)
        .into_iter()
        .find(|header| header.kind == PT_NOTE)
        .expect("a note");
    kernel[note.offset + 16..note.offset + 24].copy_from_slice(&outside.to_le_bytes());
    let error = torito_pack::pack(&kernel).err();
    assert_eq!(
        error,
        Some(torito_pack::PackError::EntryOutsideStub { entry: outside })
    );
    let error = torito_pack::pack(b"#!/bin/sh\necho not a kernel\n").err();
    assert!(
        matches!(error, Some(torito_pack::PackError::NotKernel(_))),
        "{error:?}"
    );
}

#[test]
fn the_compressor_beats_the_fast_reference_on_real_kernels() {
    for name in ["hello", "echo"] {
        let kernel = unpacked(name);
        let descriptor = torito_pack::pack(&kernel).expect("pack").descriptor;
        let start = u64::from(descriptor.dest);
        let input = memory(&kernel, start..start + u64::from(descriptor.dest_len));
        let (ours, reference) = (
            torito_pack::compress(&input).len(),
            lz4_flex::block::compress(&input).len(),
        );
        assert!(
            ours * 100 <= reference * 95,
            "{name}: {ours} bytes against the reference's {reference}"
        );
    }
}

#[test]
fn the_unpacked_kernel_boots_as_it_is() -> Result<(), Failure> {
    let mut guest = Guest::start("build/unpacked/hello.elf", &RunOptions::default());
    guest.wait_for_line("Hello from Torito (", PVH)?;
    guest.expect_exit(0, PVH).map(drop)
}

/// Boots a copy of hello with `damage` done to it; it must stop with the message.
fn boots_damaged(
    label: &str,
    damage: impl FnOnce(&mut Vec<u8>, &torito_pack::Packed, &[Header]),
) -> Result<(), Failure> {
    let packing = torito_pack::pack(&unpacked("hello")).expect("pack");
    let mut image = packing.image.clone();
    damage(&mut image, &packing, &headers(&packing.image));
    let directory = workspace_root().join("target/pack-tests");
    std::fs::create_dir_all(&directory).expect("create target/pack-tests");
    let path = directory.join(format!("hello-{label}.elf"));
    std::fs::write(&path, &image).expect("write the damaged image");
    let mut guest = Guest::start(path.to_str().expect("utf-8 path"), &RunOptions::default());
    guest.wait_for_line("this image is damaged", PVH)?;
    guest.expect_exit(EXIT_CORRUPT_IMAGE as i32, PVH)?;
    if guest.console().contains("Hello from Torito") {
        return Err(guest.failure("the damaged kernel ran"));
    }
    Ok(())
}

/// The file offset of descriptor field `field` (a `Descriptor::*` offset).
fn descriptor_field(packing: &torito_pack::Packed, headers: &[Header], field: usize) -> usize {
    let stub = &headers[0];
    stub.offset + (packing.descriptor_at - stub.addr) as usize + field
}

#[test]
fn a_wrong_checksum_stops_the_boot() -> Result<(), Failure> {
    boots_damaged("checksum", |image, packing, headers| {
        image[descriptor_field(packing, headers, Descriptor::SUM_OF_SUMS)] ^= 1;
    })
}

#[test]
fn a_changed_packed_byte_stops_the_boot() -> Result<(), Failure> {
    boots_damaged("byte", |image, packing, headers| {
        let source = headers
            .iter()
            .find(|header| header.addr == u64::from(packing.descriptor.source));
        let source = source.expect("the packed segment");
        image[source.offset + source.file_len / 2] ^= 0x40;
    })
}

#[test]
fn a_short_packed_stream_stops_the_boot() -> Result<(), Failure> {
    boots_damaged("short", |image, packing, headers| {
        let at = descriptor_field(packing, headers, Descriptor::SOURCE_LEN);
        let shorter = packing.descriptor.source_len - 100;
        image[at..at + 4].copy_from_slice(&shorter.to_le_bytes());
    })
}

#[test]
fn a_stream_longer_than_its_room_stops_the_boot() -> Result<(), Failure> {
    // The stream would unpack past dest_len: the unpacker must refuse before writing.
    boots_damaged("long", |image, packing, headers| {
        let at = descriptor_field(packing, headers, Descriptor::DEST_LEN);
        let smaller = packing.descriptor.dest_len - 4096;
        image[at..at + 4].copy_from_slice(&smaller.to_le_bytes());
    })
}

/// Writes `value` into descriptor field `field` of a packed hello.
fn with_field(
    field: usize,
    value: impl Fn(&torito_pack::Packed) -> u32,
) -> impl FnOnce(&mut Vec<u8>, &torito_pack::Packed, &[Header]) {
    move |image, packing, headers| {
        let at = descriptor_field(packing, headers, field);
        image[at..at + 4].copy_from_slice(&value(packing).to_le_bytes());
    }
}

#[test]
fn a_destination_over_the_stub_stops_the_boot() -> Result<(), Failure> {
    // Unpacking there would overwrite the code doing it: the stub checks first.
    boots_damaged(
        "dest",
        with_field(Descriptor::DEST, |packing| packing.descriptor.dest - 4096),
    )
}

#[test]
fn a_length_the_checksum_cannot_step_through_stops_the_boot() -> Result<(), Failure> {
    boots_damaged(
        "align",
        with_field(Descriptor::DEST_LEN, |packing| {
            packing.descriptor.dest_len + 4
        }),
    )
}

#[test]
fn input_inside_the_output_stops_the_boot() -> Result<(), Failure> {
    boots_damaged(
        "overlap",
        with_field(Descriptor::SOURCE, |packing| packing.descriptor.dest + 64),
    )
}
