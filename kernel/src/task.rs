//! Tasks: spawn futures on the current core's executor.

pub use crate::spread::Spread;
pub use torito_executor::JoinHandle;

/// Spawns `future` as a new task on this core; `.await` the handle for its output, or
/// drop it to let the task run detached.
///
/// The future must be `Send`: a task stays on the core that spawned it, but the
/// executor's queues are shared with other cores (see the executor crate's docs).
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: core::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    crate::runtime::executor().spawn(future)
}

/// Spawns `future` as a new task on core `core`, where it stays.
///
/// # Errors
/// `Err(future)` when there is no such core (see [`cores`]).
pub fn spawn_on<F>(core: usize, future: F) -> Result<JoinHandle<F::Output>, F>
where
    F: core::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match crate::runtime::executor_of(core) {
        Some(executor) => Ok(executor.spawn(future)),
        None => Err(future),
    }
}

/// How many cores run tasks (every core the VM has, up to 16).
pub fn cores() -> usize {
    crate::arch::percpu::count()
}

/// The core the calling task runs on (0 = the boot core).
pub fn current_core() -> usize {
    crate::arch::percpu::current()
}

pub use crate::arch::fiber::NotOnFiber;

/// Spawns `work` as a blocking task: it runs on a stack of its own (a fiber, 32 KiB) so
/// that blocking calls inside it (`torito::net::blocking`, [`block_on`]) park it while
/// the rest of the core's tasks keep running. Await the handle for its result.
///
/// # Panics
///
/// When the heap has no room for the fiber's stack (with [`BlockingSpawnError`]'s
/// message). A service that spawns one blocking task per connection should use
/// [`try_spawn_blocking`] and refuse the connection instead.
pub fn spawn_blocking<T, W>(work: W) -> JoinHandle<T>
where
    W: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match try_spawn_blocking(work) {
        Ok(handle) => handle,
        Err(error) => panic!("{}", error),
    }
}

/// Spawns `work` as a blocking task, like [`spawn_blocking`], unless the heap has no
/// room for its stack.
///
/// # Errors
///
/// [`BlockingSpawnError`] when the 32 KiB stack (plus a little for the task) cannot be
/// allocated; it gives `work` back ([`BlockingSpawnError::into_work`]), so whatever the
/// closure owns (a connection, say) is the caller's to refuse or retry.
///
/// # Examples
///
/// ```ignore
/// match torito::task::try_spawn_blocking(move || serve(stream)) {
///     Ok(handle) => drop(handle),
///     Err(error) => torito::log::warn!("connection refused: {}", error),
/// }
/// ```
pub fn try_spawn_blocking<T, W>(work: W) -> Result<JoinHandle<T>, BlockingSpawnError<W>>
where
    W: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    use alloc::vec::Vec;
    let refused = |work| BlockingSpawnError {
        work,
        stack_bytes: crate::arch::fiber::FIBER_STACK,
    };
    let Some(mut fiber) = crate::arch::fiber::Fiber::try_new(core::any::type_name::<W>()) else {
        return Err(refused(work));
    };
    // The task and the output slot are small infallible allocations: check that they
    // fit too, so that a stack that only just fit does not leave them to stop the
    // kernel. (A probe, given back at once.)
    if Vec::<u8>::new().try_reserve_exact(TASK_HEADROOM).is_err() {
        return Err(refused(work));
    }
    let slot = alloc::sync::Arc::new(spin::Mutex::new(None));
    let output = slot.clone();
    fiber.set_work(alloc::boxed::Box::new(move || {
        *output.lock() = Some(work());
    }));
    Ok(crate::runtime::executor().spawn(async move {
        crate::arch::fiber::FiberTask(fiber).await;
        slot.lock()
            .take()
            .expect("a finished fiber stored its output")
    }))
}

/// Heap that must be free besides the fiber's stack for [`try_spawn_blocking`] to go
/// ahead: the executor's task, the closure's box and the output slot (a few hundred
/// bytes) with room to spare.
const TASK_HEADROOM: usize = 2 * 1024;

/// The heap [`try_spawn_blocking`] needs free to spawn a blocking task: its stack plus
/// the task. A listener whose connections are each served by a blocking task reserves
/// this much per connection (`TcpListener::set_reserve`), so every connection it
/// accepts can be served.
pub const BLOCKING_TASK_BYTES: usize = crate::arch::fiber::FIBER_HEAP_BYTES + TASK_HEADROOM;

/// [`try_spawn_blocking`] found no room on the heap for a blocking task's stack.
///
/// Carries the work back ([`into_work`](Self::into_work)); dropping the error drops it.
pub struct BlockingSpawnError<W> {
    work: W,
    /// The stack size that could not be allocated, in bytes.
    pub stack_bytes: usize,
}

impl<W> BlockingSpawnError<W> {
    /// The closure that was not spawned, with everything it owns.
    pub fn into_work(self) -> W {
        self.work
    }
}

impl<W> core::fmt::Debug for BlockingSpawnError<W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BlockingSpawnError")
            .field("stack_bytes", &self.stack_bytes)
            .finish_non_exhaustive()
    }
}

impl<W> core::fmt::Display for BlockingSpawnError<W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "no memory for a blocking task's {} KiB stack: refuse the work and retry later, \
             give the VM more memory, or serve it with an async task (no stack of its own)",
            self.stack_bytes / 1024
        )
    }
}

impl<W> core::error::Error for BlockingSpawnError<W> {}

/// Waits for `future` from a blocking task, parking the task (not the core) meanwhile.
///
/// # Errors
/// [`NotOnFiber`] when called outside a task made by [`spawn_blocking`]: there it would
/// stall the whole core, so it refuses instead of hanging.
pub fn block_on<F: core::future::Future>(future: F) -> Result<F::Output, NotOnFiber> {
    crate::arch::fiber::park(future)
}

/// What one core did: for spotting busy or chatty cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreStats {
    /// Times the core halted (went idle).
    pub halts: u64,
    /// Wake IPIs it sent to halted cores.
    pub wakes_sent: u64,
    /// Wake IPIs it received.
    pub wakes_received: u64,
    /// Timer interrupts it took.
    pub timer_interrupts: u64,
    /// Interrupts it took between enabling interrupts and halting, a window that
    /// hardware closes and some hypervisors do not; each would have been a lost wake-up,
    /// and its halt was skipped instead. Not 0 means the hypervisor breaks STI's
    /// interrupt shadow (seen under Xen under QEMU's emulator).
    pub halts_skipped: u64,
}

/// One line, `name: value` pairs (like the network counters' `Display`).
impl core::fmt::Display for CoreStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "halts: {}, wakes_sent: {}, wakes_received: {}, timer_interrupts: {}, \
             halts_skipped: {}",
            self.halts,
            self.wakes_sent,
            self.wakes_received,
            self.timer_interrupts,
            self.halts_skipped
        )
    }
}

/// Counters of core `core` (zeros for a core that does not exist).
pub fn core_stats(core: usize) -> CoreStats {
    use core::sync::atomic::Ordering::Relaxed;
    if core >= cores() {
        return CoreStats::default();
    }
    let cpu = crate::arch::percpu::cpu(core);
    CoreStats {
        halts: cpu.halts.load(Relaxed),
        wakes_sent: cpu.wakes_sent.load(Relaxed),
        wakes_received: cpu.wakes_received.load(Relaxed),
        timer_interrupts: cpu.timer_interrupts.load(Relaxed),
        halts_skipped: cpu.halts_skipped.load(Relaxed),
    }
}
