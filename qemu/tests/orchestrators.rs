//! The orchestrator contract: what urunc (the containerd runtime Kubernetes runs
//! unikernels with) does on a node, replayed here, with a Torito image in the VM.
//!
//! urunc's "dynamic" network mode (pkg/network in urunc-dev/urunc), the one a Kubernetes
//! pod gets: the CNI has put a veth `eth0` holding the pod's address into the pod's
//! network namespace; urunc adds a tap `tap0_urunc` with eth0's MTU and the address
//! 172.16.1.2/24, an ingress qdisc on both, and a u32 filter on each that redirects every
//! frame to the other's egress (tc mirred, "stolen"), so the VM's NIC stands in for eth0
//! on the pod network. Then it runs QEMU in that namespace with the command line of the
//! image's unikernel type: for `linux`,
//! `panic=-1 console=ttyS0 [root=...] ip=ADDR::GW:MASK:urunc:eth0:off ENV... init=APP -- ARGS`
//! (pkg/unikontainers/unikernels/linux.go), and for `hermit`, `ip=ADDR/PREFIX
//! gateway=GW -- ARGS` (hermit.go), with the QEMU flags urunc writes for each.
//!
//! Here each case builds two namespaces: the pod's (eth0, the tap, QEMU) and the node's
//! (the veth's other end, the client). The client (`nc`, run in the node's namespace)
//! reaches the echo service at the pod's address, as a kubelet probe or a Service would.
//! Differences from a real node, and why: TCG instead of `-cpu host -enable-kvm` (this
//! machine has no hardware KVM); the client sits in the node's namespace instead of
//! behind a Service's NAT.
//!
//! Cases: a /24 pod; a /32 pod whose gateway is Calico's 169.254.1.1 (the node's side of
//! the veth has no address and answers ARP by proxy, as Calico sets it up); a pod with an
//! MTU of 1450 whose client offers a 1460-byte MSS (an overlay network), fixed by the
//! `TORITO_MTU` environment token a pod spec can set; environment tokens and arguments
//! reaching the application; the exit status each type's VMM line reports; a graceful
//! stop on QEMU's `system_powerdown` (what Nomad's `graceful_shutdown` sends; urunc
//! itself signals or kills the VMM, docs/deploy.md).
//!
//! Needs root (namespaces, tap devices); without it every case prints why it skipped.
//! Namespaces are deleted by a guard even when a case fails.
//!
//! Nomad's QEMU task driver needs no namespace: its command line
//! (drivers/qemu/driver.go in hashicorp/nomad) with the job file's arguments
//! (docs/deploy/echo.nomad.hcl) is replayed as is, user networking and port map included.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use torito_qemu_tests::{Guest, Qmp, echo_round_trip, image_path};

const ECHO_PORT: u16 = 5555;
const READY: &str = "echo: listening on port";
const BOOT: Duration = Duration::from_secs(120);
const EXIT: Duration = Duration::from_secs(60);
/// What urunc names the tap and the address it gives it (constants.DynamicNetworkTapIP).
const TAP: &str = "tap0_urunc";
const TAP_ADDRESS: &str = "172.16.1.2/24";

/// Whether the test runs as root; prints why not.
fn root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next().map(str::to_owned));
    if uid.as_deref() == Some("0") {
        return true;
    }
    eprintln!(
        "orchestrators: skipped: needs root (network namespaces, tap devices, tc); CI runs \
         as root"
    );
    false
}

/// Runs `program args`, panicking with its output when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How the pod's network is shaped.
#[derive(Clone, Copy)]
enum Shape {
    /// A /24 whose gateway is the node's side of the veth (a bridge-style CNI).
    Subnet,
    /// Calico: a /32, gateway 169.254.1.1 reached by proxy ARP on the node's side.
    Calico,
}

/// One pod's network, as the CNI and urunc leave it: deleted on drop.
struct Pod {
    node: String,
    pod: String,
    /// The node's end of the veth (in `node`).
    host_veth: String,
    /// The pod's address, as a client dials it.
    address: &'static str,
    /// What urunc passes as the gateway and the netmask.
    gateway: &'static str,
    netmask: &'static str,
    prefix: u8,
    /// The MTU the VM's NIC offers (virtio-net's MTU feature, QEMU's `host_mtu`), in
    /// the hermit format's `-device` line; `None`: no offer (what urunc does).
    host_mtu: Option<u32>,
    /// vCPUs (`-smp`; urunc derives them from the container's CPU limit); `None`: one.
    cpus: Option<u32>,
    /// A QMP socket for the test to drive QEMU (`-qmp unix:PATH,server=on,wait=off`).
    qmp: Option<std::path::PathBuf>,
}

impl Pod {
    /// Builds the namespaces, the veth pair, the tap and the tc redirects.
    fn new(shape: Shape, mtu: u32) -> Pod {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let (address, gateway, netmask, prefix) = match shape {
            Shape::Subnet => ("10.88.0.2", "10.88.0.1", "255.255.255.0", 24),
            Shape::Calico => ("10.244.1.5", "169.254.1.1", "255.255.255.255", 32),
        };
        let pod = Pod {
            node: format!("torito-node-{id}"),
            pod: format!("torito-pod-{id}"),
            host_veth: format!("vh{id}"),
            address,
            gateway,
            netmask,
            prefix,
            host_mtu: None,
            cpus: None,
            qmp: None,
        };
        run("ip", &["netns", "add", &pod.node]);
        run("ip", &["netns", "add", &pod.pod]);
        let (node, ns) = (pod.node.as_str(), pod.pod.as_str());
        let mtu = mtu.to_string();
        // The CNI's part: a veth pair, eth0 in the pod with the pod's address and route.
        run(
            "ip",
            &[
                "link",
                "add",
                &pod.host_veth,
                "netns",
                node,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
                "mtu",
                &mtu,
            ],
        );
        let cidr = format!("{address}/{prefix}");
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        run("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"]);
        run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", node, "link", "set", "lo", "up"]);
        run("ip", &["-n", node, "link", "set", &pod.host_veth, "up"]);
        match shape {
            Shape::Subnet => {
                run("ip", &["-n", ns, "route", "add", "default", "via", gateway]);
                let gateway_cidr = format!("{gateway}/{prefix}");
                run(
                    "ip",
                    &[
                        "-n",
                        node,
                        "addr",
                        "add",
                        &gateway_cidr,
                        "dev",
                        &pod.host_veth,
                    ],
                );
            }
            Shape::Calico => {
                // In the pod: the gateway on-link, the default route through it.
                run(
                    "ip",
                    &[
                        "-n", ns, "route", "add", gateway, "dev", "eth0", "scope", "link",
                    ],
                );
                run(
                    "ip",
                    &[
                        "-n", ns, "route", "add", "default", "via", gateway, "dev", "eth0",
                    ],
                );
                // On the node: no address on the veth, proxy ARP on it (answering for
                // every address the node routes elsewhere, the gateway included), the
                // node's own address on another interface, a host route to the pod.
                // (A veth pair stands in for the node's uplink: no `dummy` module needed.)
                run(
                    "ip",
                    &[
                        "-n",
                        node,
                        "link",
                        "add",
                        "uplink",
                        "type",
                        "veth",
                        "peer",
                        "name",
                        "uplink-far",
                    ],
                );
                run("ip", &["-n", node, "link", "set", "uplink-far", "up"]);
                run(
                    "ip",
                    &["-n", node, "addr", "add", "192.0.2.10/24", "dev", "uplink"],
                );
                run("ip", &["-n", node, "link", "set", "uplink", "up"]);
                run(
                    "ip",
                    &["-n", node, "route", "add", "default", "dev", "uplink"],
                );
                let host_route = format!("{address}/32");
                run(
                    "ip",
                    &[
                        "-n",
                        node,
                        "route",
                        "add",
                        &host_route,
                        "dev",
                        &pod.host_veth,
                    ],
                );
                for setting in [
                    "net.ipv4.ip_forward=1".to_owned(),
                    format!("net.ipv4.conf.{}.proxy_arp=1", pod.host_veth),
                    format!("net.ipv4.neigh.{}.proxy_delay=0", pod.host_veth),
                ] {
                    run("ip", &["netns", "exec", node, "sysctl", "-qw", &setting]);
                }
            }
        }
        // urunc's part (network.go: createTapDevice, addIngressQdisc, addRedirectFilter).
        run(
            "ip",
            &[
                "-n",
                ns,
                "tuntap",
                "add",
                "dev",
                TAP,
                "mode",
                "tap",
                "one_queue",
                "vnet_hdr",
            ],
        );
        run("ip", &["-n", ns, "link", "set", TAP, "mtu", &mtu]);
        for device in [TAP, "eth0"] {
            run("tc", &["-n", ns, "qdisc", "add", "dev", device, "ingress"]);
        }
        for (from, to) in [(TAP, "eth0"), ("eth0", TAP)] {
            run(
                "tc",
                &[
                    "-n", ns, "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all",
                    "u32", "match", "u8", "0", "0", "action", "mirred", "egress", "redirect",
                    "dev", to,
                ],
            );
        }
        run(
            "ip",
            &["-n", ns, "addr", "replace", TAP_ADDRESS, "dev", TAP],
        );
        run("ip", &["-n", ns, "link", "set", TAP, "up"]);
        pod
    }

    /// eth0's MAC (urunc gives it to the VM's NIC in the hermit format).
    fn eth0_mac(&self) -> String {
        let text = run("ip", &["-n", &self.pod, "link", "show", "eth0"]);
        text.split_whitespace()
            .skip_while(|word| *word != "link/ether")
            .nth(1)
            .expect("eth0 has a MAC")
            .to_owned()
    }

    /// urunc's `linux` command line (linux.go, `CommandString`), `env` and `args` as a
    /// container's environment and command (the first word is the "app").
    fn linux_cmdline(&self, env: &[&str], args: &str) -> String {
        let mut line = format!(
            "panic=-1 console=ttyS0 ip={}::{}:{}:urunc:eth0:off",
            self.address, self.gateway, self.netmask
        );
        for variable in env {
            line.push(' ');
            line.push_str(variable);
        }
        line.push_str(" init=/echo -- ");
        line.push_str(args);
        line
    }

    /// urunc's `hermit` command line (hermit.go).
    fn hermit_cmdline(&self, args: &str) -> String {
        format!(
            "ip={}/{} gateway={} -- {}",
            self.address, self.prefix, self.gateway, args
        )
    }

    /// Starts QEMU in the pod's namespace as urunc does for `kind` (its flags from
    /// qemu.go plus the type's `MonitorNetCli`/`MonitorCli`), booting `image` with
    /// `cmdline`.
    fn boot(&self, kind: Kind, image: &str, cmdline: &str) -> Guest {
        let image = image_path(image);
        let image = image.to_str().expect("a UTF-8 path");
        let mut qemu = Command::new("ip");
        qemu.args(["netns", "exec", &self.pod, "qemu-system-x86_64"]);
        // qemu.go: memory, firmware path, no display; `-cpu host -enable-kvm` there,
        // TCG here (no hardware KVM on this machine).
        qemu.args([
            "-m",
            "64M",
            "-L",
            "/usr/share/qemu",
            "-cpu",
            "max",
            "-accel",
            "tcg",
        ]);
        qemu.args(["-nographic", "-vga", "none", "-kernel", image]);
        match kind {
            Kind::Linux => {
                // The default NIC line, and linux.go's MonitorCli.
                qemu.args(["-net", "nic,model=virtio"]);
                qemu.args(["-net", &format!("tap,script=no,downscript=no,ifname={TAP}")]);
                qemu.args(["-no-reboot", "-serial", "stdio", "-nodefaults"]);
            }
            Kind::Hermit => {
                qemu.args([
                    "-netdev",
                    &format!("tap,id=net0,ifname={TAP},script=no,downscript=no"),
                ]);
                let mut device = format!(
                    "virtio-net-pci,netdev=net0,disable-legacy=on,mac={}",
                    self.eth0_mac()
                );
                if let Some(mtu) = self.host_mtu {
                    device.push_str(&format!(",host_mtu={mtu}"));
                }
                qemu.args(["-device", &device]);
                qemu.args([
                    "-no-reboot",
                    "-device",
                    "isa-debug-exit,iobase=0xf4,iosize=0x04",
                ]);
            }
        }
        if let Some(cpus) = self.cpus {
            qemu.args(["-smp", &cpus.to_string()]);
        }
        if let Some(path) = &self.qmp {
            qemu.args([
                "-qmp",
                &format!("unix:{},server=on,wait=off", path.display()),
            ]);
        }
        qemu.args(["-append", cmdline]);
        let description = format!("{qemu:?}");
        Guest::start_command(qemu, description).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Sends `payload` to the echo service at the pod's address from the node's
    /// namespace (`nc`, closing its side at the end of input) and returns what came back.
    fn echo(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let port = ECHO_PORT.to_string();
        let mut client = Command::new("ip")
            .args(["netns", "exec", &self.node, "nc", "-N", "-w", "30"])
            .args([self.address, port.as_str()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run nc: {error}"))?;
        let mut stdin = client.stdin.take().expect("piped");
        let mut stdout = client.stdout.take().expect("piped");
        let mut stderr = client.stderr.take().expect("piped");
        let payload = payload.to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&payload);
        });
        // Read while nc runs: a full pipe would stall it.
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let _ = stdout.read_to_end(&mut out);
            let _ = stderr.read_to_end(&mut err);
            (out, err)
        });
        // nc's -w bounds an idle connection; this bounds the whole exchange.
        let deadline = Instant::now() + Duration::from_secs(120);
        while client.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                let _ = client.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = writer.join();
        let status = client.wait().map_err(|e| e.to_string())?;
        let (out, err) = reader.join().unwrap_or_default();
        if !err.is_empty() || (out.is_empty() && !status.success()) {
            return Err(format!(
                "nc ended with {status}: {}",
                String::from_utf8_lossy(&err)
            ));
        }
        Ok(out)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Deleting a namespace deletes its devices (the veth pair, the tap, the qdiscs).
        for namespace in [&self.pod, &self.node] {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Which of urunc's unikernel types the command line and QEMU flags follow.
#[derive(Clone, Copy)]
enum Kind {
    Linux,
    Hermit,
}

/// A payload larger than a few segments, bytes that show reordering or loss.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Boots echo in `pod` and checks a round trip of `len` bytes.
fn echo_through(pod: &Pod, kind: Kind, cmdline: &str, len: usize) {
    let guest = pod.boot(kind, "echo", cmdline);
    guest
        .wait_for_line(READY, BOOT)
        .unwrap_or_else(|failure| panic!("{failure}"));
    let sent = payload(len);
    match pod.echo(&sent) {
        Ok(received) if received == sent => {}
        Ok(received) => panic!(
            "{}",
            guest.failure(format!(
                "echo through the pod network: sent {} bytes, got {} back{}",
                sent.len(),
                received.len(),
                if received.len() == sent.len() {
                    " (different bytes)"
                } else {
                    ""
                }
            ))
        ),
        Err(error) => panic!("{}", guest.failure(format!("client failed: {error}"))),
    }
    let console = guest.console();
    assert!(
        !console.contains("unknown key"),
        "urunc's keys must not be warned about:\n{console}"
    );
}

#[test]
fn linux_type_on_a_slash_24_pod() {
    if !root() {
        return;
    }
    let pod = Pod::new(Shape::Subnet, 1500);
    let cmdline = pod.linux_cmdline(&["PATH=/usr/local/bin:/usr/bin:/bin", "HOSTNAME=echo"], "");
    echo_through(&pod, Kind::Linux, &cmdline, 60_000);
}

#[test]
fn linux_type_on_a_calico_slash_32_pod() {
    if !root() {
        return;
    }
    let pod = Pod::new(Shape::Calico, 1500);
    let cmdline = pod.linux_cmdline(&["HOSTNAME=echo"], "");
    echo_through(&pod, Kind::Linux, &cmdline, 20_000);
}

#[test]
fn hermit_type_on_a_calico_slash_32_pod() {
    if !root() {
        return;
    }
    let mut pod = Pod::new(Shape::Calico, 1500);
    // Four vCPUs here: echo spreads its connections over every core.
    pod.cpus = Some(4);
    let cmdline = pod.hermit_cmdline("");
    echo_through(&pod, Kind::Hermit, &cmdline, 20_000);
}

/// An overlay network: the pod's path carries 1450 bytes, and a client elsewhere offers a
/// 1460-byte MSS (the node's route to the pod says `advmss 1460`, as a client behind a
/// 1500-byte link would). A guest that believed in 1500 bytes would send frames the
/// node's veth drops without a word; `TORITO_MTU=1450`, an environment variable a pod
/// spec can set, makes it offer and send 1410-byte segments.
#[test]
fn overlay_mtu_1450_from_an_environment_token() {
    if !root() {
        return;
    }
    let pod = Pod::new(Shape::Subnet, 1450);
    let subnet = "10.88.0.0/24";
    run(
        "ip",
        &[
            "-n",
            &pod.node,
            "route",
            "replace",
            subnet,
            "dev",
            &pod.host_veth,
            "advmss",
            "1460",
        ],
    );
    let cmdline = pod.linux_cmdline(&["TORITO_MTU=1450"], "");
    echo_through(&pod, Kind::Linux, &cmdline, 60_000);
}

/// The same overlay, the MTU offered by the device instead (virtio-net's MTU feature:
/// QEMU's `host_mtu=1450`), nothing on the command line.
#[test]
fn overlay_mtu_1450_from_the_device() {
    if !root() {
        return;
    }
    let mut pod = Pod::new(Shape::Subnet, 1450);
    pod.host_mtu = Some(1450);
    run(
        "ip",
        &[
            "-n",
            &pod.node,
            "route",
            "replace",
            "10.88.0.0/24",
            "dev",
            &pod.host_veth,
            "advmss",
            "1460",
        ],
    );
    let cmdline = pod.hermit_cmdline("");
    echo_through(&pod, Kind::Hermit, &cmdline, 60_000);
}

/// A hostile `ip=` (a netmask with holes) stops the network service with a message that
/// names the field, as every bad network key does; the service does not start.
#[test]
fn a_hostile_linux_ip_is_refused_by_name() {
    let options = torito_qemu_tests::RunOptions::default()
        .append("ip=10.0.0.2::10.0.0.1:255.0.255.0:urunc:eth0:off");
    let mut guest = Guest::start("echo", &options);
    let refusal = guest
        .wait_for_line("cannot boot: network configuration", BOOT)
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert!(
        refusal.contains("255.0.255.0") && refusal.contains("NETMASK"),
        "{refusal}"
    );
    let outcome = guest
        .wait_exit(EXIT)
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert!(
        !outcome.console.contains("listening"),
        "{}",
        outcome.console
    );
}

/// The container's environment and arguments reach the application (hello prints them),
/// control characters in them reach the console escaped, and the VM ends with main's
/// status the way each type's QEMU line reports it: no exit device for `linux` (QEMU
/// exits 0 on the ACPI power-off; the status is on the console), isa-debug-exit for
/// `hermit` (QEMU's status is `(code << 1) | 1`).
#[test]
fn environment_arguments_and_exit_as_urunc_passes_them() {
    if !root() {
        return;
    }
    let pod = Pod::new(Shape::Subnet, 1500);
    let cmdline = pod.linux_cmdline(
        &["GREETING=hola", "EMPTY=", "TRICK=\x1b[2J\x07"],
        "serve --name 'two words'",
    );
    let mut guest = pod.boot(Kind::Linux, "hello", &cmdline);
    let outcome = guest
        .expect_exit(0, EXIT)
        .unwrap_or_else(|failure| panic!("{failure}"));
    for line in [
        "hello: arg 0 = serve",
        "hello: arg 1 = --name",
        "hello: arg 2 = two words",
        "hello: env GREETING = hola",
        "hello: env EMPTY = ",
        "hello: env TRICK = \\x1b[2J\\x07",
        "torito: exit(0)",
    ] {
        assert!(
            outcome.line(line).is_some(),
            "no `{line}` in:\n{}",
            outcome.console
        );
    }
    let ours = &outcome.console[outcome.console.find("Hello from Torito").unwrap_or(0)..];
    assert!(
        !ours.contains(|c: char| c.is_control() && c != '\n' && c != '\r'),
        "a control character reached the console:\n{ours:?}"
    );
    assert!(
        !outcome.console.contains("unknown key"),
        "{}",
        outcome.console
    );

    let mut guest = pod.boot(Kind::Hermit, "hello", &pod.hermit_cmdline("x"));
    // isa-debug-exit: exit(0) is QEMU status 1.
    let outcome = guest
        .expect_exit(1, EXIT)
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert!(
        outcome.line("hello: arg 0 = x").is_some(),
        "{}",
        outcome.console
    );
}

/// Nomad's QEMU driver: `qemu-system-x86_64 -machine type=pc,accel=tcg -name NAME -m MEM
/// -drive file=IMAGE -nographic ARGS -netdev user,id=user.0,hostfwd=udp::P-:G,hostfwd=tcp::P-:G
/// -device virtio-net,netdev=user.0`, with the job file's ARGS. The image is a copy in a
/// scratch directory, as Nomad's artifact lands in the allocation's directory (QEMU
/// locks a `-drive` file for writing). DHCP from QEMU's user network configures echo.
#[test]
fn nomad_qemu_driver_command_line() {
    let image = image_path("echo");
    let directory = torito_qemu_tests::workspace_root()
        .join("target/nomad-test")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&directory).unwrap();
    let local = directory.join("echo.elf");
    std::fs::copy(&image, &local).unwrap();
    let local = local.to_str().unwrap().to_owned();
    let start = |port: u16| {
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args([
            "-machine",
            "type=pc,accel=tcg",
            "-name",
            "echo.elf",
            "-m",
            "128M",
        ]);
        qemu.args(["-drive", &format!("file={local}"), "-nographic"]);
        // The job file's args.
        qemu.args(["-kernel", &local, "-append", "log=info GREETING=hola --"]);
        qemu.args(["-no-reboot", "-device", "virtio-rng-pci"]);
        // The driver's port_map.
        let forwards = format!(
            "user,id=user.0,hostfwd=udp::{port}-:{ECHO_PORT},hostfwd=tcp::{port}-:{ECHO_PORT}"
        );
        qemu.args(["-netdev", &forwards, "-device", "virtio-net,netdev=user.0"]);
        let description = format!("{qemu:?}");
        Guest::start_command(qemu, description)
    };
    let (guest, port) = Guest::start_forwarded_with(ECHO_PORT, READY, BOOT, start)
        .unwrap_or_else(|failure| panic!("{failure}"));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    if let Err(error) = echo_round_trip(&mut stream, &payload(10_000)) {
        panic!(
            "{}",
            guest.failure(format!("echo through Nomad's port map: {error}"))
        );
    }
    drop(guest);
    let _ = std::fs::remove_dir_all(directory);
}

/// What the kernel prints when the power button is pressed, and echo once its
/// connections have closed (examples/echo, kernel/src/shutdown.rs).
const POWER_BUTTON: &str = "shutdown: requested by the ACPI power button";
const STOPPED: &str = "echo: stopped cleanly";

/// A graceful stop in a pod: QEMU's `system_powerdown` (an ACPI power-button press)
/// reaches echo through `torito::shutdown()`; it has served a client first, finishes,
/// and the VM powers off: QEMU ends with status 0 (no exit device in urunc's `linux`
/// line) after `torito: exit(0)`.
#[test]
fn graceful_stop_in_a_pod_on_system_powerdown() {
    if !root() {
        return;
    }
    let mut pod = Pod::new(Shape::Calico, 1500);
    let socket = std::env::temp_dir().join(format!("torito-pod-qmp-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    pod.qmp = Some(socket.clone());
    let cmdline = pod.linux_cmdline(&["HOSTNAME=echo"], "");
    let mut guest = pod.boot(Kind::Linux, "echo", &cmdline);
    guest
        .wait_for_line(READY, BOOT)
        .unwrap_or_else(|failure| panic!("{failure}"));
    let sent = payload(5_000);
    match pod.echo(&sent) {
        Ok(received) if received == sent => {}
        other => panic!(
            "{}",
            guest.failure(format!("echo before the stop: {other:?}"))
        ),
    }
    let mut qmp =
        Qmp::connect(&socket, EXIT).unwrap_or_else(|error| panic!("{}", guest.failure(error)));
    qmp.system_powerdown()
        .unwrap_or_else(|error| panic!("{}", guest.failure(error)));
    let outcome = guest
        .expect_exit(0, EXIT)
        .unwrap_or_else(|failure| panic!("{failure}"));
    for line in [POWER_BUTTON, STOPPED, "torito: exit(0)"] {
        assert!(
            outcome.line(line).is_some(),
            "no `{line}` in:\n{}",
            outcome.console
        );
    }
    let _ = std::fs::remove_file(socket);
}

/// Nomad's `graceful_shutdown = true`: the driver adds `-monitor unix:PATH,server,nowait`
/// and, on `nomad alloc stop`, writes `system_powerdown` to that human monitor
/// (drivers/qemu/driver.go, `sendQemuShutdown`). echo stops cleanly and QEMU ends with 0.
#[test]
fn nomad_graceful_shutdown() {
    use std::io::Write;
    let image = image_path("echo");
    let directory = torito_qemu_tests::workspace_root()
        .join("target/nomad-test")
        .join(format!("stop-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let local = directory.join("echo.elf");
    std::fs::copy(&image, &local).unwrap();
    let monitor = directory.join("qemu-monitor.sock");
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-machine",
        "type=pc,accel=tcg",
        "-name",
        "echo.elf",
        "-m",
        "128M",
    ]);
    qemu.args(["-drive", &format!("file={}", local.display()), "-nographic"]);
    qemu.args([
        "-monitor",
        &format!("unix:{},server,nowait", monitor.display()),
    ]);
    qemu.args(["-kernel", local.to_str().unwrap(), "-append", "log=info --"]);
    qemu.args(["-no-reboot", "-device", "virtio-rng-pci"]);
    qemu.args([
        "-netdev",
        "user,id=user.0",
        "-device",
        "virtio-net,netdev=user.0",
    ]);
    let description = format!("{qemu:?}");
    let mut guest =
        Guest::start_command(qemu, description).unwrap_or_else(|failure| panic!("{failure}"));
    guest
        .wait_for_line(READY, BOOT)
        .unwrap_or_else(|failure| panic!("{failure}"));
    let mut socket = std::os::unix::net::UnixStream::connect(&monitor)
        .unwrap_or_else(|error| panic!("{}", guest.failure(format!("monitor: {error}"))));
    socket
        .write_all(b"system_powerdown\n")
        .unwrap_or_else(|error| panic!("{}", guest.failure(format!("monitor: {error}"))));
    let outcome = guest
        .expect_exit(0, EXIT)
        .unwrap_or_else(|failure| panic!("{failure}"));
    for line in [POWER_BUTTON, STOPPED, "torito: exit(0)"] {
        assert!(
            outcome.line(line).is_some(),
            "no `{line}` in:\n{}",
            outcome.console
        );
    }
    let _ = std::fs::remove_dir_all(directory);
}
