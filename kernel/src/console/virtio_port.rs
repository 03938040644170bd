//! The virtio console port: a second byte channel to the host, beside the serial console.
//!
//! COM1 (`println!`, the kernel log) is for people: the kernel writes to it from
//! anywhere, byte by byte, and nothing reads it. A virtio-console port is for programs: a
//! stream of bytes both ways, with flow control, that no log line ever lands in. QEMU
//! connects it to a chardev (`qemu/run.sh --console-port PATH` gives a Unix socket).
//!
//! [`port`] opens the first virtio-console device discovery found (on first use) and
//! hands out its port 0 as a [`VirtioPort`]: one owner at a time (a second `port()`
//! while one is held is [`PortError::Taken`]; dropping the port gives it back). Reads
//! and writes are futures woken by the device's interrupt; it implements the same
//! `embedded_io_async::{Read, Write}` traits as `torito::net::TcpStream`. [`blocking`]
//! has the same port for blocking tasks (fibers).
//!
//! A port has no end of stream: `read` waits until bytes arrive. Bytes written while no
//! host program is connected are lost (the VMM drops them), as on a serial line.

use crate::arch::virtio::KernelHal;
use crate::devices;
use alloc::boxed::Box;
use core::future::poll_fn;
use torito_virtio::discovery::Kind;
use torito_virtio::{ConsoleDevice, ConsoleError, ConsoleStats, DeviceTransport, StepwiseStatus};

type Device = ConsoleDevice<KernelHal, StepwiseStatus<DeviceTransport>>;

/// Why the port cannot be had or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortError {
    /// The VM has no virtio-console device (or none that opened: see the log).
    NoDevice,
    /// Another [`VirtioPort`] holds the port.
    Taken,
    /// The device failed.
    Device(ConsoleError),
    /// A blocking call outside a blocking task (it would stall the core).
    WouldBlockCore,
}

impl core::fmt::Display for PortError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PortError::NoDevice => f.write_str(
                "no virtio-console device; add one (QEMU: -device virtio-serial-device or \
                 virtio-serial-pci, and -device virtconsole,chardev=...; qemu/run.sh \
                 --console-port PATH)",
            ),
            PortError::Taken => f.write_str(
                "the virtio console port is held by another VirtioPort; pass that one \
                 around, or drop it first",
            ),
            PortError::Device(error) => error.fmt(f),
            PortError::WouldBlockCore => f.write_str(
                "a blocking console call outside a blocking task; call it from \
                 torito::task::spawn_blocking, or use the async port",
            ),
        }
    }
}

impl core::error::Error for PortError {}

impl embedded_io::Error for PortError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            PortError::NoDevice => ErrorKind::NotFound,
            PortError::Taken => ErrorKind::AddrInUse,
            PortError::Device(_) => ErrorKind::InvalidData,
            PortError::WouldBlockCore => ErrorKind::Unsupported,
        }
    }
}

/// Where the device is.
enum Slot {
    /// With nobody: `port()` hands it out.
    Free(Box<Device>),
    /// With a `VirtioPort`.
    Taken,
    /// None found, or it failed to start.
    Missing(PortError),
}

static SLOT: spin::Once<spin::Mutex<Slot>> = spin::Once::new();
static STATS: ConsoleStats = ConsoleStats::new();

/// Opens the first virtio-console device that starts (once).
fn open() -> Slot {
    let mut error = PortError::NoDevice;
    for found in devices::take(Kind::CONSOLE) {
        let opened = match devices::open(&found) {
            Ok(opened) => opened,
            Err(why) => {
                log::error!("console: virtio-console: {}", why);
                continue;
            }
        };
        // Status bits one at a time, as Firecracker requires.
        match Device::new(
            StepwiseStatus(opened.transport),
            opened.interrupt.waker(),
            &STATS,
        ) {
            Ok(device) => {
                // Only after the driver set up the queues: a reset clears MSI-X vectors.
                if let Err(why) = opened.queues.assign() {
                    log::error!("console: {}", why);
                }
                log::info!("console: virtio-console port 0 ready");
                return Slot::Free(Box::new(device));
            }
            Err(why) => {
                log::error!("console: {}", why);
                error = PortError::Device(why);
            }
        }
    }
    Slot::Missing(error)
}

/// Takes the virtio console port (setting the device up on first call).
///
/// # Errors
/// [`PortError::NoDevice`] without a working device, [`PortError::Taken`] while another
/// [`VirtioPort`] holds it.
///
/// # Examples
///
/// ```ignore
/// let mut port = torito::console::port()?;
/// port.write_all(b"hello, host\n").await?;
/// ```
pub fn port() -> Result<VirtioPort, PortError> {
    let mut slot = SLOT.call_once(|| spin::Mutex::new(open())).lock();
    match core::mem::replace(&mut *slot, Slot::Taken) {
        Slot::Free(device) => Ok(VirtioPort {
            device: Some(device),
        }),
        Slot::Taken => Err(PortError::Taken),
        Slot::Missing(error) => {
            *slot = Slot::Missing(error);
            Err(error)
        }
    }
}

/// The port driver's counters (bytes each way, untrusted used entries dropped,
/// backpressure events, notifications).
pub fn port_stats() -> &'static ConsoleStats {
    &STATS
}

/// Port 0 of the virtio-console device: an async byte stream to the host.
pub struct VirtioPort {
    /// Always `Some` until drop gives it back.
    device: Option<Box<Device>>,
}

impl VirtioPort {
    fn device(&mut self) -> &mut Device {
        self.device
            .as_mut()
            .expect("a VirtioPort holds its device until dropped")
    }

    /// Waits for bytes from the host and copies as many as have arrived (at least one,
    /// at most `buffer.len()`); 0 only for an empty `buffer`.
    ///
    /// # Errors
    /// [`PortError::Device`] when the device broke its rings.
    pub async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, PortError> {
        let device = self.device();
        poll_fn(|cx| device.poll_read(cx, buffer))
            .await
            .map_err(PortError::Device)
    }

    /// Queues the start of `data` for the host (up to one buffer, 4 KiB), waiting while
    /// every transmit buffer is with the device; returns the count taken.
    ///
    /// # Errors
    /// [`PortError::Device`] when the device broke its rings.
    pub async fn write(&mut self, data: &[u8]) -> Result<usize, PortError> {
        let device = self.device();
        poll_fn(|cx| device.poll_write(cx, data))
            .await
            .map_err(PortError::Device)
    }

    /// Queues all of `data`.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), PortError> {
        while !data.is_empty() {
            let count = self.write(data).await?;
            data = &data[count..];
        }
        Ok(())
    }

    /// Waits until the device has taken every byte written so far.
    ///
    /// # Errors
    /// [`PortError::Device`] when the device broke its rings.
    pub async fn flush(&mut self) -> Result<(), PortError> {
        let device = self.device();
        poll_fn(|cx| device.poll_flush(cx))
            .await
            .map_err(PortError::Device)
    }
}

impl Drop for VirtioPort {
    fn drop(&mut self) {
        if let (Some(device), Some(slot)) = (self.device.take(), SLOT.get()) {
            *slot.lock() = Slot::Free(device);
        }
    }
}

impl embedded_io::ErrorType for VirtioPort {
    type Error = PortError;
}

impl embedded_io_async::Read for VirtioPort {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, PortError> {
        VirtioPort::read(self, buffer).await
    }
}

impl embedded_io_async::Write for VirtioPort {
    async fn write(&mut self, data: &[u8]) -> Result<usize, PortError> {
        VirtioPort::write(self, data).await
    }

    async fn flush(&mut self) -> Result<(), PortError> {
        VirtioPort::flush(self).await
    }

    async fn write_all(&mut self, data: &[u8]) -> Result<(), PortError> {
        VirtioPort::write_all(self, data).await
    }
}

/// The port for blocking tasks: every call waits by parking the calling blocking task.
///
/// Call them only from a task started with `torito::task::spawn_blocking`; anywhere else
/// they return [`PortError::WouldBlockCore`] instead of stalling the core.
pub mod blocking {
    use super::PortError;

    /// A blocking [`super::VirtioPort`].
    pub struct VirtioPort(super::VirtioPort);

    /// Takes the virtio console port; see [`super::port`].
    ///
    /// # Errors
    /// As [`super::port`].
    pub fn port() -> Result<VirtioPort, PortError> {
        super::port().map(VirtioPort)
    }

    fn park<T>(future: impl Future<Output = Result<T, PortError>>) -> Result<T, PortError> {
        crate::task::block_on(future).map_err(|_| PortError::WouldBlockCore)?
    }

    impl VirtioPort {
        /// Blocks until bytes arrive; see [`super::VirtioPort::read`].
        ///
        /// # Errors
        /// As the async call, and [`PortError::WouldBlockCore`].
        pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize, PortError> {
            park(self.0.read(buffer))
        }

        /// See [`super::VirtioPort::write`].
        ///
        /// # Errors
        /// As the async call, and [`PortError::WouldBlockCore`].
        pub fn write(&mut self, data: &[u8]) -> Result<usize, PortError> {
            park(self.0.write(data))
        }

        /// See [`super::VirtioPort::flush`].
        ///
        /// # Errors
        /// As the async call, and [`PortError::WouldBlockCore`].
        pub fn flush(&mut self) -> Result<(), PortError> {
            park(self.0.flush())
        }

        /// The async port back.
        pub fn into_async(self) -> super::VirtioPort {
            self.0
        }
    }

    impl embedded_io::ErrorType for VirtioPort {
        type Error = PortError;
    }

    impl embedded_io::Read for VirtioPort {
        fn read(&mut self, buffer: &mut [u8]) -> Result<usize, PortError> {
            VirtioPort::read(self, buffer)
        }
    }

    impl embedded_io::Write for VirtioPort {
        fn write(&mut self, data: &[u8]) -> Result<usize, PortError> {
            VirtioPort::write(self, data)
        }

        fn flush(&mut self) -> Result<(), PortError> {
            VirtioPort::flush(self)
        }
    }
}
