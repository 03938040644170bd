//! Xen's generic shared ring (`io/ring.h`), the front end's side.
//!
//! Why: every split driver (netfront's two rings, blkfront, ...) is built on the same
//! one-page ring of request/response slots with four free-running `u32` indices, and the
//! subtle parts (when to notify, how not to miss a response, wrap-around) should be
//! written and tested once.
//!
//! Layout of the page (`struct *_sring`): `req_prod` at 0, `req_event` at 4, `rsp_prod`
//! at 8, `rsp_event` at 12, padding to 64, then the slots. A slot is as large as the
//! larger of the request and response (they share it: a response overwrites the request
//! it answers); the ring has the largest power of two of slots that fits.
//!
//! What it trusts: `rsp_prod` and `req_event` are written by the backend. `rsp_prod`
//! is never used unchecked: the backend cannot answer requests it has not been given,
//! so a `rsp_prod` more than the published requests ahead of our consumer is a
//! protocol violation ([`RingError::Overrun`]) and the ring stops (no slot is read on
//! its word). Slot numbers are always masked, so no index addresses outside the page.
//! `req_event` only decides whether to notify; a wrong one costs a spurious or missed
//! notification of a backend that asked for it, nothing on our side.

use core::marker::PhantomData;

use super::{PAGE_SIZE, SharedPage};

/// Offset of `req_prod` in the shared ring page.
pub const REQ_PROD: usize = 0;
/// Offset of `req_event`.
pub const REQ_EVENT: usize = 4;
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = 8;
/// Offset of `rsp_event`.
pub const RSP_EVENT: usize = 12;
/// Offset of the first slot: the 16 bytes of indices and 48 of padding (`pvt`, `__pad`).
pub const SLOTS: usize = 64;

/// A request or response that lives in a ring slot, read and written field by field
/// through the [`SharedPage`] (no `unsafe` transmute of shared memory).
pub trait Entry: Sized {
    /// Its size in the C layout, in bytes.
    const SIZE: usize;
    /// Reads one from the page at `offset`.
    fn load<P: SharedPage + ?Sized>(page: &P, offset: usize) -> Self;
    /// Writes it to the page at `offset`.
    fn store<P: SharedPage + ?Sized>(&self, page: &P, offset: usize);
}

/// The number of slots of a ring whose requests and responses are `request` and
/// `response` bytes long: `__RING_SIZE`, the largest power of two that fits.
pub const fn ring_size(request: usize, response: usize) -> u32 {
    let slot = if request > response {
        request
    } else {
        response
    };
    let fits = (PAGE_SIZE - SLOTS) / slot;
    // Largest power of two <= fits (fits >= 1 for any slot up to 4032 bytes).
    1 << (usize::BITS - 1 - fits.leading_zeros())
}

/// The backend broke the ring protocol: the ring is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// `rsp_prod` claims more responses than requests were published.
    Overrun {
        /// The backend's `rsp_prod`.
        rsp_prod: u32,
        /// Our consumer index.
        rsp_cons: u32,
        /// The requests we published (`req_prod`).
        req_prod: u32,
    },
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Overrun {
                rsp_prod,
                rsp_cons,
                req_prod,
            } => write!(
                f,
                "backend's rsp_prod {rsp_prod} is past the requests published \
                 (rsp_cons {rsp_cons}, req_prod {req_prod}): the ring is stopped, \
                 reconnect the device"
            ),
        }
    }
}

impl core::error::Error for RingError {}

/// The front end's view of one shared ring: it produces requests and consumes responses.
///
/// `push_request` fills slots privately (`req_prod_pvt`); nothing is visible to the
/// backend until [`push_requests_and_check_notify`](Self::push_requests_and_check_notify),
/// so a batch costs one index store and at most one notification.
pub struct FrontRing<P, Req, Rsp> {
    page: P,
    size: u32,
    /// Requests written to slots (`req_prod_pvt`).
    req_prod_pvt: u32,
    /// Requests published to the backend (our last store to `req_prod`).
    req_prod: u32,
    /// Responses consumed (`rsp_cons`).
    rsp_cons: u32,
    broken: Option<RingError>,
    entries: PhantomData<fn(Req) -> Rsp>,
}

impl<P: SharedPage, Req: Entry, Rsp: Entry> FrontRing<P, Req, Rsp> {
    /// Slots in this ring.
    pub const SIZE: u32 = ring_size(Req::SIZE, Rsp::SIZE);

    /// Takes over `page` as a fresh ring (`SHARED_RING_INIT` + `FRONT_RING_INIT`): all
    /// indices 0, both event thresholds 1, padding zeroed. Do this before granting the
    /// page to the backend.
    pub fn new(page: P) -> Self {
        Self::starting_at(page, 0)
    }

    /// As [`new`](Self::new) with every index starting at `start` rather than 0, so
    /// tests can watch the indices wrap at `u32::MAX`. A backend must accept any start,
    /// since indices are free-running.
    pub fn starting_at(page: P, start: u32) -> Self {
        page.write(0, &[0; SLOTS]);
        page.store_u32(REQ_PROD, start);
        page.store_u32(RSP_PROD, start);
        page.store_u32(REQ_EVENT, start.wrapping_add(1));
        page.store_u32(RSP_EVENT, start.wrapping_add(1));
        Self {
            page,
            size: Self::SIZE,
            req_prod_pvt: start,
            req_prod: start,
            rsp_cons: start,
            broken: None,
            entries: PhantomData,
        }
    }

    /// The shared page.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Slots in this ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Requests that can still be pushed before a response frees a slot
    /// (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Requests pushed (published or not) and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes `request` into the next free slot, privately; `false` (and nothing
    /// written) when the ring is full (`RING_FULL`).
    #[must_use]
    pub fn push_request(&mut self, request: &Req) -> bool {
        if self.free_requests() == 0 {
            return false;
        }
        let slot = self.slot_offset(self.req_prod_pvt);
        request.store(&self.page, slot);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        true
    }

    /// Publishes the pushed requests and says whether the backend asked to be notified
    /// of them (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`): it did if its `req_event` lies
    /// in `(old req_prod, new req_prod]`.
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        let old = self.req_prod;
        let new = self.req_prod_pvt;
        if old == new {
            return false;
        }
        // The slots are written before the index that publishes them (Release store;
        // the fence is Xen's wmb()).
        self.page.fence();
        self.page.store_u32(REQ_PROD, new);
        self.req_prod = new;
        // The index is visible before we read the backend's threshold (Xen's mb()).
        self.page.fence();
        let event = self.page.load_u32(REQ_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Responses the backend has produced and we have not consumed
    /// (`RING_HAS_UNCONSUMED_RESPONSES`), checked against the published requests.
    ///
    /// # Errors
    ///
    /// [`RingError::Overrun`] if the backend claims more; the ring is stopped and every
    /// later call returns the same error.
    pub fn unconsumed_responses(&mut self) -> Result<u32, RingError> {
        if let Some(error) = self.broken {
            return Err(error);
        }
        let rsp_prod = self.page.load_u32(RSP_PROD);
        let available = rsp_prod.wrapping_sub(self.rsp_cons);
        let published = self.req_prod.wrapping_sub(self.rsp_cons);
        if available > published {
            let error = RingError::Overrun {
                rsp_prod,
                rsp_cons: self.rsp_cons,
                req_prod: self.req_prod,
            };
            self.broken = Some(error);
            return Err(error);
        }
        Ok(available)
    }

    /// The next response, if one is ready; its slot is free again afterwards.
    ///
    /// # Errors
    ///
    /// As [`unconsumed_responses`](Self::unconsumed_responses).
    pub fn take_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let response = Rsp::load(&self.page, self.slot_offset(self.rsp_cons));
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(response))
    }

    /// Whether responses are ready, after asking the backend to notify us of the next
    /// one if none is (`RING_FINAL_CHECK_FOR_RESPONSES`): `false` means a notification
    /// will come, so the caller may sleep on the event channel without missing one.
    ///
    /// # Errors
    ///
    /// As [`unconsumed_responses`](Self::unconsumed_responses).
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        self.page
            .store_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        // The threshold is visible before we look at rsp_prod again (Xen's mb()): a
        // response produced in between is either seen now or notified.
        self.page.fence();
        Ok(self.unconsumed_responses()? > 0)
    }

    /// The error that stopped the ring, if any.
    pub fn broken(&self) -> Option<RingError> {
        self.broken
    }

    fn slot_offset(&self, index: u32) -> usize {
        SLOTS + (index & (self.size - 1)) as usize * Req::SIZE.max(Rsp::SIZE)
    }
}

#[cfg(test)]
mod tests;
