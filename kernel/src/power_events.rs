//! What the platform's stop requests look like on the wire: PM1 status bits, i8042
//! scancodes, GED event bits. Plain code, tested on the host; `arch::power` reads the
//! registers and hands the values here.
//!
//! The interrupt handlers that read those registers only acknowledge and wake; the
//! decisions (is this the power button? is this Ctrl+Alt+Del?) are these functions, so
//! that every case is a host test rather than a boot.

use torito_boot::acpi::PM1_POWER_BUTTON;

/// Which source asked the VM to stop (a bit each, so that one word records several).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    /// The ACPI power button: the fixed PM1 event (QEMU q35 and pc) or a Generic Event
    /// Device's power-down event (QEMU microvm, Cloud Hypervisor).
    PowerButton = 1,
    /// Ctrl+Alt+Del on the i8042 keyboard (Firecracker's `SendCtrlAltDel`).
    CtrlAltDel = 2,
    /// A Xen toolstack's request through xenstore (`xl shutdown` or `xl reboot`:
    /// `control/shutdown`).
    Xen = 4,
}

impl Source {
    /// Every source, in the order a report names them.
    pub const ALL: [Source; 3] = [Source::PowerButton, Source::CtrlAltDel, Source::Xen];

    /// Its bit in a set of sources.
    pub fn bit(self) -> u8 {
        self as u8
    }

    /// How a log line names it.
    pub fn name(self) -> &'static str {
        match self {
            Source::PowerButton => "the ACPI power button",
            Source::CtrlAltDel => "Ctrl+Alt+Del on the keyboard",
            Source::Xen => "the Xen toolstack (xl shutdown or xl reboot)",
        }
    }
}

/// What the SCI handler does with a PM1 status register's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pm1Decision {
    /// The bits to write back (status bits are cleared by writing 1): only those the
    /// kernel enabled, so that a bit another agent owns is left alone.
    pub clear: u16,
    /// Whether the power button was pressed.
    pub power_button: bool,
}

/// Decodes a PM1 status register (ACPI 6.5, table 4.16) read in the SCI handler. Only
/// PWRBTN is enabled by the kernel, so only PWRBTN_STS is acknowledged and reported.
pub fn decode_pm1_status(status: u16) -> Pm1Decision {
    let pressed = status & PM1_POWER_BUTTON;
    Pm1Decision {
        clear: pressed,
        power_button: pressed != 0,
    }
}

/// Whether a Generic Event Device's event register value (read in its handler; the read
/// clears it) carries the power-button event, whose bit the DSDT gave
/// (`torito_boot::ged`: 0x2 on QEMU microvm, 0x8 on Cloud Hypervisor). Other events
/// (CPU, memory or PCI hot-plug) are not stop requests.
pub fn ged_power_button(events: u32, bit: u32) -> bool {
    events & bit != 0
}

/// i8042 status register (port 0x64): output buffer full (a byte waits at port 0x60).
pub const I8042_OUTPUT_FULL: u8 = 1 << 0;
/// i8042 status register: the waiting byte is from the auxiliary device (the mouse).
pub const I8042_AUX_DATA: u8 = 1 << 5;

/// Whether a status byte read from port 0x64 comes from an i8042: an absent device reads
/// as all ones (a floating bus).
pub fn i8042_present(status: u8) -> bool {
    status != 0xff
}

/// Spots Ctrl+Alt+Del in a stream of keyboard scancodes, in either of the two sets a
/// guest may see:
///
/// * set 1, what a PC keyboard controller delivers with translation on (QEMU's i8042
///   after the BIOS set it up): Ctrl `1d`, Alt `38`, Del `e0 53`; a release is the
///   make code with bit 7 set;
/// * set 2, what the keyboard itself sends, and what Firecracker's i8042 queues for
///   `SendCtrlAltDel` (Ctrl `14`, Alt `11`, Del `e0 71`, make codes only); a release
///   is `f0` before the code.
///
/// The right-hand Ctrl and Alt (the same codes after `e0`) count too. Each set keeps its
/// own modifier state, so a byte that is a modifier in one set and a letter in the other
/// cannot mix the two. The state is one byte ([`CtrlAltDel::bits`]), so that the
/// keyboard's interrupt handler can keep it in an atomic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtrlAltDel(u8);

const EXTENDED: u8 = 1 << 0;
const RELEASE: u8 = 1 << 1;
const SET1_CTRL: u8 = 1 << 2;
const SET1_ALT: u8 = 1 << 3;
const SET2_CTRL: u8 = 1 << 4;
const SET2_ALT: u8 = 1 << 5;

impl CtrlAltDel {
    /// The state kept in `bits` (from [`CtrlAltDel::bits`]).
    pub fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The state, as one byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Takes the next scancode byte; `true` when it completes Ctrl+Alt+Del (the Del key
    /// pressed while Ctrl and Alt are held).
    pub fn feed(&mut self, byte: u8) -> bool {
        match byte {
            0xe0 => {
                self.0 |= EXTENDED;
                return false;
            }
            0xf0 => {
                // Set 2's release prefix (in set 1 it would be a release of an unused
                // code).
                self.0 |= RELEASE;
                return false;
            }
            _ => {}
        }
        let extended = self.0 & EXTENDED != 0;
        let release = self.0 & RELEASE != 0;
        self.0 &= !(EXTENDED | RELEASE);
        let mut set = |bit: u8, held: bool| {
            if held {
                self.0 |= bit;
            } else {
                self.0 &= !bit;
            }
        };
        // Set 2 (the prefix tells a release).
        match byte {
            0x14 => set(SET2_CTRL, !release),
            0x11 => set(SET2_ALT, !release),
            _ => {}
        }
        if !release {
            // Set 1 (bit 7 tells a release).
            let held = byte & 0x80 == 0;
            match byte & 0x7f {
                0x1d => set(SET1_CTRL, held),
                0x38 => set(SET1_ALT, held),
                _ => {}
            }
        }
        let both = |ctrl: u8, alt: u8| self.0 & (ctrl | alt) == ctrl | alt;
        extended
            && !release
            && ((byte == 0x53 && both(SET1_CTRL, SET1_ALT))
                || (byte == 0x71 && both(SET2_CTRL, SET2_ALT)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes`; the indices at which Ctrl+Alt+Del was reported.
    fn reports(bytes: &[u8]) -> Vec<usize> {
        let mut decoder = CtrlAltDel::default();
        bytes
            .iter()
            .enumerate()
            .filter(|(_, byte)| {
                // Round-trip through the byte an interrupt handler keeps.
                let mut copy = CtrlAltDel::from_bits(decoder.bits());
                let hit = copy.feed(**byte);
                decoder = copy;
                hit
            })
            .map(|(at, _)| at)
            .collect()
    }

    #[test]
    fn qemu_send_key_in_set_1() {
        // QEMU `send-key ctrl alt delete`, translated: presses, then releases.
        let sequence = [0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d];
        assert_eq!(reports(&sequence), [3]);
        // Right-hand Ctrl and Alt.
        assert_eq!(reports(&[0xe0, 0x1d, 0xe0, 0x38, 0xe0, 0x53]), [5]);
    }

    #[test]
    fn firecracker_send_ctrl_alt_del_in_set_2() {
        // Firecracker queues make codes only: Ctrl, Alt, Del (e0 71).
        assert_eq!(reports(&[0x14, 0x11, 0xe0, 0x71]), [3]);
        // Twice in a row (no releases in between): reported twice.
        assert_eq!(
            reports(&[0x14, 0x11, 0xe0, 0x71, 0x14, 0x11, 0xe0, 0x71]),
            [3, 7]
        );
    }

    #[test]
    fn del_without_both_modifiers_is_ignored() {
        assert_eq!(reports(&[0xe0, 0x53]), [] as [usize; 0]);
        assert_eq!(reports(&[0x1d, 0xe0, 0x53]), [] as [usize; 0]);
        assert_eq!(reports(&[0x38, 0xe0, 0x53]), [] as [usize; 0]);
        // Released before Del: set 1 break codes, set 2 f0 releases.
        assert_eq!(reports(&[0x1d, 0x38, 0x9d, 0xe0, 0x53]), [] as [usize; 0]);
        assert_eq!(
            reports(&[0x14, 0x11, 0xf0, 0x11, 0xe0, 0x71]),
            [] as [usize; 0]
        );
        // Del's release is not a press.
        assert_eq!(reports(&[0x14, 0x11, 0xe0, 0xf0, 0x71]), [] as [usize; 0]);
        // Keypad '.' (53 without e0) is not Del.
        assert_eq!(reports(&[0x1d, 0x38, 0x53]), [] as [usize; 0]);
    }

    #[test]
    fn the_two_sets_do_not_mix() {
        // Set 1 modifiers with set 2's Del, and the reverse.
        assert_eq!(reports(&[0x1d, 0x38, 0xe0, 0x71]), [] as [usize; 0]);
        assert_eq!(reports(&[0x14, 0x11, 0xe0, 0x53]), [] as [usize; 0]);
        // Set 1 letters T (14) and W (11), held, are set 2's Ctrl and Alt: only set 2's
        // Del completes them, which set 1 never sends.
        assert_eq!(reports(&[0x14, 0x11, 0xe0, 0x53]), [] as [usize; 0]);
    }

    #[test]
    fn pm1_status_reports_and_clears_only_the_power_button() {
        assert_eq!(
            decode_pm1_status(0x0100),
            Pm1Decision {
                clear: 0x0100,
                power_button: true
            }
        );
        // Timer overflow, wake status, global lock: not ours, not cleared.
        assert_eq!(
            decode_pm1_status(0x8021),
            Pm1Decision {
                clear: 0,
                power_button: false
            }
        );
        assert_eq!(decode_pm1_status(0xffff).clear, 0x0100);
    }

    #[test]
    fn ged_events() {
        assert!(ged_power_button(0b10, 0b10));
        assert!(ged_power_button(0b1010, 0b1000));
        assert!(!ged_power_button(0b01, 0b10)); // QEMU memory hot-plug
        assert!(!ged_power_button(0b0111, 0b1000)); // Cloud Hypervisor hot-plug
        assert!(!ged_power_button(0, 0b10));
    }

    #[test]
    fn i8042_presence() {
        assert!(!i8042_present(0xff));
        assert!(i8042_present(0x1c));
    }
}
