//! Networking: the first virtio-net device discovery found, smoltcp behind
//! `torito_netstack`, and the sockets applications use.
//!
//! On the application's first call to [`stack`] (or [`stack_now`]) the kernel reads the
//! network keys of the command line (`ip=dhcp` by default, or `ip=ADDR/PREFIX gw=ADDR
//! dns=ADDR`; a bad value stops the VM with a boot error), takes the virtio-net devices
//! that discovery found (`crate::devices`: virtio-mmio and virtio-pci), opens the first,
//! starts its driver, builds the stack and spawns its Runner task. An application that never asks carries none of this code.
//! The device interrupt wakes the Runner; socket futures are woken by smoltcp's wakers.
//!
//! * async sockets: [`TcpListener`], [`TcpStream`], [`UdpSocket`];
//! * blocking sockets: [`blocking`], for code running in `torito::task::spawn_blocking`.

use core::sync::atomic::Ordering::Relaxed;

use crate::arch::virtio::{DeviceInterrupt, KernelHal};
use crate::devices;
use torito_virtio::discovery::Kind;
use torito_virtio::{DeviceTransport, NetDevice, NetStats, StepwiseStatus};

pub use torito_netstack::{
    Config, ConfigError, Counters, Error, Ipv4Config, Stack, StaticConfig, TcpConfig, TcpListener,
    TcpStream, TcpTimeouts, UdpSocket,
};

static STACK: spin::Once<Option<Stack>> = spin::Once::new();
/// The seed [`stack`] fetched from `torito::random` before the first start (0: none).
static SEED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static DEVICE_STATS: NetStats = NetStats::new();
static NET_INTERRUPT: spin::Once<&'static DeviceInterrupt> = spin::Once::new();

/// The network stack, once it has an address (waits for DHCP when `ip=dhcp`).
///
/// While DHCP gets no answer, a warning names the problem and the fix (a static
/// `ip=ADDRESS/PREFIX gw=GATEWAY`) after 5 s and every 30 s after that; with
/// `dhcp.timeout=SECONDS` on the command line the wait ends with an error.
///
/// # Errors
/// `Error::NoDevice` when the VM has no virtio-net device; `Error::NoDhcpAnswer` when
/// no DHCP server answered within `dhcp.timeout`.
pub async fn stack() -> Result<Stack, Error> {
    if !STACK.is_completed() {
        // The seed of TCP initial sequence numbers, DHCP transaction ids and the first
        // ephemeral port: from the best entropy source there is (virtio-rng, else
        // RDSEED, else RDRAND), which only this async path can wait for.
        let mut seed = [0u8; 8];
        match crate::random::fill(&mut seed).await {
            Ok(source) => {
                log::debug!("net: seeded from {}", source.name());
                SEED.store(u64::from_le_bytes(seed) | 1, Relaxed);
            }
            Err(error) => log::warn!("net: {}", error),
        }
    }
    let stack = stack_now().ok_or(Error::NoDevice)?;
    stack.configured().await?;
    Ok(stack)
}

/// The network stack's seed: the one [`stack`] fetched, else RDSEED or RDRAND now,
/// else the TSC with a warning (predictable sequence numbers: give the VM a
/// virtio-rng device).
fn seed() -> u64 {
    use crate::arch::entropy::{self, Instruction};
    let fetched = SEED.load(Relaxed);
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

/// The network stack right away, configured or not (`None` without a device).
///
/// The first call starts the device and the stack's Runner task: an application that
/// never touches the network does not carry (or start) any of it.
pub fn stack_now() -> Option<Stack> {
    STACK.call_once(start).clone()
}

/// The device driver's own counters (frames, untrusted used-ring entries dropped,
/// transmit backpressure events).
pub fn device_stats() -> &'static NetStats {
    &DEVICE_STATS
}

/// How many interrupts the network device raised.
pub fn device_interrupts() -> u64 {
    NET_INTERRUPT.get().map_or(0, |interrupt| interrupt.count())
}

/// Finds the device and starts the stack (on first use).
fn start() -> Option<Stack> {
    let cmdline = torito_boot::Cmdline::parse(crate::boot::cmdline()).ok()?;
    // A bad `ip=`/`gw=`/`dns=` stops the VM here, as a boot error: this runs when the
    // application first asks for the network (at its start, for a network service), and
    // an application that never does is not refused over keys it does not use.
    let mut config = Config::from_cmdline(|key| cmdline.get(key).and_then(|arg| arg.value))
        .unwrap_or_else(|error| crate::arch::entry::fatal("network configuration", error));
    // Socket buffers in proportion to the heap: 8 KiB in small guests, up to 64 KiB.
    config.tcp = torito_netstack::TcpConfig::for_memory(crate::runtime::HEAP.stats().size);
    // The stack has one interface: it takes the first NIC that opens; any others stay
    // untaken (and say so).
    let mut nics = devices::take(Kind::NETWORK).into_iter();
    let opened = nics.by_ref().find_map(|nic| match devices::open(&nic) {
        Ok(opened) => Some(opened),
        Err(error) => {
            log::error!("net: {}: {}", nic, error);
            None
        }
    });
    let Some(opened) = opened else {
        log::warn!("net: no virtio-net device");
        return None;
    };
    for unused in nics {
        log::info!("net: {} left unused (the stack drives one NIC)", unused);
    }
    // Status bits one at a time, as Firecracker requires (torito_virtio::StepwiseStatus).
    let transport = StepwiseStatus(opened.transport);
    let device = match NetDevice::<KernelHal, StepwiseStatus<DeviceTransport>>::new(
        transport,
        opened.interrupt.waker(),
        &DEVICE_STATS,
    ) {
        Ok(device) => device,
        Err(error) => {
            log::error!("net: {}", error);
            return None;
        }
    };
    // Only after the driver set up the queues: a reset clears their MSI-X vectors.
    if let Err(error) = opened.queues.assign() {
        log::error!("net: {}", error);
    }
    NET_INTERRUPT.call_once(|| opened.interrupt);
    let mac = device.mac();
    log::info!(
        "net: virtio-net {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    let seed = seed();
    let (stack, runner) = torito_netstack::new(device, config, seed, crate::time::now());
    crate::task::spawn(async move {
        runner.run().await;
    })
    .detach();
    Some(stack)
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
