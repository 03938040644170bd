//! A domU's console: the PV console ring xenconsoled reads (`HVM_PARAM_CONSOLE_PFN`,
//! `HVM_PARAM_CONSOLE_EVTCHN`), through `torito_virtio::xen::console`.
//!
//! A domU has no COM1 and Xen drops its `console_io` writes (only a debug build of Xen
//! prints them), so the log and the exit line go through the ring. The ring needs the
//! kernel's page tables (the page sits in the reserved range below 4 GiB): lines written
//! before `start` wait in a small buffer and go out first.
//!
//! Output is polled, as on COM1: a line waits for room in the ring, telling the daemon
//! with `EVTCHNOP_send` (no upcall needed, so it works with interrupts off and on the
//! fatal paths). The wait is bounded (the daemon may be gone): bytes that still find no
//! room are counted and the next line that gets through says how many were lost. Before
//! the domain ends, `drain` waits, again bounded, for the daemon to take everything, so
//! the exit line is out before the domain is.

use super::shared::Page;
use super::{Error, events, hypercall};
use core::sync::atomic::{AtomicU64, Ordering};
use torito_boot::xen::{self as abi, Param};
use torito_virtio::xen::console::Console;

/// Spins to wait for the daemon to make room (or drain the ring); each spin reads the
/// ring's index and every 1024th also notifies again. Under QEMU's emulator a dom0
/// daemon takes a few milliseconds to be scheduled; this allows seconds.
const WAIT_SPINS: u64 = 20_000_000;

struct Ring {
    console: Console<Page>,
    port: u32,
}

static RING: spin::Once<Ring> = spin::Once::new();
/// Bytes dropped because the ring stayed full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines from before `start` (the boot's first log lines), in order.
struct Early {
    bytes: [u8; 2048],
    len: usize,
}

static EARLY: spin::Mutex<Early> = spin::Mutex::new(Early {
    bytes: [0; 2048],
    len: 0,
});

/// Reads the console's page and port from Xen, maps the page and sends out the early
/// lines. After `paging::init`.
///
/// # Errors
/// When the parameters are missing or Xen refuses them, or the page cannot be mapped.
pub fn start() -> Result<(), Error> {
    let pfn = param(Param::ConsolePfn)?;
    let port = param(Param::ConsoleEvtchn)?;
    let bad = |param: Param, value| Error::Param {
        name: param.name(),
        value,
    };
    let phys = abi::frame_address(pfn).ok_or(bad(Param::ConsolePfn, pfn))?;
    let port = abi::port(port).ok_or(bad(Param::ConsoleEvtchn, port))?;
    let address = crate::arch::paging::map_shared(phys).ok_or(bad(Param::ConsolePfn, pfn))?;
    // SAFETY: the page is the console ring the toolstack gave this domain, mapped
    // read-write just above for good; it is not RAM the kernel allocates from (Xen's
    // special pages lie outside the memory map's usable ranges, and `map_shared` refuses
    // the kernel's own first 2 MiB), and only `Page` accesses it.
    let page = unsafe { Page::new(address) };
    RING.call_once(|| Ring {
        console: Console::new(page),
        port,
    });
    events::quiet(port);
    let early = EARLY.try_lock();
    if let Some(mut early) = early {
        let len = early.len;
        write(&early.bytes[..len]);
        early.len = 0;
    }
    Ok(())
}

fn param(param: Param) -> Result<u64, Error> {
    let (status, value) = hypercall::get_param(param);
    Error::check(param.name(), status)?;
    Ok(value)
}

/// Writes `bytes` to the ring (or, before `start`, the early buffer), waiting boundedly
/// for room.
pub fn write(bytes: &[u8]) {
    let Some(ring) = RING.get() else {
        // Before the ring: keep what fits (the boot's first lines); the rest is counted.
        if let Some(mut early) = EARLY.try_lock() {
            let start = early.len;
            let count = bytes.len().min(early.bytes.len() - start);
            early.bytes[start..start + count].copy_from_slice(&bytes[..count]);
            early.len += count;
            DROPPED.fetch_add((bytes.len() - count) as u64, Ordering::Relaxed);
        }
        return;
    };
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        let mut note = Note {
            bytes: [0; 96],
            len: 0,
        };
        let _ = core::fmt::Write::write_fmt(
            &mut note,
            format_args!("\n[torito: {dropped} console bytes lost: the daemon did not read]\n"),
        );
        ring.put(&note.bytes[..note.len]);
    }
    ring.put(bytes);
}

impl Ring {
    /// Puts all of `bytes` in the ring, waiting for room; drops (and counts) what the
    /// daemon leaves no room for.
    fn put(&self, mut bytes: &[u8]) {
        let mut spins = 0u64;
        while !bytes.is_empty() {
            let written = match self.console.write(bytes) {
                Ok(written) => written,
                Err(_) => break, // a corrupt ring: nothing will get through
            };
            bytes = &bytes[written..];
            if written > 0 {
                events::notify(self.port);
                spins = 0;
                continue;
            }
            if spins == WAIT_SPINS {
                break;
            }
            if spins.is_multiple_of(1024) {
                events::notify(self.port);
            }
            spins += 1;
            core::hint::spin_loop();
        }
        DROPPED.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
}

/// Waits (bounded) until the daemon has taken everything written; returns whether it
/// did. Before the domain ends, so the exit line is out.
pub fn drain() -> bool {
    let Some(ring) = RING.get() else {
        // No ring: what the early buffer holds goes to Xen's console (which prints it
        // only on a debug build of Xen); the domain's crash status still says it failed.
        if let Some(early) = EARLY.try_lock() {
            hypercall::console_write(&early.bytes[..early.len]);
        }
        return false;
    };
    events::notify(ring.port);
    for spin in 0..WAIT_SPINS {
        match ring.console.output_pending() {
            Ok(0) => return true,
            Err(_) => return false,
            Ok(_) => {}
        }
        if spin % 1024 == 1023 {
            events::notify(ring.port);
        }
        core::hint::spin_loop();
    }
    false
}

/// A short message formatted without the heap (cut at its capacity).
struct Note {
    bytes: [u8; 96],
    len: usize,
}

impl core::fmt::Write for Note {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let count = text.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + count].copy_from_slice(&text.as_bytes()[..count]);
        self.len += count;
        Ok(())
    }
}
