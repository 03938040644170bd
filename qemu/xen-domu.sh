#!/usr/bin/env bash
# A Xen PVH domU under a Debian Linux dom0, all under QEMU's emulator: the deployment
# Xen users run, with Xen's own tools (xl, xenstored, xenconsoled) and Linux's netback.
#
# usage: qemu/xen-domu.sh fetch
#        qemu/xen-domu.sh run (IMAGE | --linux) [--cmdline ARGS] [--wait TEXT]
#                         [--rounds N] [--reboot] [--vcpus N] [--mem MIB]
#                         [--timeout SECONDS] [--xl 'KEY = VALUE']...
#
# fetch: downloads (apt-get download, never installed) and unpacks Debian 12's regular
#   kernel (linux-image-amd64's, which has CONFIG_XEN_DOM0; the cloud kernel lacks it),
#   xen-utils-4.17, xen-utils-common, xenstore-utils and the Xen libraries they load,
#   and, for the baseline domU, the cloud kernel (linux-image-cloud-amd64's) and
#   busybox-static, into a cache directory beside qemu/xen.sh's hypervisor; runs depmod.
# run: boots Xen (qemu/xen.sh) on q35 under TCG with that kernel as a PV dom0 whose
#   initramfs (qemu/xen-domu/dom0-init.sh as /init) starts xenstored and xenconsoled,
#   a bridge xenbr0 at 10.0.0.1/24 and then `xl create` a PVH domU named "domu":
#     IMAGE        a Torito image (build/*.elf) as the domU's kernel, ARGS its command
#                  line; its address on the bridge is 10.0.0.2/24.
#     --linux      the baseline instead: Debian's cloud kernel (CONFIG_XEN_PVH) with a
#                  busybox initramfs running bench/net/echo.c on 10.0.0.2:5555.
#     --wait TEXT  with --rounds N: once the domU's console shows TEXT, dom0 makes N
#                  round trips of 64 bytes to 10.0.0.2:5555 (qemu/xen-domu/rtt.c), then
#                  shuts the domU down (xl shutdown when it listens on xenstore's
#                  control/shutdown, else xl destroy).
#     --reboot     with --rounds N: after the probe, `xl reboot` (control/shutdown =
#                  reboot; the domU must say control/feature-reboot = 1), wait for TEXT
#                  a second time (xl create -F restarts the domU: on_reboot = "restart"
#                  with this option, "destroy" without), probe again, then shut it down.
#     --vcpus N    the domU's vCPUs (1); --mem MIB its memory (32; 128 for --linux)
#     --timeout S  dom0 destroys a domU still running after S seconds (240)
#     --xl LINE    one more line for the domU's xl config (e.g. 'acpi = 0'), after ours
#   Everything comes out on stdout: Xen's and dom0's console, the domU's console lines
#   prefixed "domu: ", dom0's own lines prefixed "dom0: ", among them
#   "dom0: rtt: N rounds of 64 bytes, median M us, ..." and "dom0: domU end: poweroff"
#   (or reboot, crash, unknown), a line for each domain xl watched (two with --reboot),
#   then all in order: "dom0: domU ends, in order: reboot, poweroff". Exit status: dom0's (0 when every step it took worked,
#   1 when the probe or the wait failed or the timeout struck, 2 when a domU without a
#   probe ended other than by powering off, 3 when a Xen daemon did not start), 124 when
#   QEMU ended without it. A crashed domU is kept long enough to show its vCPU (xenctx).
#
# A whole run takes 10-25 s under TCG here with a Torito image, 18-76 s with --linux
# (docs/xen.md, "Running a domU").
# TORITO_XEN_DOMU_CACHE=DIR keeps the packages elsewhere.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${TORITO_XEN_DOMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/torito/xen-domu}
build=$root/build/xen-domu
# Xen's libraries xl, xenstored and xenconsoled load (the rest of what ldd names is in
# every Debian 12: libc, zlib, liblzma, libzstd, libuuid).
packages=(xen-utils-4.17 xen-utils-common xenstore-utils libxencall1 libxenevtchn1
          libxenforeignmemory1 libxengnttab1 libxenmisc4.17 libxenstore4 libxentoollog1
          libyajl2 libxendevicemodel1 libxenhypfs1 libxentoolcore1)

usage() { sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# The version of the kernel unpacked under DIR (the one directory in DIR/lib/modules).
kernel_version() { ls "$1/lib/modules" 2>/dev/null | head -n 1; }

# kernel_package FLAVOUR: the versioned package Debian's linux-image-FLAVOUR points at.
kernel_package() {
    apt-cache depends "linux-image-$1" 2>/dev/null | awk '/Depends: linux-image-6/ {print $2; exit}'
}

# unpack DIR PACKAGE...: downloads PACKAGEs and unpacks them into $cache/DIR (replacing it
# whole, through a temporary directory, so a run never sees half of it), runs depmod for
# the kernel among them, and marks it done ($cache/DIR.done).
unpack() {
    local dir=$1 work; shift
    work=$(mktemp -d "$cache/.fetch.XXXXXX")
    (cd "$work" && apt-get download -q "$@" >/dev/null 2>"$work/apt.log") || {
        cat "$work/apt.log" >&2; echo "xen-domu.sh: apt-get download $* failed" >&2; exit 2; }
    mkdir "$work/tree"
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/tree"; done
    # Debian's packages leave modules.dep to depmod at install time.
    depmod -b "$work/tree" "$(kernel_version "$work/tree")"
    rm -rf "${cache:?}/$dir"
    mv "$work/tree" "$cache/$dir"
    rm -rf "$work"
    touch "$cache/$dir.done"
}

fetch() {
    [ -f "$cache/root.done" ] && [ -f "$cache/cloud.done" ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    [ -n "$(kernel_package amd64)" ] || $sudo apt-get update -qq
    local dom0 cloud
    dom0=$(kernel_package amd64)
    cloud=$(kernel_package cloud-amd64)
    [ -n "$dom0" ] && [ -n "$cloud" ] || {
        echo "xen-domu.sh: apt knows no linux-image-amd64 or linux-image-cloud-amd64" >&2; exit 2; }
    mkdir -p "$cache"
    if [ ! -f "$cache/root.done" ]; then
        echo "xen-domu.sh: downloading $dom0 and ${#packages[@]} Xen packages into $cache/root"
        unpack root "$dom0" "${packages[@]}"
    fi
    if [ ! -f "$cache/cloud.done" ]; then
        echo "xen-domu.sh: downloading $cloud and busybox-static into $cache/cloud"
        unpack cloud "$cloud" busybox-static
    fi
}

# stale OUTPUT INPUT...: true when OUTPUT is missing or older than an input.
stale() {
    local target=$1; shift
    [ -f "$target" ] || return 0
    for input in "$@"; do [ "$input" -nt "$target" ] && return 0; done
    return 1
}

# static NAME SOURCE: build/xen-domu/NAME from SOURCE, a static C program.
static() {
    stale "$build/$1" "$2" || return 0
    gcc -O2 -Wall -static -o "$build/$1" "$2"
}

run() {
    local image="" linux=0 cmdline="" wait="" rounds=0 reboot=0 vcpus=1 mem="" timeout=240 xl=()
    while [ $# -gt 0 ]; do
        case $1 in
            --linux) linux=1; shift ;;
            --cmdline) cmdline=${2?}; shift 2 ;;
            --wait) wait=${2?}; shift 2 ;;
            --rounds) rounds=${2?}; shift 2 ;;
            --reboot) reboot=1; shift ;;
            --vcpus) vcpus=${2?}; shift 2 ;;
            --mem) mem=${2?}; shift 2 ;;
            --timeout) timeout=${2?}; shift 2 ;;
            --xl) xl+=("${2?}"); shift 2 ;;
            -*) echo "xen-domu.sh: unknown option $1" >&2; usage ;;
            *) [ -z "$image" ] || usage; image=$1; shift ;;
        esac
    done
    [ $linux -eq 1 ] || [ -n "$image" ] || usage
    [ $linux -eq 0 ] || [ -z "$image" ] || usage
    [ -z "$image" ] || [ -f "$image" ] || { echo "xen-domu.sh: no image at $image" >&2; exit 2; }
    case $rounds$vcpus$timeout${mem:-0} in *[!0-9]*) echo "xen-domu.sh: --rounds, --vcpus, --mem and --timeout take numbers" >&2; exit 2 ;; esac
    [ "$rounds" -eq 0 ] || [ -n "$wait" ] || { echo "xen-domu.sh: --rounds needs --wait TEXT (the domU's ready line)" >&2; exit 2; }
    [ "$reboot" -eq 0 ] || [ "$rounds" -gt 0 ] || { echo "xen-domu.sh: --reboot needs --wait TEXT --rounds N (the probe before and after)" >&2; exit 2; }
    [ -f "$cache/root.done" ] && [ -f "$cache/cloud.done" ] || { echo "xen-domu.sh: no dom0 packages; run: qemu/xen-domu.sh fetch (make setup does)" >&2; exit 2; }
    local xen
    xen=$("$here/xen.sh" path)
    [ -f "$xen" ] || { echo "xen-domu.sh: no Xen at $xen; run: qemu/xen.sh fetch" >&2; exit 2; }

    mkdir -p "$build"
    static rtt "$here/xen-domu/rtt.c"
    static qemu-exit "$here/xen-domu/qemu-exit.c"
    local version dom0 guest cfg
    version=$(kernel_version "$cache/root")
    dom0=$build/dom0.cpio.gz
    if stale "$dom0" "$here/xen-domu/dom0-init.sh" "$here/xen-domu/initramfs.py" \
            "$here/xen-domu/vif-busybox" "$build/rtt" "$build/qemu-exit" "$cache/root.done"; then
        python3 "$here/xen-domu/initramfs.py" dom0 "$dom0" "$cache/root" "$version" \
            "$here/xen-domu/dom0-init.sh" --busybox "$cache/cloud/bin/busybox" \
            --file "bin/rtt=$build/rtt" --file "bin/qemu-exit=$build/qemu-exit" \
            --file "etc/xen/scripts/vif-busybox=$here/xen-domu/vif-busybox"
    fi

    # The domU: its config and files, in a second archive after dom0's.
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    cfg=$work/domu.cfg
    local files=(--file "etc/xen/domu.cfg=$cfg")
    if [ $linux -eq 1 ]; then
        local cloud="$cache/cloud/boot/vmlinuz-$(kernel_version "$cache/cloud")"
        static echod "$root/bench/net/echo.c"
        if stale "$build/linux-domu.cpio.gz" "$here/xen-domu/linux-domu-init.sh" "$build/echod" "$cache/cloud.done"; then
            python3 "$root/bench/linux/initramfs.py" "$build/linux-domu.cpio.gz" \
                "$here/xen-domu/linux-domu-init.sh" --busybox "$cache/cloud/bin/busybox" \
                --modules "$cache/cloud/lib/modules/$(kernel_version "$cache/cloud")" xen-netfront \
                --file "bin/echod=$build/echod"
        fi
        files+=(--file "domu/kernel=$cloud" --file "domu/initrd=$build/linux-domu.cpio.gz")
        cat >"$cfg" <<CFG
type = "pvh"
name = "domu"
kernel = "/domu/kernel"
ramdisk = "/domu/initrd"
cmdline = "console=hvc0 quiet $cmdline"
memory = ${mem:-128}
# One run in three, the static echo server died of an invalid opcode on glibc's AVX2
# string code (vmovd) under Xen under TCG: without AVX glibc takes its SSE2 paths.
cpuid = "host,avx=0,avx2=0"
CFG
    else
        # Symbols for xenctx's view of a crashed domU (System.map's format).
        nm -n "$image" 2>/dev/null | grep -i ' [tw] ' >"$work/symbols" || true
        files+=(--file "domu/kernel=$image" --file "domu/symbols=$work/symbols")
        cat >"$cfg" <<CFG
type = "pvh"
name = "domu"
kernel = "/domu/kernel"
cmdline = "ip=10.0.0.2/24 $cmdline"
memory = ${mem:-32}
CFG
    fi
    cat >>"$cfg" <<CFG
vcpus = $vcpus
CFG
    # Xen has two CPUs (QEMU's -smp 2); dom0's one vCPU is pinned to CPU 0
    # (dom0_vcpus_pin). A one-vCPU domU goes on CPU 1, so the two sides of a round trip
    # do not queue for one CPU; more vCPUs may use both.
    [ "$vcpus" -ne 1 ] || echo 'cpus = "1"' >>"$cfg"
    cat >>"$cfg" <<CFG
vif = [ "bridge=xenbr0,script=vif-busybox" ]
# Xen traps the TSC of a CPU that does not promise an invariant one (QEMU's -cpu max
# does not), and QEMU's SVM reports a trapped RDTSCP as RDTSC, which Xen then fails to
# decode and crashes the domU on: keep the TSC native.
tsc_mode = "native"
on_poweroff = "destroy"
on_crash = "preserve"
CFG
    # A reboot ends the domain unless --reboot asks for the restart xl does by default:
    # a triple fault is a reboot to Xen too, and a reset loop would hide the failure.
    if [ $reboot -eq 1 ]; then
        echo 'on_reboot = "restart"' >>"$cfg"
    else
        echo 'on_reboot = "destroy"' >>"$cfg"
    fi
    [ ${#xl[@]} -eq 0 ] || printf '%s\n' "${xl[@]}" >>"$cfg"
    python3 "$here/xen-domu/initramfs.py" guest "$work/guest.cpio.gz" "${files[@]}"
    cat "$dom0" "$work/guest.cpio.gz" >"$work/initrd"

    local append="console=hvc0 xendomu.rounds=$rounds xendomu.timeout=$timeout xendomu.reboot=$reboot xendomu.wait=${wait// /+}"
    local status=0
    qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1G -machine q35 -nographic \
        -no-reboot \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -kernel "$xen" \
        -append "smap=0 smep=0 console=com1 com1=115200,8n1 dom0_mem=512M,max:512M dom0_max_vcpus=1 dom0_vcpus_pin loglvl=all guest_loglvl=all" \
        -initrd "$cache/root/boot/vmlinuz-$version ${append//,/,,},$work/initrd" || status=$?
    # isa-debug-exit: (STATUS << 1) | 1.
    [ $((status & 1)) -eq 1 ] && exit $((status >> 1))
    echo "xen-domu.sh: QEMU ended (status $status) without dom0's status" >&2
    exit 124
}

case ${1:-} in
    fetch) fetch ;;
    run) shift; run "$@" ;;
    *) usage ;;
esac
