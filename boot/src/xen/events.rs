//! Event channels: the shared info page's layout, the `event_channel_op` arguments and
//! the scan an upcall makes of the pending bitmap, tested against a fake page.
//!
//! Xen signals a guest through event channels (public/event_channel.h, the 2-level ABI):
//! a port's bit in `evtchn_pending` is set, and unless the port's bit in `evtchn_mask`
//! is set, Xen sets the port's word bit in the bound vCPU's `evtchn_pending_sel` and its
//! `evtchn_upcall_pending`, and raises the upcall vector when that flag was clear. The
//! upcall handler must clear the flag first (or no further upcall comes), then take the
//! selector, then clear each pending, unmasked port's bit before acting on it, so that
//! an event arriving meanwhile sets the bit again and raises another upcall.

/// Ports of the 2-level ABI on x86_64: 64 words of 64 bits.
pub const PORTS: u32 = 64 * 64;
/// Words in the pending and mask bitmaps.
pub const WORDS: usize = 64;
/// vCPUs whose `vcpu_info` is in the shared info page (`XEN_LEGACY_MAX_VCPUS`).
pub const SHARED_VCPUS: usize = 32;
/// Size of one `struct vcpu_info`.
pub const VCPU_INFO_SIZE: usize = 64;
/// Offset of `evtchn_upcall_pending` (a byte) in a `vcpu_info`.
pub const UPCALL_PENDING: usize = 0;
/// Offset of `evtchn_upcall_mask` (a byte) in a `vcpu_info`.
pub const UPCALL_MASK: usize = 1;
/// Offset of `evtchn_pending_sel` (a 64-bit word) in a `vcpu_info`.
pub const PENDING_SELECTOR: usize = 8;
/// Offset of `evtchn_pending[]` in the shared info page (after the 32 `vcpu_info`s).
pub const PENDING: usize = SHARED_VCPUS * VCPU_INFO_SIZE;
/// Offset of `evtchn_mask[]` in the shared info page.
pub const MASK: usize = PENDING + WORDS * 8;

/// `EVTCHNOP_bind_interdomain`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
/// `EVTCHNOP_close`.
pub const EVTCHNOP_CLOSE: u64 = 3;
/// `EVTCHNOP_send`.
pub const EVTCHNOP_SEND: u64 = 4;
/// `EVTCHNOP_alloc_unbound`.
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
/// `EVTCHNOP_unmask`.
pub const EVTCHNOP_UNMASK: u64 = 9;

/// The argument of `EVTCHNOP_send`, `EVTCHNOP_close` and `EVTCHNOP_unmask`: one port.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortArgument {
    /// The local port.
    pub port: u32,
}

/// `struct evtchn_alloc_unbound`: a new port of `dom` that `remote_dom` may bind.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocUnbound {
    /// Whose port: `DOMID_SELF`.
    pub dom: u16,
    /// The domain allowed to bind it (the backend's).
    pub remote_dom: u16,
    /// Written by Xen: the new port.
    pub port: u32,
}

/// `struct evtchn_bind_interdomain`: connect a new local port to `remote_port` of
/// `remote_dom`, which that domain allocated unbound for this one.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindInterdomain {
    /// The other domain (`DOMID_SELF` for a loop back to this one).
    pub remote_dom: u16,
    /// Padding before the 32-bit port.
    pub pad: u16,
    /// The other side's unbound port.
    pub remote_port: u32,
    /// Written by Xen: the new local port.
    pub local_port: u32,
}

/// What the scan needs from the shared info page: atomic accesses to its words. The
/// kernel implements it over the mapped page; the tests over a fake.
pub trait EventWords {
    /// Clears `vcpu`'s `evtchn_upcall_pending` (before the selector is read).
    fn clear_upcall_pending(&self, vcpu: usize);
    /// Atomically swaps `vcpu`'s `evtchn_pending_sel` with 0 and returns the old value.
    fn take_selector(&self, vcpu: usize) -> u64;
    /// `evtchn_pending[word]`.
    fn pending(&self, word: usize) -> u64;
    /// `evtchn_mask[word]`.
    fn mask(&self, word: usize) -> u64;
    /// Atomically clears `bits` in `evtchn_pending[word]`.
    fn clear_pending(&self, word: usize, bits: u64);
}

/// One upcall's work for `vcpu` (below [`SHARED_VCPUS`]): clears its upcall flag, takes
/// its selector, and for every pending, unmasked port of the selected words clears the
/// port's pending bit, then calls `fire(port)`. Returns how many ports fired.
///
/// Masked ports stay pending (the 2-level ABI delivers them when unmasked); a selector
/// bit whose word has nothing unmasked pending is ignored.
pub fn scan(words: &impl EventWords, vcpu: usize, mut fire: impl FnMut(u32)) -> u32 {
    words.clear_upcall_pending(vcpu);
    let mut selector = words.take_selector(vcpu);
    let mut fired = 0;
    while selector != 0 {
        let word = selector.trailing_zeros() as usize;
        selector &= selector - 1;
        let mut ready = words.pending(word) & !words.mask(word);
        while ready != 0 {
            let bit = ready.trailing_zeros();
            ready &= ready - 1;
            words.clear_pending(word, 1 << bit);
            fire(word as u32 * 64 + bit);
            fired += 1;
        }
    }
    fired
}

/// Where a port's bit lives: its word and the bit in it.
pub fn port_bit(port: u32) -> Option<(usize, u64)> {
    (port < PORTS).then(|| ((port / 64) as usize, 1 << (port % 64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;
    use core::mem::{offset_of, size_of};

    /// A shared info page as plain words, recording the order of accesses.
    struct Fake {
        upcall_pending: RefCell<[bool; SHARED_VCPUS]>,
        selector: RefCell<[u64; SHARED_VCPUS]>,
        pending: RefCell<[u64; WORDS]>,
        mask: RefCell<[u64; WORDS]>,
        trace: RefCell<Vec<String>>,
    }

    impl Default for Fake {
        fn default() -> Self {
            Self {
                upcall_pending: RefCell::new([false; SHARED_VCPUS]),
                selector: RefCell::new([0; SHARED_VCPUS]),
                pending: RefCell::new([0; WORDS]),
                mask: RefCell::new([0; WORDS]),
                trace: RefCell::new(Vec::new()),
            }
        }
    }

    impl Fake {
        /// What Xen does when `port` is signalled to `vcpu`.
        fn raise(&self, vcpu: usize, port: u32) {
            let (word, bit) = port_bit(port).unwrap();
            self.pending.borrow_mut()[word] |= bit;
            if self.mask.borrow()[word] & bit == 0 {
                self.selector.borrow_mut()[vcpu] |= 1 << word;
                self.upcall_pending.borrow_mut()[vcpu] = true;
            }
        }
    }

    impl EventWords for Fake {
        fn clear_upcall_pending(&self, vcpu: usize) {
            self.trace.borrow_mut().push("clear upcall".into());
            self.upcall_pending.borrow_mut()[vcpu] = false;
        }
        fn take_selector(&self, vcpu: usize) -> u64 {
            self.trace.borrow_mut().push("take selector".into());
            core::mem::take(&mut self.selector.borrow_mut()[vcpu])
        }
        fn pending(&self, word: usize) -> u64 {
            self.pending.borrow()[word]
        }
        fn mask(&self, word: usize) -> u64 {
            self.mask.borrow()[word]
        }
        fn clear_pending(&self, word: usize, bits: u64) {
            self.trace.borrow_mut().push(format!(
                "clear {}",
                word * 64 + bits.trailing_zeros() as usize
            ));
            self.pending.borrow_mut()[word] &= !bits;
        }
    }

    #[test]
    fn layout_matches_xen() {
        // struct shared_info { struct vcpu_info vcpu_info[32]; xen_ulong_t evtchn_pending[64];
        // xen_ulong_t evtchn_mask[64]; ... }, vcpu_info = 64 bytes on x86_64.
        assert_eq!(PENDING, 2048);
        assert_eq!(MASK, 2560);
        assert_eq!(MASK + WORDS * 8, 3072); // wc_version follows
        assert_eq!(size_of::<AllocUnbound>(), 8);
        assert_eq!(offset_of!(AllocUnbound, remote_dom), 2);
        assert_eq!(offset_of!(AllocUnbound, port), 4);
        assert_eq!(size_of::<BindInterdomain>(), 12);
        assert_eq!(offset_of!(BindInterdomain, remote_port), 4);
        assert_eq!(offset_of!(BindInterdomain, local_port), 8);
        assert_eq!(size_of::<PortArgument>(), 4);
    }

    #[test]
    fn ports_fire_once_in_order_and_bits_are_cleared_first() {
        let page = Fake::default();
        for port in [3, 1, 200, 4095] {
            page.raise(0, port);
        }
        let mut fired = Vec::new();
        assert_eq!(scan(&page, 0, |port| fired.push(port)), 4);
        assert_eq!(fired, [1, 3, 200, 4095]);
        let trace = page.trace.borrow();
        assert_eq!(trace[..3], ["clear upcall", "take selector", "clear 1"]);
        assert!(page.pending.borrow().iter().all(|&word| word == 0));
        assert!(!page.upcall_pending.borrow()[0]);
        drop(trace);
        // Nothing left: a second upcall fires nothing.
        assert_eq!(scan(&page, 0, |_| panic!("fired twice")), 0);
    }

    #[test]
    fn masked_ports_stay_pending() {
        let page = Fake::default();
        page.mask.borrow_mut()[0] = 1 << 5;
        page.raise(0, 5);
        page.raise(0, 6);
        // A selector bit set by another port of the same word: 5 is seen but masked.
        page.pending.borrow_mut()[0] |= 1 << 5;
        let mut fired = Vec::new();
        scan(&page, 0, |port| fired.push(port));
        assert_eq!(fired, [6]);
        assert_eq!(page.pending.borrow()[0], 1 << 5);
    }

    #[test]
    fn other_vcpus_selectors_are_left_alone() {
        let page = Fake::default();
        page.raise(1, 70);
        assert_eq!(scan(&page, 0, |_| panic!("not this vCPU's")), 0);
        assert_eq!(page.selector.borrow()[1], 1 << 1);
        let mut fired = Vec::new();
        scan(&page, 1, |port| fired.push(port));
        assert_eq!(fired, [70]);
    }

    #[test]
    fn a_stale_selector_bit_fires_nothing() {
        let page = Fake::default();
        page.selector.borrow_mut()[0] = 1 << 63;
        assert_eq!(scan(&page, 0, |_| panic!("nothing pending")), 0);
    }

    #[test]
    fn port_bits() {
        assert_eq!(port_bit(0), Some((0, 1)));
        assert_eq!(port_bit(65), Some((1, 2)));
        assert_eq!(port_bit(4095), Some((63, 1 << 63)));
        assert_eq!(port_bit(4096), None);
    }
}
