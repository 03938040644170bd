//! Finding virtio devices and wiring their interrupts; the DMA `Hal` for virtio-drivers.
//!
//! * virtio-mmio: from `virtio_mmio.device=SIZE@ADDRESS:GSI` command-line entries (QEMU
//!   microvm with `acpi=off`, Firecracker), else, when the DSDT lists QEMU microvm's
//!   virtio-mmio devices (`LNRO0005`), by probing its 24 slots at 0xfeb00000 + 0x200*i
//!   (GSI 24 + i).
//! * virtio-pci: bus 0 through the 0xcf8/0xcfc configuration ports (q35, pc), with the
//!   interrupt through MSI-X when the device has it, else INTx through the I/O APIC.
//!
//! The interrupt handler acknowledges the device (virtio-mmio: InterruptStatus ->
//! InterruptACK; PCI INTx: a read of the ISR register; MSI-X needs nothing) through the
//! raw register, without any lock a task may hold, and wakes the driver's waker.

use super::{interrupts, ioapic, lapic, paging};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use futures_util::task::AtomicWaker;
use torito_virtio::virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use torito_virtio::virtio_drivers::transport::pci::PciTransport;
use torito_virtio::virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, PciRoot,
};
use torito_virtio::virtio_drivers::transport::{DeviceType, SomeTransport, Transport};
use torito_virtio::virtio_drivers::{BufferDirection, Hal, PhysAddr};
use x86_64::instructions::port::Port;

/// The vector of the (one) virtio-net device.
pub const NET_VECTOR: u8 = interrupts::FIRST_DEVICE_VECTOR;

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
        let address =
            paging::map_device(paddr, size as u64).expect("a device BAR could not be mapped");
        NonNull::new(address as *mut u8).expect("BARs are never at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// PCI configuration space through ports 0xcf8/0xcfc (works on q35 and pc).
struct PortCam;

impl PortCam {
    fn address(function: DeviceFunction, offset: u8) -> u32 {
        0x8000_0000
            | (u32::from(function.bus) << 16)
            | (u32::from(function.device) << 11)
            | (u32::from(function.function) << 8)
            | u32::from(offset & 0xfc)
    }
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
        // SAFETY: CONFIG_ADDRESS/CONFIG_DATA belong to this module; interrupts never use
        // them, and enumeration runs once at boot on one core.
        unsafe {
            Port::<u32>::new(0xcf8).write(Self::address(function, offset));
            Port::<u32>::new(0xcfc).read()
        }
    }

    fn write_word(&mut self, function: DeviceFunction, offset: u8, data: u32) {
        // SAFETY: as in `read_word`.
        unsafe {
            Port::<u32>::new(0xcf8).write(Self::address(function, offset));
            Port::<u32>::new(0xcfc).write(data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

const ACK_NONE: u8 = 0;
const ACK_MMIO: u8 = 1;
const ACK_PCI_ISR: u8 = 2;

/// What the interrupt handler needs for the net device: how to acknowledge, and whom to wake.
struct NetIrq {
    ack: AtomicU8,
    register: AtomicU64,
    interrupts: AtomicU64,
}

static NET_IRQ: NetIrq = NetIrq {
    ack: AtomicU8::new(ACK_NONE),
    register: AtomicU64::new(0),
    interrupts: AtomicU64::new(0),
};
/// Woken by the net device's interrupt.
pub static NET_WAKER: AtomicWaker = AtomicWaker::new();

fn net_interrupt() {
    NET_IRQ.interrupts.fetch_add(1, Ordering::Relaxed);
    let register = NET_IRQ.register.load(Ordering::Relaxed);
    match NET_IRQ.ack.load(Ordering::Relaxed) {
        ACK_MMIO => {
            // SAFETY: `register` is the device's mapped virtio-mmio window (set before the
            // vector was routed); InterruptStatus is at 0x60 and InterruptACK at 0x64.
            unsafe {
                let status = core::ptr::read_volatile((register + 0x60) as *const u32);
                core::ptr::write_volatile((register + 0x64) as *mut u32, status);
            }
        }
        ACK_PCI_ISR => {
            // SAFETY: `register` is the device's mapped ISR status byte; reading clears it.
            unsafe { core::ptr::read_volatile(register as *const u8) };
        }
        _ => {}
    }
    NET_WAKER.wake();
}

/// The virtio common configuration of an MSI-X device, once found (0 = none).
static MSIX_COMMON: AtomicU64 = AtomicU64::new(0);

/// Points both net queues at MSI-X entry 0. Must run after the driver initialized the
/// device: a device reset sets every queue vector back to NO_VECTOR, and a queue with no
/// vector never interrupts (PLATFORM.md).
///
/// # Errors
/// When the device refuses the vector (it reads back as NO_VECTOR).
pub fn finish_net_setup() -> Result<(), &'static str> {
    let common = MSIX_COMMON.load(Ordering::Relaxed);
    if common == 0 {
        return Ok(());
    }
    for queue in 0..2u16 {
        // SAFETY: `common` maps the virtio common configuration (uncached); queue_select
        // is at 0x16 and queue_msix_vector at 0x1a (virtio spec 4.1.4.3).
        let vector = unsafe {
            core::ptr::write_volatile((common + 0x16) as *mut u16, queue);
            core::ptr::write_volatile((common + 0x1a) as *mut u16, 0);
            core::ptr::read_volatile((common + 0x1a) as *const u16)
        };
        if vector != 0 {
            return Err("the device refused MSI-X vector 0 for a queue");
        }
    }
    Ok(())
}

/// How many interrupts the net device raised.
pub fn net_interrupts() -> u64 {
    NET_IRQ.interrupts.load(Ordering::Relaxed)
}

/// One virtio-mmio device location.
#[derive(Debug, Clone, Copy)]
struct MmioSlot {
    address: u64,
    size: u64,
    gsi: u32,
}

fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => {
            let (digits, scale) = match text.as_bytes().last()? {
                b'K' | b'k' => (&text[..text.len() - 1], 1024),
                b'M' | b'm' => (&text[..text.len() - 1], 1024 * 1024),
                _ => (text, 1),
            };
            digits.parse::<u64>().ok().map(|value| value * scale)
        }
    }
}

/// `SIZE@ADDRESS:GSI` (Linux's `virtio_mmio.device=` syntax).
fn parse_mmio_arg(value: &str) -> Option<MmioSlot> {
    let (size, rest) = value.split_once('@')?;
    let (address, gsi) = rest.split_once(':')?;
    let gsi = gsi.split(':').next()?;
    Some(MmioSlot {
        size: parse_number(size)?,
        address: parse_number(address)?,
        gsi: u32::try_from(parse_number(gsi)?).ok()?,
    })
}

fn mmio_net(slot: MmioSlot) -> Option<(SomeTransport<'static>, MmioSlot)> {
    let base = paging::map_device(slot.address, slot.size.max(0x200))?;
    let header = NonNull::new(base as *mut VirtIOHeader)?;
    // SAFETY: `base` maps the whole device window uncached; the transport owns it for the
    // kernel's lifetime (devices are never unplugged).
    let transport = unsafe { MmioTransport::new(header, slot.size.max(0x200) as usize) }.ok()?;
    (transport.device_type() == DeviceType::Network)
        .then_some((SomeTransport::Mmio(transport), slot))
}

/// Finds the first virtio-net device, wires its interrupt, returns its transport.
pub fn find_net(
    cmdline: &torito_boot::Cmdline<'_>,
    acpi_microvm: bool,
) -> Option<SomeTransport<'static>> {
    // virtio-mmio from the command line.
    let from_cmdline = cmdline
        .args()
        .filter(|arg| arg.key == "virtio_mmio.device")
        .filter_map(|arg| {
            let slot = arg.value.and_then(parse_mmio_arg);
            if slot.is_none() {
                log::warn!(
                    "virtio: cannot parse virtio_mmio.device={}",
                    arg.value.unwrap_or("")
                );
            }
            slot
        })
        .find_map(mmio_net);
    let from_acpi = || {
        (0..24u64).rev().find_map(|slot| {
            mmio_net(MmioSlot {
                address: 0xfeb0_0000 + 0x200 * slot,
                size: 0x200,
                gsi: 24 + slot as u32,
            })
        })
    };
    let mmio = from_cmdline.or_else(|| if acpi_microvm { from_acpi() } else { None });
    if let Some((transport, slot)) = mmio {
        NET_IRQ.register.store(slot.address, Ordering::Relaxed);
        NET_IRQ.ack.store(ACK_MMIO, Ordering::Relaxed);
        let _ = interrupts::register(NET_VECTOR, net_interrupt);
        if let Err(error) = ioapic::route(slot.gsi, NET_VECTOR, ioapic::Trigger::LevelHigh) {
            log::error!(
                "virtio-net: GSI {}: {}; the device will not interrupt",
                slot.gsi,
                error
            );
        }
        log::debug!("virtio-net: mmio at {:#x}, GSI {}", slot.address, slot.gsi);
        return Some(transport);
    }
    find_pci_net()
}

const PCI_CAP_MSIX: u8 = 0x11;
const PCI_CAP_VENDOR: u8 = 0x09;
const VIRTIO_COMMON_CFG: u8 = 1;
const VIRTIO_ISR_CFG: u8 = 3;

fn find_pci_net() -> Option<SomeTransport<'static>> {
    let mut root = PciRoot::new(PortCam);
    // PortCam is stateless: a second one reads what the crate does not expose.
    let mut cam = PortCam;
    let (function, _) = root.enumerate_bus(0).find(|(_, info)| {
        info.vendor_id == 0x1af4 && (info.device_id == 0x1000 || info.device_id == 0x1041)
    })?;
    let (_, command) = root.get_status_command(function);
    root.set_command(
        function,
        command | Command::MEMORY_SPACE | Command::BUS_MASTER,
    );
    let bar = |root: &mut PciRoot<PortCam>, index: u8| match root.bar_info(function, index) {
        Ok(Some(BarInfo::Memory { address, .. })) => Some(address),
        _ => None,
    };
    // The virtio structures we touch ourselves (virtio spec 4.1.4).
    let mut common = None;
    let mut isr = None;
    let mut msix = None;
    for capability in root.capabilities(function) {
        let word = |offset: u8| cam.read_word(function, capability.offset + offset);
        match capability.id {
            PCI_CAP_VENDOR => {
                let cfg_type = (word(0) >> 24) as u8;
                let bar_index = word(4) as u8;
                let offset = u64::from(word(8));
                match cfg_type {
                    VIRTIO_COMMON_CFG => common = Some((bar_index, offset)),
                    VIRTIO_ISR_CFG => isr = Some((bar_index, offset)),
                    _ => {}
                }
            }
            PCI_CAP_MSIX => msix = Some((capability.offset, word(4))),
            _ => {}
        }
    }
    let transport = match PciTransport::new::<KernelHal, _>(&mut root, function) {
        Ok(transport) => transport,
        Err(error) => {
            log::error!("virtio-net: PCI transport at {}: {}", function, error);
            return None;
        }
    };
    let _ = interrupts::register(NET_VECTOR, net_interrupt);
    let msix_ok = msix
        .zip(common)
        .and_then(|((cap, table), (common_bar, common_offset))| {
            let table_base = bar(&mut root, (table & 7) as u8)? + u64::from(table & !7);
            let table = paging::map_device(table_base, 16)?;
            let common = paging::map_device(bar(&mut root, common_bar)? + common_offset, 0x38)?;
            // SAFETY: `table` maps MSI-X table entry 0 (address, data, vector control) and
            // `common` the virtio common configuration, both uncached device memory.
            unsafe {
                core::ptr::write_volatile(table as *mut u32, 0xfee0_0000 | (lapic::id() << 12));
                core::ptr::write_volatile((table + 4) as *mut u32, 0);
                core::ptr::write_volatile((table + 8) as *mut u32, u32::from(NET_VECTOR));
                core::ptr::write_volatile((table + 12) as *mut u32, 0); // unmasked
            }
            // Message control: enable MSI-X (bit 15), function mask off (bit 14).
            let control = cam.read_word(function, cap);
            cam.write_word(function, cap, (control & !(1 << 30)) | (1 << 31));
            Some(common)
        });
    if let Some(common) = msix_ok {
        NET_IRQ.ack.store(ACK_NONE, Ordering::Relaxed);
        NET_IRQ.register.store(common, Ordering::Relaxed);
        MSIX_COMMON.store(common, Ordering::Relaxed);
        log::debug!("virtio-net: PCI {}, MSI-X", function);
    } else {
        let line = cam.read_word(function, 0x3c) & 0xff;
        let isr_register =
            isr.and_then(|(index, offset)| paging::map_device(bar(&mut root, index)? + offset, 1));
        if let Some(register) = isr_register {
            NET_IRQ.register.store(register, Ordering::Relaxed);
            NET_IRQ.ack.store(ACK_PCI_ISR, Ordering::Relaxed);
        }
        if let Err(error) = ioapic::route(line, NET_VECTOR, ioapic::Trigger::LevelHigh) {
            log::error!(
                "virtio-net: INTx line {}: {}; the device will not interrupt",
                line,
                error
            );
        }
        log::debug!("virtio-net: PCI {}, INTx line {}", function, line);
    }
    Some(SomeTransport::Pci(transport))
}
