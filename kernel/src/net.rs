//! Networking: one smoltcp stack per virtio-net device discovery found (`torito_netstack`
//! behind each), and the sockets applications use.
//!
//! On the application's first call to [`stack`] (or [`stack_now`], [`stack_of`],
//! [`nic_count`]) the kernel reads the network keys of the command line (`ip=dhcp` by
//! default, or `ip=ADDR/PREFIX gw=ADDR dns=ADDR mtu=BYTES`, or Linux's
//! `ip=CLIENT::GATEWAY:NETMASK:...` as orchestrators write it: `torito_netstack::Config`;
//! a bad value stops the VM with a boot error), takes the virtio-net devices that discovery found (`crate::devices`:
//! virtio-mmio and virtio-pci), and for each one (up to [`MAX_NICS`]) opens it, starts
//! its driver, builds its stack and spawns its Runner task. An application that never
//! asks carries none of this code. Each device's interrupt wakes its own Runner; socket
//! futures are woken by smoltcp's wakers.
//!
//! NICs are numbered in discovery order (the order of the VMM's devices: `qemu/run.sh`
//! puts `--nic2` second), counting only those that started. NIC 0 is [`stack`]'s and
//! takes the command line's `ip=`/`gw=`/`dns=`/`mtu=`/`dhcp.timeout=`; NIC N takes the
//! same keys with N appended (`ip1=10.0.3.15/24 gw1=10.0.3.2 mtu1=1400`;
//! `torito_netstack::Config::for_nic`), and without them asks DHCP. A bad value for any
//! NIC stops the boot with an error naming the key. Each NIC's log lines start with its
//! name (`net0:`, `net1:`, ...); lines about all of them with `net:`. Each NIC counts on
//! its own: its stack's [`Stack::counters`], its driver's [`device_stats_of`] and
//! [`device_interrupts_of`].
//!
//! Memory: all stacks draw from the one heap. [`TcpConfig::for_memory`] sizes each
//! *connection's* buffers from the heap's size; it books no share of the heap, and every
//! socket buffer is allocated fallibly when its connection needs it, so a second stack
//! cannot over-commit memory: its connections compete with the first stack's, and the
//! one that finds the heap full is refused (and counted), whichever NIC it came in on.
//! What a second NIC costs up front is its driver's buffers (96 frame buffers of
//! 1.6 KiB, about 150 KiB) and its stack's tables.
//!
//! * async sockets: [`TcpListener`], [`TcpStream`] (with [`TcpStream::split`] into a
//!   [`TcpReadHalf`] and a [`TcpWriteHalf`]), [`UdpSocket`]; all of them also implement
//!   `embedded-io-async` 0.7 and edge-nal 0.7 (`Stack` binds and connects);
//! * blocking sockets: [`blocking`], for code running in `torito::task::spawn_blocking`.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

use crate::arch::virtio::DeviceInterrupt;
use crate::devices;
use alloc::vec::Vec;
use link::Link;
use torito_virtio::discovery::{Device, Kind};
use torito_virtio::xen::netfront::NetFrontStats;
use torito_virtio::{NetStats, StepwiseStatus};

mod link;

pub use torito_netstack::{
    Config, ConfigError, Counters, EDGE_BACKLOG, Error, Ipv4Config, Stack, StaticConfig, TcpConfig,
    TcpListener, TcpReadHalf, TcpStream, TcpTimeouts, TcpWriteHalf, UdpHalf, UdpSocket,
};

/// The most NICs the kernel drives; further ones are left unused (and say so).
pub const MAX_NICS: usize = 4;
// Every NIC the kernel drives can be configured from the command line.
const _: () = assert!(MAX_NICS <= torito_netstack::CONFIGURABLE_NICS);

/// One NIC's stack and where its driver's counters are.
struct Nic {
    stack: Stack,
    device: NicDevice,
}

/// A NIC's driver, as its counters see it.
enum NicDevice {
    /// A virtio-net device: its interrupt (MSI-X, I/O APIC line or MMIO); its driver
    /// counts into `DEVICE_STATS`.
    Virtio(&'static DeviceInterrupt),
    /// A Xen vif: the events delivered to its event channel, and netfront's counters.
    XenVif {
        events: &'static AtomicU64,
        stats: alloc::sync::Arc<NetFrontStats>,
    },
}

/// A Xen domU's vifs, connected by the first [`stack_of`] (the xenstore handshake is
/// asynchronous) and taken by `start`.
static XEN_NICS: spin::Mutex<Vec<crate::xen::Nic>> = spin::Mutex::new(Vec::new());
/// Whether the first caller started connecting the vifs.
static XEN_STARTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// Raised once [`XEN_NICS`] holds the connected vifs: every caller waits on it.
static XEN_CONNECTED: crate::stop_signal::StopSignal = crate::stop_signal::StopSignal::new();

/// On a Xen domU, connects the vifs once; every caller waits for it. The handshake runs
/// as a task of its own, so a caller that gives up (a `timeout` around `stack()`) does
/// not leave the others waiting for a handshake nobody drives, and its large future
/// lives in that task rather than in every `stack()` future (blocking tasks' 32 KiB
/// fiber stacks included).
async fn connect_xen_nics() {
    if !XEN_STARTED.swap(true, core::sync::atomic::Ordering::AcqRel) {
        crate::task::spawn(async {
            let nics = crate::xen::connect_nics(MAX_NICS).await;
            *XEN_NICS.lock() = nics;
            // A network service hears `xl shutdown` even if it never awaits `shutdown()`.
            crate::xen::arm_shutdown();
            for waker in XEN_CONNECTED.raise().1 {
                waker.wake();
            }
        })
        .detach();
    }
    XEN_CONNECTED.wait().await;
}

static NICS: spin::Once<Vec<Nic>> = spin::Once::new();
/// The seeds [`stack`] fetched from `torito::random` before the first start, one per NIC
/// (0: none).
static SEEDS: [AtomicU64; MAX_NICS] = [const { AtomicU64::new(0) }; MAX_NICS];
static DEVICE_STATS: [NetStats; MAX_NICS] = [const { NetStats::new() }; MAX_NICS];

/// The first NIC's network stack, once it has an address (waits for DHCP when
/// `ip=dhcp`). The same as `stack_of(0)`.
///
/// While DHCP gets no answer, a warning names the problem and the fix (a static
/// `ip=ADDRESS/PREFIX gw=GATEWAY`) after 5 s and every 30 s after that; with
/// `dhcp.timeout=SECONDS` on the command line the wait ends with an error.
///
/// # Errors
/// `Error::NoDevice` when the VM has no virtio-net device; `Error::NoDhcpAnswer` when
/// no DHCP server answered within `dhcp.timeout`.
pub async fn stack() -> Result<Stack, Error> {
    stack_of(0).await
}

/// The network stack of NIC `nic` (0 is the first: [`stack`]), once it has an address.
/// NIC N is configured by its own keys (`ipN=`, `gwN=`, ..., as [`stack`]'s without the
/// number), by DHCP without them; `dhcp.timeoutN=` bounds its wait.
///
/// # Errors
/// `Error::NoDevice` when the VM has no NIC `nic` ([`nic_count`] says how many there
/// are); `Error::NoDhcpAnswer` as [`stack`], after the NIC's `dhcp.timeoutN=`.
///
/// # Examples
///
/// ```ignore
/// for nic in 1..net::nic_count() {
///     let stack = net::stack_of(nic).await?;
///     // bind a listener on it, as on net::stack()
/// }
/// ```
pub async fn stack_of(nic: usize) -> Result<Stack, Error> {
    if !NICS.is_completed() {
        // The seeds of TCP initial sequence numbers, DHCP transaction ids and the first
        // ephemeral ports, one per NIC: from the best entropy source there is
        // (virtio-rng, else RDSEED, else RDRAND), which only this async path can wait for.
        let mut seeds = [0u8; 8 * MAX_NICS];
        match crate::random::fill(&mut seeds).await {
            Ok(source) => {
                log::debug!("net: seeded from {}", source.name());
                for (seed, bytes) in SEEDS.iter().zip(seeds.chunks_exact(8)) {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(bytes);
                    seed.store(u64::from_le_bytes(word) | 1, Relaxed);
                }
            }
            Err(error) => log::warn!("net: {}", error),
        }
    }
    if !NICS.is_completed() && crate::xen::is_domu() {
        connect_xen_nics().await;
    }
    let stack = stack_of_now(nic).ok_or(Error::NoDevice)?;
    stack.configured().await?;
    Ok(stack)
}

/// NIC `nic`'s seed: the one [`stack`] fetched, else RDSEED or RDRAND now, else the TSC
/// with a warning (predictable sequence numbers: give the VM a virtio-rng device).
fn seed(nic: usize) -> u64 {
    use crate::arch::entropy::{self, Instruction};
    let fetched = SEEDS[nic].load(Relaxed);
    if fetched != 0 {
        return fetched;
    }
    let mut seed = [0u8; 8];
    for instruction in [Instruction::Rdseed, Instruction::Rdrand] {
        if entropy::available(instruction) && entropy::fill(instruction, &mut seed) {
            return u64::from_le_bytes(seed);
        }
    }
    log::warn!(
        "net: no entropy source: TCP sequence numbers are seeded from the clock and \
         predictable; add a virtio-rng device (qemu/run.sh --rng)"
    );
    crate::arch::clock::rdtsc()
}

/// The first NIC's network stack right away, configured or not (`None` without a device).
///
/// The first call starts every NIC's device and stack Runner task: an application that
/// never touches the network does not carry (or start) any of it.
pub fn stack_now() -> Option<Stack> {
    stack_of_now(0)
}

/// NIC `nic`'s network stack right away, configured or not (`None` without that NIC).
/// Starts the stacks, as [`stack_now`].
pub fn stack_of_now(nic: usize) -> Option<Stack> {
    nics().get(nic).map(|nic| nic.stack.clone())
}

/// How many NICs have a stack (0 without a virtio-net device). Starts the stacks, as
/// [`stack_now`]: call [`stack`] first to have them seeded from `torito::random`.
pub fn nic_count() -> usize {
    nics().len()
}

/// The first virtio-net driver's counters (zeros when NIC 0 is a Xen vif, whose
/// counters are [`xen_vif_stats_of`]`(0)`).
pub fn device_stats() -> &'static NetStats {
    &DEVICE_STATS[0]
}

/// NIC `nic`'s virtio-net driver counters (frames, untrusted used-ring entries dropped,
/// transmit backpressure events, notifications, resets); `None` without that NIC, and
/// for a Xen vif ([`xen_vif_stats_of`] has its driver's). Its stack's counters are
/// `stack_of_now(nic)`'s [`Stack::counters`].
pub fn device_stats_of(nic: usize) -> Option<&'static NetStats> {
    match nics().get(nic)?.device {
        NicDevice::Virtio(_) => Some(&DEVICE_STATS[nic]),
        NicDevice::XenVif { .. } => None,
    }
}

/// NIC `nic`'s netfront counters when it is a Xen vif (frames, netback's errors, bad or
/// unknown responses, notifications); `None` without that NIC or for a virtio-net one.
pub fn xen_vif_stats_of(nic: usize) -> Option<&'static NetFrontStats> {
    match &nics().get(nic)?.device {
        NicDevice::XenVif { stats, .. } => Some(stats),
        NicDevice::Virtio(_) => None,
    }
}

/// How many interrupts the first network device raised: `device_interrupts_of(0)`.
pub fn device_interrupts() -> u64 {
    device_interrupts_of(0)
}

/// How many interrupts NIC `nic`'s device raised (0 without that NIC, or before the
/// stacks started); for a Xen vif, the events delivered to its event channel.
pub fn device_interrupts_of(nic: usize) -> u64 {
    NICS.get()
        .and_then(|nics| nics.get(nic))
        .map_or(0, |nic| match &nic.device {
            NicDevice::Virtio(interrupt) => interrupt.count(),
            NicDevice::XenVif { events, .. } => events.load(Relaxed),
        })
}

fn nics() -> &'static [Nic] {
    NICS.call_once(start)
}

/// Starts a stack for every NIC (on first use).
fn start() -> Vec<Nic> {
    let Ok(cmdline) = torito_boot::Cmdline::parse(crate::boot::cmdline()) else {
        return Vec::new();
    };
    // A bad `ip=`/`gw=`/`dns=` (or `ip1=`, ...) stops the VM here, as a boot error: this
    // runs when the application first asks for the network (at its start, for a network
    // service), and an application that never does is not refused over keys it does not
    // use. Every NIC's keys are checked, whether or not the VM has that NIC.
    let mut configs = [Config::default(); MAX_NICS];
    for (nic, config) in configs.iter_mut().enumerate() {
        *config = Config::for_nic(nic, |key| cmdline.get(key).and_then(|arg| arg.value))
            .unwrap_or_else(|error| crate::arch::entry::fatal("network configuration", error));
    }
    // Socket buffers in proportion to the heap: 8 KiB in small guests, up to 64 KiB. Per
    // connection, allocated fallibly: every stack's connections share the one heap.
    let tcp = TcpConfig::for_memory(crate::runtime::HEAP.stats().size);
    let mut nics = Vec::new();
    for device in devices::take(Kind::NETWORK) {
        if nics.len() == MAX_NICS {
            log::info!(
                "net: {} left unused (the kernel drives {} NICs at most)",
                device,
                MAX_NICS
            );
            continue;
        }
        let config = Config {
            tcp,
            ..configs[nics.len()]
        };
        if let Some(nic) = start_nic(nics.len(), device, config) {
            nics.push(nic);
        }
    }
    for vif in core::mem::take(&mut *XEN_NICS.lock()) {
        if nics.len() == MAX_NICS {
            break; // `connect_nics` connected no more than MAX_NICS
        }
        let index = nics.len();
        let config = Config {
            tcp,
            ..configs[index]
        };
        let [a, b, c, d, e, f] = torito_netstack::Driver::mac(&vif);
        log::info!(
            "net{index}: {} {a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}",
            crate::xen::describe(&vif)
        );
        let device = NicDevice::XenVif {
            events: vif.events().events(),
            stats: vif.stats_handle(),
        };
        let vif = Link::Xen(alloc::boxed::Box::new(vif));
        nics.push(spawn_stack(index, vif, config, device));
    }
    match nics.len() {
        0 => log::warn!("net: no network device (virtio-net, or a Xen vif)"),
        1 => {}
        count => log::info!(
            "net: {} NICs, one stack each; their connections share the heap \
             ({} KiB buffers each way per connection)",
            count,
            tcp.rx_buffer / 1024
        ),
    }
    nics
}

/// Opens `device`, starts its driver and builds NIC `index`'s stack with `config`, its
/// Runner spawned; `None` (logged) when the device cannot be opened or started.
fn start_nic(index: usize, device: Device, config: Config) -> Option<Nic> {
    let opened = match devices::open(&device) {
        Ok(opened) => opened,
        Err(error) => {
            log::error!("net{}: {}: {}", index, device, error);
            return None;
        }
    };
    // Status bits one at a time, as Firecracker requires (torito_virtio::StepwiseStatus).
    let transport = StepwiseStatus(opened.transport);
    let mut device =
        match link::Virtio::new(transport, opened.interrupt.waker(), &DEVICE_STATS[index]) {
            Ok(device) => device,
            Err(error) => {
                log::error!("net{}: {}", index, error);
                return None;
            }
        };
    // Only after the driver set up the queues: a reset clears their MSI-X vectors.
    if let Err(error) = opened.queues.assign() {
        log::error!("net{}: {}", index, error);
    }
    // A device that breaks its used ring is reset and brought back (torito-virtio); the
    // reset clears the queue vectors again.
    let queues = opened.queues;
    device.set_after_reset(alloc::boxed::Box::new(move || {
        log::warn!(
            "net{}: the virtio-net device broke its used ring and was reset",
            index
        );
        if let Err(error) = queues.assign() {
            log::error!("net{}: after the reset: {}", index, error);
        }
    }));
    // `mtu=` (`mtu1=` for NIC 1, ...) only lowers what the device offers (VIRTIO_NET_F_MTU).
    if let Some(mtu) = config.mtu {
        device.limit_mtu(mtu);
    }
    if device.mtu() < 1500 {
        log::info!("net{}: MTU {}", index, device.mtu());
    }
    let mac = device.mac();
    let [a, b, c, d, e, f] = mac;
    log::info!("net{index}: virtio-net {a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}");
    let device = Link::Virtio(alloc::boxed::Box::new(device));
    Some(spawn_stack(
        index,
        device,
        config,
        NicDevice::Virtio(opened.interrupt),
    ))
}

/// NIC `index`'s stack over `link`, with its runner spawned on this core.
fn spawn_stack(index: usize, link: Link, config: Config, device: NicDevice) -> Nic {
    let (stack, runner) = torito_netstack::new(link, config, seed(index), crate::time::now());
    crate::task::spawn(async move {
        runner.run().await;
    })
    .detach();
    Nic { stack, device }
}

/// Blocking sockets: the async ones, waited on by parking the calling blocking task.
///
/// Call them only from a task started with `torito::task::spawn_blocking`; anywhere else
/// they return `Error::WouldBlockCore` instead of stalling the core.
pub mod blocking {
    use torito_netstack::blocking::Park;
    use torito_netstack::{Error, Stack};

    /// Parks the calling blocking task (its fiber) until a future completes.
    #[derive(Debug)]
    pub struct FiberPark;

    impl Park for FiberPark {
        fn block_on<F: core::future::Future>(&self, future: F) -> Result<F::Output, Error> {
            // Outside a blocking task, refusing beats stalling every task on the core
            // (which would look like a hang).
            crate::task::block_on(future).map_err(|_| Error::WouldBlockCore)
        }
    }

    static PARK: FiberPark = FiberPark;

    /// A blocking TCP listener.
    pub type TcpListener = torito_netstack::blocking::TcpListener<'static, FiberPark>;
    /// A blocking TCP connection.
    pub type TcpStream = torito_netstack::blocking::TcpStream<'static, FiberPark>;
    /// A blocking UDP socket.
    pub type UdpSocket = torito_netstack::blocking::UdpSocket<'static, FiberPark>;

    /// Listens on `port` with room for `backlog` connections waiting to be accepted.
    ///
    /// # Errors
    /// As `torito::net::TcpListener::bind`.
    pub fn listen(stack: &Stack, port: u16, backlog: usize) -> Result<TcpListener, Error> {
        TcpListener::bind(stack, port, backlog, &PARK)
    }

    /// Binds a UDP socket to `port`.
    ///
    /// # Errors
    /// As `torito::net::UdpSocket::bind`.
    pub fn udp(stack: &Stack, port: u16) -> Result<UdpSocket, Error> {
        UdpSocket::bind(stack, port, &PARK)
    }

    /// The network stack once configured, waiting for it (blocking).
    ///
    /// # Errors
    /// `Error::NoDevice` without a network device; `Error::WouldBlockCore` outside a
    /// blocking task.
    pub fn stack() -> Result<Stack, Error> {
        crate::task::block_on(super::stack()).map_err(|_| Error::WouldBlockCore)?
    }
}
