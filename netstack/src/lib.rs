//! Torito's network stack: smoltcp behind a `Stack` handle and a `Runner` task, with
//! async and blocking sockets.
//!
//! Empty until the networking issue: it will hold the driver trait that virtio devices
//! implement, the Runner that polls the interface when the device or a smoltcp deadline
//! wakes it, and the socket types. It knows nothing of x86_64 and is tested on the host.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
