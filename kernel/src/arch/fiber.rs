//! Fibers: a task with its own stack, so that blocking calls can park it.
//!
//! A blocking socket call must stop its caller until a waker fires, without stopping the
//! core. An async task cannot do that (it has no stack of its own to stop), so
//! `spawn_blocking` runs a closure on a fiber: a heap-allocated stack driven by an
//! ordinary executor task. `park(future)` polls the future with the task's context and,
//! while it is pending, switches back to the executor's stack; the task's `poll` returns
//! `Pending`, other tasks run, and when the future's waker fires the task is polled
//! again and switches back into the fiber right after its `park`.
//!
//! A stack switch saves only the callee-saved registers (the System V ABI says the caller
//! saved the rest), so it costs a dozen instructions.
//!
//! Fiber stacks come from the heap, page-aligned, with their lowest page unmapped (a
//! guard page, as the boot stacks have): a fiber that overflows its stack faults on the
//! guard instead of writing over whatever the heap put below it. Interrupts that arrive
//! while a fiber runs are taken on the fiber's stack (only the double fault, the page
//! fault, NMI and machine check have IST stacks of their own), so an interrupt near the
//! bottom of a full stack can be the one that hits the guard; either way the page fault
//! runs on its IST stack, and the exception report names the blocking task whose guard
//! page it is (`guard_hit`). A canary just above the guard is still checked at every
//! switch, for a frame that jumps over the guard page without touching it.
//!
//! The stack's top is 16-byte aligned, as the System V ABI wants at a call.

use alloc::boxed::Box;
use core::alloc::Layout;
use core::cell::Cell;
use core::future::Future;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

/// Size of a fiber's stack (usable bytes, the guard page not counted).
pub const FIBER_STACK: usize = 32 * 1024;
/// Size of the unmapped guard page below each fiber stack.
const GUARD: usize = 4096;
/// Heap one fiber stack takes: the stack, its guard page, and as much again for the
/// page alignment (the allocator may leave a gap below a page-aligned block).
pub const FIBER_HEAP_BYTES: usize = FIBER_STACK + 2 * GUARD;
const CANARY: u64 = 0x7e57_ab1e_dead_f1be;
const CANARY_WORDS: usize = 8;
const STACK_LAYOUT: Layout = match Layout::from_size_align(GUARD + FIBER_STACK, GUARD) {
    Ok(layout) => layout,
    Err(_) => panic!("the fiber stack's size and alignment make a layout"),
};

/// A fiber's stack on the heap: a guard page (unmapped while the stack lives), then
/// `FIBER_STACK` bytes.
struct FiberStack {
    base: NonNull<u8>,
    /// The guard page is unmapped. Unmapping splits the heap's large page around it,
    /// which takes a page-table frame from the frame allocator (one per 2 MiB of heap
    /// that holds fiber stacks, kept for good); with none left, stacks go without a
    /// guard (the canary still checks them) rather than refuse blocking tasks that the
    /// heap has room for.
    guarded: bool,
}

/// A guard page could not be unmapped once: said once, not per fiber.
static UNGUARDED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

impl FiberStack {
    /// A stack with its guard page unmapped when possible, or `None` when the heap has
    /// no room for it.
    fn try_new() -> Option<Self> {
        // SAFETY: the layout's size is not zero.
        let base = NonNull::new(unsafe { alloc::alloc::alloc(STACK_LAYOUT) })?;
        let mut stack = Self {
            base,
            guarded: true,
        };
        if let Err(error) = super::paging::unmap_guard(stack.guard()) {
            stack.guarded = false;
            if !UNGUARDED.swap(true, core::sync::atomic::Ordering::Relaxed) {
                log::warn!(
                    "fiber: cannot unmap a guard page below a fiber stack ({}); fiber \
                     stacks made without a page-table frame to spare have no guard page \
                     (only a canary): give the VM more memory",
                    error
                );
            }
        }
        for word in 0..CANARY_WORDS {
            // SAFETY: the first words above the guard: inside the allocation, mapped,
            // 8-aligned (the block is page-aligned), and ours alone.
            unsafe { (stack.bottom() as *mut u64).add(word).write(CANARY) };
        }
        Some(stack)
    }

    fn guard(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// The usable range's lowest address.
    fn bottom(&self) -> u64 {
        self.guard() + GUARD as u64
    }

    /// One past the usable range (the initial stack pointer); 16-byte (page) aligned.
    fn top(&self) -> u64 {
        self.bottom() + FIBER_STACK as u64
    }

    fn canary_intact(&self) -> bool {
        (0..CANARY_WORDS).all(|word| {
            // SAFETY: as in `try_new`: mapped words of this stack, above the guard.
            unsafe { (self.bottom() as *const u64).add(word).read_volatile() == CANARY }
        })
    }
}

impl Drop for FiberStack {
    fn drop(&mut self) {
        // The allocator writes its bookkeeping into freed blocks: map the guard back
        // first. Remapping a page needs no new page table (unmapping made it), so this
        // fails only if the tables were changed behind our back; then the block leaks
        // rather than handing an unmapped page to the allocator.
        if self.guarded
            && let Err(error) = super::paging::restore_guard(self.guard())
        {
            log::error!(
                "fiber: cannot map the guard page at {:#x} back: {}; its stack leaks",
                self.guard(),
                error
            );
            return;
        }
        // SAFETY: allocated in `try_new` with this layout, guard page mapped (again), and
        // the fiber no longer runs on it (a `Fiber` is dropped only outside `resume`).
        unsafe { alloc::alloc::dealloc(self.base.as_ptr(), STACK_LAYOUT) };
    }
}

core::arch::global_asm!(
    r#"
    .section .text.torito_fiber, "ax"
    .global torito_fiber_switch
/* torito_fiber_switch(save: *mut u64 (rdi), load: u64 (rsi)) */
torito_fiber_switch:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdi)
    mov %rsi, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

    .global torito_fiber_start
/* First code on a new fiber: r12 = the Fiber. */
torito_fiber_start:
    xor %ebp, %ebp
    mov %r12, %rdi
    call torito_fiber_main
    ud2
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    fn torito_fiber_switch(save: *mut u64, load: u64);
    fn torito_fiber_start();
}

/// One fiber: its stack, the two saved stack pointers, and its work.
pub struct Fiber {
    stack: FiberStack,
    name: &'static str,
    fiber_rsp: u64,
    executor_rsp: u64,
    work: Option<Box<dyn FnOnce() + Send>>,
    done: bool,
    context: *mut Context<'static>,
}

// SAFETY: a fiber only ever runs inside its task's `poll`, on the core polling it; the
// raw context pointer is only dereferenced during that poll, and the stack is owned
// memory (its pointer is never shared).
unsafe impl Send for Fiber {}

// The fiber running on each core, if any.
struct Current([Cell<*mut Fiber>; super::percpu::MAX_CPUS]);
// SAFETY: each core only touches its own slot (indexed by `percpu::current()`), and a
// core runs one thing at a time.
unsafe impl Sync for Current {}
static CURRENT: Current =
    Current([const { Cell::new(core::ptr::null_mut()) }; super::percpu::MAX_CPUS]);

fn current_slot() -> &'static Cell<*mut Fiber> {
    &CURRENT.0[super::percpu::current()]
}

impl Fiber {
    /// A fiber named `name` (for reports: the blocking task's closure type) with its
    /// stack and no work yet ([`set_work`](Self::set_work) gives it some), or `None` when
    /// the heap has no room for the stack: that allocation is the one that can fail
    /// (32 KiB against a few dozen bytes for the rest), so it is made fallibly and a full
    /// heap refuses the fiber instead of stopping the kernel. The caller keeps its work
    /// when there is no stack for it.
    pub fn try_new(name: &'static str) -> Option<Box<Self>> {
        let stack = FiberStack::try_new()?;
        let top = stack.top();
        let mut fiber = Box::new(Self {
            stack,
            name,
            fiber_rsp: 0,
            executor_rsp: 0,
            work: None,
            done: false,
            context: core::ptr::null_mut(),
        });
        let this = &mut *fiber as *mut Fiber as u64;
        // The initial frame `torito_fiber_switch` pops: r15, r14, r13, r12, rbx, rbp, then
        // the return address. After the `ret` the stack pointer is `top`, 16-aligned, and
        // `torito_fiber_start`'s call leaves it 8 below a multiple of 16, as a function
        // expects on entry.
        let frame = [0, 0, 0, this, 0, 0, torito_fiber_start as *const () as u64];
        let frame_bottom = top - (frame.len() * 8) as u64;
        for (index, word) in frame.iter().enumerate() {
            // SAFETY: the top seven words of the fiber's own stack: mapped, 8-aligned,
            // and not yet in use (the fiber has not run).
            unsafe { (frame_bottom as *mut u64).add(index).write(*word) };
        }
        fiber.fiber_rsp = frame_bottom;
        Some(fiber)
    }

    /// Gives the fiber the work it runs when first resumed (a fiber without work
    /// finishes at once).
    pub fn set_work(&mut self, work: Box<dyn FnOnce() + Send>) {
        self.work = Some(work);
    }

    /// Runs the fiber until it parks or finishes; `Ready` once its work is done.
    pub fn resume(&mut self, context: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        self.context = (context as *mut Context<'_>).cast::<Context<'static>>();
        let previous = current_slot().replace(self);
        // SAFETY: `fiber_rsp` is either the initial frame built in `new` or the value saved
        // by the fiber's own last switch, on a stack this Fiber owns and keeps alive; the
        // fiber switches back here (to `executor_rsp`) before this call returns.
        unsafe { torito_fiber_switch(&mut self.executor_rsp, self.fiber_rsp) };
        current_slot().set(previous);
        self.context = core::ptr::null_mut();
        if !self.stack.canary_intact() {
            panic!(
                "blocking task `{}` overflowed its {} KiB fiber stack",
                self.name,
                FIBER_STACK / 1024
            );
        }
        if self.done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn torito_fiber_main(fiber: *mut Fiber) -> ! {
    // SAFETY: `fiber` is the Box'ed Fiber that resumed us (set in `new`); it stays alive
    // and unmoved while it runs.
    let fiber = unsafe { &mut *fiber };
    if let Some(work) = fiber.work.take() {
        work();
    }
    fiber.done = true;
    let mut unused = 0;
    // SAFETY: `executor_rsp` was saved by the `resume` that switched to us; we never run
    // again (`done` makes `resume` return at once).
    unsafe { torito_fiber_switch(&mut unused, fiber.executor_rsp) };
    unreachable!("a finished fiber was resumed")
}

/// The blocking task running on this core, if `address` lies in its fiber stack's
/// guard page: its name and stack size, for the page-fault report. Lock-free and
/// allocation-free (the exception path calls it).
pub fn guard_hit(address: u64) -> Option<(&'static str, usize)> {
    let fiber = current_slot().get();
    if fiber.is_null() {
        return None;
    }
    // SAFETY: CURRENT holds a fiber only during its `resume`, which owns it alive and
    // unmoved; a fault handler on the same core reads two fields it never writes.
    let (guarded, guard, name) = unsafe {
        (
            (*fiber).stack.guarded,
            (*fiber).stack.guard(),
            (*fiber).name,
        )
    };
    (guarded && (guard..guard + GUARD as u64).contains(&address)).then_some((name, FIBER_STACK))
}

/// The usable range `[bottom, top)` of the stack of the fiber running on this core, if
/// `address` lies in it (the backtrace walk stays inside it).
pub fn containing(address: u64) -> Option<(u64, u64)> {
    let fiber = current_slot().get();
    if fiber.is_null() {
        return None;
    }
    // SAFETY: as in `guard_hit`.
    let range = unsafe { ((*fiber).stack.bottom(), (*fiber).stack.top()) };
    (range.0..range.1).contains(&address).then_some(range)
}

/// Why a blocking call could not park.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOnFiber;

impl core::fmt::Display for NotOnFiber {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(
            "a blocking call was made outside a blocking task: it would stall every task on this core; \
             run blocking code with torito::task::spawn_blocking, or use the async API",
        )
    }
}

impl core::error::Error for NotOnFiber {}

/// Runs `future` to completion from inside a fiber, parking the fiber while it is pending.
///
/// # Errors
/// `NotOnFiber` when called from an async task or the kernel (parking is impossible).
pub fn park<F: Future>(future: F) -> Result<F::Output, NotOnFiber> {
    let fiber = current_slot().get();
    if fiber.is_null() {
        return Err(NotOnFiber);
    }
    let mut future = core::pin::pin!(future);
    loop {
        // SAFETY: `fiber` is the running fiber (CURRENT is set only during its `resume`),
        // and its `context` points at the Context of the `poll` that resumed it, which is
        // live until we switch back.
        let context = unsafe { &mut *(*fiber).context };
        if let Poll::Ready(output) = future.as_mut().poll(context) {
            return Ok(output);
        }
        // SAFETY: switches back to the executor stack saved by `resume`; the executor
        // resumes us (through `fiber_rsp`) when the task is polled again.
        unsafe { torito_fiber_switch(&mut (*fiber).fiber_rsp, (*fiber).executor_rsp) };
    }
}

/// A task that drives a fiber.
pub struct FiberTask(pub Box<Fiber>);

impl Future for FiberTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        self.0.resume(context)
    }
}
