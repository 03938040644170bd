#!/usr/bin/env bash
# The networking bench: Torito's echo (build/echo.elf) against a Linux guest running a
# small C echo server (bench/net/echo.c), both on microvm, 1 vCPU, virtio-net-device and
# QEMU user networking, measured by the same client (bench/net/client.py). A report, not
# a test: nothing passes or fails on a number, and the numbers are noisy.
#
# usage: bench/net/run.sh        (bench/run.sh calls it; needs build/echo.elf)
#   REPS=N          interleaved measuring rounds (default 3; medians are reported)
#   MEM=SIZE        -m for both guests (default 128M; Debian's cloud kernel needs
#                   more than 64M to boot: 64M hangs, 72M works)
#   MEM_CANDIDATES  the --mem values tried for echo (default 1M,1536K,2M,3M,4M,6M,8M,16M;
#                   every one is tried, so a size that fails above one that works shows)
#   CLIENT_ARGS     extra client.py options, e.g. "--round-trips 5000 --bulk-mib 16"
#   LINUX_APPEND    more Linux kernel arguments, e.g. "mitigations=off" (default: none, a
#                   stock Debian cloud kernel as a distribution ships it)
#   TORITO_ACCEL    kvm or tcg; otherwise chosen as qemu/run.sh does
#
# The Linux guest: Debian's linux-image-cloud-amd64 kernel and an initramfs built here
# (bench/net/mkinitramfs.py: busybox-static, the virtio modules, echo.c compiled with
# gcc -O2 -static, bench/net/init.sh as /init), cached in build/bench/.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/net
echo_elf=$root/build/echo.elf
out=$root/build/bench
mkdir -p "$out"

[ -f "$echo_elf" ] || { echo "bench/net: no $echo_elf: run 'make images' first" >&2; exit 2; }
for tool in gcc objcopy readelf python3 qemu-system-x86_64; do
    command -v "$tool" >/dev/null || {
        echo "bench/net: $tool not found (apt-get install -y gcc binutils python3 qemu-system-x86)" >&2; exit 2; }
done

# --- The Linux guest's packages ----------------------------------------------------------
newest_kernel() { ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1; }
static_busybox() { [ -x /bin/busybox ] && ! readelf -l /bin/busybox 2>/dev/null | grep -q 'program interpreter'; }
if [ -z "$(newest_kernel)" ] || ! static_busybox; then
    packages="linux-image-cloud-amd64 busybox-static"
    if [ "$(id -u)" -eq 0 ]; then
        echo "bench/net: installing $packages (the Linux guest's kernel and busybox)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q $packages >"$out/apt.log" 2>&1 || {
            apt-get update -q >>"$out/apt.log" 2>&1
            apt-get install -y -q $packages >>"$out/apt.log" 2>&1; } || {
            tail -n 20 "$out/apt.log" >&2; echo "bench/net: apt-get install failed" >&2; exit 2; }
    else
        echo "bench/net: the Linux guest needs Debian packages; run: sudo apt-get install -y $packages" >&2
        exit 2
    fi
fi
kernel=$(newest_kernel)
version=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$version" ] || { echo "bench/net: no /lib/modules/$version for $kernel" >&2; exit 2; }

# --- Build (cached in build/bench/; rebuilt when an input is newer) -----------------------
stale() {  # stale OUTPUT INPUT...: true when OUTPUT is missing or older than an input
    local target=$1; shift
    [ -f "$target" ] || return 0
    for input in "$@"; do [ "$input" -nt "$target" ] && return 0; done
    return 1
}
if stale "$out/echod" "$here/echo.c"; then
    gcc -O2 -static -Wall -o "$out/echod" "$here/echo.c"
fi
initramfs=$out/linux-$version.cpio.gz
if stale "$initramfs" "$out/echod" "$here/init.sh" "$here/init-common.sh" "$here/mkinitramfs.py" \
        /bin/busybox "/lib/modules/$version/modules.dep"; then
    # The cloud kernel builds virtio, virtio_mmio and virtio_net as modules; the script
    # adds their dependencies from modules.dep and leaves out any that are built in.
    python3 "$here/mkinitramfs.py" "$initramfs" "$here/init.sh" /bin/busybox "$out/echod" \
        --modules "/lib/modules/$version" virtio_mmio virtio_net
fi

# --- The accelerator: qemu/run.sh's choice, so the Linux guest gets the same -----------
accel=$("$root/qemu/run.sh" --which-accel)
tsc_khz=""
if [ "$accel" = tcg ]; then
    stale "$out/tsc_khz" "$here/tsc_khz.c" && gcc -O2 -o "$out/tsc_khz" "$here/tsc_khz.c"
    tsc_khz=$("$out/tsc_khz")
fi

# A copy, so a rebuild of build/echo.elf during the bench cannot mix two images.
cp "$echo_elf" "$out/echo.elf"

echo "networking bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel; Linux guest: $version)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
echo

# --- Sizes -------------------------------------------------------------------------------
# build/echo.elf keeps its symbol table (for backtraces); the size target counts it stripped.
bytes=$(stat -c %s "$out/echo.elf")
objcopy --strip-all "$out/echo.elf" "$out/echo.stripped"
stripped=$(stat -c %s "$out/echo.stripped")
printf 'echo image: %d bytes stripped (%d.%d KiB); %d with its symbol table, as built\n' \
    "$stripped" $((stripped / 1024)) $((stripped % 1024 * 10 / 1024)) "$bytes"
kbytes=$(stat -c %s "$kernel") ibytes=$(stat -c %s "$initramfs")
printf 'Linux guest, for scale:  kernel %d KiB + initramfs %d KiB (gzip; echod %d KiB static)\n' \
    $((kbytes / 1024)) $((ibytes / 1024)) $(($(stat -c %s "$out/echod") / 1024))
echo

# --- Boot both, measure interleaved, then the memory sweep ---------------------------------
python3 "$here/bench.py" --torito "$out/echo.elf" --kernel "$kernel" --initrd "$initramfs" \
    --echod "$out/echod" --out "$out" --mem "${MEM:-128M}" --accel "$accel" --tsc-khz "$tsc_khz" \
    --reps "${REPS:-3}" --mem-candidates "${MEM_CANDIDATES:-1M,1536K,2M,3M,4M,6M,8M,16M}" \
    --client-args "${CLIENT_ARGS:-}" --linux-append "${LINUX_APPEND:-}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
