//! Tasks: spawn futures on the current core's executor.

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
pub fn spawn_blocking<T, W>(work: W) -> JoinHandle<T>
where
    W: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = alloc::sync::Arc::new(spin::Mutex::new(None));
    let output = slot.clone();
    let fiber = crate::arch::fiber::Fiber::new(alloc::boxed::Box::new(move || {
        *output.lock() = Some(work());
    }));
    crate::runtime::executor().spawn(async move {
        crate::arch::fiber::FiberTask(fiber).await;
        slot.lock()
            .take()
            .expect("a finished fiber stored its output")
    })
}

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
}

/// One line, `name: value` pairs (like the network counters' `Display`).
impl core::fmt::Display for CoreStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "halts: {}, wakes_sent: {}, wakes_received: {}, timer_interrupts: {}",
            self.halts, self.wakes_sent, self.wakes_received, self.timer_interrupts
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
    }
}
