//! Issue 12, item 7: the heap a connection's serving task needs is reserved from the
//! SYN until `accept`, not merely checked. A burst of handshakes that complete before
//! the accept loop runs must not take the memory their own tasks will need.
//!
//! The test binary's allocator counts this thread's heap use and fails allocations
//! past a limit: a small guest's heap, on the host.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use common::raw::{PEER, RawNet, arp_request, tcp};
use common::*;
use smoltcp::wire::TcpControl;
use torito_netstack::TcpListener;

thread_local! {
    static USED: Cell<isize> = const { Cell::new(0) };
    static LIMIT: Cell<isize> = const { Cell::new(isize::MAX) };
}

/// The system allocator, with this thread's use counted and limited.
struct Limited;

// SAFETY: every call is forwarded to `System` unchanged, or refused with null (which
// `GlobalAlloc::alloc` allows) before it reaches it.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size() as isize;
        let allowed = USED
            .try_with(|used| {
                let limit = LIMIT.try_with(Cell::get).unwrap_or(isize::MAX);
                if used.get().saturating_add(size) > limit {
                    return false;
                }
                used.set(used.get() + size);
                true
            })
            .unwrap_or(true);
        if !allowed {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = USED.try_with(|used| used.set(used.get() - layout.size() as isize));
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Limited = Limited;

/// What a blocking task's spawn allocates: a 32 KiB stack.
const TASK: usize = 32 * 1024;

#[test]
fn every_connection_accepted_after_a_burst_can_spawn_its_task() {
    let mut net = RawNet::new(static_config(IP_B));
    net.send(arp_request(PEER, IP_B));
    net.poll();
    let mut listener = TcpListener::bind(&net.stack, 80, 32).unwrap();
    listener.set_reserve(TASK + 1024);
    net.poll();
    // Room for a handful of connections (16 KiB of buffers each) and their tasks.
    LIMIT.with(|limit| limit.set(USED.with(Cell::get) + 400 * 1024));

    // A burst: 30 handshakes complete before the application accepts any.
    for port in 1000..1030u16 {
        let seq = 1000 * u32::from(port);
        net.send(tcp(PEER, port, 80, TcpControl::Syn, seq, None, &[]));
        let syn_ack = net
            .poll()
            .into_iter()
            .find(|segment| segment.dst_port == port && segment.control == TcpControl::Syn);
        if let Some(syn_ack) = syn_ack {
            let ack = Some(syn_ack.seq.wrapping_add(1));
            net.send(tcp(PEER, port, 80, TcpControl::None, seq + 1, ack, &[]));
            net.poll();
        }
    }
    let refused = net.stack.counters().refused_no_memory;
    if refused == 0 {
        LIMIT.with(|limit| limit.set(isize::MAX));
        panic!("the heap limit never bit: no test");
    }

    // Now the accept loop runs: every connection it gets can spawn its task.
    let mut served = Vec::new();
    loop {
        let accepted = pin!(listener.accept()).poll(&mut Context::from_waker(Waker::noop()));
        let Poll::Ready(stream) = accepted else { break };
        let stream = stream.unwrap();
        let mut task = Vec::<u8>::new();
        if task.try_reserve_exact(TASK).is_err() {
            // Lift the limit first: the panic message needs the heap.
            LIMIT.with(|limit| limit.set(isize::MAX));
            panic!(
                "connection {} was accepted without memory for its task ({refused} refused)",
                served.len()
            );
        }
        served.push((stream, task));
    }
    assert!(!served.is_empty(), "no connection was accepted at all");
    LIMIT.with(|limit| limit.set(isize::MAX));
}
