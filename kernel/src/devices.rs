//! The VM's virtio devices: found once, on the first driver's request, then taken by
//! the drivers that serve them.
//!
//! Discovery itself (parsing, walking, every range check) is `torito_virtio::discovery`;
//! this module feeds it what the kernel knows and owns (the command line's
//! `virtio_mmio.device=` entries, whether the DSDT lists QEMU microvm's slots, the MCFG's
//! ECAM window, the memory it must not hand to a device) and the raw access from `arch`,
//! then logs the outcome: at debug level every device found (kind, transport, address,
//! interrupt), and as a warning every device or entry refused, with why. A refused device
//! is left alone; the boot goes on without it.
//!
//! Discovery runs when a driver first asks (`net::stack()` today), not at boot, so an
//! application without devices pays nothing for it.

use crate::arch::pci::{Config, EcamConfig, PortConfig};
use crate::arch::virtio::{self, Ack, DeviceInterrupt, KernelHal, Window};
use alloc::vec::Vec;
use torito_boot::MemoryKind;
use torito_virtio::DeviceTransport;
use torito_virtio::discovery::mmio::{MICROVM_SLOTS, Source};
use torito_virtio::discovery::pci;
use torito_virtio::discovery::{
    Claims, Device, Discovery, DiscoveryError, Kind, Owner, Span, Transport,
};
use torito_virtio::virtio_drivers::transport::pci::PciTransport;
use torito_virtio::virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};

struct State {
    discovery: Discovery,
    /// PCI configuration access, kept for MSI-X set-up when a driver opens a device.
    config: Config,
}

static STATE: spin::Once<spin::Mutex<State>> = spin::Once::new();

fn state() -> &'static spin::Mutex<State> {
    STATE.call_once(|| spin::Mutex::new(discover()))
}

/// What the kernel owns, most specific first (an error names the first claim hit).
fn kernel_claims() -> Claims {
    let mut claims = Claims::new();
    claims.add(
        Span {
            start: 0,
            end: 0x1000,
        },
        Owner::NullPage,
    );
    let image = crate::arch::paging::kernel_image();
    claims.add(
        Span {
            start: image.start,
            end: image.end,
        },
        Owner::Kernel,
    );
    let memory_map = crate::arch::entry::boot_info()
        .map(|info| info.memory_map())
        .unwrap_or_default();
    for region in memory_map {
        if matches!(
            region.kind,
            MemoryKind::Usable | MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs
        ) {
            claims.add(
                Span {
                    start: region.start,
                    end: region.end(),
                },
                Owner::Ram,
            );
        }
    }
    // The first 2 MiB: one page table the kernel fills itself (paging.rs).
    claims.add(
        Span {
            start: 0,
            end: 0x20_0000,
        },
        Owner::LowMemory,
    );
    claims
}

fn map(span: Span) -> Option<Window> {
    virtio::map_window(span.start, span.end - span.start)
}

fn discover() -> State {
    let mut discovery = Discovery::new(kernel_claims());
    // The boot information directly, not `crate::boot` (the API above this module).
    let line = crate::arch::entry::boot_info().map_or("", |info| info.cmdline());
    let cmdline = torito_boot::Cmdline::parse(line).ok();
    if let Some(line) = &cmdline {
        for arg in line.args() {
            if arg.key == "virtio_mmio.device" {
                discovery.add_mmio_entry(arg.value.unwrap_or(""), map);
            }
        }
    }
    // QEMU microvm's slots only when no entry gave a device: QEMU lists its devices either
    // in the DSDT or (acpi=off) as entries, never both, and Firecracker, which writes
    // entries, has nothing at those addresses.
    if discovery.devices.is_empty() && crate::arch::acpi::dsdt_mentions(b"LNRO0005") {
        for slot in MICROVM_SLOTS {
            discovery.add_mmio(slot, Source::MicrovmSlot, map);
        }
    }
    let (mut config, buses) = pci_config(&discovery.claims);
    // `pci=off` (Linux's key, which Firecracker appends): there is no PCI bus to scan,
    // and probing its ports would only be logged as failed accesses by the VMM.
    let pci_off = cmdline
        .and_then(|line| line.get("pci"))
        .is_some_and(|arg| arg.value == Some("off"));
    if pci_off {
        log::debug!("devices: pci=off: no PCI scan");
    } else {
        discovery.scan_pci(&mut config, buses);
    }
    for device in &discovery.devices {
        log::debug!("devices: {}", device);
    }
    for error in &discovery.skipped {
        log::warn!("devices: {}", error);
    }
    State { discovery, config }
}

/// ECAM when the MCFG has a window clear of the kernel's memory, else the ports.
fn pci_config(claims: &Claims) -> (Config, core::ops::RangeInclusive<u8>) {
    let ecam = crate::arch::acpi::mcfg().and_then(pci::parse_mcfg);
    if let Some(ecam) = ecam {
        let size = (u64::from(ecam.end_bus) + 1) << 20;
        match Span::new(ecam.base, size).map(|span| (span, claims.conflict(span))) {
            Some((span, None)) => {
                log::debug!("devices: PCI configuration through ECAM at {}", span);
                return (
                    Config::Ecam(EcamConfig::new(ecam)),
                    ecam.start_bus..=ecam.end_bus,
                );
            }
            Some((span, Some((owned, owner)))) => log::warn!(
                "devices: the MCFG's ECAM window {} overlaps {} ({}): using ports 0xcf8/0xcfc",
                span,
                owner,
                owned
            ),
            None => log::warn!("devices: the MCFG's ECAM window wraps: using ports"),
        }
    }
    (Config::Ports(PortConfig), 0..=255)
}

/// Takes every device of `kind` not yet taken, in the order found.
pub(crate) fn take(kind: Kind) -> Vec<Device> {
    state().lock().discovery.take(kind)
}

/// A device a driver opened: its transport, and its interrupt set up and routed.
pub(crate) struct Opened {
    /// The transport to give the virtio-drivers driver.
    pub transport: DeviceTransport,
    /// Its interrupt (vector, count, the waker the handler wakes).
    pub interrupt: &'static DeviceInterrupt,
    /// What is left to do once the driver has set the queues up.
    pub queues: QueueVectors,
}

/// MSI-X: the common configuration, to point the queues at the device's vector once the
/// driver has set them up ([`QueueVectors::assign`]); nothing for other interrupts.
pub(crate) struct QueueVectors(Option<Window>);

impl QueueVectors {
    /// Call after the driver initialized the device (its queues exist): with MSI-X,
    /// points every queue at the device's vector (a device reset cleared them, and a
    /// queue without a vector never interrupts).
    ///
    /// # Errors
    /// When the device refuses the vector.
    pub fn assign(&self) -> Result<(), DiscoveryError> {
        match &self.0 {
            Some(common) => pci::assign_queue_vectors(common, 0),
            None => Ok(()),
        }
    }
}

/// Why a device could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// A register window could not be mapped (no frame for a page table).
    Unmappable(u64),
    /// No interrupt vector left.
    Vector(&'static str),
    /// virtio-drivers refused the transport.
    Transport(&'static str),
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::Unmappable(address) => write!(
                f,
                "cannot map the registers at {address:#x}; give the VM more memory"
            ),
            OpenError::Vector(why) => write!(f, "{why}; use fewer devices"),
            OpenError::Transport(why) => write!(f, "the virtio transport refused it: {why}"),
        }
    }
}

/// Opens `device` (from [`take`]): builds its transport and routes its interrupt to a
/// vector of its own.
// Out of line: it runs once per device, and inlined into its caller (the application's
// `main`, polled by the generic `block_on`) every `?` copied its large result through
// that frame (1.9 KB more code in echo, measured).
#[inline(never)]
pub(crate) fn open(device: &Device) -> Result<Opened, OpenError> {
    let kind = device.kind;
    let opened = open_transport(device)?;
    log::debug!(
        "devices: {} opened, interrupt vector {}",
        kind,
        opened.interrupt.vector()
    );
    Ok(opened)
}

/// Opens a virtio-mmio `device` without virtio-drivers' transport, for a device type that
/// transport refuses (virtio-fs): its register window, mapped, the window's size, and its
/// interrupt, routed.
pub(crate) fn open_mmio_registers(
    device: &Device,
) -> Result<(Window, u64, &'static DeviceInterrupt), OpenError> {
    let Transport::Mmio(mmio) = &device.transport else {
        return Err(OpenError::Transport("not a virtio-mmio device"));
    };
    let window = virtio::map_window(mmio.slot.address, mmio.slot.size)
        .ok_or(OpenError::Unmappable(mmio.slot.address))?;
    let interrupt = virtio::allocate(Ack::Mmio(mmio.slot.address)).map_err(OpenError::Vector)?;
    if let Err(error) = interrupt.route_gsi(mmio.slot.gsi) {
        log::error!(
            "devices: {} GSI {}: {}; it will not interrupt",
            device.kind,
            mmio.slot.gsi,
            error
        );
    }
    Ok((window, mmio.slot.size, interrupt))
}

fn open_transport(device: &Device) -> Result<Opened, OpenError> {
    match &device.transport {
        Transport::Mmio(mmio) => {
            let transport = virtio::mmio_transport(&mmio.slot)
                .ok_or(OpenError::Unmappable(mmio.slot.address))?
                .map_err(|_| OpenError::Transport("bad virtio-mmio header"))?;
            let interrupt =
                virtio::allocate(Ack::Mmio(mmio.slot.address)).map_err(OpenError::Vector)?;
            if let Err(error) = interrupt.route_gsi(mmio.slot.gsi) {
                log::error!(
                    "devices: {} GSI {}: {}; it will not interrupt",
                    device.kind,
                    mmio.slot.gsi,
                    error
                );
            }
            Ok(Opened {
                transport: DeviceTransport::Mmio(transport),
                interrupt,
                queues: QueueVectors(None),
            })
        }
        Transport::Pci(pci) => {
            let function = DeviceFunction {
                bus: pci.function.bus,
                device: pci.function.device,
                function: pci.function.function,
            };
            // virtio-drivers 0.13 refuses device types it has no name for; virtio-fs (26)
            // is shown to it as virtio-sound (25), whose type nothing downstream reads.
            let snapshot = if device.kind == Kind::FILESYSTEM {
                pci.snapshot.clone().with_device_id(0x1040 + 25)
            } else {
                pci.snapshot.clone()
            };
            let mut root = PciRoot::new(snapshot);
            let transport = PciTransport::new::<KernelHal, _>(&mut root, function)
                .map_err(|_| OpenError::Transport("bad virtio-pci capabilities"))?;
            let map_region = |region: pci::Region| {
                virtio::map_window(region.address, region.length)
                    .ok_or(OpenError::Unmappable(region.address))
            };
            let (interrupt, msix_common) = match (pci.msix, pci.intx_line) {
                (Some(msix), _) => {
                    let interrupt = virtio::allocate(Ack::None).map_err(OpenError::Vector)?;
                    let table = map_region(msix.table)?;
                    let common = map_region(pci.common)?;
                    let message = interrupt.msi_message();
                    let config = &mut state().lock().config;
                    pci::enable_msix(config, pci.function, &msix, &table, &[message]);
                    (interrupt, Some(common))
                }
                (None, line) => {
                    // The handler reads the ISR byte through its (identity-mapped) address.
                    map_region(pci.isr)?;
                    let interrupt = virtio::allocate(Ack::PciIsr(pci.isr.address))
                        .map_err(OpenError::Vector)?;
                    match line {
                        Some(line) => {
                            if let Err(error) = interrupt.route_gsi(u32::from(line)) {
                                log::error!(
                                    "devices: {} INTx line {}: {}; it will not interrupt",
                                    pci.function,
                                    line,
                                    error
                                );
                            }
                        }
                        None => log::warn!(
                            "devices: {} has neither MSI-X nor an INTx line; it will not \
                             interrupt",
                            pci.function
                        ),
                    }
                    (interrupt, None)
                }
            };
            Ok(Opened {
                transport: DeviceTransport::Pci(transport),
                interrupt,
                queues: QueueVectors(msix_common),
            })
        }
    }
}
