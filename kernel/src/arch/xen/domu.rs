//! What a domU's drivers are built on: the xenstore ring, the grant table's frames and
//! pages to share, each a `shared::Page` with its guest frame number.
//!
//! The protocols over them (xenstore, grants, netfront) are `torito_virtio::xen`'s; this
//! module only finds the pages and hands them over.

use super::shared::{Page, SIZE};
use super::{Error, hypercall};
use alloc::vec::Vec;
use torito_boot::xen::{self as abi, MapSpace, Param};
use torito_virtio::xen::GuestPage;

/// Grant-table frames the kernel asks for: 512 references each (version 1), enough for
/// two NICs' rings and buffers.
pub const GRANT_FRAMES: u32 = 4;

fn param(param: Param) -> Result<u64, Error> {
    let (status, value) = hypercall::get_param(param);
    Error::check(param.name(), status)?;
    Ok(value)
}

/// The xenstore ring's page and event channel port, from the HVM parameters the
/// toolstack set.
///
/// # Errors
/// When the parameters are missing or Xen refuses them, or the page cannot be mapped.
pub fn xenstore() -> Result<(Page, u32), Error> {
    let pfn = param(Param::StorePfn)?;
    let port = param(Param::StoreEvtchn)?;
    let bad = |param: Param, value| Error::Param {
        name: param.name(),
        value,
    };
    let phys = abi::frame_address(pfn).ok_or(bad(Param::StorePfn, pfn))?;
    let port = abi::port(port).ok_or(bad(Param::StoreEvtchn, port))?;
    let address = crate::arch::paging::map_shared(phys).ok_or(bad(Param::StorePfn, pfn))?;
    // SAFETY: the toolstack's xenstore page for this domain (a special page outside the
    // usable RAM of the memory map), mapped read-write just above for good, and accessed
    // only through `Page`.
    Ok((unsafe { Page::new(address) }, port))
}

/// `count` zeroed pages of the kernel's own memory, each with its frame number (the
/// kernel is identity-mapped), to be shared with a backend; `None` when the heap cannot
/// give them. They are never freed: a backend may hold a mapping of one long after the
/// driver that granted it is gone.
pub fn pages(count: usize) -> Option<Vec<GuestPage<Page>>> {
    let layout = core::alloc::Layout::from_size_align(SIZE, SIZE).ok()?;
    let mut pages = Vec::new();
    pages.try_reserve_exact(count).ok()?;
    for _ in 0..count {
        // SAFETY: `layout` has a non-zero size.
        let address = unsafe { alloc::alloc::alloc_zeroed(layout) } as u64;
        if address == 0 {
            return None; // those taken so far stay leaked: a heap this full is lost anyway
        }
        // SAFETY: a page-aligned block of the heap, never freed (above), so it stays
        // mapped read-write and holds no Rust object: only `Page` accesses it.
        let page = unsafe { Page::new(address) };
        pages.push(GuestPage {
            page,
            frame: address / SIZE as u64,
        });
    }
    Some(pages)
}

/// The grant table's first frames (up to [`GRANT_FRAMES`], as many as Xen allows), each
/// placed with `XENMEM_add_to_physmap` over a page of the kernel's own memory.
///
/// # Errors
/// Xen's refusal; `NoFrame` when the heap has no pages for them.
pub fn grant_frames() -> Result<Vec<Page>, Error> {
    let (status, reply) = hypercall::query_grant_frames();
    Error::check("GNTTABOP_query_size", status)?;
    let count = reply.frames(GRANT_FRAMES).ok_or(Error::Param {
        name: "GNTTABOP_query_size max_nr_frames",
        value: u64::from(reply.max_nr_frames),
    })?;
    let pages = pages(count as usize).ok_or(Error::NoFrame("grant table"))?;
    let mut frames = Vec::with_capacity(pages.len());
    for (index, page) in pages.into_iter().enumerate() {
        Error::check(
            "XENMEM_add_to_physmap(grant table)",
            hypercall::add_to_physmap(MapSpace::GrantTable, index as u64, page.frame),
        )?;
        frames.push(page.page);
    }
    Ok(frames)
}
