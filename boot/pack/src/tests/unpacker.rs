//! The boot stub's real unpacker (boot/src/unpack.s), assembled into a small 32-bit
//! Linux program and run against the Rust model (`torito_pack::unpack`) on valid,
//! truncated and damaged blocks: both must accept and reject the same blocks, produce the
//! same bytes, write nothing outside the output and its 16-byte overrun, and keep `edx`
//! (the output's end, which the stub's checksum loop uses next).
//!
//! Needs binutils (`as --32`, `ld -m elf_i386`) and a kernel that runs 32-bit programs;
//! `make test` installs binutils.

use super::Rng;
use crate::{compress, unpack};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Guard bytes around the output, and the overrun the unpacker may write past it.
const GUARD: usize = 64;
const OVERRUN: usize = torito_boot::pack::OVERRUN as usize;

/// Exit statuses of the program.
const ACCEPTED: i32 = 0;
const REJECTED: i32 = 3;
const CLOBBERED_EDX: i32 = 4;

struct Harness {
    dir: PathBuf,
    unpack_s: PathBuf,
}

impl Harness {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("torito-unpacker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        let unpack_s = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/unpack.s");
        Self { dir, unpack_s }
    }

    /// Runs the assembly on `block` with an output of `len` bytes, `after` (16 bytes)
    /// lying past the block's end: the exit status and the memory from the guard before
    /// the output to the guard after its overrun.
    fn run(&self, case: usize, block: &[u8], after: &[u8; 16], len: usize) -> (i32, Vec<u8>) {
        let bin = self.dir.join(format!("case{case}.bin"));
        let source = self.dir.join(format!("case{case}.s"));
        let object = self.dir.join(format!("case{case}.o"));
        let program = self.dir.join(format!("case{case}"));
        std::fs::write(&bin, [block, after].concat()).expect("write the block");
        let total = GUARD + len + OVERRUN + GUARD;
        let program_text = format!(
            r#"
    .code32
    .include "{unpack_s}"
    .text
    .global _start
_start:
    mov $input, %esi
    mov $input_end, %ebp
    mov $output, %edi
    mov %edi, start
    mov $output + {len}, %edx
    torito_unpack_lz4 start, failed
    mov $output + {len}, %eax
    cmp %eax, %edx
    jne clobbered
    mov ${accepted}, %esi
    jmp report
failed:
    mov ${rejected}, %esi
    jmp report
clobbered:
    mov ${clobbered}, %esi
report:
    mov $4, %eax                /* write(1, region, total) */
    mov $1, %ebx
    mov $region, %ecx
    mov ${total}, %edx
    int $0x80
    mov $1, %eax                /* exit(esi) */
    mov %esi, %ebx
    int $0x80

    .data
start: .long 0
input: .incbin "{bin}"         /* the block, then 16 bytes that are not part of it */
    input_end = input + {block_len}
    .balign 16
region:
    .fill {guard}, 1, 0xa5
output:
    .fill {len} + {overrun}, 1, 0x5a
    .fill {guard}, 1, 0xa5
"#,
            unpack_s = self.unpack_s.display(),
            bin = bin.display(),
            block_len = block.len(),
            accepted = ACCEPTED,
            rejected = REJECTED,
            clobbered = CLOBBERED_EDX,
            guard = GUARD,
            overrun = OVERRUN,
        );
        std::fs::write(&source, program_text).expect("write the program");
        tool(
            Command::new("as")
                .arg("--32")
                .arg("-o")
                .arg(&object)
                .arg(&source),
        );
        tool(
            Command::new("ld")
                .args(["-m", "elf_i386", "-o"])
                .arg(&program)
                .arg(&object),
        );
        let output = Command::new(&program)
            .output()
            .expect("run the 32-bit program");
        let status = output.status.code().expect("the program exits (no signal)");
        assert_eq!(
            output.stdout.len(),
            total,
            "case {case}: the program printed its memory"
        );
        (status, output.stdout)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tool(command: &mut Command) {
    let result = command.output().unwrap_or_else(|error| {
        panic!("cannot run {command:?}: {error} (apt-get install -y binutils)")
    });
    assert!(
        result.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// Where each sequence of a well-formed `block` has its literals behind it: (bytes of
/// the block read, bytes of output written, literals in that sequence) at that point.
fn after_literals(block: &[u8]) -> Vec<(usize, usize, usize)> {
    fn length(block: &[u8], at: &mut usize, mut value: usize) -> usize {
        if value == 15 {
            loop {
                let byte = block[*at];
                *at += 1;
                value += usize::from(byte);
                if byte != 255 {
                    break;
                }
            }
        }
        value
    }
    let (mut at, mut written, mut points) = (0, 0, Vec::new());
    while at < block.len() {
        let token = block[at];
        at += 1;
        let literals = length(block, &mut at, usize::from(token >> 4));
        at += literals;
        written += literals;
        points.push((at, written, literals));
        if at == block.len() {
            break;
        }
        at += 2;
        written += length(block, &mut at, usize::from(token & 15)) + 4;
    }
    points
}

/// Runs one case and checks the assembly against the model.
fn check(harness: &Harness, case: usize, block: &[u8], len: usize) {
    check_after(harness, case, block, &[0x77; 16], len);
}

/// `check` with the 16 bytes that lie past the block's end (short literal runs read up
/// to 15 of them, but nothing may decode them).
fn check_after(harness: &Harness, case: usize, block: &[u8], after: &[u8; 16], len: usize) {
    let (status, memory) = harness.run(case, block, after, len);
    assert_ne!(status, CLOBBERED_EDX, "case {case}: edx changed");
    let (before, rest) = memory.split_at(GUARD);
    let (output, after) = rest.split_at(len);
    let (_overrun, guard_after) = after.split_at(OVERRUN);
    assert!(
        before.iter().all(|&byte| byte == 0xa5),
        "case {case}: wrote before the output"
    );
    assert!(
        guard_after.iter().all(|&byte| byte == 0xa5),
        "case {case}: wrote past the overrun"
    );
    match unpack(block, len) {
        Ok(expected) => {
            assert_eq!(
                status, ACCEPTED,
                "case {case}: the model accepts, the assembly does not"
            );
            assert!(output == expected, "case {case}: different bytes");
        }
        Err(error) => {
            assert_eq!(
                status, REJECTED,
                "case {case}: the model says {error}, the assembly accepts"
            )
        }
    }
}

#[test]
fn the_assembly_unpacks_exactly_as_the_model_does() {
    let harness = Harness::new();
    let mut rng = Rng(2026);
    let mut case = 0;
    let mut next_case = || {
        case += 1;
        case
    };

    // Inputs with short and long literal runs, offsets below 4 and at least 4, short and
    // long matches, and a long zero run.
    let mut inputs: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"abcabcabcabcabcabcabcabcabcabcabcabc, then something else entirely".to_vec(),
        (0..3000)
            .map(|i| {
                if i % 97 < 40 {
                    (i % 3) as u8
                } else {
                    (i * 7 % 251) as u8
                }
            })
            .collect(),
        [
            vec![0u8; 5000],
            (0..300).map(|i| i as u8).collect(),
            vec![9u8; 40],
        ]
        .concat(),
    ];
    let pieces: Vec<Vec<u8>> = (0..40)
        .map(|n| (0..1 + n % 13).map(|_| rng.next() as u8).collect())
        .collect();
    let mut code = Vec::new();
    while code.len() < 20_000 {
        code.extend_from_slice(&pieces[rng.below(pieces.len())]);
    }
    inputs.push(code);
    // Short repeats with offsets 1 to 3 between random bytes: matches short enough for
    // the fast path whose offset sends them to the checked copy.
    let mut repeats = Vec::new();
    for j in 0..300 {
        repeats.extend((0..1 + rng.below(4)).map(|_| rng.next() as u8));
        let period = 1 + j % 3;
        let start = repeats.len() - period.min(repeats.len());
        for _ in 0..4 + rng.below(14) {
            repeats.push(repeats[start + (repeats.len() - start) % period]);
        }
    }
    inputs.push(repeats);
    // A tail of short sequences (one literal, a 16-byte match from far back) before the
    // final literals: the last few bytes of the block still write a lot of output, so
    // the fast path's input bound is what keeps them on the checked path.
    let mut tail: Vec<u8> = (0..512).map(|_| rng.next() as u8).collect();
    for j in 0..12 {
        tail.push(0xe0 + j as u8);
        tail.extend_from_within(j * 37..j * 37 + 16);
    }
    tail.extend_from_slice(b"end!!!");
    inputs.push(tail);

    for input in &inputs {
        let block = compress(input);
        check(&harness, next_case(), &block, input.len());
        // Cut short anywhere, and lengths that do not match.
        for _ in 0..6 {
            let cut = rng.below(block.len());
            check(&harness, next_case(), &block[..cut], input.len());
        }
        check(&harness, next_case(), &block, input.len() + 1);
        // Every output a little too short and every cut near the end: sequences close to
        // either end must leave the fast path for the checked one.
        for short in 1..=36.min(input.len()) {
            check(&harness, next_case(), &block, input.len() - short);
        }
        // Cut near the end, with the rest of the block right behind the cut: a decoder
        // that read past its input's end would find a good ending there.
        for cut in 1..=16.min(block.len()) {
            let (kept, rest) = block.split_at(block.len() - cut);
            let mut after = [0x77; 16];
            after[..cut].copy_from_slice(rest);
            check_after(&harness, next_case(), kept, &after, input.len());
        }
        // Blocks that end after some sequence's literals (valid: the last sequence has
        // literals only), and whole blocks with an output that ends there (too short):
        // wherever the end falls, no sequence may read or write past it.
        // Sequences with 4 to 14 literals, spread over the block: the ones whose output
        // could end inside the fast path's reach.
        let points: Vec<_> = after_literals(&block)
            .into_iter()
            .filter(|(_, _, literals)| (4..15).contains(literals))
            .collect();
        for &(read, written, _) in points.iter().step_by(points.len().div_ceil(16).max(1)) {
            check(&harness, next_case(), &block[..read], written);
            check(&harness, next_case(), &block, written);
        }
        // Damaged bytes.
        for _ in 0..20 {
            let mut damaged = block.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(damaged.len());
                damaged[at] = rng.next() as u8;
            }
            check(&harness, next_case(), &damaged, input.len());
        }
    }

    // By hand: offset 0, an offset before the start, a repeat at offset 1, runs past the
    // end, and length bytes that sum past 2^32 (a 32-bit register would wrap to 16).
    check(&harness, next_case(), &[0x10, b'a', 0, 0], 5);
    check(&harness, next_case(), &[0x10, b'a', 2, 0], 5);
    check(&harness, next_case(), &[0x10, b'a', 1, 0, 0x10, b'b'], 6);
    check(&harness, next_case(), &[0x10, b'a', 1, 0], 4);
    check(&harness, next_case(), &[0x30, b'a', b'b', b'c'], 2);
    let mut wrapping = vec![0xf0];
    wrapping.extend(std::iter::repeat_n(0xff, 16_843_009));
    wrapping.push(2);
    wrapping.extend_from_slice(&[7; 16]);
    check(&harness, next_case(), &wrapping, 16);
}
