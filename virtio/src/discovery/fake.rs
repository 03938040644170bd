//! Fakes for the discovery tests: a configuration space of PCI functions whose BARs
//! answer sizing as hardware does and which records every access, and a register window.

use super::Registers;
use super::pci::{ConfigSpace, Function};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// One configuration-space access, in the order made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read(Function, u8),
    Write(Function, u8, u32),
}

/// A function's registers and, per BAR register, the bits it can hold (0 = read-only).
#[derive(Debug, Clone)]
pub struct FakeFunction {
    pub words: [u32; 64],
    pub writable: [u32; 6],
}

impl FakeFunction {
    /// A header-type-0 function with capabilities on (status bit 4).
    pub fn new(vendor: u16, device: u16) -> Self {
        let mut words = [0; 64];
        words[0] = u32::from(device) << 16 | u32::from(vendor);
        words[1] = 1 << 20; // status: capability list
        words[15] = 0x0000_010a; // INTx pin A, line 10
        Self {
            words,
            writable: [0; 6],
        }
    }

    /// A 32-bit memory BAR at `address` of `size` bytes (a power of two).
    pub fn bar32(mut self, index: usize, address: u32, size: u32) -> Self {
        self.words[4 + index] = address;
        self.writable[index] = !(size - 1) & 0xffff_fff0;
        self
    }

    /// A 64-bit memory BAR at `index` (and `index + 1`).
    pub fn bar64(mut self, index: usize, address: u64, size: u64) -> Self {
        let mask = !(size - 1);
        self.words[4 + index] = address as u32 & 0xffff_fff0 | 0b100;
        self.words[5 + index] = (address >> 32) as u32;
        self.writable[index] = mask as u32 & 0xffff_fff0;
        self.writable[index + 1] = (mask >> 32) as u32;
        self
    }

    /// Writes a capability: `words` from `offset`, first byte id, second byte next.
    pub fn capability(mut self, offset: u8, words: &[u32]) -> Self {
        for (index, word) in words.iter().enumerate() {
            self.words[usize::from(offset / 4) + index] = *word;
        }
        self
    }

    /// Sets the capability pointer.
    pub fn first_capability(mut self, offset: u8) -> Self {
        self.words[0x34 / 4] = u32::from(offset);
        self
    }
}

/// A vendor-specific virtio capability (spec 4.1.4) at some offset.
pub fn virtio_cap(next: u8, cfg_type: u8, bar: u8, offset: u32, length: u32) -> [u32; 4] {
    [
        u32::from(cfg_type) << 24 | 16 << 16 | u32::from(next) << 8 | 0x09,
        u32::from(bar),
        offset,
        length,
    ]
}

/// A modern virtio-net function: a 64-bit BAR 4 of 16 KiB at `address` with the four
/// structures QEMU puts there, and an MSI-X table of 3 entries in BAR 1 (4 KiB).
pub fn virtio_net(address: u64, msix_bar: u32) -> FakeFunction {
    FakeFunction::new(0x1af4, 0x1041)
        .bar32(1, msix_bar, 0x1000)
        .bar64(4, address, 0x4000)
        .first_capability(0x40)
        .capability(0x40, &[0x0002_5011, 0x0000_0001, 0x0000_0801]) // MSI-X: 3 entries
        .capability(0x50, &virtio_cap(0x60, 1, 4, 0x0000, 0x1000))
        .capability(0x60, &virtio_cap(0x70, 3, 4, 0x1000, 0x1000))
        .capability(0x70, &virtio_cap(0x84, 4, 4, 0x2000, 0x1000))
        .capability(
            0x84,
            &[
                virtio_cap(0, 2, 4, 0x3000, 0x1000)[0] | 20 << 16,
                4,
                0x3000,
                0x1000,
                4,
            ],
        )
}

/// PCI configuration space with functions placed by the test; every access is logged.
#[derive(Debug, Default)]
pub struct FakeConfig {
    pub functions: BTreeMap<Function, FakeFunction>,
    pub log: Vec<Access>,
}

impl FakeConfig {
    pub fn with(mut self, function: Function, fake: FakeFunction) -> Self {
        self.functions.insert(function, fake);
        self
    }

    /// The writes made, in order.
    pub fn writes(&self) -> Vec<(u8, u32)> {
        self.log
            .iter()
            .filter_map(|access| match access {
                Access::Write(_, offset, value) => Some((*offset, *value)),
                Access::Read(..) => None,
            })
            .collect()
    }
}

impl ConfigSpace for FakeConfig {
    fn read32(&mut self, function: Function, offset: u8) -> u32 {
        self.log.push(Access::Read(function, offset));
        self.functions
            .get(&function)
            .map_or(0xffff_ffff, |fake| fake.words[usize::from(offset / 4)])
    }

    fn write32(&mut self, function: Function, offset: u8, value: u32) {
        self.log.push(Access::Write(function, offset, value));
        let Some(fake) = self.functions.get_mut(&function) else {
            return;
        };
        let index = usize::from(offset / 4);
        match offset {
            0x10..=0x27 => {
                let writable = fake.writable[index - 4];
                fake.words[index] = fake.words[index] & !writable | value & writable;
            }
            0x04 => fake.words[1] = fake.words[1] & 0xffff_0000 | value & 0xffff,
            _ => fake.words[index] = value,
        }
    }
}

/// Memory-mapped registers: a byte array, with every write logged.
#[derive(Debug, Default)]
pub struct FakeWindow {
    pub bytes: RefCell<Vec<u8>>,
    pub writes: RefCell<Vec<(u64, u32)>>,
    /// Registers whose writes are ignored (a device refusing a value).
    pub read_only: Vec<u64>,
}

impl FakeWindow {
    pub fn new(size: usize) -> Self {
        Self {
            bytes: RefCell::new(vec![0; size]),
            ..Self::default()
        }
    }

    /// A virtio-mmio header: magic, version, device type.
    pub fn virtio_mmio(version: u32, kind: u32) -> Self {
        let window = Self::new(0x200);
        window.set32(0, 0x7472_6976);
        window.set32(4, version);
        window.set32(8, kind);
        window
    }

    pub fn set32(&self, offset: u64, value: u32) {
        let at = offset as usize;
        self.bytes.borrow_mut()[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    pub fn get32(&self, offset: u64) -> u32 {
        let at = offset as usize;
        u32::from_le_bytes(self.bytes.borrow()[at..at + 4].try_into().unwrap())
    }
}

impl Registers for FakeWindow {
    fn read16(&self, offset: u64) -> u16 {
        let at = offset as usize;
        u16::from_le_bytes(self.bytes.borrow()[at..at + 2].try_into().unwrap())
    }

    fn write16(&self, offset: u64, value: u16) {
        self.writes.borrow_mut().push((offset, u32::from(value)));
        if !self.read_only.contains(&offset) {
            let at = offset as usize;
            self.bytes.borrow_mut()[at..at + 2].copy_from_slice(&value.to_le_bytes());
        }
    }

    fn read32(&self, offset: u64) -> u32 {
        self.get32(offset)
    }

    fn write32(&self, offset: u64, value: u32) {
        self.writes.borrow_mut().push((offset, value));
        if !self.read_only.contains(&offset) {
            self.set32(offset, value);
        }
    }
}

/// xorshift64*, as in boot's fuzz tests: seeded, so a failure repeats.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
