#!/usr/bin/env bash
# Runs a Torito image in QEMU and exits with the guest's exit(code).
#
# usage: qemu/run.sh IMAGE [--machine microvm|q35|pc] [--boot pvh|grub] [--smp N]
#                          [--mem SIZE] [--forward HOSTPORT:GUESTPORT]... [--append "ARGS"]
#                          [--accel kvm|tcg] [--acpi on|off] [--log FILE]
#                          [--exit-device on|off] [--trace-code FILE] [--rng] [--msix on|off]
#                          [--icount SHIFT] [--plugin LIBRARY,ARGS] [--console-port PATH]
#        qemu/run.sh --which-accel      (prints the accelerator it would pick, then exits)
#
# The accelerator is chosen here: hardware KVM only when the CPU has vmx/svm and
# /dev/kvm is usable; otherwise TCG. (The build machines' /dev/kvm is a software
# virtualizer that is slower than TCG and faults on SSE: see shared/PLATFORM.md.)
# TORITO_ACCEL=kvm|tcg or --accel overrides the choice.
#
# Exit status: the guest's exit code (the kernel prints "torito: exit(N)" and writes N to
# isa-debug-exit, whose QEMU status is (N << 1) | 1). 124 = QEMU ended with no exit line
# from the guest (it crashed, reset, or QEMU itself failed).
set -euo pipefail

usage() { sed -n '4,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

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
forwards=()
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
        --icount) icount=$2; shift 2 ;;
        --plugin) plugin=$2; shift 2 ;;
        --console-port) console_port=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown option $1" >&2; usage ;;
    esac
done
[ -f "$image" ] || { echo "run.sh: no image at $image (run 'make images')" >&2; exit 2; }
case $machine in microvm|q35|pc) ;; *) echo "run.sh: --machine must be microvm, q35 or pc" >&2; exit 2 ;; esac
case $boot in pvh|grub) ;; *) echo "run.sh: --boot must be pvh or grub" >&2; exit 2 ;; esac
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
command -v qemu-system-x86_64 >/dev/null || {
    echo "run.sh: qemu-system-x86_64 not found; install it: apt-get install -y qemu-system-x86" >&2; exit 2; }

[ -n "$accel" ] || accel=$(pick_accel)
case $accel in
    # -cpu host fails on MSR 0x10a (arch-capabilities) on some hosts; drop that bit.
    kvm) cpu="host,-arch-capabilities" ;;
    # TCG: the richest emulated CPU (TSC-deadline timer, invariant TSC, NX).
    tcg) cpu="max" ;;
    *) echo "run.sh: --accel must be kvm or tcg" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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

if [ ${#forwards[@]} -gt 0 ]; then
    netdev="user,id=net0"   # user-mode networking: guest 10.0.2.15, no host privileges
    for forward in "${forwards[@]}"; do
        host=${forward%%:*} guest=${forward##*:}
        netdev+=",hostfwd=tcp:127.0.0.1:$host-:$guest"
    done
    args+=(-netdev "$netdev")
    if [ "$machine" = microvm ]; then
        args+=(-device virtio-net-device,netdev=net0)   # virtio-mmio transport
    else
        args+=(-device "virtio-net-pci,netdev=net0$pci_options")   # virtio-pci transport
    fi
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

if [ "$boot" = pvh ]; then
    # QEMU's -kernel loads an ELF through its PVH note (on every machine type).
    args+=(-kernel "$image")
    [ -n "$append" ] && args+=(-append "$append")
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
