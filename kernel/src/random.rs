//! Random bytes for applications (keys, nonces, sequence numbers): [`fill`].
//!
//! Sources, best first: a virtio-rng device (entropy from the host, through the
//! hypervisor: QEMU `-device virtio-rng-*`, `qemu/run.sh --rng`), else the CPU's RDSEED,
//! else RDRAND, else [`RandomError::NoSource`]. Never a clock or a counter: a caller that
//! asks for randomness gets it or is told there is none.
//!
//! The device is interrupt-driven: [`fill`] posts a request and sleeps until the device's
//! interrupt wakes it. Callers take turns on the device (a channel of capacity one is
//! the token, so waiters are woken in order and none is lost); the device is set up on
//! the first call.

use crate::arch::entropy::{self, Instruction};
use crate::arch::virtio::KernelHal;
use crate::devices;
use core::future::poll_fn;
use torito_executor::{Receiver, Sender, channel};
use torito_virtio::discovery::Kind;
use torito_virtio::{DeviceTransport, RngDevice, RngError, StepwiseStatus};

/// Where [`fill`] takes its bytes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A virtio-rng device.
    VirtioRng,
    /// The CPU's RDSEED instruction.
    Rdseed,
    /// The CPU's RDRAND instruction.
    Rdrand,
}

impl Source {
    /// Its name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Source::VirtioRng => "virtio-rng",
            Source::Rdseed => "RDSEED",
            Source::Rdrand => "RDRAND",
        }
    }
}

/// Why [`fill`] could not fill the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomError {
    /// No virtio-rng device and no RDSEED or RDRAND.
    NoSource,
    /// The virtio-rng device failed and the CPU has neither instruction.
    Device(RngError),
    /// RDSEED and RDRAND kept failing (a broken or exhausted hardware unit).
    CpuFailed,
}

impl core::fmt::Display for RandomError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RandomError::NoSource => f.write_str(
                "no entropy source: the VM has no virtio-rng device and the CPU has neither \
                 RDSEED nor RDRAND; add a virtio-rng device (QEMU: -device virtio-rng-pci or \
                 virtio-rng-device; qemu/run.sh --rng)",
            ),
            RandomError::Device(error) => write!(f, "{error}; and the CPU has no RDSEED/RDRAND"),
            RandomError::CpuFailed => f.write_str(
                "RDSEED and RDRAND kept failing; add a virtio-rng device (qemu/run.sh --rng)",
            ),
        }
    }
}

impl core::error::Error for RandomError {}

type Device = RngDevice<KernelHal, StepwiseStatus<DeviceTransport>>;

/// The device, and the turn token: a caller sends into `turn` to take its turn (waiting
/// while another has it) and takes the value back out when done.
struct Rng {
    device: spin::Mutex<Option<Device>>,
    turn: Sender<()>,
    done: spin::Mutex<Receiver<()>>,
}

static RNG: spin::Once<Option<Rng>> = spin::Once::new();

/// Opens the first virtio-rng device that works (once).
fn rng() -> Option<&'static Rng> {
    RNG.call_once(|| {
        let device = devices::take(Kind::ENTROPY).into_iter().find_map(|found| {
            let opened = devices::open(&found)
                .map_err(|error| log::error!("random: virtio-rng: {}", error))
                .ok()?;
            let device = RngDevice::new(StepwiseStatus(opened.transport), opened.interrupt.waker())
                .map_err(|error| log::error!("random: {}", error))
                .ok()?;
            if let Err(error) = opened.queues.assign() {
                log::error!("random: {}", error);
            }
            Some(device)
        })?;
        let (turn, done) = channel(1);
        Some(Rng {
            device: spin::Mutex::new(Some(device)),
            turn,
            done: spin::Mutex::new(done),
        })
    })
    .as_ref()
}

/// The source [`fill`] would use now (setting up the virtio-rng device on first call).
pub fn source() -> Option<Source> {
    if rng().is_some_and(|rng| rng.device.lock().is_some()) {
        Some(Source::VirtioRng)
    } else if entropy::available(Instruction::Rdseed) {
        Some(Source::Rdseed)
    } else if entropy::available(Instruction::Rdrand) {
        Some(Source::Rdrand)
    } else {
        None
    }
}

/// Fills `buffer` with random bytes; returns the source they came from.
///
/// # Errors
/// [`RandomError::NoSource`] when the VM has no source at all; the others when the
/// sources it has failed.
///
/// # Examples
///
/// ```ignore
/// let mut key = [0u8; 32];
/// let source = torito::random::fill(&mut key).await?;
/// ```
pub async fn fill(buffer: &mut [u8]) -> Result<Source, RandomError> {
    let device_error = match rng() {
        Some(rng) => match fill_from_device(rng, buffer).await {
            Ok(()) => return Ok(Source::VirtioRng),
            Err(error) => Some(error),
        },
        None => None,
    };
    for (instruction, source) in [
        (Instruction::Rdseed, Source::Rdseed),
        (Instruction::Rdrand, Source::Rdrand),
    ] {
        if entropy::available(instruction) && entropy::fill(instruction, buffer) {
            return Ok(source);
        }
    }
    Err(match device_error {
        Some(error) => RandomError::Device(error),
        None if entropy::available(Instruction::Rdrand) => RandomError::CpuFailed,
        None => RandomError::NoSource,
    })
}

async fn fill_from_device(rng: &Rng, buffer: &mut [u8]) -> Result<(), RngError> {
    // Take the turn (waits while another caller has the device).
    rng.turn
        .send(())
        .await
        .map_err(|_| RngError::Untrusted { length: 0 })?;
    // Gives the turn back (waking the next caller) however this future ends, dropped
    // midway included: a request still posted is then taken by the next caller.
    let _turn = Turn(rng);
    let mut filled = 0;
    poll_fn(|cx| {
        let mut device = rng.device.lock();
        let Some(active) = device.as_mut() else {
            return core::task::Poll::Ready(Err(RngError::Untrusted { length: 0 }));
        };
        while filled < buffer.len() {
            match active.poll_fill(cx, &mut buffer[filled..]) {
                core::task::Poll::Ready(Ok(count)) => filled += count,
                core::task::Poll::Ready(Err(error)) => {
                    log::error!("random: {}", error);
                    *device = None; // never used again
                    return core::task::Poll::Ready(Err(error));
                }
                core::task::Poll::Pending => return core::task::Poll::Pending,
            }
        }
        core::task::Poll::Ready(Ok(()))
    })
    .await
}

/// The turn on the device, given back on drop.
struct Turn<'a>(&'a Rng);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let _ = self.0.done.lock().try_recv();
    }
}
