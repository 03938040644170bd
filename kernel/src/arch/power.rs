//! The platform's requests to stop, as interrupts: the ACPI fixed power button (PM1
//! status through the SCI), a Generic Event Device's power button (hardware-reduced
//! ACPI: QEMU microvm, Cloud Hypervisor) and Ctrl+Alt+Del on the i8042 keyboard (IRQ 1).
//!
//! `init` arms what the machine has; each handler reads its registers, acknowledges
//! (clears the status bit it owns; the dispatcher sends the EOI), hands the values to
//! the host-tested decoders in `crate::power_events`, and on a request records its
//! source and wakes the one task that watches (`crate::shutdown`). The decisions about
//! what a request means (a listener to tell, or power off) are made there, in a task.

use super::{acpi, interrupts, ioapic, paging, vectors};
use crate::power_events::{self, CtrlAltDel, Source};
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use core::task::{Context, Poll};
use futures_util::task::AtomicWaker;
use torito_boot::acpi::{
    GpeBlock, ISA_DEFAULT, LineMode, PM1_ALL_STATUS, PM1_POWER_BUTTON, PM1_SCI_ENABLED, SCI_DEFAULT,
};
use x86_64::instructions::port::Port;

/// Sources that asked since the watcher last looked (`Source` bits).
static PENDING: AtomicU8 = AtomicU8::new(0);
/// The watcher's waker.
static WATCHER: AtomicWaker = AtomicWaker::new();

/// The PM1 status registers the SCI handler reads (0: none).
static PM1_STATUS: [AtomicU16; 2] = [AtomicU16::new(0), AtomicU16::new(0)];
/// The keyboard decoder's state between interrupts (`CtrlAltDel::bits`).
static KEYS: AtomicU8 = AtomicU8::new(0);
/// The GED's event register (its mapped address; 0: none), width and power-button bit.
static GED_REGISTER: AtomicU64 = AtomicU64::new(0);
static GED_WIDTH: AtomicU8 = AtomicU8::new(0);
static GED_BIT: AtomicU32 = AtomicU32::new(0);

const I8042_DATA: u16 = 0x60;
const I8042_STATUS: u16 = 0x64;
/// Bytes the keyboard handler reads at most per interrupt (the controller holds one,
/// Firecracker's queue 16): a stuck "full" bit cannot keep it in the handler.
const KEYBOARD_BURST: usize = 16;

/// Records a request from `source` and wakes the watcher (interrupt context, or a task:
/// a Xen domU's xenstore watch).
pub fn request(source: Source) {
    PENDING.fetch_or(source.bit(), Ordering::AcqRel);
    WATCHER.wake();
}

/// The sources that asked since the last call (`Source` bits), or `Pending` with the
/// waker registered.
pub fn poll_requests(cx: &mut Context<'_>) -> Poll<u8> {
    let take = || PENDING.swap(0, Ordering::AcqRel);
    let sources = take();
    if sources != 0 {
        return Poll::Ready(sources);
    }
    WATCHER.register(cx.waker());
    match take() {
        0 => Poll::Pending,
        sources => Poll::Ready(sources),
    }
}

/// Arms every source this machine has; returns them (`Source` bits). Call once, on the
/// boot core (the interrupts are routed to the calling core).
pub fn init() -> u8 {
    let mut armed = 0;
    // The fixed button where the FADT has one (q35, pc), else a GED's (microvm, Cloud
    // Hypervisor): looking for the GED reads the DSDT, which the fixed case needs not.
    let button = match arm_power_button() {
        Ok(false) => arm_ged(),
        other => other,
    };
    match button {
        Ok(true) => armed |= Source::PowerButton.bit(),
        Ok(false) => {}
        Err(error) => log::warn!("power: the ACPI power button is not armed: {}", error),
    }
    match arm_keyboard() {
        Ok(true) => armed |= Source::CtrlAltDel.bit(),
        Ok(false) => {}
        Err(error) => log::warn!("power: Ctrl+Alt+Del is not armed: {}", error),
    }
    armed
}

fn inb(port: u16) -> u8 {
    // SAFETY: callers pass the i8042's ports (0x60, 0x64), read only after
    // `arm_keyboard` found the controller (or to find it: an absent device reads 0xff);
    // reading them has no effect beyond the controller's.
    unsafe { Port::<u8>::new(port).read() }
}

fn outb(port: u16, value: u8) {
    // SAFETY: as in `inb`: the i8042's command and data ports, written only to read or
    // set its configuration byte at start-up.
    unsafe { Port::<u8>::new(port).write(value) }
}

fn inw(port: u16) -> u16 {
    // SAFETY: callers pass a PM1 event or control register the FADT names; reading them
    // has no side effect.
    unsafe { Port::<u16>::new(port).read() }
}

fn outw(port: u16, value: u16) {
    // SAFETY: callers pass a PM1 status register (writing 1s clears those status bits,
    // which this module owns) or enable register (setting the bit of the event this
    // module handles), both named by the FADT.
    unsafe { Port::<u16>::new(port).write(value) }
}

/// The GSI and trigger of ISA IRQ `irq`, through the MADT's overrides (identity and
/// `default` without one or without a MADT).
fn isa_line(irq: u8, default: LineMode) -> (u32, ioapic::Trigger) {
    let found = acpi::madt().and_then(|madt| madt.isa_override(irq));
    let gsi = found.map_or(u32::from(irq), |found| found.gsi);
    let mode = found.map_or(default, |found| found.mode(default));
    (gsi, ioapic::Trigger::of(mode))
}

/// The fixed power button: ACPI mode on, PWRBTN_STS cleared, PWRBTN_EN set, the SCI
/// routed here. `Ok(false)` when the FADT describes none (hardware-reduced ACPI, a
/// control-method button, no ACPI).
fn arm_power_button() -> Result<bool, &'static str> {
    let fadt = acpi::fadt();
    let (Some(events), Some(sci), true) =
        (fadt.pm1_events, fadt.sci_interrupt, fadt.fixed_power_button)
    else {
        return Ok(false);
    };
    if let Some(control) = fadt.pm1a_control
        && inw(control) & PM1_SCI_ENABLED == 0
    {
        // Legacy mode: ask the firmware (QEMU's chipset) for ACPI mode, as an OS does.
        if let Some(enable) = fadt.acpi_enable {
            // SAFETY: the FADT names this port as SMI_CMD and this value as ACPI_ENABLE;
            // the write switches the chipset to ACPI mode (SCI_EN set), nothing else.
            unsafe { Port::<u8>::new(enable.smi_command).write(enable.value) };
        }
        if !(0..100_000).any(|_| inw(control) & PM1_SCI_ENABLED != 0) {
            return Err("the chipset stays in legacy mode (SCI_EN clear after ACPI_ENABLE)");
        }
    }
    interrupts::register(vectors::SCI_VECTOR, handle_sci)
        .map_err(|_| "the SCI's vector is taken")?;
    // The SCI is level-triggered: an event enabled but never acknowledged would keep it
    // asserted. So, as an ACPI OS does at start, every general-purpose event is disabled
    // and every fixed one but the power button; stale status bits are cleared.
    for block in fadt.gpe_blocks.into_iter().flatten() {
        disable_gpes(block);
    }
    for (slot, block) in [Some(events.a), events.b].into_iter().enumerate() {
        let Some(block) = block else { continue };
        outw(events.enable_port(block), PM1_POWER_BUTTON);
        outw(block, PM1_ALL_STATUS);
        PM1_STATUS[slot].store(block, Ordering::Release);
    }
    let (gsi, trigger) = isa_line(sci, SCI_DEFAULT);
    ioapic::route(gsi, vectors::SCI_VECTOR, trigger)?;
    log::debug!(
        "power: fixed power button on PM1 {:#x}, SCI IRQ {} -> GSI {} ({:?})",
        events.a,
        sci,
        gsi,
        trigger
    );
    Ok(true)
}

/// Disables every event of a GPE block and clears its status: its enable bytes (the
/// second half) are zeroed, its status bytes (the first half) written with ones.
fn disable_gpes(block: GpeBlock) {
    let half = u16::from(block.length / 2);
    for index in 0..half {
        let status = block.port.wrapping_add(index);
        let enable = block.port.wrapping_add(half + index);
        // SAFETY: both ports lie in the GPE block the FADT names (`length` bytes from
        // `port`); zero in an enable byte disables events, ones in a status byte clear
        // them, and the kernel handles no GPE.
        unsafe {
            Port::<u8>::new(enable).write(0);
            Port::<u8>::new(status).write(0xff);
        }
    }
}

/// The SCI: read each PM1 status register, clear the bits the kernel owns, report a
/// press.
fn handle_sci() {
    for register in &PM1_STATUS {
        let port = register.load(Ordering::Acquire);
        if port == 0 {
            continue;
        }
        let decision = power_events::decode_pm1_status(inw(port));
        if decision.clear != 0 {
            outw(port, decision.clear);
        }
        if decision.power_button {
            request(Source::PowerButton);
        }
    }
}

/// A Generic Event Device's power button, as the DSDT describes it: its event register
/// mapped, its interrupt routed here. `Ok(false)` when the DSDT has none.
fn arm_ged() -> Result<bool, &'static str> {
    let Some(button) = acpi::ged_power_button() else {
        return Ok(false);
    };
    let register = paging::map_device(button.register, u64::from(button.width))
        .ok_or("cannot map the GED's event register")?;
    GED_WIDTH.store(button.width, Ordering::Relaxed);
    GED_BIT.store(button.bit, Ordering::Relaxed);
    GED_REGISTER.store(register, Ordering::Release);
    interrupts::register(vectors::GED_VECTOR, handle_ged)
        .map_err(|_| "the GED's vector is taken")?;
    // Events raised before now are not requests to this kernel: read them away.
    read_ged();
    let trigger = ioapic::Trigger::of(button.mode);
    ioapic::route(button.gsi, vectors::GED_VECTOR, trigger)?;
    log::debug!(
        "power: GED power button: register {:#x} bit {:#x}, GSI {} ({:?})",
        button.register,
        button.bit,
        button.gsi,
        trigger
    );
    Ok(true)
}

/// Reads (and so clears) the GED's event register; 0 without one.
fn read_ged() -> u32 {
    let register = GED_REGISTER.load(Ordering::Acquire);
    if register == 0 {
        return 0;
    }
    // SAFETY: `register` is the GED's event register, which `arm_ged` mapped uncached
    // (`width` bytes, outside RAM the kernel uses: `acpi::ged_power_button` checked);
    // reading it only clears the events it reports.
    unsafe {
        match GED_WIDTH.load(Ordering::Relaxed) {
            1 => u32::from(core::ptr::read_volatile(register as *const u8)),
            2 => u32::from(core::ptr::read_volatile(register as *const u16)),
            _ => core::ptr::read_volatile(register as *const u32),
        }
    }
}

/// The GED's interrupt: read the events (the read acknowledges them), report the button.
fn handle_ged() {
    if power_events::ged_power_button(read_ged(), GED_BIT.load(Ordering::Relaxed)) {
        request(Source::PowerButton);
    }
}

/// The i8042 keyboard on IRQ 1, when the controller answers: its buffer drained, its
/// keyboard interrupt enabled in the configuration byte. `Ok(false)` without one.
fn arm_keyboard() -> Result<bool, &'static str> {
    if !power_events::i8042_present(inb(I8042_STATUS)) {
        return Ok(false);
    }
    let drain = || {
        for _ in 0..KEYBOARD_BURST {
            if inb(I8042_STATUS) & power_events::I8042_OUTPUT_FULL == 0 {
                break;
            }
            inb(I8042_DATA);
        }
    };
    drain();
    // The configuration byte: command 0x20 reads it, 0x60 writes it; bit 0 enables the
    // keyboard's interrupt.
    let input_empty = || (0..100_000).any(|_| inb(I8042_STATUS) & 0b10 == 0);
    let output_full =
        || (0..100_000).any(|_| inb(I8042_STATUS) & power_events::I8042_OUTPUT_FULL != 0);
    if input_empty() {
        outb(I8042_STATUS, 0x20);
        if output_full() {
            let configuration = inb(I8042_DATA);
            if configuration & 1 == 0 && input_empty() {
                outb(I8042_STATUS, 0x60);
                if input_empty() {
                    outb(I8042_DATA, configuration | 1);
                }
            }
        }
    }
    drain();
    interrupts::register(vectors::KEYBOARD_VECTOR, handle_keyboard)
        .map_err(|_| "the keyboard's vector is taken")?;
    let (gsi, trigger) = isa_line(1, ISA_DEFAULT);
    ioapic::route(gsi, vectors::KEYBOARD_VECTOR, trigger)?;
    log::debug!("power: i8042 keyboard on GSI {} ({:?})", gsi, trigger);
    Ok(true)
}

/// IRQ 1: read what the controller holds (mouse bytes are read and dropped) and look for
/// Ctrl+Alt+Del.
fn handle_keyboard() {
    let mut keys = CtrlAltDel::from_bits(KEYS.load(Ordering::Relaxed));
    for _ in 0..KEYBOARD_BURST {
        let status = inb(I8042_STATUS);
        if status & power_events::I8042_OUTPUT_FULL == 0 {
            break;
        }
        let byte = inb(I8042_DATA);
        if status & power_events::I8042_AUX_DATA == 0 && keys.feed(byte) {
            request(Source::CtrlAltDel);
        }
    }
    KEYS.store(keys.bits(), Ordering::Relaxed);
}
