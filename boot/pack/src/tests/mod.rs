//! Host tests of the LZ4 code and the layout helpers, and (`unpacker`) of the boot stub's
//! assembly against the Rust model. Packing real kernels (and booting the result, damaged
//! or not) is tested in qemu/tests/pack.rs, after `make images`.

mod unpacker;

use crate::{UnpackError, compress, subtract, unpack};

/// A small deterministic generator (a 64-bit LCG, high bits), so failures reproduce.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 24
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Inputs with what a kernel image has: code-like bytes that repeat in pieces, zero
/// padding, short periods (offsets below 4 and 16), long runs, and the edge sizes.
fn corpus() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut inputs = vec![
        Vec::new(),
        vec![7],
        b"abc".to_vec(),
        b"abcdabcdabcdabcdabcd".to_vec(),
        vec![0; 100_000],
        (0..5_000).map(|i| (i % 3) as u8).collect(),
        (0..5_000).map(|i| (i % 7) as u8 * 31).collect(),
        rng.bytes(10_000),
    ];
    for len in [1, 4, 5, 11, 12, 13, 15, 16, 17, 19, 20, 270, 271] {
        inputs.push(rng.bytes(len));
        inputs.push(vec![0xaa; len]);
    }
    // "Code": random words drawn from a small vocabulary of instruction-sized pieces,
    // with runs of zeros between, and one distance beyond the 64 KiB window.
    let pieces: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            let len = 1 + rng.below(12);
            rng.bytes(len)
        })
        .collect();
    let mut code = Vec::new();
    while code.len() < 60_000 {
        if rng.below(50) == 0 {
            let zeros = rng.below(4096);
            code.extend(std::iter::repeat_n(0, zeros));
        } else {
            let piece = rng.below(pieces.len());
            code.extend_from_slice(&pieces[piece]);
        }
    }
    inputs.push(code);
    // Medium zero runs: the match search's worst case before it stopped at 64 bytes.
    let mut runs = Vec::new();
    for byte in 1..=130u8 {
        runs.extend(std::iter::repeat_n(0, 500));
        runs.push(byte);
    }
    inputs.push(runs);
    let mut far = rng.bytes(300);
    far.extend(rng.bytes(70_000));
    far.extend_from_within(..300);
    inputs.push(far);
    inputs
}

#[test]
fn what_we_compress_unpacks_with_our_unpacker_and_the_reference_one() {
    for input in corpus() {
        let packed = compress(&input);
        assert_eq!(
            unpack(&packed, input.len()).as_deref(),
            Ok(&input[..]),
            "len {}",
            input.len()
        );
        let reference = lz4_flex::block::decompress(&packed, input.len());
        assert_eq!(
            reference.as_deref().ok(),
            Some(&input[..]),
            "reference, len {}",
            input.len()
        );
    }
}

#[test]
fn our_unpacker_reads_what_the_reference_compressor_writes() {
    for input in corpus() {
        let packed = lz4_flex::block::compress(&input);
        assert_eq!(
            unpack(&packed, input.len()).as_deref(),
            Ok(&input[..]),
            "len {}",
            input.len()
        );
    }
}

#[test]
fn the_parse_never_loses_to_a_greedy_compressor() {
    // The point of our own compressor: it chooses its parse by cost, so it must never
    // lose to the fast reference compressor. (How much it wins on a real kernel, where
    // it matters, is checked in qemu/tests/pack.rs.)
    for input in corpus() {
        let ours = compress(&input).len();
        let reference = lz4_flex::block::compress(&input).len();
        assert!(
            ours <= reference,
            "len {}: {ours} > reference {reference}",
            input.len()
        );
    }
}

#[test]
fn long_runs_compress_to_almost_nothing() {
    let packed = compress(&vec![0; 1 << 20]);
    assert!(
        packed.len() < 1 << 13,
        "1 MiB of zeros took {} bytes",
        packed.len()
    );
}

#[test]
fn every_truncation_is_an_error() {
    let mut rng = Rng(42);
    let input: Vec<u8> = (0..3_000)
        .map(|i| {
            if i % 100 < 60 {
                (i % 5) as u8
            } else {
                rng.next() as u8
            }
        })
        .collect();
    let packed = compress(&input);
    for cut in 0..packed.len() {
        let result = unpack(&packed[..cut], input.len());
        assert!(
            matches!(result, Err(UnpackError::Truncated | UnpackError::TooShort)),
            "cut at {cut}: {:?}",
            result.map(|out| out.len())
        );
    }
}

#[test]
fn each_kind_of_damage_is_named() {
    // Token 0x10: one literal, then a match (length 4) whose offset follows.
    assert_eq!(
        unpack(&[0x10, b'a', 0, 0], 5),
        Err(UnpackError::BadOffset),
        "offset 0"
    );
    assert_eq!(
        unpack(&[0x10, b'a', 2, 0], 5),
        Err(UnpackError::BadOffset),
        "before the start"
    );
    assert_eq!(
        unpack(&[0x10, b'a', 1, 0, 0x10, b'b'], 6),
        Ok(b"aaaaab".to_vec()),
        "offset 1 repeats"
    );
    assert_eq!(
        unpack(&[0x10, b'a', 1, 0], 4),
        Err(UnpackError::TooLong),
        "match past the end"
    );
    assert_eq!(
        unpack(&[0x30, b'a', b'b', b'c'], 2),
        Err(UnpackError::TooLong),
        "literals past the end"
    );
    assert_eq!(
        unpack(&[0x30, b'a', b'b', b'c'], 4),
        Err(UnpackError::TooShort)
    );
    assert_eq!(unpack(&[0x30, b'a', b'b'], 3), Err(UnpackError::Truncated));
    assert_eq!(
        unpack(&[0xf0, 255], 400),
        Err(UnpackError::Truncated),
        "length bytes run out"
    );
    assert_eq!(
        unpack(&[], 0),
        Err(UnpackError::Truncated),
        "no token at all"
    );
}

#[test]
fn damaged_blocks_never_panic_and_decode_as_the_reference_does() {
    let mut rng = Rng(7);
    let corpus: Vec<(Vec<u8>, Vec<u8>)> = corpus()
        .into_iter()
        .map(|input| (compress(&input), input))
        .collect();
    for round in 0..3_000 {
        let (packed, input) = &corpus[round % corpus.len()];
        let mut packed = packed.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(packed.len());
            packed[at] = rng.next() as u8;
        }
        // Whatever ours accepts, the reference decoder must read the same way (it may
        // accept more: ours also insists on the exact length).
        if let Ok(out) = unpack(&packed, input.len()) {
            let reference = lz4_flex::block::decompress(&packed, input.len());
            assert_eq!(reference.ok(), Some(out), "round {round}");
        }
    }
}

#[test]
fn subtract_cuts_a_hole_out_of_a_range() {
    assert_eq!(subtract(0..10, &(3..5)), vec![0..3, 5..10]);
    assert_eq!(subtract(0..10, &(0..5)), vec![5..10]);
    assert_eq!(subtract(0..10, &(8..20)), vec![0..8]);
    assert_eq!(subtract(0..10, &(10..20)), vec![0..10]);
    assert_eq!(
        subtract(5..10, &(0..20)),
        Vec::<std::ops::Range<u64>>::new()
    );
    assert_eq!(subtract(5..5, &(0..1)), Vec::<std::ops::Range<u64>>::new());
}
