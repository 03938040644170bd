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
    crate::runtime::EXECUTOR.spawn(future)
}
