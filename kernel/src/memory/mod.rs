//! Physical memory: the frame allocator (pure bookkeeping, host-tested) and the heap.

pub mod frames;
#[cfg(target_os = "none")]
pub mod heap;
