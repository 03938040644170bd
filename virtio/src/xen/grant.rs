//! Grant table v1 (`grant_table.h`): entries that let another domain map our pages, and
//! an allocator of their references.
//!
//! Why: a backend can only reach a front end's ring and buffer pages through grants. A
//! grant is an 8-byte entry `{flags: u16, domid: u16, frame: u32}` in the grant-table
//! frames the guest shares with Xen (512 per frame); its index is the grant reference
//! the front end writes into xenstore or a ring request.
//!
//! The first [`RESERVED`] references are the toolstack's (0 for the console, 1 for
//! xenstore): the allocator never hands them out.
//!
//! Granting writes `frame` and `domid`, then (after a barrier) `flags`: Xen must never
//! see the permission before the entry it permits.
//!
//! Ending access: while the backend has the page mapped, Xen keeps `GTF_reading` /
//! `GTF_writing` set in the same `u16` as our `GTF_permit_access`. A plain store of 0
//! could land just after Xen set those bits and erase them: we would believe the page
//! free while the backend still writes to it. So, as Linux does for v1
//! (`gnttab_end_foreign_access_ref_v1`), the flags are cleared only by a compare-exchange
//! from a value without those bits ([`SharedPage::compare_exchange_u16`]); Xen sets them
//! by compare-exchange too, so exactly one of the two wins. If the backend still has the
//! page, [`Table::end_access`] refuses ([`GrantError::InUse`]) and the reference stays
//! allocated: the caller keeps the page and tries again later (a page whose reference
//! never comes back is never reused, which is a leak, never a corruption).
//!
//! What it trusts: nothing in the entries beyond what the protocol lets Xen write (the
//! two status bits); references handed back by callers are checked against what was
//! allocated.

use alloc::vec::Vec;

use spin::Mutex;

use super::SharedPage;

/// Entries per grant-table frame (8 bytes each).
pub const ENTRIES_PER_FRAME: u32 = 512;
/// References the allocator never hands out (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const RESERVED: u32 = 8;

/// `GTF_permit_access`: the domain in `domid` may map `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_readonly`: only for reading.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: set by Xen while the grantee has the frame mapped.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: set by Xen while the grantee has the frame mapped writable.
pub const GTF_WRITING: u16 = 1 << 4;

/// How often [`Table::end_access`] retries its compare-exchange when the flags change
/// under it, before it reports the entry busy (Xen changes them only on a map or
/// unmap, so a few rounds always suffice unless the grantee maps in a loop).
const END_RETRIES: u32 = 16;

/// A grant reference: the index of a grant entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantRef(pub u32);

/// One grant entry as read back (for tests and diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// `GTF_*` bits.
    pub flags: u16,
    /// The domain allowed to map the frame.
    pub domid: u16,
    /// The frame.
    pub frame: u32,
}

/// What went wrong with a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Every reference is in use: give the table more frames or end some grants.
    Exhausted {
        /// References the table manages (beyond the reserved ones).
        capacity: u32,
    },
    /// The frame number does not fit a v1 entry's 32 bits (memory above 16 TiB).
    FrameTooLarge {
        /// The frame.
        frame: u64,
    },
    /// The reference was not handed out by this table (or was already ended).
    NotGranted {
        /// The reference.
        reference: GrantRef,
    },
    /// The grantee still has the page mapped: keep the page and try again later.
    InUse {
        /// The reference.
        reference: GrantRef,
        /// The flags found.
        flags: u16,
    },
}

impl core::fmt::Display for GrantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Exhausted { capacity } => {
                write!(
                    f,
                    "all {capacity} grant references are in use: end some grants or add grant frames"
                )
            }
            Self::FrameTooLarge { frame } => {
                write!(
                    f,
                    "frame {frame:#x} does not fit a v1 grant entry (32 bits)"
                )
            }
            Self::NotGranted { reference } => {
                write!(
                    f,
                    "grant reference {} was not handed out by this table",
                    reference.0
                )
            }
            Self::InUse { reference, flags } => write!(
                f,
                "grant reference {} is still mapped by the grantee (flags {flags:#x}): \
                 keep the page and end the grant later",
                reference.0
            ),
        }
    }
}

impl core::error::Error for GrantError {}

struct Allocator {
    free: Vec<u32>,
    granted: Vec<bool>,
}

/// The grant table over its frames, with a reference allocator. Shared by every driver
/// (`&self` methods; a short spin lock guards the allocator, never held across a
/// `.await` nor taken in interrupt context).
pub struct Table<P> {
    frames: Vec<P>,
    allocator: Mutex<Allocator>,
}

impl<P: SharedPage> Table<P> {
    /// A table over `frames` (the grant-table frames in order: reference `r` lives in
    /// frame `r / 512`), with every reference past the reserved ones free. The entries
    /// are not touched: the reserved ones belong to the toolstack.
    pub fn new(frames: Vec<P>) -> Self {
        let entries = frames.len() as u32 * ENTRIES_PER_FRAME;
        // Handed out lowest first (popped from the end).
        let free = (RESERVED..entries).rev().collect();
        let granted = alloc::vec![false; entries as usize];
        Self {
            frames,
            allocator: Mutex::new(Allocator { free, granted }),
        }
    }

    /// References the allocator manages.
    pub fn capacity(&self) -> u32 {
        (self.frames.len() as u32 * ENTRIES_PER_FRAME).saturating_sub(RESERVED)
    }

    /// References free now.
    pub fn free(&self) -> u32 {
        self.allocator.lock().free.len() as u32
    }

    /// Lets domain `domid` map guest frame `frame` (read-only if `readonly`) and
    /// returns the reference to give it.
    ///
    /// # Errors
    ///
    /// [`GrantError::Exhausted`], [`GrantError::FrameTooLarge`].
    pub fn grant_access(
        &self,
        domid: u16,
        frame: u64,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let frame32 = u32::try_from(frame).map_err(|_| GrantError::FrameTooLarge { frame })?;
        let reference = {
            let mut allocator = self.allocator.lock();
            let reference = allocator.free.pop().ok_or(GrantError::Exhausted {
                capacity: self.capacity(),
            })?;
            allocator.granted[reference as usize] = true;
            reference
        };
        let (page, offset) = self.locate(reference);
        page.store_u32(offset + 4, frame32);
        page.store_u16(offset + 2, domid);
        // The entry is complete before the flag that makes it valid (Linux's wmb()).
        page.fence();
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        page.store_u16(offset, flags);
        Ok(GrantRef(reference))
    }

    /// Withdraws the grant and frees its reference, unless the grantee still has the
    /// page mapped.
    ///
    /// # Errors
    ///
    /// [`GrantError::InUse`] (the grant stays; try again after the backend unmapped),
    /// [`GrantError::NotGranted`].
    pub fn end_access(&self, reference: GrantRef) -> Result<(), GrantError> {
        let index = reference.0;
        {
            let allocator = self.allocator.lock();
            if !allocator
                .granted
                .get(index as usize)
                .copied()
                .unwrap_or(false)
            {
                return Err(GrantError::NotGranted { reference });
            }
        }
        let (page, offset) = self.locate(index);
        let mut flags = page.load_u16(offset);
        let mut tries = 0;
        loop {
            if flags & (GTF_READING | GTF_WRITING) != 0 || tries == END_RETRIES {
                return Err(GrantError::InUse { reference, flags });
            }
            match page.compare_exchange_u16(offset, flags, 0) {
                Ok(_) => break,
                Err(found) => flags = found,
            }
            tries += 1;
        }
        let mut allocator = self.allocator.lock();
        allocator.granted[index as usize] = false;
        allocator.free.push(index);
        Ok(())
    }

    /// The entry of `reference` as it is now, if the table has it.
    pub fn entry(&self, reference: GrantRef) -> Option<Entry> {
        if reference.0 >= self.frames.len() as u32 * ENTRIES_PER_FRAME {
            return None;
        }
        let (page, offset) = self.locate(reference.0);
        Some(Entry {
            flags: page.load_u16(offset),
            domid: page.load_u16(offset + 2),
            frame: page.load_u32(offset + 4),
        })
    }

    fn locate(&self, reference: u32) -> (&P, usize) {
        let frame = &self.frames[(reference / ENTRIES_PER_FRAME) as usize];
        (frame, (reference % ENTRIES_PER_FRAME) as usize * 8)
    }
}

#[cfg(test)]
mod tests;
