//! Kernel stacks, each with an unmapped guard page below it.
//!
//! The stacks live in `.bss` (4 KiB-aligned) so no allocator is needed to take an
//! exception. `paging` leaves every guard page unmapped, and the page-fault handler
//! (which runs on its own IST stack) names a fault inside a guard page a stack overflow.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Size of each interrupt stack (IST); exception reports need little.
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// A stack with a guard page in front of it (stacks grow down into the guard).
#[repr(C, align(4096))]
pub struct GuardedStack<const N: usize> {
    guard: UnsafeCell<[u8; 4096]>,
    stack: UnsafeCell<[u8; N]>,
}

// SAFETY: the bytes are only ever used by the CPU as a stack of the one core that loads
// this stack's top into its TSS; Rust code only takes addresses.
unsafe impl<const N: usize> Sync for GuardedStack<N> {}

impl<const N: usize> GuardedStack<N> {
    /// A zeroed stack (placed in .bss).
    pub const fn new() -> Self {
        Self {
            guard: UnsafeCell::new([0; 4096]),
            stack: UnsafeCell::new([0; N]),
        }
    }

    /// Address of the guard page.
    pub fn guard(&self) -> u64 {
        self.guard.get() as u64
    }

    /// The usable stack range `[bottom, top)`.
    pub fn range(&self) -> (u64, u64) {
        let bottom = self.stack.get() as u64;
        (bottom, bottom + N as u64)
    }
}

impl<const N: usize> Default for GuardedStack<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a stack is used for, for error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackKind {
    /// The boot stack: core 0's kernel and tasks.
    Boot,
    /// Double-fault interrupt stack.
    DoubleFault,
    /// Page-fault interrupt stack.
    PageFault,
    /// NMI and machine-check interrupt stack.
    Nmi,
}

impl StackKind {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            StackKind::Boot => "main stack",
            StackKind::DoubleFault => "double-fault stack",
            StackKind::PageFault => "page-fault stack",
            StackKind::Nmi => "NMI stack",
        }
    }
}

/// IST index (1-based as in the IDT; the TSS array is 0-based) of each exception stack.
pub const IST_DOUBLE_FAULT: u16 = 1;
/// IST index for page faults (so that a stack overflow can be reported).
pub const IST_PAGE_FAULT: u16 = 2;
/// IST index for NMI and machine check.
pub const IST_NMI: u16 = 3;

// Core 0's IST stacks live in the part of .bss that the boot code does not zero
// (kernel/torito.ld): a stack is written before it is read.
// SAFETY: `.bss.unzeroed` is a NOBITS section inside the kernel image, so the statics
// are allocated there, mapped read-write (paging.rs maps the image's data) and nothing
// else is placed over them. Their bytes may be anything the RAM held: a
// `GuardedStack` is `UnsafeCell` bytes, valid with any contents, and only ever used as
// a stack, whose bytes are written before they are read.
#[unsafe(link_section = ".bss.unzeroed.ist")]
static DOUBLE_FAULT_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();
// SAFETY: as above.
#[unsafe(link_section = ".bss.unzeroed.ist")]
static PAGE_FAULT_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();
// SAFETY: as above.
#[unsafe(link_section = ".bss.unzeroed.ist")]
static NMI_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();

unsafe extern "C" {
    static __boot_stack_guard: u8;
    static __boot_stack_bottom: u8;
    static __boot_stack_top: u8;
}

/// One stack's extent.
#[derive(Debug, Clone, Copy)]
pub struct StackExtent {
    /// Its use.
    pub kind: StackKind,
    /// Address of its guard page.
    pub guard: u64,
    /// Lowest usable address.
    pub bottom: u64,
    /// One past the highest usable address (the initial stack pointer).
    pub top: u64,
    /// The core that uses it.
    pub core: usize,
}

/// Core 0's stacks (static, in .bss).
pub fn boot_stacks() -> [StackExtent; 4] {
    let ist = |kind, stack: &GuardedStack<IST_STACK_SIZE>| {
        let (bottom, top) = stack.range();
        StackExtent {
            kind,
            guard: stack.guard(),
            bottom,
            top,
            core: 0,
        }
    };
    [
        StackExtent {
            kind: StackKind::Boot,
            guard: (&raw const __boot_stack_guard) as u64,
            bottom: (&raw const __boot_stack_bottom) as u64,
            top: (&raw const __boot_stack_top) as u64,
            core: 0,
        },
        ist(StackKind::DoubleFault, &DOUBLE_FAULT_STACK),
        ist(StackKind::PageFault, &PAGE_FAULT_STACK),
        ist(StackKind::Nmi, &NMI_STACK),
    ]
}

/// Stacks of the other cores, registered as they are made (fixed capacity, lock-free:
/// the exception path reads it).
const MAX_REGISTERED: usize = 4 * super::percpu::MAX_CPUS;
static REGISTERED: [[AtomicU64; 5]; MAX_REGISTERED] =
    [const { [const { AtomicU64::new(0) }; 5] }; MAX_REGISTERED];
static REGISTERED_COUNT: AtomicUsize = AtomicUsize::new(0);

fn kind_code(kind: StackKind) -> u64 {
    match kind {
        StackKind::Boot => 0,
        StackKind::DoubleFault => 1,
        StackKind::PageFault => 2,
        StackKind::Nmi => 3,
    }
}

fn kind_from(code: u64) -> StackKind {
    match code {
        1 => StackKind::DoubleFault,
        2 => StackKind::PageFault,
        3 => StackKind::Nmi,
        _ => StackKind::Boot,
    }
}

/// Records another core's stack so that faults on it are reported by name.
pub fn register(extent: StackExtent) {
    let index = REGISTERED_COUNT.load(Ordering::Acquire);
    if index >= MAX_REGISTERED {
        return;
    }
    let slot = &REGISTERED[index];
    slot[0].store(kind_code(extent.kind), Ordering::Relaxed);
    slot[1].store(extent.guard, Ordering::Relaxed);
    slot[2].store(extent.bottom, Ordering::Relaxed);
    slot[3].store(extent.top, Ordering::Relaxed);
    slot[4].store(extent.core as u64, Ordering::Relaxed);
    // Cores are started one at a time, so there is one writer.
    REGISTERED_COUNT.store(index + 1, Ordering::Release);
}

/// Every kernel stack: core 0's, then the registered ones.
pub fn all() -> impl Iterator<Item = StackExtent> {
    let count = REGISTERED_COUNT.load(Ordering::Acquire);
    boot_stacks()
        .into_iter()
        .chain(REGISTERED[..count].iter().map(|slot| StackExtent {
            kind: kind_from(slot[0].load(Ordering::Relaxed)),
            guard: slot[1].load(Ordering::Relaxed),
            bottom: slot[2].load(Ordering::Relaxed),
            top: slot[3].load(Ordering::Relaxed),
            core: slot[4].load(Ordering::Relaxed) as usize,
        }))
}

/// The stack whose guard page contains `address`, if any.
pub fn guard_hit(address: u64) -> Option<StackExtent> {
    all().find(|s| (s.guard..s.guard + 4096).contains(&address))
}

/// The stack containing `address`, if any (the backtrace walk stays inside it).
pub fn containing(address: u64) -> Option<StackExtent> {
    all().find(|s| (s.bottom..s.top).contains(&address))
}
