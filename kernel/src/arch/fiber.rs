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
//! Fiber stacks come from the heap and have no guard page; a canary at the bottom is
//! checked at every switch, and a clobbered canary is reported as a fiber stack
//! overflow (a panic) instead of corrupting the heap further unnoticed.

use alloc::boxed::Box;
use core::cell::Cell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

/// Size of a fiber's stack.
pub const FIBER_STACK: usize = 32 * 1024;
const CANARY: u64 = 0x7e57_ab1e_dead_f1be;
const CANARY_WORDS: usize = 8;

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
    stack: Box<[u64]>,
    fiber_rsp: u64,
    executor_rsp: u64,
    work: Option<Box<dyn FnOnce() + Send>>,
    done: bool,
    context: *mut Context<'static>,
}

// SAFETY: a fiber only ever runs inside its task's `poll`, on the core polling it; the
// raw context pointer is only dereferenced during that poll.
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
    /// A fiber with its stack and no work yet ([`set_work`](Self::set_work) gives it
    /// some), or `None` when the heap has no room for the stack: that allocation is the
    /// one that can fail (32 KiB against a few dozen bytes for the rest), so it is made
    /// fallibly and a full heap refuses the fiber instead of stopping the kernel. The
    /// caller keeps its work when there is no stack for it.
    pub fn try_new() -> Option<Box<Self>> {
        let words = FIBER_STACK / 8;
        let mut stack = alloc::vec::Vec::new();
        stack.try_reserve_exact(words).ok()?;
        stack.resize(words, CANARY);
        let mut fiber = Box::new(Self {
            stack: stack.into_boxed_slice(),
            fiber_rsp: 0,
            executor_rsp: 0,
            work: None,
            done: false,
            context: core::ptr::null_mut(),
        });
        let this = &mut *fiber as *mut Fiber as u64;
        // The initial frame `torito_fiber_switch` pops: r15, r14, r13, r12, rbx, rbp, then
        // the return address. After the `ret` the stack pointer is `top`, 16-aligned.
        let top = words & !1;
        let frame = [0, 0, 0, this, 0, 0, torito_fiber_start as *const () as u64];
        fiber.stack[top - frame.len()..top].copy_from_slice(&frame);
        fiber.fiber_rsp = fiber.stack.as_ptr() as u64 + ((top - frame.len()) * 8) as u64;
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
        if self.stack[..CANARY_WORDS]
            .iter()
            .any(|word| *word != CANARY)
        {
            panic!(
                "a blocking task overflowed its {} KiB fiber stack",
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
