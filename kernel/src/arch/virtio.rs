//! Raw device access for virtio: the DMA `Hal` for virtio-drivers, mapped register
//! windows, and device interrupts (vector allocation, routing, the handlers).
//!
//! Finding devices is not done here: `torito_virtio::discovery` parses and checks, over
//! the register-access traits implemented below and in `arch/pci.rs`.
//!
//! Each device that a driver opens gets one [`DeviceInterrupt`]: a vector of its own and
//! a handler that acknowledges the device through the raw register (virtio-mmio:
//! InterruptStatus -> InterruptACK; PCI INTx: a read of the ISR byte; MSI-X needs
//! nothing) without any lock a task may hold, counts, and wakes the driver's waker.

use super::{interrupts, ioapic, lapic, paging};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use futures_util::task::AtomicWaker;
use torito_virtio::discovery::Registers;
use torito_virtio::discovery::mmio::MmioSlot;
use torito_virtio::discovery::pci::Message;
use torito_virtio::virtio_drivers::transport::mmio::{MmioError, MmioTransport, VirtIOHeader};
use torito_virtio::virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// The kernel's DMA for virtio-drivers: heap memory, identity-mapped, cache-coherent.
pub struct KernelHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory that nothing else aliases
// until `dma_dealloc`; physical == virtual (identity map) and x86 DMA is cache-coherent,
// so sharing needs no copy; `mmio_phys_to_virt` maps the range uncached first.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout =
            core::alloc::Layout::from_size_align(pages * 4096, 4096).expect("page multiple");
        // SAFETY: the layout has a non-zero size (virtio-drivers asks for >= 1 page).
        let pointer = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(pointer) {
            Some(pointer) => (pointer.as_ptr() as u64, pointer),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout =
            core::alloc::Layout::from_size_align(pages * 4096, 4096).expect("page multiple");
        // SAFETY: the caller passes back what `dma_alloc` returned for `pages`.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // Only ranges inside BARs that discovery checked against RAM, the kernel and the
        // other devices reach here (virtio-drivers reads them from the checked snapshot).
        let address =
            paging::map_device(paddr, size as u64).expect("a device BAR could not be mapped");
        NonNull::new(address as *mut u8).expect("BARs are never at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// A mapped window of device registers (uncached, identity-mapped).
///
/// An access outside the window panics: discovery checks every structure's length before
/// anything here reads it, so such an access is a bug in this kernel, not a device's doing.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    base: u64,
    size: u64,
}

/// Maps `[address, address + size)` as device memory. Call it only for ranges discovery
/// checked (they overlap no RAM, kernel memory or other device).
pub fn map_window(address: u64, size: u64) -> Option<Window> {
    paging::map_device(address, size).map(|base| Window { base, size })
}

impl Window {
    /// The register at `offset`, if `width` bytes there lie inside the window.
    fn at(&self, offset: u64, width: u64) -> u64 {
        assert!(
            offset
                .checked_add(width)
                .is_some_and(|end| end <= self.size),
            "register {offset:#x} outside a {:#x}-byte device window",
            self.size
        );
        self.base + offset
    }
}

impl Registers for Window {
    fn read16(&self, offset: u64) -> u16 {
        let register = self.at(offset, 2);
        // SAFETY: `register` lies inside the window `map_window` mapped uncached (checked
        // by `at`); device registers have no Rust references to alias.
        unsafe { core::ptr::read_volatile(register as *const u16) }
    }

    fn write16(&self, offset: u64, value: u16) {
        let register = self.at(offset, 2);
        // SAFETY: as in `read16`.
        unsafe { core::ptr::write_volatile(register as *mut u16, value) }
    }

    fn read32(&self, offset: u64) -> u32 {
        let register = self.at(offset, 4);
        // SAFETY: as in `read16`.
        unsafe { core::ptr::read_volatile(register as *const u32) }
    }

    fn write32(&self, offset: u64, value: u32) {
        let register = self.at(offset, 4);
        // SAFETY: as in `read16`.
        unsafe { core::ptr::write_volatile(register as *mut u32, value) }
    }
}

/// The virtio-mmio transport for a slot discovery accepted.
///
/// # Errors
/// `None` when the window cannot be mapped; virtio-drivers' error for a bad header.
pub fn mmio_transport(slot: &MmioSlot) -> Option<Result<MmioTransport<'static>, MmioError>> {
    let window = map_window(slot.address, slot.size)?;
    let header = NonNull::new(window.base as *mut VirtIOHeader)?;
    // SAFETY: the window is mapped uncached for its whole size, lies clear of RAM, the
    // kernel and every other device (discovery's claims), and the transport owns it for
    // the kernel's lifetime: devices are opened once and never unplugged.
    Some(unsafe { MmioTransport::new(header, slot.size as usize) })
}

/// How a device's interrupt is acknowledged.
#[derive(Debug, Clone, Copy)]
pub enum Ack {
    /// Nothing to do (MSI-X: edge-triggered messages).
    None,
    /// virtio-mmio at this mapped address: InterruptStatus (0x60) written back to
    /// InterruptACK (0x64) (virtio spec 4.2.2).
    Mmio(u64),
    /// virtio-pci INTx: read the ISR status byte at this mapped address (spec 4.1.4.5).
    PciIsr(u64),
}

const ACK_NONE: u8 = 0;
const ACK_MMIO: u8 = 1;
const ACK_PCI_ISR: u8 = 2;

/// One device's interrupt: its vector, how to acknowledge it, whom to wake.
#[derive(Debug)]
pub struct DeviceInterrupt {
    /// Set by `allocate`, before the handler is registered. Not a constant filled in
    /// here: all-zero slots are `.bss`, where 768 bytes of vectors would be `.data` in
    /// the image file.
    vector: AtomicU8,
    ack: AtomicU8,
    register: AtomicU64,
    count: AtomicU64,
    waker: AtomicWaker,
}

/// Device interrupt slots; slot i owns vector `FIRST_DEVICE_VECTOR + i`.
const SLOTS: usize = 16;

static INTERRUPTS: [DeviceInterrupt; SLOTS] = [const {
    DeviceInterrupt {
        vector: AtomicU8::new(0),
        ack: AtomicU8::new(ACK_NONE),
        register: AtomicU64::new(0),
        count: AtomicU64::new(0),
        waker: AtomicWaker::new(),
    }
}; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// The handler of slot `SLOT` (interrupt handlers take no argument: one per slot).
fn handle<const SLOT: usize>() {
    INTERRUPTS[SLOT].handle();
}

const HANDLERS: [interrupts::Handler; SLOTS] = [
    handle::<0>,
    handle::<1>,
    handle::<2>,
    handle::<3>,
    handle::<4>,
    handle::<5>,
    handle::<6>,
    handle::<7>,
    handle::<8>,
    handle::<9>,
    handle::<10>,
    handle::<11>,
    handle::<12>,
    handle::<13>,
    handle::<14>,
    handle::<15>,
];

/// Takes the next interrupt slot and vector for a device acknowledged by `ack`.
///
/// # Errors
/// When all 16 device vectors are taken, or the vector is already registered.
pub fn allocate(ack: Ack) -> Result<&'static DeviceInterrupt, &'static str> {
    let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
    let interrupt = INTERRUPTS
        .get(slot)
        .ok_or("all 16 device interrupt vectors are taken")?;
    let (kind, register) = match ack {
        Ack::None => (ACK_NONE, 0),
        Ack::Mmio(register) => (ACK_MMIO, register),
        Ack::PciIsr(register) => (ACK_PCI_ISR, register),
    };
    let vector = interrupts::FIRST_DEVICE_VECTOR + slot as u8;
    interrupt.vector.store(vector, Ordering::Relaxed);
    interrupt.register.store(register, Ordering::Relaxed);
    interrupt.ack.store(kind, Ordering::Release);
    interrupts::register(vector, HANDLERS[slot])
        .map_err(|_| "a device interrupt vector is already taken")?;
    Ok(interrupt)
}

impl DeviceInterrupt {
    fn handle(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let register = self.register.load(Ordering::Relaxed);
        match self.ack.load(Ordering::Acquire) {
            ACK_MMIO => {
                // SAFETY: `register` is the device's virtio-mmio window, mapped by
                // discovery before the vector was allocated and routed; InterruptStatus
                // is at 0x60 and InterruptACK at 0x64, inside every accepted window
                // (at least 0x100 bytes).
                unsafe {
                    let status = core::ptr::read_volatile((register + 0x60) as *const u32);
                    core::ptr::write_volatile((register + 0x64) as *mut u32, status);
                }
            }
            ACK_PCI_ISR => {
                // SAFETY: `register` is the device's mapped ISR status byte (inside a BAR
                // discovery checked); reading it clears it and deasserts INTx.
                unsafe { core::ptr::read_volatile(register as *const u8) };
            }
            _ => {}
        }
        self.waker.wake();
    }

    /// Its vector.
    pub fn vector(&self) -> u8 {
        self.vector.load(Ordering::Relaxed)
    }

    /// The waker the handler wakes (the driver registers its task here).
    pub fn waker(&'static self) -> &'static AtomicWaker {
        &self.waker
    }

    /// How many interrupts arrived.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Routes I/O APIC input `gsi` (level-triggered, active-high: virtio-mmio and PCI
    /// INTx) to this vector on this core.
    ///
    /// # Errors
    /// When no I/O APIC serves `gsi`.
    pub fn route_gsi(&self, gsi: u32) -> Result<(), &'static str> {
        ioapic::route(gsi, self.vector(), ioapic::Trigger::LevelHigh)
    }

    /// The MSI-X message that raises this vector on this core: an address in the local
    /// APIC's window naming the APIC id, data naming the vector, fixed delivery, edge
    /// (Intel SDM vol. 3, 11.11).
    pub fn msi_message(&self) -> Message {
        Message {
            address: 0xfee0_0000 | u64::from(lapic::id()) << 12,
            data: u32::from(self.vector()),
        }
    }
}
