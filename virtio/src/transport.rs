//! `StepwiseStatus`: a transport wrapper that sets device status bits one at a time;
//! `DeviceTransport`: the two transports discovery finds.
//!
//! The virtio spec (3.1.1) orders initialization as ACKNOWLEDGE, then DRIVER, then
//! FEATURES_OK, then DRIVER_OK, each a write that adds one bit. virtio-drivers 0.13
//! writes ACKNOWLEDGE|DRIVER in one go, which QEMU accepts but Firecracker's virtio-mmio
//! device does not (it stays inactive). This wrapper splits every status
//! write into single-bit steps in spec order, and passes everything else through.

use core::fmt::Debug;
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A transport whose status writes are split into spec-ordered single-bit steps.
#[derive(Debug)]
pub struct StepwiseStatus<T>(pub T);

const ORDER: [DeviceStatus; 4] = [
    DeviceStatus::ACKNOWLEDGE,
    DeviceStatus::DRIVER,
    DeviceStatus::FEATURES_OK,
    DeviceStatus::DRIVER_OK,
];

/// The sequence of status values to write to go from `current` to `wanted`: a reset
/// (empty) or a status that clears bits is written as it is; added bits are added one by
/// one in spec order, then any remaining bits (FAILED, NEEDS_RESET) at the end.
pub fn status_steps(
    current: DeviceStatus,
    wanted: DeviceStatus,
) -> impl Iterator<Item = DeviceStatus> {
    let mut steps = [None; 5];
    if wanted.is_empty() || !wanted.contains(current) {
        // A reset, or a status that drops bits: the device takes it as one write.
        steps[0] = Some(wanted);
        return steps.into_iter().flatten();
    }
    let mut status = current;
    let mut count = 0;
    for bit in ORDER {
        if wanted.contains(bit) && !status.contains(bit) {
            status |= bit;
            steps[count] = Some(status);
            count += 1;
        }
    }
    if status != wanted {
        steps[count] = Some(wanted);
    }
    steps.into_iter().flatten()
}

impl<T: Transport> Transport for StepwiseStatus<T> {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features()
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.0.write_driver_features(driver_features)
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.0.notify(queue)
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        for step in status_steps(self.0.get_status(), status) {
            self.0.set_status(step);
        }
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.0.set_guest_page_size(guest_page_size)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.0.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }
    fn queue_unset(&mut self, queue: u16) {
        self.0.queue_unset(queue)
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.0.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.0.read_config_generation()
    }
    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V> {
        self.0.read_config_space(offset)
    }
    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> Result<()> {
        self.0.write_config_space(offset, value)
    }
}

/// A device's transport: virtio-mmio or virtio-pci, the two that discovery finds.
///
/// Not virtio-drivers' `SomeTransport`: on x86_64 that enum also has a pKVM hypercall
/// variant (`HypPci`) that Torito never builds, and every call through the enum links
/// that variant's code (about 1.5 KB of the echo image).
#[derive(Debug)]
pub enum DeviceTransport {
    /// virtio-mmio (Firecracker, QEMU microvm).
    Mmio(MmioTransport<'static>),
    /// virtio-pci (QEMU q35 and pc, Cloud Hypervisor).
    Pci(PciTransport),
}

/// The methods of `Transport` for an enum of transports, each calling the same method on
/// the variant held through `$each!(self, t => call)`, the enum's own dispatch macro.
/// `DeviceTransport` and `fs::mmio::Either` are such enums.
macro_rules! transport_by_variant {
    ($each:ident) => {
        fn device_type(&self) -> DeviceType {
            $each!(self, t => t.device_type())
        }
        fn read_device_features(&mut self) -> u64 {
            $each!(self, t => t.read_device_features())
        }
        fn write_driver_features(&mut self, driver_features: u64) {
            $each!(self, t => t.write_driver_features(driver_features))
        }
        fn max_queue_size(&mut self, queue: u16) -> u32 {
            $each!(self, t => t.max_queue_size(queue))
        }
        fn notify(&mut self, queue: u16) {
            $each!(self, t => t.notify(queue))
        }
        fn get_status(&self) -> DeviceStatus {
            $each!(self, t => t.get_status())
        }
        fn set_status(&mut self, status: DeviceStatus) {
            $each!(self, t => t.set_status(status))
        }
        fn set_guest_page_size(&mut self, guest_page_size: u32) {
            $each!(self, t => t.set_guest_page_size(guest_page_size))
        }
        fn requires_legacy_layout(&self) -> bool {
            $each!(self, t => t.requires_legacy_layout())
        }
        fn queue_set(
            &mut self,
            queue: u16,
            size: u32,
            descriptors: PhysAddr,
            driver_area: PhysAddr,
            device_area: PhysAddr,
        ) {
            $each!(self, t => t.queue_set(queue, size, descriptors, driver_area, device_area))
        }
        fn queue_unset(&mut self, queue: u16) {
            $each!(self, t => t.queue_unset(queue))
        }
        fn queue_used(&mut self, queue: u16) -> bool {
            $each!(self, t => t.queue_used(queue))
        }
        fn ack_interrupt(&mut self) -> InterruptStatus {
            $each!(self, t => t.ack_interrupt())
        }
        fn read_config_generation(&self) -> u32 {
            $each!(self, t => t.read_config_generation())
        }
        fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V> {
            $each!(self, t => t.read_config_space(offset))
        }
        fn write_config_space<V: IntoBytes + Immutable>(
            &mut self,
            offset: usize,
            value: V,
        ) -> Result<()> {
            $each!(self, t => t.write_config_space(offset, value))
        }
    };
}
pub(crate) use transport_by_variant;

/// Calls the same method on whichever transport `$self` holds.
macro_rules! each {
    ($self:ident, $transport:ident => $call:expr) => {
        match $self {
            DeviceTransport::Mmio($transport) => $call,
            DeviceTransport::Pci($transport) => $call,
        }
    };
}

impl Transport for DeviceTransport {
    transport_by_variant!(each);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(current: DeviceStatus, wanted: DeviceStatus) -> Vec<DeviceStatus> {
        status_steps(current, wanted).collect()
    }

    #[test]
    fn acknowledge_and_driver_become_two_writes() {
        let ack = DeviceStatus::ACKNOWLEDGE;
        let driver = DeviceStatus::DRIVER;
        assert_eq!(
            steps(DeviceStatus::empty(), ack | driver),
            vec![ack, ack | driver]
        );
    }

    #[test]
    fn bits_already_set_are_not_written_again() {
        let base = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
        assert_eq!(
            steps(base, base | DeviceStatus::FEATURES_OK),
            vec![base | DeviceStatus::FEATURES_OK]
        );
        let all = base | DeviceStatus::FEATURES_OK | DeviceStatus::DRIVER_OK;
        assert_eq!(
            steps(base, all),
            vec![base | DeviceStatus::FEATURES_OK, all]
        );
    }

    #[test]
    fn reset_and_failure_are_single_writes() {
        let running = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
        assert_eq!(
            steps(running, DeviceStatus::empty()),
            vec![DeviceStatus::empty()]
        );
        let failed = running | DeviceStatus::FAILED;
        assert_eq!(steps(running, failed), vec![failed]);
    }
}
