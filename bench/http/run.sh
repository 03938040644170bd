#!/usr/bin/env bash
# The HTTP bench: examples/http (build/http.elf) against Debian's nginx in a Linux guest,
# both on microvm, virtio-net-device and QEMU user networking, at 1 vCPU and at 2, served
# the same 612-byte page (examples/http/src/index.html) and measured by the same client,
# wrk, on GET / at 1 and 8 connections. A report, not a test: nothing passes or fails on
# a number, and the numbers are noisy.
#
# usage: bench/http/run.sh       (bench/run.sh calls it; needs build/http.elf)
#   REPS=N          interleaved rounds (default 3; medians are reported)
#   DURATION=S      seconds per wrk run (default 10)
#   SMP=LIST        vCPU counts, comma-separated (default 1,2)
#   MEM=SIZE        -m for both guests (default 256M)
#   TORITO_ACCEL    kvm or tcg; otherwise chosen as qemu/run.sh does
#
# The Linux guest: Debian's linux-image-cloud-amd64 kernel and an initramfs built here
# (bench/http/mkinitramfs.py: bench/net's busybox and virtio modules, plus Debian's
# nginx with its libraries, bench/http/nginx.conf and bench/http/init.sh as /init),
# cached in build/bench/. wrk and nginx come from Debian (wrk, nginx-light): installed
# when run as root, else the missing ones are named.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/http
http_elf=$root/build/http.elf
page=$root/examples/http/src/index.html
out=$root/build/bench
mkdir -p "$out"

[ -f "$http_elf" ] || { echo "bench/http: no $http_elf: run 'make images' first" >&2; exit 2; }

newest_kernel() { ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1; }
static_busybox() { [ -x /bin/busybox ] && ! readelf -l /bin/busybox 2>/dev/null | grep -q 'program interpreter'; }
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -n "$(newest_kernel)" ] || missing+=(linux-image-cloud-amd64)
static_busybox || missing+=(busybox-static)
for tool in python3 qemu-system-x86_64 readelf ldd; do
    command -v "$tool" >/dev/null || missing+=("($tool)")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && ! printf '%s\n' "${missing[@]}" | grep -q '^('; then
        echo "bench/http: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "${missing[@]}" >"$out/apt-http.log" 2>&1 || {
            apt-get update -q >>"$out/apt-http.log" 2>&1
            apt-get install -y -q "${missing[@]}" >>"$out/apt-http.log" 2>&1; } || {
            tail -n 20 "$out/apt-http.log" >&2; echo "bench/http: apt-get install failed" >&2; exit 2; }
    else
        echo "bench/http: missing ${missing[*]}; run: sudo apt-get install -y wrk nginx-light linux-image-cloud-amd64 busybox-static python3 qemu-system-x86 binutils" >&2
        exit 2
    fi
fi
kernel=$(newest_kernel)
version=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$version" ] || { echo "bench/http: no /lib/modules/$version for $kernel" >&2; exit 2; }

stale() {  # stale OUTPUT INPUT...: true when OUTPUT is missing or older than an input
    local target=$1; shift
    [ -f "$target" ] || return 0
    for input in "$@"; do [ "$input" -nt "$target" ] && return 0; done
    return 1
}
initramfs=$out/linux-$version-nginx.cpio.gz
if stale "$initramfs" "$here/init.sh" "$here/nginx.conf" "$here/mkinitramfs.py" "$page" \
        "$root/bench/net/mkinitramfs.py" "$root/bench/net/init-common.sh" /usr/sbin/nginx \
        /bin/busybox "/lib/modules/$version/modules.dep"; then
    python3 "$here/mkinitramfs.py" "$initramfs" "$here/init.sh" /bin/busybox /usr/sbin/nginx \
        "$here/nginx.conf" "$page" --modules "/lib/modules/$version" virtio_mmio virtio_net
fi

accel=$("$root/qemu/run.sh" --which-accel)
tsc_khz=""
if [ "$accel" = tcg ]; then
    stale "$out/tsc_khz" "$root/bench/net/tsc_khz.c" && gcc -O2 -o "$out/tsc_khz" "$root/bench/net/tsc_khz.c"
    tsc_khz=$("$out/tsc_khz")
fi

# A copy, so a rebuild of build/http.elf during the bench cannot mix two images.
cp "$http_elf" "$out/http.elf"
echo "HTTP bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel; Linux guest: $version, $(/usr/sbin/nginx -v 2>&1))"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
python3 "$here/bench.py" --torito "$out/http.elf" --kernel "$kernel" --initrd "$initramfs" \
    --out "$out" --mem "${MEM:-256M}" --accel "$accel" --tsc-khz "$tsc_khz" \
    --reps "${REPS:-3}" --duration "${DURATION:-10}" --smp "${SMP:-1,2}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
