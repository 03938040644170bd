//! The power button of hardware-reduced ACPI machines, found in the DSDT: a Generic Event
//! Device (GED, `_HID "ACPI0013"`) raises an interrupt, and AML reads an event register and
//! notifies the power button device (`PNP0C0C`) when one bit is set.
//!
//! QEMU microvm and Cloud Hypervisor both signal their power button this way, with
//! different layouts:
//!
//! * QEMU 7.2 microvm: GED `Interrupt (Edge, ActiveHigh) {9}`, a 4-byte `SystemMemory`
//!   region at 0xfea00000 (`ESEL`) in the GED itself, and in `_EVT`
//!   `If ((ESEL & 0x02) == 0x02) { Notify (PWRB, 0x80) }`;
//! * Cloud Hypervisor: GED `Interrupt (Edge, ActiveHigh)`, its `_EVT` calls a method of a
//!   second device holding a 1-byte region (`GDAT`) and
//!   `If ((GDAT & 8) == 8) { Notify (\_SB_.PWRB, 0x80) }`.
//!
//! There is no AML interpreter here, so the answer comes from byte patterns, each bounded
//! by the table: the interrupt is the first Extended Interrupt descriptor after the GED's
//! `_HID`; the event is the `Notify (button, 0x80)` of the device whose `_HID` is
//! `PNP0C0C`; its bit is the last constant of the `If` predicate around that `Notify`;
//! the register is the last `SystemMemory` operation region before it (both VMMs declare
//! the region just before the method that reads it). Reading the register clears it on
//! both. Anything that does not match gives `None`: the machine then has no power button
//! for Torito, which says so.

use crate::acpi::{HEADER_LENGTH, LineMode, u16_at, u32_at, u64_at};

/// Where a GED's power-button event comes from and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GedPowerButton {
    /// The GED's interrupt (a GSI).
    pub gsi: u32,
    /// Its trigger mode and polarity.
    pub mode: LineMode,
    /// The event register's physical address.
    pub register: u64,
    /// The register's width in bytes: 1, 2 or 4.
    pub width: u8,
    /// The bit (mask) of the power-button event in the register.
    pub bit: u32,
}

/// How far after the GED's `_HID` its `_CRS` interrupt may be (QEMU: 20 bytes).
const CRS_WINDOW: usize = 64;
/// How far before a `Notify` its `If` may start (the predicate is a few bytes).
const IF_WINDOW: usize = 48;

/// Finds the GED power button in a DSDT that `acpi::read_table` validated.
pub fn find_ged_power_button(dsdt: &[u8]) -> Option<GedPowerButton> {
    let aml = dsdt.get(HEADER_LENGTH..)?;
    let (gsi, mode) = ged_interrupt(aml)?;
    let button = button_name(aml)?;
    let notify = notify_of(aml, button)?;
    let bit = if_constant(aml, notify)?;
    let (register, width) = memory_region_before(aml, notify)?;
    let bit = u32::try_from(bit).ok().filter(|bit| *bit != 0)?;
    Some(GedPowerButton {
        gsi,
        mode,
        register,
        width,
        bit,
    })
}

/// First position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The GED's interrupt: the first Extended Interrupt descriptor (ACPI 6.5, 6.4.3.6) after
/// `_HID "ACPI0013"`.
fn ged_interrupt(aml: &[u8]) -> Option<(u32, LineMode)> {
    let hid = find(aml, b"\x0dACPI0013\x00")?;
    let window = aml.get(hid..)?;
    let window = &window[..window.len().min(CRS_WINDOW)];
    let at = (0..window.len()).find(|&at| {
        window[at] == 0x89
            && u16_at(window, at + 1).is_some_and(|length| length >= 6)
            && window.get(at + 4).is_some_and(|count| *count >= 1)
            && window.len() >= at + 9
    })?;
    let flags = window[at + 3];
    let gsi = u32_at(window, at + 5)?;
    Some((
        gsi,
        LineMode {
            level: flags & 0b10 == 0,
            active_low: flags & 0b100 != 0,
        },
    ))
}

/// The last name segment of the device whose `_HID` is `PNP0C0C` (the power button), as
/// a string or an EISA id: the four bytes before its `Name (_HID, ...)`.
fn button_name(aml: &[u8]) -> Option<[u8; 4]> {
    let at = find(aml, b"\x08_HID\x0dPNP0C0C\x00")
        .or_else(|| find(aml, b"\x08_HID\x0c\x41\xd0\x0c\x0c"))?;
    let name: [u8; 4] = aml.get(at.checked_sub(4)?..at)?.try_into().ok()?;
    name.iter()
        .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || *byte == b'_')
        .then_some(name)
}

/// Whether `byte` may be part of a name path (ACPI 6.5, 20.2.2: segments, root and parent
/// prefixes, dual and multi name prefixes with their count).
fn in_name_path(byte: u8) -> bool {
    byte.is_ascii_uppercase()
        || byte.is_ascii_digit()
        || matches!(byte, b'_' | b'\\' | b'^' | 0x2e | 0x2f | 0x01..=0x08)
}

/// The position of the NotifyOp (0x86) of `Notify (<path ending in button>, 0x80)`.
fn notify_of(aml: &[u8], button: [u8; 4]) -> Option<usize> {
    let mut pattern = [0u8; 6];
    pattern[..4].copy_from_slice(&button);
    pattern[4..].copy_from_slice(&[0x0a, 0x80]);
    let mut from = 0;
    while let Some(found) = aml.get(from..).and_then(|rest| find(rest, &pattern)) {
        let at = from + found;
        // Walk back over the rest of the path to the NotifyOp.
        let mut start = at;
        while start > 0 && at - start < 16 {
            start -= 1;
            if aml[start] == 0x86 {
                return Some(start);
            }
            if !in_name_path(aml[start]) {
                break;
            }
        }
        from = at + 1;
    }
    None
}

/// A package length (ACPI 6.5, 20.2.4) at `at`: (its value, its own size in bytes).
fn package_length(aml: &[u8], at: usize) -> Option<(usize, usize)> {
    let lead = *aml.get(at)?;
    let follow = usize::from(lead >> 6);
    if follow == 0 {
        return Some((usize::from(lead & 0x3f), 1));
    }
    let mut length = usize::from(lead & 0x0f);
    for index in 0..follow {
        length |= usize::from(*aml.get(at + 1 + index)?) << (4 + 8 * index);
    }
    Some((length, 1 + follow))
}

/// The last integer constant in the predicate of the `If` whose body holds the `Notify`
/// at `notify`.
fn if_constant(aml: &[u8], notify: usize) -> Option<u64> {
    let lowest = notify.saturating_sub(IF_WINDOW);
    let (predicate, _) = (lowest..notify).rev().find_map(|at| {
        if aml[at] != 0xa0 {
            return None;
        }
        let (length, size) = package_length(aml, at + 1)?;
        let end = at + 1 + length;
        (end > notify && end <= aml.len()).then_some((at + 1 + size, end))
    })?;
    let mut last = None;
    let mut at = predicate;
    while at < notify {
        let (value, size) = match aml[at] {
            0x0a => (aml.get(at + 1).map(|byte| u64::from(*byte)), 2),
            0x0b => (u16_at(aml, at + 1).map(u64::from), 3),
            0x0c => (u32_at(aml, at + 1).map(u64::from), 5),
            0x0e => (u64_at(aml, at + 1), 9),
            0x01 => (Some(1), 1),
            _ => (None, 1),
        };
        if value.is_some() && at + size <= notify {
            last = value;
        }
        at += size;
    }
    last
}

/// An integer constant at `at`: (value, bytes taken).
fn integer(aml: &[u8], at: usize) -> Option<(u64, usize)> {
    match *aml.get(at)? {
        0x00 => Some((0, 1)),
        0x01 => Some((1, 1)),
        0x0a => Some((u64::from(*aml.get(at + 1)?), 2)),
        0x0b => Some((u64::from(u16_at(aml, at + 1)?), 3)),
        0x0c => Some((u64::from(u32_at(aml, at + 1)?), 5)),
        0x0e => Some((u64_at(aml, at + 1)?, 9)),
        _ => None,
    }
}

/// The last `OperationRegion (name, SystemMemory, offset, length)` before `before`, with a
/// register width of 1, 2 or 4 bytes: (address, width).
fn memory_region_before(aml: &[u8], before: usize) -> Option<(u64, u8)> {
    let region = |at: usize| {
        // ExtOpPrefix OpRegionOp NameSeg RegionSpace RegionOffset RegionLen
        if aml.get(at..at + 2)? != [0x5b, 0x80] || *aml.get(at + 6)? != 0x00 {
            return None;
        }
        let (address, size) = integer(aml, at + 7)?;
        let (length, _) = integer(aml, at + 7 + size)?;
        let width = u8::try_from(length)
            .ok()
            .filter(|width| matches!(width, 1 | 2 | 4))?;
        (address != 0).then_some((address, width))
    };
    (0..before).rev().find_map(region)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::acpi::tests::table;

    /// QEMU 7.2 microvm's DSDT devices that matter here, as QEMU's AML builder writes them
    /// (COM1 and a virtio-mmio slot around them, for other `_HID`s and regions).
    pub(crate) fn qemu_microvm_aml() -> Vec<u8> {
        let mut aml = Vec::new();
        // Device (COM1) { Name (_HID, EisaId ("PNP0501")) ... }
        aml.extend_from_slice(b"\x5b\x82\x0fCOM1\x08_HID\x0c\x41\xd0\x05\x01");
        // Device (GED) { Name (_HID, "ACPI0013"); Name (_UID, "GED");
        //   Name (_CRS, ResourceTemplate () { Interrupt (Consumer, Edge, ActiveHigh) {9} })
        //   OperationRegion (EREG, SystemMemory, 0xFEA00000, 0x04)
        //   Field (EREG, DWordAcc, NoLock, WriteAsZeros) { ESEL, 32 }
        //   Method (_EVT, 1, Serialized) { Local0 = ESEL
        //     If (((Local0 & 0x02) == 0x02)) { Notify (PWRB, 0x80) } } }
        aml.extend_from_slice(b"\x5b\x82\x4b\x04GED_");
        aml.extend_from_slice(b"\x08_HID\x0dACPI0013\x00\x08_UID\x0dGED\x00");
        aml.extend_from_slice(b"\x08_CRS\x11\x0e\x0a\x0b");
        aml.extend_from_slice(&[0x89, 0x06, 0x00, 0x03, 0x01, 0x09, 0x00, 0x00, 0x00]);
        aml.extend_from_slice(&[0x79, 0x00]);
        aml.extend_from_slice(b"\x5b\x80EREG\x00\x0c\x00\x00\xa0\xfe\x0a\x04");
        aml.extend_from_slice(b"\x5b\x81\x0bEREG\x03ESEL\x20");
        aml.extend_from_slice(b"\x14\x1c_EVT\x09\x70ESEL\x60");
        aml.extend_from_slice(b"\xa0\x10\x93\x7b\x60\x0a\x02\x00\x0a\x02\x86PWRB\x0a\x80");
        // Device (PWRB) { Name (_HID, "PNP0C0C"); Name (_UID, Zero) }
        aml.extend_from_slice(b"\x5b\x82\x18PWRB\x08_HID\x0dPNP0C0C\x00\x08_UID\x00");
        // Device (VR07) { ... Memory32Fixed ... }
        aml.extend_from_slice(b"\x5b\x82\x10VR07\x08_HID\x0dLNRO0005\x00");
        aml
    }

    /// Cloud Hypervisor's: the register in a device `GEC_` (a 1-byte region, `GDAT`), the
    /// power button at bit 8 of its `ESCN`, after the hot-plug bits; the GED's `_EVT`
    /// calls `\_SB_.GEC_.ESCN`; the button is `\_SB_.PWRB` with an EISA id.
    pub(crate) fn cloud_hypervisor_aml() -> Vec<u8> {
        let mut aml = Vec::new();
        // A memory hot-plug controller's region first: not the GED's.
        aml.extend_from_slice(
            b"\x5b\x82\x12\x2e_SB_MHPC\x5b\x80MHPR\x00\x0c\x00\x00\xe0\xfe\x0a\x18",
        );
        aml.extend_from_slice(b"\x5b\x82\x50\x06\x2e_SB_GEC_\x08_HID\x0c\x41\xd0\x0a\x06");
        aml.extend_from_slice(b"\x5b\x80GDST\x00\x0c\x00\x00\xa0\xfe\x01");
        aml.extend_from_slice(b"\x5b\x81\x0bGDST\x01GDAT\x08");
        aml.extend_from_slice(b"\x14\x40\x05ESCN\x08\x70GDAT\x60");
        aml.extend_from_slice(b"\x7b\x60\x01\x61\xa0\x13\x93\x61\x01\\\x2f\x03_SB_CPUSCSCN");
        aml.extend_from_slice(
            b"\x7b\x60\x0a\x02\x61\xa0\x14\x93\x61\x0a\x02\\\x2f\x03_SB_MHPCMSCN",
        );
        aml.extend_from_slice(b"\x7b\x60\x0a\x08\x61\xa0\x12\x93\x61\x0a\x08");
        aml.extend_from_slice(b"\x86\\\x2e_SB_PWRB\x0a\x80");
        aml.extend_from_slice(b"\x5b\x82\x2e\x2e_SB_GED_\x08_HID\x0dACPI0013\x00\x08_UID\x00");
        aml.extend_from_slice(b"\x08_CRS\x11\x0e\x0a\x0b");
        aml.extend_from_slice(&[0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00]);
        aml.extend_from_slice(&[0x79, 0x00]);
        aml.extend_from_slice(b"\x14\x14_EVT\x09\\\x2f\x03_SB_GEC_ESCN");
        aml.extend_from_slice(b"\x5b\x82\x12\x2e_SB_PWRB\x08_HID\x0c\x41\xd0\x0c\x0c");
        aml
    }

    #[test]
    fn qemu_microvm() {
        assert_eq!(
            find_ged_power_button(&table(b"DSDT", &qemu_microvm_aml())),
            Some(GedPowerButton {
                gsi: 9,
                mode: LineMode {
                    level: false,
                    active_low: false
                },
                register: 0xfea0_0000,
                width: 4,
                bit: 0x02,
            })
        );
    }

    #[test]
    fn cloud_hypervisor() {
        assert_eq!(
            find_ged_power_button(&table(b"DSDT", &cloud_hypervisor_aml())),
            Some(GedPowerButton {
                gsi: 5,
                mode: LineMode {
                    level: false,
                    active_low: false
                },
                register: 0xfea0_0000,
                width: 1,
                bit: 0x08,
            })
        );
    }

    #[test]
    fn missing_pieces_give_none() {
        let without = |from: &[u8], to: &[u8]| {
            let aml = qemu_microvm_aml();
            let at = find(&aml, from).unwrap();
            let mut changed = aml[..at].to_vec();
            changed.extend_from_slice(to);
            changed.extend_from_slice(&aml[at + from.len()..]);
            find_ged_power_button(&table(b"DSDT", &changed))
        };
        assert_eq!(without(b"ACPI0013", b"ACPI0014"), None, "no GED");
        assert_eq!(
            without(b"PNP0C0C", b"PNP0C0D"),
            None,
            "no power button device"
        );
        assert_eq!(
            without(b"\x86PWRB", b"\x86PWRC"),
            None,
            "no Notify of the button"
        );
        assert_eq!(without(b"EREG\x00", b"EREG\x01"), None, "the region is I/O");
        assert_eq!(
            without(b"\x0a\x04\x5b\x81", b"\x0a\x03\x5b\x81"),
            None,
            "3 bytes wide"
        );
        assert_eq!(
            without(b"\x0a\x02\x00\x0a\x02\x86", b"\x00\x00\x00\x00\x00\x86"),
            None,
            "no bit"
        );
        assert_eq!(without(&[0x89, 0x06], &[0x88, 0x06]), None, "no interrupt");
        // A level-triggered, active-low GED.
        let level = without(&[0x89, 0x06, 0x00, 0x03], &[0x89, 0x06, 0x00, 0x05]).unwrap();
        assert_eq!(
            level.mode,
            LineMode {
                level: true,
                active_low: true
            }
        );
        // An empty table, and one cut anywhere: no panic, and no answer past the cut that
        // the whole table would not give.
        assert_eq!(find_ged_power_button(&table(b"DSDT", &[])), None);
        let whole = table(b"DSDT", &qemu_microvm_aml());
        for cut in 0..whole.len() {
            let _ = find_ged_power_button(&whole[..cut]);
        }
    }

    #[test]
    fn package_lengths() {
        assert_eq!(package_length(&[0x0f], 0), Some((15, 1)));
        assert_eq!(package_length(&[0x4b, 0x04], 0), Some((0x4b, 2)));
        assert_eq!(package_length(&[0x81, 0x23, 0x01], 0), Some((0x1231, 3)));
        assert_eq!(package_length(&[0xc1], 0), None);
    }
}
