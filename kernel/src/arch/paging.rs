//! The kernel's own page tables, replacing the boot tables' flat 1 GiB RWX map.
//!
//! Everything is identity-mapped (virtual == physical), but with permissions:
//!
//! | range                               | mapping                                   |
//! |-------------------------------------|-------------------------------------------|
//! | page 0                              | unmapped: a null dereference faults       |
//! | rest of the first 2 MiB             | 4 KiB pages, RW + NX (BIOS area, tables)  |
//! | kernel `.text`                      | RX                                        |
//! | kernel `.rodata` (+ PVH note)       | R + NX                                    |
//! | kernel `.data`, `.bss`              | RW + NX                                   |
//! | every stack's guard page            | unmapped: an overflow is reported as such |
//! | RAM above 2 MiB (memory map)        | 1 GiB pages, or 2 MiB at the edges, RW+NX |
//! | device MMIO (`map_device`)          | 4 KiB pages, RW + NX, uncached, on demand |
//! | firmware tables (`firmware_bytes`)  | 4 KiB pages, R + NX, on demand            |
//!
//! Tables for the first 2 MiB are static; the others come from the frame allocator,
//! which hands out low frames first, so they are reachable through the boot tables while
//! the new tables are built. All changes happen under one lock.
//!
//! Mapping RAM must not take longer with more of it (a boot with 2 GiB must cost what one
//! with 8 MiB does): every whole, aligned GiB of RAM is one 1 GiB page when the CPU has
//! them (CPUID 0x80000001 EDX bit 26: every x86_64 CPU since 2010, and QEMU's and
//! Firecracker's), so only the edges of a RAM range take 2 MiB pages, at most 511 on each
//! side, written in one pass over their page directory. A 1 GiB or 2 MiB page is split
//! into smaller ones only where a page needs other permissions (a guard page).

use super::stacks;
use crate::memory::frames::{FRAME, FrameAllocator, Range};
use core::cell::UnsafeCell;
use torito_boot::{MemoryKind, MemoryRegion};
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const NO_CACHE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
const TABLE: u64 = PRESENT | WRITABLE;
const HUGE_PAGE: u64 = 2 * 1024 * 1024;
const GIGABYTE_PAGE: u64 = 1 << 30;
/// Flags of a RAM mapping (without the page-size bit).
const RAM: u64 = PRESENT | WRITABLE | NO_EXECUTE;

#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: the tables are only read or written with `STATE` locked (or by the CPU's page
// walker, which is what they are for).
unsafe impl Sync for Table {}

static PML4: Table = Table(UnsafeCell::new([0; 512]));
static PDPT_LOW: Table = Table(UnsafeCell::new([0; 512]));
static PD_LOW: Table = Table(UnsafeCell::new([0; 512]));
static PT_LOW: Table = Table(UnsafeCell::new([0; 512]));

struct State {
    frames: Option<FrameAllocator>,
    active: bool,
}

static STATE: spin::Mutex<State> = spin::Mutex::new(State {
    frames: None,
    active: false,
});

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

/// The kernel image's extent `[start, end)`.
pub fn kernel_image() -> Range {
    Range {
        start: (&raw const __kernel_start) as u64,
        end: (&raw const __kernel_end) as u64,
    }
}

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No free frame for a page table.
    OutOfFrames,
    /// The range is already covered by a 2 MiB RAM page (a device there is a firmware bug).
    CoveredByRam(u64),
    /// The address is beyond what an identity map can reach: 128 TiB, the lower half of
    /// the 48-bit virtual address space.
    TooHigh(u64),
}

/// Returns the entry array of the table at physical address `table`.
///
/// # Safety
/// `table` must be the address of a page table owned by this module, reachable through
/// the active mapping, and `STATE` must be locked by the caller.
unsafe fn entries<'a>(table: u64) -> &'a mut [u64; 512] {
    // SAFETY: per the contract, `table` is a live, mapped page table, and the lock makes
    // this the only reference to it.
    unsafe { &mut *(table as *mut [u64; 512]) }
}

impl State {
    /// The next-level table behind `entry`, allocated (zeroed) when missing.
    fn next_table(&mut self, entry: &mut u64) -> Result<u64, MapError> {
        if *entry & PRESENT != 0 {
            return if *entry & HUGE != 0 {
                Err(MapError::CoveredByRam(*entry & ADDRESS))
            } else {
                Ok(*entry & ADDRESS)
            };
        }
        let frame = self
            .frames
            .as_mut()
            .and_then(|frames| frames.allocate(1))
            .ok_or(MapError::OutOfFrames)?;
        // SAFETY: the frame was just taken from the free list, so nothing else uses it,
        // and the allocator hands out low frames that the active tables map.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, FRAME as usize) };
        *entry = frame | TABLE;
        Ok(frame)
    }

    /// The page directory covering `address`, with the tables above it allocated when
    /// missing. RAM and low devices sit under PML4 entry 0 (the static `PDPT_LOW`);
    /// 64-bit PCI BARs can be far higher (Cloud Hypervisor puts them near 64 TiB).
    fn page_directory(&mut self, address: u64) -> Result<u64, MapError> {
        let pdpt = self.page_directory_pointers(address)?;
        // SAFETY: `pdpt` is PDPT_LOW or a table `next_table` allocated: ours, locked.
        let pdpt = unsafe { entries(pdpt) };
        self.next_table(&mut pdpt[(address >> 30) as usize & 511])
    }

    /// The page-directory-pointer table covering `address` (allocated when missing).
    fn page_directory_pointers(&mut self, address: u64) -> Result<u64, MapError> {
        if address >> 47 != 0 {
            return Err(MapError::TooHigh(address));
        }
        // SAFETY: PML4 is ours, mapped (in .bss) and we hold the lock.
        let pml4 = unsafe { entries(PML4.0.get() as u64) };
        self.next_table(&mut pml4[(address >> 39) as usize & 511])
    }

    /// Maps the RAM `[start, end)` (2 MiB-aligned) read-write, no-execute: 1 GiB pages
    /// where a whole aligned GiB lies inside and `gigabyte_pages`, 2 MiB pages elsewhere.
    /// Only for `init`, before any device is mapped.
    fn map_ram(&mut self, start: u64, end: u64, gigabyte_pages: bool) -> Result<(), MapError> {
        let mut at = start;
        while at < end {
            let gigabyte_end = (at | (GIGABYTE_PAGE - 1)) + 1;
            if gigabyte_pages && at.is_multiple_of(GIGABYTE_PAGE) && gigabyte_end <= end {
                let pointers = self.page_directory_pointers(at)?;
                // SAFETY: a table `next_table` returned: ours, locked.
                let entry = &mut unsafe { entries(pointers) }[(at >> 30) as usize & 511];
                if *entry & PRESENT == 0 {
                    *entry = at | RAM | HUGE;
                }
                at = gigabyte_end;
                continue;
            }
            let stop = end.min(gigabyte_end);
            match self.page_directory(at) {
                Ok(directory) => {
                    // SAFETY: `directory` came from `page_directory`: ours, locked.
                    let directory = unsafe { entries(directory) };
                    let first = (at >> 21) as usize & 511;
                    let last = ((stop - 1) >> 21) as usize & 511;
                    let base = at & !(GIGABYTE_PAGE - 1);
                    // Nothing but RAM is mapped here yet (devices come later), so an entry
                    // that is present already holds this same mapping.
                    let mut page = base + first as u64 * HUGE_PAGE;
                    for entry in &mut directory[first..=last] {
                        *entry = page | RAM | HUGE;
                        page += HUGE_PAGE;
                    }
                }
                // Already RAM, as a 1 GiB page.
                Err(MapError::CoveredByRam(_)) => {}
                Err(error) => return Err(error),
            }
            at = stop;
        }
        Ok(())
    }

    /// Maps one 4 KiB page; `Ok(false)` if a 2 MiB RAM page already covers it.
    fn map_page(&mut self, address: u64, flags: u64) -> Result<bool, MapError> {
        let directory = self.page_directory(address)?;
        // SAFETY: one of our tables, locked.
        let pd_entry = &mut unsafe { entries(directory) }[(address >> 21) as usize & 511];
        let table = match self.next_table(pd_entry) {
            Ok(table) => table,
            Err(MapError::CoveredByRam(_)) => return Ok(false),
            Err(error) => return Err(error),
        };
        // SAFETY: one of our tables, locked.
        let entry = &mut unsafe { entries(table) }[(address >> 12) as usize & 511];
        if *entry & PRESENT != 0 && flags & NO_CACHE == 0 {
            // Firmware reads of memory that is already mapped keep its mapping.
            return Ok(true);
        }
        if *entry & (PRESENT | NO_CACHE) == PRESENT && flags & NO_CACHE != 0 {
            // Memory mapped cached (RAM split into small pages, the first 2 MiB): never
            // turned into a device mapping.
            return Ok(false);
        }
        let wanted = (address & ADDRESS) | flags;
        if *entry != wanted {
            *entry = wanted;
            if self.active {
                x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(address));
            }
        }
        Ok(true)
    }
}

/// Builds the kernel's page tables from the memory map and switches to them.
///
/// `frames` becomes the source of page-table frames from now on.
pub fn init(map: &[MemoryRegion], frames: FrameAllocator) -> Result<(), MapError> {
    let mut state = STATE.lock();
    state.frames = Some(frames);
    // SAFETY: all four static tables are ours and the lock is held; the boot tables (not
    // these) are active, so editing them cannot disturb the running code.
    let (pml4, pdpt, pd, pt) = unsafe {
        (
            entries(PML4.0.get() as u64),
            entries(PDPT_LOW.0.get() as u64),
            entries(PD_LOW.0.get() as u64),
            entries(PT_LOW.0.get() as u64),
        )
    };
    pml4[0] = PDPT_LOW.0.get() as u64 | TABLE;
    pdpt[0] = PD_LOW.0.get() as u64 | TABLE;
    pd[0] = PT_LOW.0.get() as u64 | TABLE;
    // The first 2 MiB: RW + NX, then the kernel's text (RX) and read-only data (R + NX),
    // then the holes: page 0 (a null dereference faults) and the boot stacks' guards.
    for (index, entry) in pt.iter_mut().enumerate() {
        *entry = (index as u64 * FRAME) | PRESENT | WRITABLE | NO_EXECUTE;
    }
    let text_end = (&raw const __text_end) as u64;
    let rodata_end = (&raw const __rodata_end) as u64;
    for page in (kernel_image().start..rodata_end).step_by(FRAME as usize) {
        let flags = if page < text_end {
            PRESENT
        } else {
            PRESENT | NO_EXECUTE
        };
        if let Some(entry) = pt.get_mut((page / FRAME) as usize) {
            *entry = page | flags;
        }
    }
    pt[0] = 0;
    for stack in stacks::boot_stacks() {
        if let Some(entry) = pt.get_mut((stack.guard / FRAME) as usize) {
            *entry = 0;
        }
    }
    let ram_like = |region: &&MemoryRegion| {
        matches!(
            region.kind,
            MemoryKind::Usable | MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs
        )
    };
    let gigabyte_pages = core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 26) != 0;
    for region in map.iter().filter(ram_like) {
        let start = (region.start / HUGE_PAGE * HUGE_PAGE).max(HUGE_PAGE);
        let end = region.end().div_ceil(HUGE_PAGE) * HUGE_PAGE;
        state.map_ram(start, end, gigabyte_pages)?;
    }
    let root = PhysFrame::from_start_address(PhysAddr::new(PML4.0.get() as u64))
        .expect("PML4 is 4 KiB-aligned by its type");
    // SAFETY: the new tables map the kernel image (text executable, data writable), the
    // boot stack we run on and all RAM exactly as the boot tables did, only with tighter
    // permissions, so execution continues unchanged.
    unsafe { Cr3::write(root, Cr3Flags::empty()) };
    state.active = true;
    Ok(())
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::OutOfFrames => {
                write!(f, "no free frame for a page table; give the VM more memory")
            }
            MapError::CoveredByRam(address) => write!(f, "{:#x} is already mapped as RAM", address),
            MapError::TooHigh(address) => {
                write!(
                    f,
                    "{:#x} is above the 128 TiB an identity map can reach",
                    address
                )
            }
        }
    }
}

/// Maps `[phys, phys + len)` as uncached device memory; returns the virtual address.
///
/// Refuses (logs and returns `None`) a range in the first 2 MiB (the null page, the
/// kernel image, the boot stacks and tables live there) or over memory already mapped
/// as RAM: a device entry there would overwrite the kernel's own mappings. Discovery
/// checks device ranges against the whole memory map before they get here; this is the
/// last line.
pub fn map_device(phys: u64, len: u64) -> Option<u64> {
    if phys < HUGE_PAGE {
        log::error!(
            "paging: device range {:#x}+{:#x} lies in the first 2 MiB (null page, kernel): \
             not mapped",
            phys,
            len
        );
        return None;
    }
    map_range(
        phys,
        len,
        PRESENT | WRITABLE | NO_EXECUTE | NO_CACHE | WRITE_THROUGH,
        true,
    )
}

/// Maps the 4 KiB page at `phys` as ordinary (write-back) read-write memory; returns
/// its virtual address. For pages shared with Xen or another domain that the memory map
/// may not list as RAM (a Xen domU's console and xenstore rings sit in a reserved range
/// below 4 GiB): the other side maps them cached, and uncached accesses from here would
/// only be slower. A page already mapped as RAM keeps its mapping.
pub fn map_shared(phys: u64) -> Option<u64> {
    if phys < HUGE_PAGE || !phys.is_multiple_of(FRAME) {
        log::error!(
            "paging: shared page {:#x} is unaligned or in the first 2 MiB: not mapped",
            phys
        );
        return None;
    }
    map_range(phys, FRAME, RAM, false)
}

fn map_range(phys: u64, len: u64, flags: u64, device: bool) -> Option<u64> {
    let mut state = STATE.lock();
    if !state.active {
        return (phys.checked_add(len)? <= 1 << 30).then_some(phys);
    }
    let mut page = phys / FRAME * FRAME;
    let end = phys.checked_add(len)?;
    while page < end {
        match state.map_page(page, flags) {
            Ok(true) => {}
            Ok(false) if !device => {}
            Ok(false) => {
                log::error!(
                    "paging: device at {:#x} lies inside RAM or kernel memory; not mapped",
                    page
                );
                return None;
            }
            // Already mapped as RAM by a large page: readable and writable as it is.
            Err(MapError::CoveredByRam(_)) if !device => {}
            Err(error) => {
                log::error!("paging: cannot map {:#x}: {}", page, error);
                return None;
            }
        }
        page += FRAME;
    }
    Some(phys)
}

/// Firmware memory `[phys, phys + len)` (ACPI tables, BIOS areas), mapped read-only on
/// demand; `None` if it cannot be mapped (or lies in page 0).
///
/// # Safety
/// For as long as the caller uses the slice (`'a`), nothing may write those bytes and no
/// Rust object may live in them: the range must be memory the firmware owns (or no
/// memory at all), never RAM the kernel allocates from, the kernel image or a device
/// whose registers change when read. `acpi::Firmware` checks that against the memory
/// map before each call.
pub unsafe fn firmware_bytes<'a>(phys: u64, len: usize) -> Option<&'a [u8]> {
    if phys < FRAME {
        return None;
    }
    let address = map_range(phys, len as u64, PRESENT | NO_EXECUTE, false)?;
    // SAFETY: the range is mapped (just above); the caller promises that nothing writes
    // it and nothing else lives there for `'a`.
    Some(unsafe { core::slice::from_raw_parts(address as *const u8, len) })
}

/// Whether the page tables are being changed right now (their lock is held).
pub fn busy() -> bool {
    STATE.is_locked()
}

/// Runs `f` with the frame allocator (for reports and for taking the heap region).
pub fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator) -> R) -> Option<R> {
    STATE.lock().frames.as_mut().map(f)
}

impl State {
    /// Sets the 4 KiB page-table entry for `address` to `value`, splitting a 2 MiB page
    /// into 512 small ones (same flags) when one covers it.
    fn set_small(&mut self, address: u64, value: u64) -> Result<(), MapError> {
        let pointers = self.page_directory_pointers(address)?;
        // SAFETY: a table `next_table` returned: ours, locked.
        let pdpt_entry = &mut unsafe { entries(pointers) }[(address >> 30) as usize & 511];
        if *pdpt_entry & (PRESENT | HUGE) == PRESENT | HUGE {
            // A 1 GiB page: first into 512 pages of 2 MiB, same flags (the page-size bit
            // is bit 7 at both levels).
            let frame = self
                .frames
                .as_mut()
                .and_then(|frames| frames.allocate(1))
                .ok_or(MapError::OutOfFrames)?;
            let base = *pdpt_entry & ADDRESS & !(GIGABYTE_PAGE - 1);
            let flags = *pdpt_entry & !ADDRESS;
            // SAFETY: a fresh frame from the allocator, reachable through the active map.
            let directory = unsafe { entries(frame) };
            for (index, entry) in directory.iter_mut().enumerate() {
                *entry = (base + index as u64 * HUGE_PAGE) | flags;
            }
            *pdpt_entry = frame | TABLE;
        }
        let directory = self.page_directory(address)?;
        // SAFETY: one of our tables, locked.
        let pd_entry = &mut unsafe { entries(directory) }[(address >> 21) as usize & 511];
        if *pd_entry & (PRESENT | HUGE) == PRESENT | HUGE {
            let frame = self
                .frames
                .as_mut()
                .and_then(|frames| frames.allocate(1))
                .ok_or(MapError::OutOfFrames)?;
            let base = *pd_entry & ADDRESS & !(HUGE_PAGE - 1);
            let flags = *pd_entry & !ADDRESS & !HUGE;
            // SAFETY: a fresh frame from the allocator, reachable through the active map.
            let table = unsafe { entries(frame) };
            for (index, entry) in table.iter_mut().enumerate() {
                *entry = (base + index as u64 * FRAME) | flags;
            }
            // The same translations as before, so no flush is needed for correctness;
            // `set_small` flushes the page it changes.
            *pd_entry = frame | TABLE;
        }
        let table = self.next_table(pd_entry)?;
        // SAFETY: one of our tables, locked.
        let entries = unsafe { entries(table) };
        entries[(address >> 12) as usize & 511] = value;
        if self.active {
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(address));
        }
        Ok(())
    }
}

/// Unmaps the 4 KiB page at `address` so that any access faults: a stack's guard page.
///
/// # Errors
/// When the page table for it cannot be allocated.
pub fn unmap_guard(address: u64) -> Result<(), MapError> {
    STATE.lock().set_small(address & !(FRAME - 1), 0)
}

/// Maps a page that `unmap_guard` unmapped back as RAM (read-write, no-execute): a
/// guard page of a stack that came from the heap, before the heap takes it back.
///
/// # Errors
/// When the page table for it cannot be allocated (not after `unmap_guard` made it).
pub fn restore_guard(address: u64) -> Result<(), MapError> {
    let page = address & !(FRAME - 1);
    STATE.lock().set_small(page, page | RAM)
}

/// Makes the low page at `address` executable (for the AP start-up trampoline) or,
/// with `executable` false, read-write and no-execute again.
///
/// # Errors
/// When the page table for it cannot be allocated.
pub fn set_low_executable(address: u64, executable: bool) -> Result<(), MapError> {
    let page = address & !(FRAME - 1);
    let flags = if executable {
        PRESENT | WRITABLE
    } else {
        PRESENT | WRITABLE | NO_EXECUTE
    };
    STATE.lock().set_small(page, page | flags)
}

/// The physical address of the kernel's top-level page table (for starting other CPUs).
pub fn root_table() -> u64 {
    PML4.0.get() as u64
}

/// `frames` contiguous frames from the frame allocator.
pub fn allocate_frames(frames: u64) -> Option<u64> {
    with_frames(|allocator| allocator.allocate(frames)).flatten()
}
