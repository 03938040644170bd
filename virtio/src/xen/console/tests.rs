//! The console ring against a daemon played by the test.

use super::*;
use crate::xen::VecPage;

/// The daemon's side: takes everything written to `out`.
fn drain_out(page: &VecPage) -> Vec<u8> {
    let cons = page.load_u32(OUT_CONS);
    let prod = page.load_u32(OUT_PROD);
    let mut bytes = vec![0; prod.wrapping_sub(cons) as usize];
    copy_out(page, OUT, OUT_SIZE, cons, &mut bytes);
    page.store_u32(OUT_CONS, prod);
    bytes
}

/// The daemon's side: types `bytes` into `in`.
fn type_in(page: &VecPage, bytes: &[u8]) {
    let prod = page.load_u32(IN_PROD);
    copy_in(page, IN, IN_SIZE, prod, bytes);
    page.store_u32(IN_PROD, prod.wrapping_add(bytes.len() as u32));
}

#[test]
fn layout_matches_console_h() {
    let page = VecPage::new();
    let console = Console::new(page.clone());
    assert_eq!(console.write(b"hi"), Ok(2));
    assert_eq!(page.load_u16(1024), u16::from_le_bytes(*b"hi"));
    assert_eq!(page.load_u32(3084), 2, "out_prod");
    page.store_u32(3076, 1); // in_prod
    page.write(0, b"x");
    let mut byte = [0];
    assert_eq!(console.read(&mut byte), Ok(1));
    assert_eq!(&byte, b"x");
    assert_eq!(page.load_u32(3072), 1, "in_cons");
}

#[test]
fn writes_what_fits_and_says_how_much() {
    let page = VecPage::new();
    let console = Console::new(page.clone());
    let text: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
    assert_eq!(console.write(&text), Ok(2048));
    assert_eq!(console.write(b"more"), Ok(0), "full until the daemon reads");
    assert_eq!(console.output_pending(), Ok(2048));
    assert_eq!(drain_out(&page), &text[..2048]);
    assert_eq!(console.write(&text[2048..]), Ok(952));
    assert_eq!(drain_out(&page), &text[2048..]);
}

#[test]
fn output_wraps_at_the_ring_end_and_at_u32() {
    let page = VecPage::new();
    let start = u32::MAX - 3;
    page.store_u32(OUT_CONS, start);
    page.store_u32(OUT_PROD, start);
    let console = Console::new(page.clone());
    assert_eq!(console.write(b"0123456789"), Ok(10));
    // Starts 4 bytes before the ring's end (start & 2047 == 2044).
    let mut tail = [0; 4];
    page.read(OUT + 2044, &mut tail);
    assert_eq!(&tail, b"0123");
    assert_eq!(drain_out(&page), b"0123456789");
    assert_eq!(page.load_u32(OUT_PROD), 6);
}

#[test]
fn input_reads_in_pieces_across_the_wrap() {
    let page = VecPage::new();
    page.store_u32(IN_CONS, 1020);
    page.store_u32(IN_PROD, 1020);
    let console = Console::new(page.clone());
    type_in(&page, b"hello world");
    let mut first = [0; 5];
    assert_eq!(console.read(&mut first), Ok(5));
    assert_eq!(&first, b"hello");
    let mut rest = [0; 64];
    assert_eq!(console.read(&mut rest), Ok(6));
    assert_eq!(&rest[..6], b" world");
    assert_eq!(console.read(&mut rest), Ok(0));
}

#[test]
fn impossible_indices_move_nothing() {
    let page = VecPage::new();
    let console = Console::new(page.clone());
    page.store_u32(OUT_CONS, 10);
    page.store_u32(OUT_PROD, 10 + 2049);
    assert_eq!(
        console.write(b"x"),
        Err(ConsoleError::Corrupt {
            ring: "out",
            prod: 2059,
            cons: 10
        })
    );
    assert_eq!(page.load_u32(OUT_PROD), 2059, "index untouched");
    // out_cons ahead of out_prod: 4 billion bytes pending.
    page.store_u32(OUT_CONS, 11);
    page.store_u32(OUT_PROD, 10);
    assert!(console.write(b"x").is_err());
    assert!(console.output_pending().is_err());
    page.store_u32(IN_PROD, 5000);
    let mut buffer = [0; 8];
    assert_eq!(
        console.read(&mut buffer),
        Err(ConsoleError::Corrupt {
            ring: "in",
            prod: 5000,
            cons: 0
        })
    );
    assert_eq!(page.load_u32(IN_CONS), 0);
}
