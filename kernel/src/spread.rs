//! Tasks spread over the cores and counted while they run: what a service's accept loop
//! needs to use every core and, after a stop request, to let its connections finish.
//!
//! Every network service in examples/ had the same three pieces: a "next core" turn for
//! `spawn_on`, a live-connection counter with a drop guard (taken before the task starts,
//! so that the count cannot read zero while a connection is on its way to its core), and
//! a bounded wait for that count to fall to zero after `until_shutdown` ended the accept
//! loop. [`Spread`] is those three pieces once.

use crate::time::Duration;
use alloc::sync::Arc;
use core::future::Future;
use core::sync::atomic::{AtomicUsize, Ordering};

/// How often [`Spread::wait`] looks at the count.
const POLL: Duration = Duration::from_millis(10);

/// Spawns tasks on the cores in turn (core 1, 2, ..., then 0 again) and counts the ones
/// still running.
///
/// Clones share the count, each with a turn of its own: a service with an accept loop
/// per NIC gives each loop a clone and waits on any of them.
///
/// # Examples
///
/// ```no_run
/// use torito::net::{TcpListener, TcpStream};
/// use torito::task::Spread;
/// use torito::time::Duration;
///
/// async fn serve(stream: TcpStream) { /* ... */ }
///
/// async fn accept_loop(listener: TcpListener) {
///     let mut spread = Spread::new();
///     while let Some(accepted) = torito::until_shutdown(listener.accept()).await {
///         if let Ok(stream) = accepted {
///             spread.spawn(serve(stream));
///         }
///     }
///     // Asked to stop: no new connections; give the open ones 5 s to end.
///     match spread.wait(Duration::from_secs(5)).await {
///         0 => torito::println!("stopped cleanly"),
///         left => torito::println!("stopping with {} connections still open", left),
///     }
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Spread {
    running: Arc<AtomicUsize>,
    next: usize,
}

/// Counts one task in [`Spread::running`] from before it is spawned until it ends (or
/// is dropped unfinished).
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(count: &Arc<AtomicUsize>) -> Running {
        count.fetch_add(1, Ordering::AcqRel);
        Running(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Spread {
    /// No task yet; the first goes to core 1 (core 0 when there is only one).
    pub fn new() -> Spread {
        Spread::default()
    }

    /// Spawns `task` on the next core in turn, counted in [`running`](Spread::running)
    /// from now until it ends. The task runs detached.
    pub fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.next = (self.next + 1) % crate::task::cores();
        // Counted here, before the task starts, so that a waiter cannot see zero while
        // the task is on its way to its core.
        let running = Running::new(&self.running);
        let counted = async move {
            let _running = running;
            task.await;
        };
        // The core exists (it is below `cores()`), so spawn_on cannot refuse.
        if let Ok(handle) = crate::task::spawn_on(self.next, counted) {
            handle.detach();
        }
    }

    /// How many tasks spawned through this `Spread` or its clones are still running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Waits until every task spawned through this `Spread` or its clones has ended, or
    /// `limit` has passed; returns how many are still running (0: all ended).
    pub async fn wait(&self, limit: Duration) -> usize {
        let started = crate::time::now();
        while self.running() > 0 && crate::time::now().saturating_duration_since(started) < limit {
            crate::time::sleep(POLL).await;
        }
        self.running()
    }
}
