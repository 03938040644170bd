//! The configuration space virtio-drivers' `PciTransport` reads: a snapshot taken after
//! discovery checked the device, with the BAR sizes it recorded.
//!
//! Why: `PciTransport::new` walks the capability list itself (an endless loop on a list
//! that loops) and sizes each BAR it uses by writing all-ones to it, restoring a 64-bit
//! BAR's high half before its low half, which Cloud Hypervisor reports as a failed BAR
//! move. Reading a checked snapshot instead, it sees the list discovery accepted, and
//! its BAR writes reach only the snapshot: a write of all-ones makes the register read
//! back the recorded size mask until the next write. Every other write is dropped (the
//! only ones it makes are that sizing and the command-register toggles around it).
#![allow(unsafe_code)]

use super::config::{BAR0, Bar, BarKind, ConfigSpace, Function};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

/// A function's 256 bytes of configuration space, as read once, plus its BAR masks.
#[derive(Debug, Clone)]
pub struct ConfigSnapshot {
    function: Function,
    words: [u32; 64],
    /// What each BAR register reads after all-ones were written to it.
    masks: [u32; 6],
    /// Which BAR registers hold all-ones right now (in the snapshot).
    probing: [bool; 6],
}

impl ConfigSnapshot {
    /// A snapshot of a function that reads as absent.
    pub fn empty(function: Function) -> Self {
        Self {
            function,
            words: [0xffff_ffff; 64],
            masks: [0; 6],
            probing: [false; 6],
        }
    }

    /// Reads `function`'s configuration space (64 reads) and derives the size masks
    /// from `bars` (as [`super::pci::size_bars`] found them), so nothing is written.
    pub fn read(
        config: &mut impl ConfigSpace,
        function: Function,
        bars: &[Option<Bar>; 6],
    ) -> Self {
        let mut snapshot = Self::empty(function);
        for (index, word) in snapshot.words.iter_mut().enumerate() {
            *word = config.read32(function, 4 * index as u8);
        }
        for (index, bar) in bars.iter().enumerate() {
            let Some(bar) = bar else { continue };
            let register = snapshot.words[usize::from(BAR0 / 4) + index];
            let mask = bar.size.wrapping_neg();
            match bar.kind {
                BarKind::Io => snapshot.masks[index] = mask as u32 | (register & 0x3),
                BarKind::Memory32 => snapshot.masks[index] = mask as u32 | (register & 0xf),
                BarKind::Memory64 => {
                    snapshot.masks[index] = mask as u32 | (register & 0xf);
                    if let Some(high) = snapshot.masks.get_mut(index + 1) {
                        *high = (mask >> 32) as u32;
                    }
                }
            }
        }
        snapshot
    }

    /// The snapshot with its device ID read as `device_id`: virtio-drivers 0.13's
    /// `PciTransport::new` refuses a device type it has no name for (virtio-fs, 26, among
    /// them), though nothing else in the transport depends on the type. A driver for such
    /// a device presents it as one the crate knows; the device itself is untouched.
    pub fn with_device_id(mut self, device_id: u16) -> Self {
        self.words[0] = (self.words[0] & 0xffff) | u32::from(device_id) << 16;
        self
    }

    fn bar_index(offset: u8) -> Option<usize> {
        let index = usize::from(offset.checked_sub(BAR0)? / 4);
        (index < 6).then_some(index)
    }

    fn is_ours(&self, function: DeviceFunction) -> bool {
        function.bus == self.function.bus
            && function.device == self.function.device
            && function.function == self.function.function
    }
}

impl ConfigurationAccess for ConfigSnapshot {
    fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
        if !self.is_ours(function) {
            return 0xffff_ffff;
        }
        match Self::bar_index(offset) {
            Some(index) if self.probing[index] => self.masks[index],
            _ => self.words[usize::from(offset / 4)],
        }
    }

    fn write_word(&mut self, function: DeviceFunction, offset: u8, data: u32) {
        if !self.is_ours(function) {
            return;
        }
        if let Some(index) = Self::bar_index(offset) {
            self.probing[index] = data == 0xffff_ffff;
        }
    }

    // Implementor's duty (virtio-drivers `ConfigurationAccess`): the clone may be used to
    // read while the original writes. A snapshot is plain data: the clone is independent.
    unsafe fn unsafe_clone(&self) -> Self {
        self.clone()
    }
}
