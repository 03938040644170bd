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

    /// Runs the assembly on `block` with an output of `len` bytes: the exit status and
    /// the memory from the guard before the output to the guard after its overrun.
    fn run(&self, case: usize, block: &[u8], len: usize) -> (i32, Vec<u8>) {
        let bin = self.dir.join(format!("case{case}.bin"));
        let source = self.dir.join(format!("case{case}.s"));
        let object = self.dir.join(format!("case{case}.o"));
        let program = self.dir.join(format!("case{case}"));
        std::fs::write(&bin, block).expect("write the block");
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
input: .incbin "{bin}"
input_end:
    .fill 16, 1, 0x77           /* short literal runs read up to 15 bytes past the end */
    .balign 16
region:
    .fill {guard}, 1, 0xa5
output:
    .fill {len} + {overrun}, 1, 0x5a
    .fill {guard}, 1, 0xa5
"#,
            unpack_s = self.unpack_s.display(),
            bin = bin.display(),
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

/// Runs one case and checks the assembly against the model.
fn check(harness: &Harness, case: usize, block: &[u8], len: usize) {
    let (status, memory) = harness.run(case, block, len);
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

    for input in &inputs {
        let block = compress(input);
        check(&harness, next_case(), &block, input.len());
        // Cut short anywhere, and lengths that do not match.
        for _ in 0..6 {
            let cut = rng.below(block.len());
            check(&harness, next_case(), &block[..cut], input.len());
        }
        check(&harness, next_case(), &block, input.len() + 1);
        if !input.is_empty() {
            check(&harness, next_case(), &block, input.len() - 1);
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
