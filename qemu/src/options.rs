//! How to run a guest: the `run.sh` options, with a builder.
//!
//! The fields mirror `qemu/run.sh`'s options one to one, so a failing test can print the
//! exact command a person can paste to reproduce it ([`RunOptions::args`]).

/// The `qemu/run.sh` options for one run. `Default` is what `run.sh` defaults to:
/// microvm, PVH boot, one CPU, 64 MiB, empty command line, no port forwards.
///
/// # Examples
///
/// ```
/// use torito_qemu_tests::RunOptions;
///
/// let options = RunOptions::default().machine("q35").smp(4).append("log=debug");
/// assert_eq!(options.args(), ["--machine", "q35", "--boot", "pvh", "--smp", "4",
///                             "--mem", "64M", "--append", "log=debug"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// QEMU machine type: `microvm`, `q35` or `pc` (`--machine`).
    pub machine: String,
    /// Boot protocol: `pvh` (QEMU `-kernel`), `grub` (a multiboot2 ISO) or `xen` (the
    /// image as Xen's PVH dom0 on q35) (`--boot`).
    pub boot: String,
    /// Number of CPUs (`--smp`).
    pub smp: u32,
    /// Guest memory in QEMU's syntax, for example `64M` (`--mem`).
    pub mem: String,
    /// The kernel command line (`--append`); empty means none.
    pub append: String,
    /// TCP port forwards `(host port, guest port)` through user-mode networking
    /// (`--forward HOST:GUEST`); a non-empty list also adds a virtio-net device.
    pub forwards: Vec<(u16, u16)>,
    /// Whether the machine has ACPI tables (`--acpi off` mimics Firecracker).
    pub acpi: bool,
    /// Whether QEMU has the isa-debug-exit device (`--exit-device off` leaves the guest
    /// to power off through ACPI S5 or a reset, as on other hypervisors).
    pub exit_device: bool,
    /// Whether the machine has a virtio-rng device (`--rng`).
    pub rng: bool,
    /// Whether virtio-pci devices offer MSI-X (`--msix off` leaves them INTx only).
    pub msix: bool,
    /// virtio-blk disks, in order: the raw image's path and whether it is read-only
    /// (`--disk FILE[,ro]`).
    pub disks: Vec<(String, bool)>,
    /// A virtio-net device on a raw UDP link instead of user-mode networking:
    /// `(local port, remote port)` on 127.0.0.1 (`--udp-link LOCAL:REMOTE`). Frames go
    /// to whatever listens on the remote port; no DHCP server, no forwards.
    pub udp_link: Option<(u16, u16)>,
    /// Whether the machine has a second NIC on a user network of its own (`--nic2`):
    /// the guest's NIC 1 (`torito::net::stack_of(1)`). Needs a first NIC (`forwards`
    /// or `udp_link`).
    pub nic2: bool,
    /// TCP port forwards `(host port, guest port)` to the second NIC
    /// (`--forward2 HOST:GUEST`); a non-empty list implies [`nic2`](Self::nic2).
    pub forwards2: Vec<(u16, u16)>,
    /// A vsock device with this guest CID, its host side on this Unix socket
    /// (`--vsock CID --vsock-socket PATH`).
    pub vsock: Option<(u32, std::path::PathBuf)>,
    /// A virtio-console device whose port is a Unix socket at this path, QEMU listening
    /// (`--console-port PATH`).
    pub console_port: Option<std::path::PathBuf>,
    /// `--qmp PATH`: QEMU's machine protocol on a Unix socket ([`crate::Qmp`]).
    pub qmp: Option<std::path::PathBuf>,
    /// A host directory shared through virtio-fs with the tag `share` (`--share DIR`).
    pub share: Option<std::path::PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            machine: "microvm".into(),
            boot: "pvh".into(),
            smp: 1,
            mem: "64M".into(),
            append: String::new(),
            forwards: Vec::new(),
            acpi: true,
            exit_device: true,
            rng: false,
            msix: true,
            disks: Vec::new(),
            udp_link: None,
            nic2: false,
            forwards2: Vec::new(),
            vsock: None,
            console_port: None,
            qmp: None,
            share: None,
        }
    }
}

impl RunOptions {
    /// Sets the machine type (`microvm`, `q35`, `pc`).
    pub fn machine(mut self, machine: &str) -> Self {
        self.machine = machine.into();
        self
    }

    /// Sets the boot protocol (`pvh`, `grub`, `xen`).
    pub fn boot(mut self, boot: &str) -> Self {
        self.boot = boot.into();
        self
    }

    /// Sets the number of CPUs.
    pub fn smp(mut self, cpus: u32) -> Self {
        self.smp = cpus;
        self
    }

    /// Sets the guest memory size, in QEMU's syntax (`2M`, `64M`, `1G`).
    pub fn mem(mut self, mem: &str) -> Self {
        self.mem = mem.into();
        self
    }

    /// Sets the kernel command line.
    pub fn append(mut self, append: &str) -> Self {
        self.append = append.into();
        self
    }

    /// Adds a TCP port forward from `127.0.0.1:host` to the guest's `guest` port.
    pub fn forward(mut self, host: u16, guest: u16) -> Self {
        self.forwards.push((host, guest));
        self
    }

    /// Adds a second NIC on a user network of its own (`--nic2`).
    pub fn nic2(mut self) -> Self {
        self.nic2 = true;
        self
    }

    /// Adds a TCP port forward from `127.0.0.1:host` to the guest's `guest` port through
    /// the second NIC (and so the second NIC itself).
    pub fn forward2(mut self, host: u16, guest: u16) -> Self {
        self.nic2 = true;
        self.forwards2.push((host, guest));
        self
    }

    /// Turns the machine's ACPI tables off (QEMU `-machine ...,acpi=off`): the kernel
    /// must then find CPUs and devices the way it does on Firecracker.
    pub fn without_acpi(mut self) -> Self {
        self.acpi = false;
        self
    }

    /// Leaves out QEMU's isa-debug-exit device: the guest's exit then ends QEMU through
    /// ACPI S5 or a reset, and `run.sh` reads the exit code from the console.
    pub fn without_exit_device(mut self) -> Self {
        self.exit_device = false;
        self
    }

    /// Adds a virtio-rng device (virtio-mmio on microvm, virtio-pci elsewhere).
    pub fn rng(mut self) -> Self {
        self.rng = true;
        self
    }

    /// Takes MSI-X away from virtio-pci devices: the kernel then uses INTx.
    pub fn without_msix(mut self) -> Self {
        self.msix = false;
        self
    }

    /// Shares the host directory `directory` through virtio-fs (tag `share`).
    pub fn share(mut self, directory: impl Into<std::path::PathBuf>) -> Self {
        self.share = Some(directory.into());
        self
    }

    /// Adds a virtio-console device (virtio-mmio on microvm, virtio-pci elsewhere) whose
    /// port 0 is a Unix socket at `path`, on which QEMU listens for the host's connection.
    pub fn console_port(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.console_port = Some(path.into());
        self
    }

    /// `--qmp PATH`: QEMU's machine protocol on a Unix socket at `path`, for
    /// [`crate::Qmp`] (`system_powerdown`, `send-key`).
    pub fn qmp(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.qmp = Some(path.into());
        self
    }

    /// Puts the NIC on a raw UDP link: QEMU sends each frame from 127.0.0.1:`local` to
    /// 127.0.0.1:`remote` and takes frames arriving at `local`.
    pub fn udp_link(mut self, local: u16, remote: u16) -> Self {
        self.udp_link = Some((local, remote));
        self
    }

    /// Adds a vsock device (guest CID `cid`); the host reaches guest port P by
    /// connecting to `socket` and sending `CONNECT P\n`.
    pub fn vsock(mut self, cid: u32, socket: &std::path::Path) -> Self {
        self.vsock = Some((cid, socket.to_path_buf()));
        self
    }

    /// Adds a writable virtio-blk disk over the raw image at `path` (virtio-mmio on
    /// microvm, virtio-pci elsewhere); disks are numbered in the order added.
    pub fn disk(mut self, path: &str) -> Self {
        self.disks.push((path.into(), false));
        self
    }

    /// Adds a read-only virtio-blk disk over the raw image at `path`.
    pub fn read_only_disk(mut self, path: &str) -> Self {
        self.disks.push((path.into(), true));
        self
    }

    /// The options as `run.sh` arguments (everything after the image path).
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--machine".to_string(),
            self.machine.clone(),
            "--boot".into(),
            self.boot.clone(),
            "--smp".into(),
            self.smp.to_string(),
            "--mem".into(),
            self.mem.clone(),
        ];
        if !self.acpi {
            args.push("--acpi".into());
            args.push("off".into());
        }
        if !self.exit_device {
            args.push("--exit-device".into());
            args.push("off".into());
        }
        if self.rng {
            args.push("--rng".into());
        }
        if !self.msix {
            args.push("--msix".into());
            args.push("off".into());
        }
        if let Some(directory) = &self.share {
            args.push("--share".into());
            args.push(directory.display().to_string());
        }
        if let Some(path) = &self.console_port {
            args.push("--console-port".into());
            args.push(path.display().to_string());
        }
        if let Some(path) = &self.qmp {
            args.push("--qmp".into());
            args.push(path.display().to_string());
        }
        for (path, read_only) in &self.disks {
            args.push("--disk".into());
            args.push(if *read_only {
                format!("{path},ro")
            } else {
                path.clone()
            });
        }
        if let Some((local, remote)) = self.udp_link {
            args.push("--udp-link".into());
            args.push(format!("{local}:{remote}"));
        }
        if let Some((cid, socket)) = &self.vsock {
            args.push("--vsock".into());
            args.push(cid.to_string());
            args.push("--vsock-socket".into());
            args.push(socket.display().to_string());
        }
        for (host, guest) in &self.forwards {
            args.push("--forward".into());
            args.push(format!("{host}:{guest}"));
        }
        if self.nic2 && self.forwards2.is_empty() {
            args.push("--nic2".into());
        }
        for (host, guest) in &self.forwards2 {
            args.push("--forward2".into());
            args.push(format!("{host}:{guest}"));
        }
        if !self.append.is_empty() {
            args.push("--append".into());
            args.push(self.append.clone());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_nic_comes_with_its_forwards_or_alone() {
        let forwarded = RunOptions::default().forward(1, 2).forward2(3, 4).args();
        let tail = &forwarded[forwarded.len() - 4..];
        assert_eq!(tail, ["--forward", "1:2", "--forward2", "3:4"]);
        let alone = RunOptions::default().forward(1, 2).nic2().args();
        assert_eq!(alone.last().map(String::as_str), Some("--nic2"));
        assert!(!RunOptions::default().args().contains(&"--nic2".to_string()));
    }
}
