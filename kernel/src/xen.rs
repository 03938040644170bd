//! A Xen domU's devices: the xenstore client, the grant table and the netfront NICs,
//! built from `torito_virtio::xen`'s protocols over the pages and event channels
//! `arch::xen` provides.
//!
//! Nothing here runs off Xen or on dom0 (whose devices are the machine's own). On a
//! domU the network's first use (`net::stack`) connects every vif the toolstack listed
//! under `device/vif` in this domain's xenstore directory; each becomes a NIC after the
//! virtio ones (a domU has none).

use crate::arch::xen::domu;
use crate::arch::xen::events::{self, Channel};
use crate::arch::xen::shared::Page;
use alloc::format;
use alloc::vec::Vec;
use torito_boot::xen::DomainKind;
use torito_virtio::xen::EventChannel;
use torito_virtio::xen::grant::Table;
use torito_virtio::xen::netfront::{self, NetFront, NetPages};
use torito_virtio::xen::xenstore::XenStore;

/// How long the first xenstore request may take: xenstored answers in milliseconds, a
/// domain whose xenstore is not served would otherwise wait forever for its network.
const XENSTORE_WAIT: crate::time::Duration = crate::time::Duration::from_secs(10);

/// How long a vif's backend may take to connect: netback answers within a second even
/// under QEMU's emulator; a backend that never does must not hold the network back.
const CONNECT_WAIT: crate::time::Duration = crate::time::Duration::from_secs(30);

/// Buffer pages per direction of a vif: 64 frames in flight each way (256 KiB each).
const NET_BUFFERS: usize = 64;

/// An event channel as a driver holds it: the bell it rings, and the ports it allocates
/// routed to its own waker.
#[derive(Debug)]
pub struct Bell(Channel);

impl EventChannel for Bell {
    fn notify(&self, port: u32) {
        let status = events::notify(port);
        if status != 0 {
            log::warn!("xen: EVTCHNOP_send on port {} failed: {}", port, status);
        }
    }

    fn alloc_unbound(&self, remote: u16) -> Result<u32, i32> {
        self.0.alloc_unbound(remote).map_err(|error| {
            log::warn!("xen: {}", error);
            match error {
                crate::arch::xen::Error::Hypercall { errno, .. } => -(errno as i32),
                _ => -22,
            }
        })
    }

    fn close(&self, port: u32) {
        let status = self.0.close(port);
        if status != 0 {
            log::warn!("xen: EVTCHNOP_close on port {} failed: {}", port, status);
        }
    }
}

impl Bell {
    /// Events delivered to this bell's ports since boot.
    pub fn events(&self) -> &'static core::sync::atomic::AtomicU64 {
        self.0.events()
    }
}

/// The xenstore client.
pub type Store = XenStore<Page, Bell>;
/// A netfront NIC.
pub type Nic = NetFront<Page, Bell>;

static STORE: spin::Once<Option<Store>> = spin::Once::new();
static GRANTS: spin::Once<Option<Table<Page>>> = spin::Once::new();

/// Whether the kernel runs as a Xen domU.
pub fn is_domu() -> bool {
    crate::arch::xen::kind() == Some(DomainKind::DomU)
}

/// The xenstore client (on a domU whose event channels are up; logged otherwise).
pub fn store() -> Option<&'static Store> {
    STORE
        .call_once(|| {
            if !is_domu() {
                return None;
            }
            let Some(channel) = Channel::new() else {
                log::error!("xen: xenstore: no event channel (event channels are down)");
                return None;
            };
            let (page, port) = domu::xenstore()
                .inspect_err(|error| log::error!("xen: xenstore: {}", error))
                .ok()?;
            if let Err(error) = channel.bind(port) {
                log::error!("xen: xenstore: {}", error);
                return None;
            }
            let waker = channel.waker();
            Some(XenStore::new(page, Bell(channel), port, waker))
        })
        .as_ref()
}

/// The grant table (on a domU).
pub fn grants() -> Option<&'static Table<Page>> {
    GRANTS
        .call_once(|| {
            if !is_domu() {
                return None;
            }
            match domu::grant_frames() {
                Ok(frames) => Some(Table::new(frames)),
                Err(error) => {
                    log::error!("xen: grant table: {}", error);
                    None
                }
            }
        })
        .as_ref()
}

/// Connects every vif listed in xenstore, in index order, at most `limit`; logs those
/// that fail.
pub async fn connect_nics(limit: usize) -> Vec<Nic> {
    let mut nics = Vec::new();
    let Some(store) = store() else {
        return nics;
    };
    let Some(grants) = grants() else {
        return nics;
    };
    let listing = crate::time::timeout(XENSTORE_WAIT, store.directory("device/vif")).await;
    let mut indices: Vec<u32> = match listing {
        Ok(Ok(names)) => names.iter().filter_map(|name| name.parse().ok()).collect(),
        Ok(Err(error)) => {
            log::debug!("xen: no vif in xenstore: {}", error);
            return nics;
        }
        Err(_) => {
            let (upcalls, stray) = events::counts();
            log::error!(
                "xen: xenstore did not answer within {} s ({:?}; {} upcalls, {} stray events)",
                XENSTORE_WAIT.as_secs(),
                store.stats(),
                upcalls,
                stray
            );
            return nics;
        }
    };
    indices.sort_unstable();
    for index in indices.into_iter().take(limit) {
        let Some(channel) = Channel::new() else {
            log::error!("xen: vif {}: no event channel left", index);
            break;
        };
        let (Some(mut buffers), Some(rings)) = (domu::pages(2 * NET_BUFFERS), domu::pages(2))
        else {
            log::error!("xen: vif {}: no memory for its buffers", index);
            break;
        };
        let rx_buffers = buffers.split_off(NET_BUFFERS);
        let mut rings = rings.into_iter();
        let (Some(tx_ring), Some(rx_ring)) = (rings.next(), rings.next()) else {
            break;
        };
        let pages = NetPages {
            tx_ring,
            rx_ring,
            tx_buffers: buffers,
            rx_buffers,
        };
        let waker = channel.waker();
        let connecting = netfront::connect(store, grants, Bell(channel), waker, index, pages);
        match crate::time::timeout(CONNECT_WAIT, connecting).await {
            Ok(Ok(nic)) => nics.push(nic),
            Ok(Err(error)) => log::error!("xen: vif {}: {}", index, error),
            // Its pages stay granted: they were leaked for this (`domu::pages`).
            Err(_) => log::error!(
                "xen: vif {}: the backend did not connect within {} s; left unused",
                index,
                CONNECT_WAIT.as_secs()
            ),
        }
    }
    nics
}

/// A vif's name in logs.
pub fn describe(nic: &Nic) -> alloc::string::String {
    format!(
        "xen vif (backend {}, domain {})",
        nic.backend(),
        nic.backend_id()
    )
}

/// On a domU, starts (once) the task that hears `xl shutdown` and `xl reboot`: the
/// toolstack writes `poweroff`, `halt` or `reboot` to `control/shutdown`. The task says
/// it can (`control/feature-poweroff`, `control/feature-reboot`), acknowledges each
/// request by clearing the node, as Linux does, and hands it to `crate::shutdown`'s
/// watcher; a reboot is noted first (`arch::xen::request_reboot`), so that the clean
/// exit that follows ends in `SHUTDOWN_reboot` and xl starts a fresh domain. Called by
/// the first
/// `torito::shutdown()` and when the network starts, not at boot: xenstore and event
/// channels would cost every image 23 KiB (hello: 86 256 bytes stripped, 109 824 with
/// the watch armed at boot) and every boot their set-up. Until then, `xl
/// shutdown` finds no `feature-poweroff` and xl destroys the domain instead.
pub fn arm_shutdown() {
    static ARMED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if is_domu() && !ARMED.swap(true, core::sync::atomic::Ordering::AcqRel) {
        crate::runtime::executor().spawn(watch_shutdown()).detach();
    }
}

async fn watch_shutdown() {
    const NODE: &str = "control/shutdown";
    const TOKEN: &str = "torito-shutdown";
    let Some(store) = store() else {
        return;
    };
    let armed = async {
        store.write("control/feature-poweroff", "1").await?;
        store.write("control/feature-reboot", "1").await?;
        store.watch(NODE, TOKEN).await
    };
    if let Err(error) = armed.await {
        log::warn!(
            "xen: xl shutdown and xl reboot will not be heard: {}",
            error
        );
        return;
    }
    loop {
        // xenstored fires a watch once when it is set, then on every change.
        if let Err(error) = store.next_event(TOKEN).await {
            log::warn!(
                "xen: xl shutdown and xl reboot are no longer heard: {}",
                error
            );
            return;
        }
        let Ok(request) = store.read(NODE).await else {
            continue;
        };
        let reboot = match request.trim_end_matches('\0') {
            "poweroff" | "halt" => false,
            "reboot" => true,
            "" => continue,
            other => {
                log::warn!(
                    "xen: toolstack request `{}` not supported (poweroff, halt and reboot are)",
                    other
                );
                continue;
            }
        };
        let _ = store.write(NODE, "").await;
        crate::arch::xen::request_reboot(reboot);
        crate::arch::power::request(crate::power_events::Source::Xen);
    }
}
