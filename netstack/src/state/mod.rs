//! The stack's state, below both of its users: the [`Runner`](crate::Runner), which
//! polls smoltcp over it, and the sockets (`tcp`, `udp`), which read and change it.
//!
//! Nothing here imports the runner or the sockets; they import this. That is what
//! keeps the crate free of import cycles:
//!
//! ```text
//! blocking ──▶ tcp, udp ──▶ state ◀── runner ──▶ device ──▶ driver
//!
//! inside state: shared ──▶ listeners ──▶ sockets
//! ```
//!
//! (`listeners` names `device::Refusal`, the reason a port refuses SYNs; everything
//! may use `config`, `counters` and `error`, which import nothing of the crate.)

pub(crate) mod listeners;
pub(crate) mod shared;
pub(crate) mod sockets;

pub(crate) use shared::{Closing, Inner, Stack};
