//! A virtio-mmio transport over discovery's [`Registers`] (virtio spec 1.2, section 4.2):
//! for virtio-fs, whose device type (26) virtio-drivers 0.13's `MmioTransport` refuses
//! (it reads the type from the device and knows no name for it). Both register layouts:
//! legacy (version 1, QEMU microvm's default: queues by page frame number) and modern
//! (version 2). No `unsafe`: every access goes through the kernel's checked register
//! window.
//!
//! [`Either`] lets one driver type hold this transport or another (the PCI one).

use crate::discovery::Registers;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const MAGIC: u64 = 0x000;
const VERSION: u64 = 0x004;
const DEVICE_ID: u64 = 0x008;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const LEGACY_GUEST_PAGE_SIZE: u64 = 0x028;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const LEGACY_QUEUE_ALIGN: u64 = 0x03c;
const LEGACY_QUEUE_PFN: u64 = 0x040;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const INTERRUPT_STATUS: u64 = 0x060;
const INTERRUPT_ACK: u64 = 0x064;
const STATUS: u64 = 0x070;
const QUEUE_DESC: u64 = 0x080;
const QUEUE_DRIVER: u64 = 0x090;
const QUEUE_DEVICE: u64 = 0x0a0;
const CONFIG_GENERATION: u64 = 0x0fc;
const CONFIG: u64 = 0x100;
/// "virt", little-endian.
const MAGIC_VALUE: u32 = 0x7472_6976;
const PAGE: u64 = 4096;

/// Why a window is no virtio-mmio device this transport takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// The magic value is not "virt".
    BadMagic(u32),
    /// A version other than 1 (legacy) or 2.
    BadVersion(u32),
    /// No device behind the slot (device ID 0).
    NoDevice,
}

impl core::fmt::Display for MmioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmioError::BadMagic(magic) => write!(f, "magic {magic:#x} is not \"virt\""),
            MmioError::BadVersion(version) => write!(f, "virtio-mmio version {version}"),
            MmioError::NoDevice => f.write_str("no device in the slot"),
        }
    }
}

/// virtio-mmio through a register window of `size` bytes.
#[derive(Debug)]
pub struct MmioRegisters<R: Registers> {
    registers: R,
    legacy: bool,
    /// Bytes of configuration space the window holds.
    config_size: usize,
}

impl<R: Registers> MmioRegisters<R> {
    /// Checks the header of the device behind `registers` (a window of `size` bytes).
    ///
    /// # Errors
    /// [`MmioError`] for a bad magic value, an unknown version, or an empty slot.
    pub fn new(registers: R, size: u64) -> core::result::Result<Self, MmioError> {
        let magic = registers.read32(MAGIC);
        if magic != MAGIC_VALUE {
            return Err(MmioError::BadMagic(magic));
        }
        let legacy = match registers.read32(VERSION) {
            1 => true,
            2 => false,
            other => return Err(MmioError::BadVersion(other)),
        };
        if registers.read32(DEVICE_ID) == 0 {
            return Err(MmioError::NoDevice);
        }
        Ok(Self {
            registers,
            legacy,
            config_size: size.saturating_sub(CONFIG) as usize,
        })
    }

    /// The device ID (26 for virtio-fs).
    pub fn device_id(&self) -> u32 {
        self.registers.read32(DEVICE_ID)
    }

    fn write64(&self, offset: u64, value: u64) {
        self.registers.write32(offset, value as u32);
        self.registers.write32(offset + 4, (value >> 32) as u32);
    }

    /// Whether `size` bytes at `offset` lie in the configuration space.
    fn config_range(&self, offset: usize, size: usize) -> Result<()> {
        if size > 16
            || offset
                .checked_add(size)
                .is_none_or(|end| end > self.config_size)
        {
            return Err(Error::ConfigSpaceTooSmall);
        }
        Ok(())
    }
}

impl<R: Registers> Transport for MmioRegisters<R> {
    fn device_type(&self) -> DeviceType {
        // virtio-drivers has no name for 26; nothing in this driver reads the type.
        DeviceType::try_from(self.device_id()).unwrap_or(DeviceType::Sound)
    }

    fn read_device_features(&mut self) -> u64 {
        self.registers.write32(DEVICE_FEATURES_SEL, 0);
        let low = self.registers.read32(DEVICE_FEATURES);
        self.registers.write32(DEVICE_FEATURES_SEL, 1);
        let high = self.registers.read32(DEVICE_FEATURES);
        u64::from(high) << 32 | u64::from(low)
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.registers.write32(DRIVER_FEATURES_SEL, 0);
        self.registers
            .write32(DRIVER_FEATURES, driver_features as u32);
        self.registers.write32(DRIVER_FEATURES_SEL, 1);
        self.registers
            .write32(DRIVER_FEATURES, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.registers.write32(QUEUE_SEL, queue.into());
        self.registers.read32(QUEUE_NUM_MAX)
    }

    fn notify(&mut self, queue: u16) {
        self.registers.write32(QUEUE_NOTIFY, queue.into());
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.registers.read32(STATUS))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.registers.write32(STATUS, status.bits());
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        if self.legacy {
            self.registers
                .write32(LEGACY_GUEST_PAGE_SIZE, guest_page_size);
        }
    }

    fn requires_legacy_layout(&self) -> bool {
        self.legacy
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.registers.write32(QUEUE_SEL, queue.into());
        self.registers.write32(QUEUE_NUM, size);
        if self.legacy {
            // Legacy: one page-aligned area, found by its page frame number; the driver
            // and device areas follow the descriptors at the legacy layout's offsets
            // (virtio-drivers allocates it so with `requires_legacy_layout`).
            self.registers.write32(LEGACY_QUEUE_ALIGN, PAGE as u32);
            self.registers
                .write32(LEGACY_QUEUE_PFN, (descriptors / PAGE) as u32);
        } else {
            self.write64(QUEUE_DESC, descriptors);
            self.write64(QUEUE_DRIVER, driver_area);
            self.write64(QUEUE_DEVICE, device_area);
            self.registers.write32(QUEUE_READY, 1);
        }
    }

    fn queue_unset(&mut self, queue: u16) {
        self.registers.write32(QUEUE_SEL, queue.into());
        if self.legacy {
            self.registers.write32(QUEUE_NUM, 0);
            self.registers.write32(LEGACY_QUEUE_PFN, 0);
        } else {
            self.registers.write32(QUEUE_READY, 0);
            self.registers.write32(QUEUE_NUM, 0);
            self.write64(QUEUE_DESC, 0);
            self.write64(QUEUE_DRIVER, 0);
            self.write64(QUEUE_DEVICE, 0);
        }
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.registers.write32(QUEUE_SEL, queue.into());
        if self.legacy {
            self.registers.read32(LEGACY_QUEUE_PFN) != 0
        } else {
            self.registers.read32(QUEUE_READY) != 0
        }
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let status = self.registers.read32(INTERRUPT_STATUS);
        if status != 0 {
            self.registers.write32(INTERRUPT_ACK, status);
        }
        InterruptStatus::from_bits_truncate(status)
    }

    fn read_config_generation(&self) -> u32 {
        if self.legacy {
            0
        } else {
            self.registers.read32(CONFIG_GENERATION)
        }
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T> {
        let size = core::mem::size_of::<T>();
        self.config_range(offset, size)?;
        // Whole 32-bit words around the value, then its bytes out of them.
        let first = offset & !3;
        let mut bytes = [0u8; 24];
        for word in 0..(offset + size - first).div_ceil(4) {
            let value = self.registers.read32(CONFIG + (first + 4 * word) as u64);
            bytes[4 * word..4 * word + 4].copy_from_slice(&value.to_le_bytes());
        }
        let start = offset - first;
        T::read_from_bytes(&bytes[start..start + size]).map_err(|_| Error::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<()> {
        let size = core::mem::size_of::<T>();
        self.config_range(offset, size)?;
        if !offset.is_multiple_of(4) || !size.is_multiple_of(4) {
            // Nothing here writes configuration; refuse what would need a read-modify-write.
            return Err(Error::ConfigSpaceTooSmall);
        }
        for (index, word) in value.as_bytes().chunks(4).enumerate() {
            let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            self.registers
                .write32(CONFIG + (offset + 4 * index) as u64, word);
        }
        Ok(())
    }
}

impl<R: Registers> Drop for MmioRegisters<R> {
    fn drop(&mut self) {
        // Reset the device, as virtio-drivers' transports do.
        self.registers.write32(STATUS, 0);
    }
}

/// One of two transports (the PCI one or [`MmioRegisters`]), as one type.
#[derive(Debug)]
pub enum Either<A, B> {
    /// The first.
    A(A),
    /// The second.
    B(B),
}

/// Calls the same method on whichever transport `$self` holds.
macro_rules! either {
    ($self:ident, $transport:ident => $call:expr) => {
        match $self {
            Either::A($transport) => $call,
            Either::B($transport) => $call,
        }
    };
}

impl<A: Transport, B: Transport> Transport for Either<A, B> {
    crate::transport::transport_by_variant!(either);
}
