//! Synchronization between tasks, on one core or across cores.
//!
//! [`channel()`] is bounded with backpressure: a sender waits while the channel is full,
//! a receiver while it is empty; both are woken (across cores, with an IPI only when
//! the other core is halted) when the other side makes room or sends.

pub use torito_executor::channel::{Closed, TryRecvError, TrySendError};
pub use torito_executor::{Receiver, Sender, channel};
