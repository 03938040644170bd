//! The kernel heap: linked_list_allocator over one physical range, with an out-of-memory
//! report.
//!
//! When an allocation fails, the request and the heap's state are recorded before the
//! null pointer goes back. Fallible callers (`try_reserve`, the netstack's per-connection
//! buffers) handle the failure themselves; an infallible one reaches Rust's default
//! allocation-error handler, which panics, and the panic handler prints the record:
//! "out of memory: N bytes (align A) requested; heap: U of S bytes used, F free".

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use linked_list_allocator::Heap;

/// The kernel heap; `arch::entry` gives it memory at boot.
#[global_allocator]
pub(crate) static HEAP: KernelHeap = KernelHeap::new();

/// The global allocator.
pub struct KernelHeap {
    heap: spin::Mutex<Heap>,
    failed_size: AtomicUsize,
    failed_align: AtomicUsize,
    failures: AtomicU64,
}

/// A snapshot of the heap.
#[derive(Debug, Clone, Copy)]
pub struct HeapStats {
    /// Bytes handed out.
    pub used: usize,
    /// Bytes free (possibly fragmented).
    pub free: usize,
    /// Heap size.
    pub size: usize,
}

/// The last failed allocation and the heap at that moment.
#[derive(Debug, Clone, Copy)]
pub struct AllocFailure {
    /// Requested size.
    pub size: usize,
    /// Requested alignment.
    pub align: usize,
    /// How many allocations failed so far.
    pub count: u64,
    /// The heap now.
    pub heap: HeapStats,
}

impl KernelHeap {
    /// An empty heap; every allocation fails until `init`.
    pub const fn new() -> Self {
        Self {
            heap: spin::Mutex::new(Heap::empty()),
            failed_size: AtomicUsize::new(0),
            failed_align: AtomicUsize::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Gives the heap the memory `[start, start + size)`; the kernel's boot does, once.
    /// Not part of the application API.
    ///
    /// # Errors
    /// `Err(())` when the heap already has memory: the range is then left alone.
    ///
    /// # Safety
    /// The range must be mapped, writable, and unused by anything else for the rest of
    /// the kernel's life.
    pub(crate) unsafe fn init(&self, start: u64, size: usize) -> Result<(), ()> {
        let mut heap = self.heap.lock();
        if heap.size() != 0 {
            return Err(());
        }
        // SAFETY: the heap is still empty (checked above, under its lock), and the range
        // is the caller's to give (this function's contract).
        unsafe { heap.init(start as *mut u8, size) };
        Ok(())
    }

    /// Current usage.
    pub fn stats(&self) -> HeapStats {
        let heap = self.heap.lock();
        HeapStats {
            used: heap.used(),
            free: heap.free(),
            size: heap.size(),
        }
    }

    /// The last allocation failure, if any happened.
    pub fn last_failure(&self) -> Option<AllocFailure> {
        let count = self.failures.load(Ordering::Acquire);
        (count > 0).then(|| AllocFailure {
            size: self.failed_size.load(Ordering::Relaxed),
            align: self.failed_align.load(Ordering::Relaxed),
            count,
            heap: self.stats(),
        })
    }
}

impl Default for KernelHeap {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: allocation and deallocation are delegated to linked_list_allocator under a
// lock; a failed allocation returns null (as GlobalAlloc requires) after recording it.
// Interrupt handlers never allocate (a kernel rule), so the lock cannot deadlock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.heap.lock().allocate_first_fit(layout) {
            Ok(pointer) => pointer.as_ptr(),
            Err(()) => {
                self.failed_size.store(layout.size(), Ordering::Relaxed);
                self.failed_align.store(layout.align(), Ordering::Relaxed);
                self.failures.fetch_add(1, Ordering::Release);
                core::ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if let Some(pointer) = NonNull::new(pointer) {
            // SAFETY: the caller passes a pointer this allocator returned for `layout`.
            unsafe { self.heap.lock().deallocate(pointer, layout) };
        }
    }
}
