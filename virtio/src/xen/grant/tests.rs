//! The grant table against a hypervisor played by the test.

use super::*;
use crate::xen::VecPage;

fn table(frames: usize) -> (Table<VecPage>, Vec<VecPage>) {
    let pages: Vec<VecPage> = (0..frames).map(|_| VecPage::new()).collect();
    (Table::new(pages.clone()), pages)
}

/// What Xen does when the grantee maps `reference`: sets `GTF_reading` (and
/// `GTF_writing` for a writable map) by compare-exchange, only while access is
/// permitted to `domid`. `false` if the map is refused.
fn xen_map(page: &VecPage, reference: u32, domid: u16, write: bool) -> bool {
    let offset = reference as usize * 8;
    loop {
        let flags = page.load_u16(offset);
        if flags & GTF_PERMIT_ACCESS == 0 || page.load_u16(offset + 2) != domid {
            return false;
        }
        if write && flags & GTF_READONLY != 0 {
            return false;
        }
        let busy = GTF_READING | if write { GTF_WRITING } else { 0 };
        if page
            .compare_exchange_u16(offset, flags, flags | busy)
            .is_ok()
        {
            return true;
        }
    }
}

/// What Xen does at unmap: clears both status bits.
fn xen_unmap(page: &VecPage, reference: u32) {
    let offset = reference as usize * 8;
    let flags = page.load_u16(offset);
    page.store_u16(offset, flags & !(GTF_READING | GTF_WRITING));
}

#[test]
fn grants_fill_the_v1_entry_and_skip_the_reserved_references() {
    let (table, pages) = table(1);
    let reference = table.grant_access(7, 0x1234, false).unwrap();
    assert_eq!(reference, GrantRef(RESERVED));
    // The raw layout: flags, domid, frame.
    let offset = RESERVED as usize * 8;
    assert_eq!(pages[0].load_u16(offset), GTF_PERMIT_ACCESS);
    assert_eq!(pages[0].load_u16(offset + 2), 7);
    assert_eq!(pages[0].load_u32(offset + 4), 0x1234);
    let readonly = table.grant_access(0, 0x99, true).unwrap();
    assert_eq!(readonly, GrantRef(RESERVED + 1));
    assert_eq!(
        table.entry(readonly).unwrap().flags,
        GTF_PERMIT_ACCESS | GTF_READONLY
    );
    // The reserved entries are the toolstack's and stay as they were.
    assert_eq!(pages[0].load_u64(0), 0);
}

#[test]
fn references_span_frames() {
    let (table, pages) = table(2);
    assert_eq!(table.capacity(), 1024 - RESERVED);
    let mut last = GrantRef(0);
    for frame in 0..table.capacity() {
        last = table.grant_access(1, u64::from(frame), false).unwrap();
    }
    assert_eq!(last, GrantRef(1023));
    assert_eq!(pages[1].load_u32(511 * 8 + 4), table.capacity() - 1);
    assert_eq!(
        table.grant_access(1, 5, false),
        Err(GrantError::Exhausted {
            capacity: 1024 - RESERVED
        })
    );
}

#[test]
fn ending_frees_the_reference_and_withdraws_access() {
    let (table, pages) = table(1);
    let reference = table.grant_access(3, 42, false).unwrap();
    let free = table.free();
    assert!(xen_map(&pages[0], reference.0, 3, true));
    xen_unmap(&pages[0], reference.0);
    assert_eq!(table.end_access(reference), Ok(()));
    assert_eq!(table.free(), free + 1);
    assert_eq!(table.entry(reference).unwrap().flags, 0);
    assert!(
        !xen_map(&pages[0], reference.0, 3, false),
        "access withdrawn"
    );
    // The reference is handed out again.
    assert_eq!(table.grant_access(4, 43, true), Ok(reference));
}

#[test]
fn a_mapped_grant_is_not_ended() {
    let (table, pages) = table(1);
    let reference = table.grant_access(3, 42, false).unwrap();
    assert!(xen_map(&pages[0], reference.0, 3, true));
    let free = table.free();
    let flags = GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING;
    assert_eq!(
        table.end_access(reference),
        Err(GrantError::InUse { reference, flags })
    );
    // Still granted, still allocated, not handed out again.
    assert_eq!(table.entry(reference).unwrap().flags, flags);
    assert_eq!(table.free(), free);
    assert_ne!(table.grant_access(3, 50, false), Ok(reference));
    // A backend that never unmaps keeps it forever: refused every time.
    for _ in 0..3 {
        assert!(matches!(
            table.end_access(reference),
            Err(GrantError::InUse { .. })
        ));
    }
    xen_unmap(&pages[0], reference.0);
    assert_eq!(table.end_access(reference), Ok(()));
}

#[test]
fn references_not_handed_out_are_refused() {
    let (table, _pages) = table(1);
    for reference in [
        GrantRef(0),
        GrantRef(RESERVED),
        GrantRef(511),
        GrantRef(512),
        GrantRef(u32::MAX),
    ] {
        assert_eq!(
            table.end_access(reference),
            Err(GrantError::NotGranted { reference })
        );
    }
    let reference = table.grant_access(1, 1, false).unwrap();
    assert_eq!(table.end_access(reference), Ok(()));
    assert_eq!(
        table.end_access(reference),
        Err(GrantError::NotGranted { reference }),
        "ended twice"
    );
    assert_eq!(table.entry(GrantRef(512)), None);
}

#[test]
fn frames_past_32_bits_are_refused() {
    let (table, _pages) = table(1);
    let free = table.free();
    assert_eq!(
        table.grant_access(1, 1 << 32, false),
        Err(GrantError::FrameTooLarge { frame: 1 << 32 })
    );
    assert_eq!(table.free(), free, "no reference consumed");
}

/// A smoke test with real threads; the interleaving that matters most is forced
/// deterministically in `a_map_between_look_and_clear_keeps_the_grant`.
#[test]
fn end_and_map_race_has_one_winner() {
    // The hypervisor maps, holds and unmaps in a loop on another thread while the guest
    // tries to end the grant. Two things must never happen: the end succeeding while
    // the page is mapped, and a map succeeding after the end.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    for _ in 0..20 {
        let (table, pages) = table(1);
        let reference = table.grant_access(2, 9, false).unwrap();
        let page = pages[0].clone();
        let ended = Arc::new(AtomicBool::new(false));
        let seen = ended.clone();
        let started = Arc::new(AtomicBool::new(false));
        let mapped_once = started.clone();
        let xen = std::thread::spawn(move || {
            for _ in 0..2000 {
                let was_ended = seen.load(Ordering::SeqCst);
                if xen_map(&page, reference.0, 2, true) {
                    mapped_once.store(true, Ordering::SeqCst);
                    assert!(!was_ended, "mapped after end_access succeeded");
                    // The backend uses the page for a while.
                    for _ in 0..3 {
                        std::thread::yield_now();
                    }
                    assert!(
                        !seen.load(Ordering::SeqCst),
                        "end_access succeeded while mapped"
                    );
                    xen_unmap(&page, reference.0);
                }
            }
        });
        // Race against a hypervisor that is already mapping.
        while !started.load(Ordering::SeqCst) && !xen.is_finished() {
            std::thread::yield_now();
        }
        loop {
            match table.end_access(reference) {
                Ok(()) => {
                    ended.store(true, Ordering::SeqCst);
                    break;
                }
                Err(GrantError::InUse { .. }) => std::thread::yield_now(),
                Err(other) => panic!("{other}"),
            }
        }
        xen.join().unwrap();
    }
}

/// A grant frame on which "Xen" maps the entry right after the guest's next load of
/// it: the guest then holds a stale value without the mapped bits, the one moment a
/// plain store of 0 would erase them.
struct MapsAfterLoad {
    inner: VecPage,
    armed: std::sync::atomic::AtomicBool,
}

impl SharedPage for MapsAfterLoad {
    fn load_u32(&self, offset: usize) -> u32 {
        self.inner.load_u32(offset)
    }
    fn store_u32(&self, offset: usize, value: u32) {
        self.inner.store_u32(offset, value)
    }
    fn load_u16(&self, offset: usize) -> u16 {
        let value = self.inner.load_u16(offset);
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            assert!(xen_map(&self.inner, (offset / 8) as u32, 2, true));
        }
        value
    }
    fn store_u16(&self, offset: usize, value: u16) {
        self.inner.store_u16(offset, value)
    }
    fn load_u64(&self, offset: usize) -> u64 {
        self.inner.load_u64(offset)
    }
    fn store_u64(&self, offset: usize, value: u64) {
        self.inner.store_u64(offset, value)
    }
    fn read(&self, offset: usize, into: &mut [u8]) {
        self.inner.read(offset, into)
    }
    fn write(&self, offset: usize, from: &[u8]) {
        self.inner.write(offset, from)
    }
    fn fence(&self) {
        self.inner.fence()
    }
    fn compare_exchange_u16(&self, offset: usize, current: u16, new: u16) -> Result<u16, u16> {
        self.inner.compare_exchange_u16(offset, current, new)
    }
}

#[test]
fn a_map_between_look_and_clear_keeps_the_grant() {
    let inner = VecPage::new();
    let frame = MapsAfterLoad {
        inner: inner.clone(),
        armed: false.into(),
    };
    let table = Table::new(vec![frame]);
    let reference = table.grant_access(2, 9, false).unwrap();
    table.frames[0]
        .armed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        table.end_access(reference),
        Err(GrantError::InUse { .. })
    ));
    let flags = inner.load_u16(reference.0 as usize * 8);
    assert_eq!(
        flags,
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
        "Xen's bits survive"
    );
    xen_unmap(&inner, reference.0);
    assert_eq!(table.end_access(reference), Ok(()));
}
