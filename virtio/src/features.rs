//! Feature negotiation: the first steps of device initialization, the same for every
//! driver (spec 3.1.1 steps 1-6; 3.1.2 for legacy devices).
//!
//! Why one place: each driver differs only in the features it can use; the order of the
//! status writes, the legacy exception and the FEATURES_OK check are the spec's, and a
//! slip in one copy (checking FEATURES_OK on a legacy device, say) would break one
//! driver only.

use virtio_drivers::transport::{DeviceStatus, Transport};

/// Feature bit 32 (spec 6.1): the device follows this spec, not the legacy interface.
pub(crate) const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// A modern device that did not keep FEATURES_OK: it refuses `requested`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    /// What the driver asked for.
    pub(crate) requested: u64,
}

/// Resets the device, sets ACKNOWLEDGE | DRIVER, writes the features both the device and
/// `supported` have, and (for a modern device, one with VERSION_1 among them) sets
/// FEATURES_OK and checks the device kept it. A legacy device has no FEATURES_OK step
/// (spec 3.1.2). Returns the features negotiated; the caller then sets up its queues and
/// finishes with DRIVER_OK.
///
/// # Errors
///
/// [`Refused`] when a modern device drops FEATURES_OK.
pub(crate) fn negotiate(transport: &mut impl Transport, supported: u64) -> Result<u64, Refused> {
    let base = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
    transport.set_status(DeviceStatus::empty());
    transport.set_status(base);
    let features = transport.read_device_features() & supported;
    transport.write_driver_features(features);
    if features & VIRTIO_F_VERSION_1 != 0 {
        transport.set_status(base | DeviceStatus::FEATURES_OK);
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            return Err(Refused {
                requested: features,
            });
        }
    }
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{DeviceState, FakeTransport};
    use alloc::sync::Arc;
    use std::sync::Mutex;

    fn transport(state: DeviceState) -> FakeTransport {
        FakeTransport(Arc::new(Mutex::new(state)))
    }

    #[test]
    fn a_modern_device_gets_the_common_features_and_features_ok() {
        let mut fake = transport(DeviceState {
            offered: Some(VIRTIO_F_VERSION_1 | 1 << 5 | 1),
            ..DeviceState::default()
        });
        assert_eq!(
            negotiate(&mut fake, VIRTIO_F_VERSION_1 | 1),
            Ok(VIRTIO_F_VERSION_1 | 1)
        );
        let state = fake.0.lock().unwrap();
        assert_eq!(state.features, VIRTIO_F_VERSION_1 | 1);
        assert_eq!(
            state.status,
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK
        );
    }

    #[test]
    fn a_legacy_device_skips_features_ok() {
        let mut fake = transport(DeviceState {
            offered: Some(1),
            drops_features_ok: true,
            ..DeviceState::default()
        });
        assert_eq!(negotiate(&mut fake, VIRTIO_F_VERSION_1 | 1), Ok(1));
        assert_eq!(
            fake.0.lock().unwrap().status,
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER
        );
    }

    #[test]
    fn a_modern_device_dropping_features_ok_refuses() {
        let mut fake = transport(DeviceState {
            offered: Some(VIRTIO_F_VERSION_1),
            drops_features_ok: true,
            ..DeviceState::default()
        });
        assert_eq!(
            negotiate(&mut fake, VIRTIO_F_VERSION_1),
            Err(Refused {
                requested: VIRTIO_F_VERSION_1
            })
        );
    }
}
