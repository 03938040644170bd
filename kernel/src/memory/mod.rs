//! Physical memory: the frame allocator (pure bookkeeping, host-tested) and the heap.

pub mod frames;
#[cfg(target_os = "none")]
pub mod heap;

/// The kernel heap's use right now (bytes in use, free, total): the heap every
/// allocation draws from, connection buffers included. A service that keeps a memory
/// limit (examples/kv) checks it against this, not an estimate of its own.
#[cfg(target_os = "none")]
pub fn heap_stats() -> heap::HeapStats {
    heap::HEAP.stats()
}
