#!/usr/bin/env bash
# The kv bench: Torito's Redis-protocol store (build/kv.elf) against Debian's
# redis-server in a Linux guest, both on microvm, 1 vCPU, virtio-net-device and QEMU user
# networking, measured by the same client (redis-benchmark -t set,get at 1 and 8
# clients, without and with -P 16; bench/kv/bench.py). A report, not a test: nothing
# passes or fails on a number, and the numbers are noisy.
#
# usage: bench/kv/run.sh        (bench/run.sh calls it; needs build/kv.elf)
#   REPS=N            interleaved measuring rounds (default 3; medians are reported)
#   REQUESTS=N        redis-benchmark -n without pipelining (default 10000)
#   PIPELINED=N       redis-benchmark -n with -P 16 (default 100000)
#   MEM=SIZE          -m for both guests (default 128M, as bench/net)
#   MEM_CANDIDATES    the --mem values tried for kv (default 1280K,1536K,2M,3M,4M,8M)
#   LINUX_APPEND      more Linux kernel arguments (default: none)
#   TORITO_ACCEL      kvm or tcg; otherwise chosen as qemu/run.sh does
#
# The Linux guest: bench/net's (Debian's cloud kernel, busybox-static, the virtio
# modules; bench/net/mkinitramfs.py), with Debian's redis-server and the shared
# libraries it links (from ldd) added, and bench/kv/init.sh as /init. Cached in
# build/bench/.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/kv
net=$root/bench/net
kv_elf=$root/build/kv.elf
out=$root/build/bench
mkdir -p "$out"

[ -f "$kv_elf" ] || { echo "bench/kv: no $kv_elf: run 'make images' first" >&2; exit 2; }
for tool in gcc objcopy readelf ldd python3 qemu-system-x86_64; do
    command -v "$tool" >/dev/null || {
        echo "bench/kv: $tool not found (apt-get install -y gcc binutils python3 qemu-system-x86)" >&2; exit 2; }
done

# --- The packages: the Linux guest's kernel and busybox, redis-server, redis-benchmark --
newest_kernel() { ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1; }
static_busybox() { [ -x /bin/busybox ] && ! readelf -l /bin/busybox 2>/dev/null | grep -q 'program interpreter'; }
packages=""
[ -n "$(newest_kernel)" ] || packages="$packages linux-image-cloud-amd64"
static_busybox || packages="$packages busybox-static"
[ -x /usr/bin/redis-server ] || packages="$packages redis-server"
command -v redis-benchmark >/dev/null || packages="$packages redis-tools"
if [ -n "$packages" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "bench/kv: installing$packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q $packages >"$out/apt-kv.log" 2>&1 || {
            apt-get update -q >>"$out/apt-kv.log" 2>&1
            apt-get install -y -q $packages >>"$out/apt-kv.log" 2>&1; } || {
            tail -n 20 "$out/apt-kv.log" >&2; echo "bench/kv: apt-get install failed" >&2; exit 2; }
        # Installing redis-server starts its service on the host's port 6379; the bench
        # uses free ports and does not need it, but leaves it as the package set it up.
    else
        echo "bench/kv: needs Debian packages; run: sudo apt-get install -y$packages" >&2
        exit 2
    fi
fi
kernel=$(newest_kernel)
version=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$version" ] || { echo "bench/kv: no /lib/modules/$version for $kernel" >&2; exit 2; }

# --- The initramfs (cached; rebuilt when an input is newer) -----------------------------
stale() {  # stale OUTPUT INPUT...: true when OUTPUT is missing or older than an input
    local target=$1; shift
    [ -f "$target" ] || return 0
    for input in "$@"; do [ "$input" -nt "$target" ] && return 0; done
    return 1
}
redis=$(readlink -f /usr/bin/redis-server)
initramfs=$out/linux-$version-redis.cpio.gz
if stale "$initramfs" "$redis" "$here/init.sh" "$net/init-common.sh" "$net/mkinitramfs.py" \
        /bin/busybox "/lib/modules/$version/modules.dep"; then
    # redis-server and every library ldd names (the dynamic loader included), each at
    # the path the loader looks for it.
    files=("bin/redis-server=$redis")
    while read -r library; do
        files+=("${library#/}=$library")
    done < <(ldd "$redis" | grep -o '/[^ ]*' | sort -u)
    python3 "$net/mkinitramfs.py" "$initramfs" "$here/init.sh" /bin/busybox - \
        --modules "/lib/modules/$version" virtio_mmio virtio_net --files "${files[@]}"
fi

# --- The accelerator: qemu/run.sh's choice, so the Linux guest gets the same -----------
accel=$("$root/qemu/run.sh" --which-accel)
tsc_khz=""
if [ "$accel" = tcg ]; then
    stale "$out/tsc_khz" "$net/tsc_khz.c" && gcc -O2 -o "$out/tsc_khz" "$net/tsc_khz.c"
    tsc_khz=$("$out/tsc_khz")
fi

# A copy, so a rebuild of build/kv.elf during the bench cannot mix two images.
cp "$kv_elf" "$out/kv.elf"

echo "kv bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel; Linux guest: $version, $(redis-server --version | cut -d' ' -f1-3))"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
echo

# --- Sizes -------------------------------------------------------------------------------
bytes=$(stat -c %s "$out/kv.elf")
objcopy --strip-all "$out/kv.elf" "$out/kv.stripped"
stripped=$(stat -c %s "$out/kv.stripped")
printf 'kv image: %d bytes stripped (%d.%d KiB); %d with its symbol table, as built\n' \
    "$stripped" $((stripped / 1024)) $((stripped % 1024 * 10 / 1024)) "$bytes"
kbytes=$(stat -c %s "$kernel") ibytes=$(stat -c %s "$initramfs")
printf 'Linux guest, for scale:  kernel %d KiB + initramfs %d KiB (gzip; redis-server and its libraries)\n' \
    $((kbytes / 1024)) $((ibytes / 1024))
echo

python3 "$here/bench.py" --torito "$out/kv.elf" --kernel "$kernel" --initrd "$initramfs" \
    --out "$out" --mem "${MEM:-128M}" --accel "$accel" --tsc-khz "$tsc_khz" \
    --reps "${REPS:-3}" --requests "${REQUESTS:-10000}" --pipelined-requests "${PIPELINED:-100000}" \
    --mem-candidates "${MEM_CANDIDATES:-1280K,1536K,2M,3M,4M,8M}" --linux-append "${LINUX_APPEND:-}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
