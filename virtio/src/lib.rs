//! Torito's virtio device glue over the virtio-drivers crate.
//!
//! Empty until the networking issue: it will hold virtio-net on the mmio and pci
//! transports, interrupt-driven, generic over a DMA `Hal` that the kernel provides.
#![cfg_attr(not(test), no_std)]
