#!/usr/bin/env bash
# Runs a Torito image in QEMU and exits with the guest's exit(code).
#
# usage: qemu/run.sh IMAGE [--machine microvm|q35|pc] [--boot pvh|grub|xen] [--smp N]
#                          [--mem SIZE] [--forward HOSTPORT:GUESTPORT]... [--append "ARGS"]
#                          [--accel kvm|tcg] [--acpi on|off] [--log FILE]
#                          [--exit-device on|off] [--trace-code FILE] [--rng] [--msix on|off]
#                          [--icount SHIFT] [--plugin LIBRARY,ARGS]
#                          [--udp-link LOCALPORT:REMOTEPORT]
#                          [--nic2] [--forward2 HOSTPORT:GUESTPORT]...
#                          [--vsock CID [--vsock-socket PATH]]
#                          [--disk FILE[,ro]]...
#                          [--console-port PATH] [--qmp PATH]
#                          [--share DIR]
#        qemu/run.sh --which-accel      (prints the accelerator it would pick, then exits)
#
# The accelerator is chosen here: hardware KVM only when the CPU has vmx/svm and
# /dev/kvm is usable; otherwise TCG. (A /dev/kvm without vmx/svm can be a software
# virtualizer, such as the kvm_pvm module: slower than TCG for a kernel, and it can stop
# the guest on an SSE instruction.)
# TORITO_ACCEL=kvm|tcg or --accel overrides the choice.
#
# --boot xen: Debian's Xen 4.17 (qemu/xen.sh fetches it; make setup does) boots on a
# q35 machine with IMAGE as its PVH dom0: --smp and --mem are dom0's (dom0_max_vcpus,
# dom0_mem; the machine gets 256 MiB more for Xen), --append is dom0's command line. Xen
# owns COM1; its lines start with "(XEN)", the guest's come through Xen's console.
# TORITO_XEN_ARGS adds options to Xen's own command line (experiments: cpuidle=0, ...).
#
# Exit status: the guest's exit code (the kernel prints "torito: exit(N)" and writes N to
# isa-debug-exit, whose QEMU status is (N << 1) | 1). 124 = QEMU ended with no exit line
# from the guest (it crashed, reset, or QEMU itself failed).
set -euo pipefail

usage() { sed -n '4,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# The accelerator rule, in one place (the benches ask for it with --which-accel).
pick_accel() {
    if [ -n "${TORITO_ACCEL:-}" ]; then
        echo "$TORITO_ACCEL"
    elif grep -qwE 'vmx|svm' /proc/cpuinfo 2>/dev/null && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        echo kvm
    else
        echo tcg
    fi
}

[ $# -ge 1 ] || usage
if [ "$1" = --which-accel ]; then pick_accel; exit 0; fi
image=$1; shift
machine=microvm boot=pvh smp=1 mem=64M append="" accel="" log="" acpi=on exit_device=on trace_code="" rng=off msix=on icount="" plugin="" console_port=""
vsock_cid="" vsock_socket="" qmp=""
forwards=() disks=() udp_link="" nic2=off forwards2=() share=""
while [ $# -gt 0 ]; do
    case $1 in
        --machine) machine=$2; shift 2 ;;
        --boot) boot=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --forward) forwards+=("$2"); shift 2 ;;
        --append) append=$2; shift 2 ;;
        --accel) accel=$2; shift 2 ;;
        --log) log=$2; shift 2 ;;
        --acpi) acpi=$2; shift 2 ;;
        --exit-device) exit_device=$2; shift 2 ;;
        --trace-code) trace_code=$2; shift 2 ;;
        --rng) rng=on; shift ;;
        --msix) msix=$2; shift 2 ;;
        --disk) disks+=("$2"); shift 2 ;;
        --icount) icount=$2; shift 2 ;;
        --plugin) plugin=$2; shift 2 ;;
        --udp-link) udp_link=$2; shift 2 ;;
        --nic2) nic2=on; shift ;;
        --forward2) nic2=on; forwards2+=("$2"); shift 2 ;;
        --vsock) vsock_cid=$2; shift 2 ;;
        --vsock-socket) vsock_socket=$2; shift 2 ;;
        --console-port) console_port=$2; shift 2 ;;
        --qmp) qmp=$2; shift 2 ;;
        --share) share=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown option $1" >&2; usage ;;
    esac
done
[ -f "$image" ] || { echo "run.sh: no image at $image (run 'make images')" >&2; exit 2; }
case $machine in microvm|q35|pc) ;; *) echo "run.sh: --machine must be microvm, q35 or pc" >&2; exit 2 ;; esac
case $boot in pvh|grub|xen) ;; *) echo "run.sh: --boot must be pvh, grub or xen" >&2; exit 2 ;; esac
case $acpi in on|off) ;; *) echo "run.sh: --acpi must be on or off" >&2; exit 2 ;; esac
case $exit_device in on|off) ;; *) echo "run.sh: --exit-device must be on or off" >&2; exit 2 ;; esac
case $msix in on|off) ;; *) echo "run.sh: --msix must be on or off" >&2; exit 2 ;; esac
# --msix off: virtio-pci devices without MSI-X (vectors=0), so the kernel takes the INTx
# fallback through the I/O APIC. No effect on microvm (virtio-mmio has no MSI-X).
pci_options=""
[ "$msix" = off ] && pci_options=",vectors=0"
if [ "$boot" = grub ] && [ "$machine" = microvm ]; then
    echo "run.sh: --boot grub needs a BIOS machine (q35 or pc); microvm has no disk boot" >&2; exit 2
fi
dom0_mem=""
if [ "$boot" = xen ]; then
    # Xen halts the machine (it does not power it off) when its dom0 powers off: only the
    # exit device ends QEMU.
    [ "$exit_device" = on ] || {
        echo "run.sh: --boot xen needs the exit device: Xen halts, not ends, the machine when dom0 powers off" >&2; exit 2; }
    # Xen needs a BIOS to load it (multiboot1 through QEMU's -kernel): q35 unless told pc.
    [ "$machine" = microvm ] && machine=q35
    xen=$("$(dirname "$0")/xen.sh" path)
    [ -f "$xen" ] || {
        echo "run.sh: no Xen hypervisor at $xen; fetch it: qemu/xen.sh fetch (make setup does)" >&2; exit 2; }
    case $mem in
        *[Gg]) dom0_mib=$(( ${mem%[Gg]} * 1024 )) ;;
        *[Mm]) dom0_mib=${mem%[Mm]} ;;
        *) echo "run.sh: --boot xen needs --mem in M or G (for example 64M)" >&2; exit 2 ;;
    esac
    dom0_mem=${dom0_mib}M
    # The machine: dom0's memory plus room for Xen's own (heap, frame table, console).
    mem=$(( dom0_mib + 256 ))M
fi
command -v qemu-system-x86_64 >/dev/null || {
    echo "run.sh: qemu-system-x86_64 not found; install it: apt-get install -y qemu-system-x86" >&2; exit 2; }

[ -n "$accel" ] || accel=$(pick_accel)
case $accel in
    # -cpu host fails on MSR 0x10a (arch-capabilities) on some hosts; drop that bit.
    kvm) cpu="host,-arch-capabilities" ;;
    # TCG: the richest emulated CPU (TSC-deadline timer, invariant TSC, NX).
    # Under Xen, its guests run through the emulated AMD SVM with nested paging that
    # "max" offers (this Xen build has no shadow paging, so PVH needs it).
    tcg) cpu="max" ;;
    *) echo "run.sh: --accel must be kvm or tcg" >&2; exit 2 ;;
esac

if [ -n "$vsock_cid" ]; then
    case $vsock_cid in *[!0-9]*|"") echo "run.sh: --vsock needs a numeric CID (3 or more)" >&2; exit 2 ;; esac
    [ "$vsock_cid" -ge 3 ] || { echo "run.sh: --vsock CID must be 3 or more (0-2 are reserved)" >&2; exit 2; }
    backend=$(command -v vhost-device-vsock || echo "$HOME/.cargo/bin/vhost-device-vsock")
    [ -x "$backend" ] || {
        echo "run.sh: vhost-device-vsock not found; install it: cargo install vhost-device-vsock --version 0.3.0 --locked (make setup does)" >&2; exit 2; }
elif [ -n "$vsock_socket" ]; then
    echo "run.sh: --vsock-socket needs --vsock CID" >&2; exit 2
fi

if [ -n "$share" ]; then
    [ -d "$share" ] || { echo "run.sh: --share: no directory at $share" >&2; exit 2; }
    virtiofsd=${TORITO_VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
    [ -x "$virtiofsd" ] || {
        echo "run.sh: no virtiofsd at $virtiofsd; install it: apt-get install -y qemu-system-common (or set TORITO_VIRTIOFSD)" >&2; exit 2; }
fi

work=$(mktemp -d)
backend_pid="" virtiofsd_pid=""
cleanup() {
    if [ -n "$virtiofsd_pid" ]; then
        kill "$virtiofsd_pid" 2>/dev/null || true; wait "$virtiofsd_pid" 2>/dev/null || true
    fi
    if [ -n "$backend_pid" ]; then
        kill "$backend_pid" 2>/dev/null || true; wait "$backend_pid" 2>/dev/null || true
        rm -f "$vsock_socket"   # the backend's host-side socket, dead now
    fi
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "$log" ] || log=$work/console.log

# --acpi off: no ACPI tables, as on Firecracker: the kernel then finds CPUs in the MP
# table (or fw_cfg) and, on microvm, virtio-mmio devices on the command line, which QEMU
# appends (virtio_mmio.device=...).
machine_options=$machine
[ "$acpi" = off ] && machine_options+=",acpi=off"

args=(
    -machine "$machine_options"
    -accel "$accel"
    -cpu "$cpu"
    -smp "$smp"
    -m "$mem"
    -nodefaults             # no default VGA, NIC, CD-ROM or parallel port: only what is listed
    -no-user-config         # ignore host-wide QEMU configuration files
    -display none           # no window; the console is the serial port
    -no-reboot              # a reset (keyboard controller, triple fault) ends QEMU
    # COM1 on stdio and, for the exit-line check, into a log file.
    -chardev "stdio,id=console,logfile=$log,signal=on"
    -serial chardev:console
)
# Writing N to port 0xf4 ends QEMU with status (N << 1) | 1. --exit-device off leaves it
# out, as on other hypervisors: the kernel then powers off through ACPI S5 (or resets).
[ "$exit_device" = on ] && args+=(-device isa-debug-exit,iobase=0xf4,iosize=0x04)

# --trace-code FILE (TCG only): QEMU logs every block of guest code it translates, once,
# with its instructions. Under TCG that translation is most of the boot's cost, so the
# distinct instructions on the way to main are a noise-free measure of it (bench/run.sh).
if [ -n "$trace_code" ]; then
    [ "$accel" = tcg ] || { echo "run.sh: --trace-code needs --accel tcg" >&2; exit 2; }
    args+=(-d in_asm -D "$trace_code")
fi

# --icount SHIFT (TCG only): the virtual CPU runs 2^SHIFT ns per instruction, and every
# clock the guest reads (TSC, PIT, APIC timer) follows the instruction count instead of
# the host's time: a run is then the same on every host. --plugin LIBRARY,ARGS (TCG only)
# loads a TCG plugin (bench/executed/plugin.c counts the instructions before main).
if [ -n "$icount" ] || [ -n "$plugin" ]; then
    [ "$accel" = tcg ] || { echo "run.sh: --icount and --plugin need --accel tcg" >&2; exit 2; }
fi
[ -n "$icount" ] && args+=(-icount "shift=$icount")
[ -n "$plugin" ] && args+=(-plugin "$plugin")

if [ -n "$udp_link" ] && [ ${#forwards[@]} -gt 0 ]; then
    echo "run.sh: --udp-link and --forward are two different NICs' backends: pick one" >&2; exit 2
fi
# "user" networking (slirp): guest 10.0.2.15, DHCP, no host privileges; each forward
# HOST:GUEST makes QEMU listen on 127.0.0.1:HOST and connect to the guest's GUEST.
user_netdev() {   # user_netdev ID FORWARD...
    local netdev="user,id=$1" forward host guest
    shift
    for forward in "$@"; do
        host=${forward%%:*} guest=${forward##*:}
        netdev+=",hostfwd=tcp:127.0.0.1:$host-:$guest"
    done
    echo "$netdev"
}
# One virtio-net device on netdev ID: virtio-mmio on microvm, virtio-pci elsewhere.
add_nic() {   # add_nic ID
    if [ "$machine" = microvm ]; then
        args+=(-device "virtio-net-device,netdev=$1")   # virtio-mmio transport
    else
        args+=(-device "virtio-net-pci,netdev=$1$pci_options")   # virtio-pci transport
    fi
}
netdev=""
if [ ${#forwards[@]} -gt 0 ]; then
    netdev=$(user_netdev net0 "${forwards[@]}")
elif [ -n "$udp_link" ]; then
    # A raw link: each Ethernet frame is one UDP datagram from 127.0.0.1:LOCAL to
    # 127.0.0.1:REMOTE, and datagrams arriving at LOCAL are frames for the guest. No
    # DHCP server, no slirp: a test on the host plays the rest of the network (or
    # nothing at all).
    netdev="socket,id=net0,udp=127.0.0.1:${udp_link##*:},localaddr=127.0.0.1:${udp_link%%:*}"
fi
if [ -n "$netdev" ]; then
    args+=(-netdev "$netdev")
    add_nic net0
fi
# --nic2: a second NIC (the guest's NIC 1, torito::net::stack_of(1)) on a user network of
# its own (its own slirp: the guest is 10.0.2.15 on both, with nothing shared), forwarded
# by --forward2 HOST:GUEST (repeatable; implies --nic2). Added right after the first NIC,
# so discovery finds it second on every machine (microvm's slots and the PCI slots are
# filled in the order of the -device options).
if [ "$nic2" = on ]; then
    [ -n "$netdev" ] || {
        echo "run.sh: --nic2 is a second NIC: give the first with --forward or --udp-link" >&2; exit 2; }
    args+=(-netdev "$(user_netdev net1 ${forwards2[@]+"${forwards2[@]}"})")
    add_nic net1
fi

# --rng: a virtio-rng device (entropy from the host through QEMU's built-in backend, which
# asks the host's getrandom), for torito::random.
if [ "$rng" = on ]; then
    if [ "$machine" = microvm ]; then
        args+=(-device virtio-rng-device)   # virtio-mmio transport
    else
        args+=(-device "virtio-rng-pci$pci_options")   # virtio-pci transport
    fi
fi

# --vsock CID: a virtio-vsock device whose data path is the userspace backend
# vhost-device-vsock (no /dev/vhost-vsock needed). The backend listens on a control
# socket for QEMU (vhost-user) and on the Unix socket the host's programs use
# (--vsock-socket PATH; default in the run's temporary directory): connect to it and
# send "CONNECT PORT\n" to reach the guest's PORT (Firecracker's hybrid vsock).
if [ -n "$vsock_cid" ]; then
    [ -n "$vsock_socket" ] || vsock_socket=$work/vsock.sock
    rm -f "$vsock_socket"
    "$backend" --guest-cid "$vsock_cid" --socket "$work/vhost-vsock.sock" \
        --uds-path "$vsock_socket" >"$work/vsock-backend.log" 2>&1 &
    backend_pid=$!
    for _ in $(seq 100); do [ -S "$work/vhost-vsock.sock" ] && break; sleep 0.05; done
    [ -S "$work/vhost-vsock.sock" ] || {
        cat "$work/vsock-backend.log" >&2; echo "run.sh: vhost-device-vsock did not start" >&2; exit 2; }
    # vhost-user: the backend maps all guest RAM itself, so RAM must be a shareable file
    # (memfd, share=on) and be the machine's memory (memory-backend=, on every machine).
    args+=(-object "memory-backend-memfd,id=mem,size=$mem,share=on")
    args[1]+=",memory-backend=mem"
    # QEMU's end of the backend's control socket.
    args+=(-chardev "socket,id=vsock0,path=$work/vhost-vsock.sock")
    if [ "$machine" = microvm ]; then
        args+=(-device vhost-user-vsock-device,chardev=vsock0)   # virtio-mmio transport
    else
        args+=(-device "vhost-user-vsock-pci,chardev=vsock0$pci_options")   # virtio-pci transport
    fi
fi
# --share DIR: DIR as a virtio-fs share with the tag `share` (torito::fs; mount it with
# fs.share=share:/PATH, or it appears at /share). The FUSE server is Debian's virtiofsd
# (qemu-system-common), started here and stopped when QEMU ends:
#   -o source=DIR       the directory served
#   -o cache=none       no guest-side caching promises: every read and write reaches DIR,
#                       so the host sees a guest's write at once (and the reverse)
#   -o sandbox=chroot   chroot into DIR (the default, namespaces, needs more privilege
#                       than a container or CI runner may have)
#   -o xattr off, -o no_posix_lock: nothing the guest uses
if [ -n "$share" ]; then
    "$virtiofsd" --socket-path="$work/virtiofsd.sock" -o source="$(cd "$share" && pwd)" \
        -o cache=none -o sandbox=chroot -o no_posix_lock -o no_xattr \
        >"$work/virtiofsd.log" 2>&1 &
    virtiofsd_pid=$!
    for _ in $(seq 100); do [ -S "$work/virtiofsd.sock" ] && break; sleep 0.05; done
    [ -S "$work/virtiofsd.sock" ] || {
        cat "$work/virtiofsd.log" >&2; echo "run.sh: virtiofsd did not start" >&2; exit 2; }
    # vhost-user: virtiofsd maps guest RAM itself, so RAM must be shareable memory
    # (memfd, share=on) and be the machine's memory (as for --vsock; one object serves both).
    if [ -z "$vsock_cid" ]; then
        args+=(-object "memory-backend-memfd,id=mem,size=$mem,share=on")
        args[1]+=",memory-backend=mem"
    fi
    args+=(-chardev "socket,id=fs0,path=$work/virtiofsd.sock")
    # queue-size=128: the driver's request queue (virtio/src/fs/device.rs).
    if [ "$machine" = microvm ]; then
        # virtio-fs is a modern-only device: on QEMU's default legacy virtio-mmio its
        # vhost start fails (EINVAL). Modern (version 2) virtio-mmio for every device of
        # the machine; Torito drives both versions.
        args+=(-global virtio-mmio.force-legacy=false)
        args+=(-device "vhost-user-fs-device,chardev=fs0,tag=share,queue-size=128")   # virtio-mmio transport
    else
        args+=(-device "vhost-user-fs-pci,chardev=fs0,tag=share,queue-size=128$pci_options")   # virtio-pci transport
    fi
fi

# --disk FILE[,ro] (repeatable): a virtio-blk device over the raw image FILE, for
# torito::block. The kernel numbers disks in discovery order, which on every machine here
# is the order of the --disk options (microvm fills its slots from the last one down, and
# discovery walks them that way).
index=0
for disk in ${disks[@]+"${disks[@]}"}; do
    file=${disk%,ro} readonly=off
    [ "$file" != "$disk" ] && readonly=on
    [ -f "$file" ] || { echo "run.sh: --disk: no file at $file" >&2; exit 2; }
    # if=none: a backend only, attached by the -device below. format=raw: no probing (QEMU
    # refuses writes to sector 0 of a probed raw image). readonly=on: QEMU opens the file
    # read-only and the device offers VIRTIO_BLK_F_RO. The default cache mode (writeback)
    # gives the device a write cache, so the guest's flushes reach the host's fsync.
    args+=(-drive "file=$file,if=none,id=disk$index,format=raw,readonly=$readonly")
    if [ "$machine" = microvm ]; then
        args+=(-device "virtio-blk-device,drive=disk$index")   # virtio-mmio transport
    else
        args+=(-device "virtio-blk-pci,drive=disk$index$pci_options")   # virtio-pci transport
    fi
    index=$((index + 1))
done

# --console-port PATH: a virtio-console device (torito::console::port) whose port 0 is a
# Unix socket at PATH. QEMU listens there (server=on) without waiting for a client before
# starting the guest (wait=off); a host program connects whenever it likes
# (`nc -U PATH`), and bytes the guest writes while none is connected are dropped.
if [ -n "$console_port" ]; then
    args+=(-chardev "socket,id=port0,path=$console_port,server=on,wait=off")
    # max_ports=1: one port, so QEMU does not offer MULTIPORT (no control queue).
    if [ "$machine" = microvm ]; then
        args+=(-device virtio-serial-device,max_ports=1)   # virtio-mmio transport
    else
        args+=(-device "virtio-serial-pci,max_ports=1$pci_options")   # virtio-pci transport
    fi
    # A console port (port 0, the only one a driver without MULTIPORT sees) on that chardev.
    args+=(-device virtconsole,chardev=port0)
fi

# --qmp PATH: QEMU's machine protocol (QMP) on a Unix socket at PATH, so that a test or a
# user can drive the VM from outside: `system_powerdown` presses the ACPI power button,
# `send-key` types (ctrl-alt-delete). QEMU listens (server=on) without waiting for a
# client before it starts the guest (wait=off).
if [ -n "$qmp" ]; then
    rm -f "$qmp"
    args+=(-qmp "unix:$qmp,server=on,wait=off")
fi

if [ "$boot" = pvh ]; then
    # QEMU's -kernel loads an ELF through its PVH note (on every machine type).
    args+=(-kernel "$image")
    [ -n "$append" ] && args+=(-append "$append")
elif [ "$boot" = xen ]; then
    case $image in *[,\ ]*) echo "run.sh: --boot xen: the image path must have no comma or space" >&2; exit 2 ;; esac
    # Xen is the multiboot1 kernel; the image is its first module, and the text after
    # the module's path is dom0's command line (a comma would end the module: doubled).
    args+=(-kernel "$xen" -initrd "$image ${append//,/,,}")
    # dom0=pvh: the image runs as a PVH dom0 (Xen 4.17 hands it a version-0 start_info,
    # without a memory map). dom0-iommu=none: QEMU's q35 has no IOMMU to give Xen.
    # console=com1: Xen's console on COM1, where dom0's console_io output goes too.
    # bootscrub=false: Xen would otherwise clear its free RAM in the background on idle
    # CPUs, which under the emulator competes with the guest for seconds.
    args+=(-append "dom0=pvh dom0-iommu=none console=com1 dom0_max_vcpus=$smp dom0_mem=$dom0_mem bootscrub=false ${TORITO_XEN_ARGS:-}")
else
    command -v grub-mkrescue >/dev/null || {
        echo "run.sh: grub-mkrescue not found; install: apt-get install -y grub-pc-bin grub-common xorriso mtools" >&2; exit 2; }
    mkdir -p "$work/iso/boot/grub"
    cp "$image" "$work/iso/boot/torito.elf"
    cat > "$work/iso/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
menuentry "torito" {
    multiboot2 /boot/torito.elf $append
    boot
}
CFG
    grub-mkrescue -o "$work/torito.iso" "$work/iso" >"$work/grub.log" 2>&1 || {
        cat "$work/grub.log" >&2; echo "run.sh: grub-mkrescue failed" >&2; exit 2; }
    # Boot the ISO from the CD-ROM drive ("d"), through SeaBIOS and GRUB.
    args+=(-drive "file=$work/torito.iso,media=cdrom,format=raw,readonly=on" -boot d)
fi

set +e
qemu-system-x86_64 "${args[@]}"
status=$?
set -e
code=$({ grep -ao 'torito: exit([0-9]*)' "$log" || true; } | tail -n 1 | tr -dc '0-9')
if [ -n "$code" ]; then
    exit "$code"
fi
echo "run.sh: QEMU ended (status $status) without an exit line from the guest" >&2
exit 124
