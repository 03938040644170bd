//! The front ring against a backend played by the test on the same page.

use super::*;
use crate::xen::VecPage;

/// A request or response of two words, as large as netif's rx entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pair(u32, u32);

impl Entry for Pair {
    const SIZE: usize = 8;
    fn load<P: SharedPage + ?Sized>(page: &P, offset: usize) -> Self {
        Pair(page.load_u32(offset), page.load_u32(offset + 4))
    }
    fn store<P: SharedPage + ?Sized>(&self, page: &P, offset: usize) {
        page.store_u32(offset, self.0);
        page.store_u32(offset + 4, self.1);
    }
}

type Ring = FrontRing<VecPage, Pair, Pair>;

/// The backend's side: reads requests from `req_cons` up to `req_prod` and answers
/// each with `(id, id * 10)`; returns how many it answered.
fn answer_all(page: &VecPage, req_cons: &mut u32, rsp_prod: &mut u32) -> u32 {
    let size = Ring::SIZE;
    let prod = page.load_u32(REQ_PROD);
    let mut answered = 0;
    while *req_cons != prod {
        let slot = SLOTS + (*req_cons & (size - 1)) as usize * 8;
        let request = Pair::load(page, slot);
        let response_slot = SLOTS + (*rsp_prod & (size - 1)) as usize * 8;
        Pair(request.0, request.0 * 10).store(page, response_slot);
        *req_cons = req_cons.wrapping_add(1);
        *rsp_prod = rsp_prod.wrapping_add(1);
        answered += 1;
    }
    page.store_u32(RSP_PROD, *rsp_prod);
    answered
}

#[test]
fn sizes_follow_ring_h() {
    // netif: tx slots are 12 bytes (the request), rx slots 8: 256 each.
    assert_eq!(ring_size(12, 4), 256);
    assert_eq!(ring_size(8, 8), 256);
    // blkif's 112-byte requests: 36 fit, 32 is the power of two.
    assert_eq!(ring_size(112, 16), 32);
    assert_eq!(Ring::SIZE, 256);
}

#[test]
fn init_sets_indices_and_thresholds() {
    let page = VecPage::new();
    page.store_u32(RSP_PROD, 77);
    page.store_u32(40, 0xdead);
    let _ring = Ring::new(page.clone());
    assert_eq!(page.load_u32(REQ_PROD), 0);
    assert_eq!(page.load_u32(RSP_PROD), 0);
    assert_eq!(page.load_u32(REQ_EVENT), 1);
    assert_eq!(page.load_u32(RSP_EVENT), 1);
    assert_eq!(page.load_u32(40), 0);
}

#[test]
fn requests_are_invisible_until_pushed_and_notify_follows_req_event() {
    let page = VecPage::new();
    let mut ring = Ring::new(page.clone());
    assert!(ring.push_request(&Pair(1, 0)));
    assert_eq!(page.load_u32(REQ_PROD), 0, "published before the push");
    // req_event is 1: the backend wants to hear of request 1.
    assert!(ring.push_requests_and_check_notify());
    assert_eq!(page.load_u32(REQ_PROD), 1);
    assert!(
        !ring.push_requests_and_check_notify(),
        "nothing new: no notification"
    );
    // The backend asks to be told when req_prod reaches 5.
    page.store_u32(REQ_EVENT, 5);
    assert!(ring.push_request(&Pair(2, 0)));
    assert!(ring.push_request(&Pair(3, 0)));
    assert!(
        !ring.push_requests_and_check_notify(),
        "req_prod 3 is short of req_event 5"
    );
    assert!(ring.push_request(&Pair(4, 0)));
    assert!(ring.push_request(&Pair(5, 0)));
    assert!(ring.push_request(&Pair(6, 0)));
    assert!(ring.push_requests_and_check_notify(), "5 lies in (3, 6]");
}

#[test]
fn responses_come_back_in_order_and_free_their_slots() {
    let page = VecPage::new();
    let mut ring = Ring::new(page.clone());
    for id in 0..10 {
        assert!(ring.push_request(&Pair(id, 0)));
    }
    ring.push_requests_and_check_notify();
    assert_eq!(ring.free_requests(), 246);
    let (mut req_cons, mut rsp_prod) = (0, 0);
    assert_eq!(answer_all(&page, &mut req_cons, &mut rsp_prod), 10);
    assert_eq!(ring.unconsumed_responses(), Ok(10));
    for id in 0..10 {
        assert_eq!(ring.take_response(), Ok(Some(Pair(id, id * 10))));
    }
    assert_eq!(ring.take_response(), Ok(None));
    assert_eq!(ring.free_requests(), 256);
}

#[test]
fn a_full_ring_refuses_requests() {
    let page = VecPage::new();
    let mut ring = Ring::new(page.clone());
    for id in 0..Ring::SIZE {
        assert!(ring.push_request(&Pair(id, 0)));
    }
    assert!(!ring.push_request(&Pair(999, 0)));
    assert_eq!(ring.free_requests(), 0);
    // The refused request wrote nothing: slot 0 still holds request 0.
    assert_eq!(Pair::load(&page, SLOTS), Pair(0, 0));
}

#[test]
fn final_check_arms_rsp_event_and_sees_late_responses() {
    let page = VecPage::new();
    let mut ring = Ring::new(page.clone());
    assert!(ring.push_request(&Pair(7, 0)));
    ring.push_requests_and_check_notify();
    assert_eq!(ring.final_check_for_responses(), Ok(false));
    assert_eq!(page.load_u32(RSP_EVENT), 1, "asks to hear of response 1");
    let (mut req_cons, mut rsp_prod) = (0, 0);
    answer_all(&page, &mut req_cons, &mut rsp_prod);
    assert_eq!(ring.final_check_for_responses(), Ok(true));
    assert_eq!(ring.take_response(), Ok(Some(Pair(7, 70))));
    assert_eq!(ring.final_check_for_responses(), Ok(false));
    assert_eq!(page.load_u32(RSP_EVENT), 2);
}

#[test]
fn indices_wrap_at_u32() {
    let start = u32::MAX - 5;
    let page = VecPage::new();
    let mut ring = Ring::starting_at(page.clone(), start);
    let (mut req_cons, mut rsp_prod) = (start, start);
    let mut next = 0;
    // Several rounds across the wrap, with the backend asking for every request.
    for _ in 0..4 {
        for _ in 0..5 {
            assert!(ring.push_request(&Pair(next, 0)));
            next += 1;
        }
        page.store_u32(REQ_EVENT, page.load_u32(REQ_PROD).wrapping_add(1));
        assert!(ring.push_requests_and_check_notify());
        assert_eq!(ring.outstanding(), 5);
        assert_eq!(answer_all(&page, &mut req_cons, &mut rsp_prod), 5);
        for id in next - 5..next {
            assert_eq!(ring.take_response(), Ok(Some(Pair(id, id * 10))));
        }
        assert_eq!(ring.free_requests(), Ring::SIZE);
    }
    assert!(page.load_u32(REQ_PROD) < start, "the indices did wrap");
}

#[test]
fn rsp_prod_past_the_requests_stops_the_ring() {
    let page = VecPage::new();
    let mut ring = Ring::new(page.clone());
    for id in 0..3 {
        assert!(ring.push_request(&Pair(id, 0)));
    }
    // Pushed but not published: the backend cannot have answered these yet.
    page.store_u32(RSP_PROD, 1);
    let error = RingError::Overrun {
        rsp_prod: 1,
        rsp_cons: 0,
        req_prod: 0,
    };
    assert_eq!(ring.take_response(), Err(error));
    // Stays stopped, even if the backend takes it back.
    page.store_u32(RSP_PROD, 0);
    assert_eq!(ring.take_response(), Err(error));
    assert_eq!(ring.final_check_for_responses(), Err(error));
    assert_eq!(ring.broken(), Some(error));
}

#[test]
fn a_huge_rsp_prod_reads_no_slot() {
    let page = VecPage::new();
    let mut ring = Ring::new(page.clone());
    assert!(ring.push_request(&Pair(1, 0)));
    ring.push_requests_and_check_notify();
    page.store_u32(RSP_PROD, 0x8000_0000);
    assert!(matches!(
        ring.unconsumed_responses(),
        Err(RingError::Overrun { .. })
    ));
    // A backend moving rsp_prod backwards (wrapping: looks like 4 billion responses).
    let page = VecPage::new();
    let mut ring = Ring::new(page.clone());
    page.store_u32(RSP_PROD, u32::MAX);
    assert!(matches!(
        ring.take_response(),
        Err(RingError::Overrun { .. })
    ));
}
