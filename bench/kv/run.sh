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
# modules; bench/linux/initramfs.py), with Debian's redis-server and the shared
# libraries it links (from ldd) added, and bench/kv/init.sh as /init. Cached in
# build/bench/.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/kv
kv_elf=$root/build/kv.elf
out=$root/build/bench
mkdir -p "$out"

# shellcheck source=bench/linux/guest.sh
. "$root/bench/linux/guest.sh"
bench_needs kv "$kv_elf" gcc objcopy readelf ldd python3 qemu-system-x86_64

# --- The packages: the Linux guest's kernel and busybox, redis-server, redis-benchmark --
# (Installing redis-server starts its service on the host's port 6379; the bench uses
# free ports and does not need it, but leaves it as the package set it up.)
# shellcheck disable=SC2046  # the package names are words
linux_install kv $(linux_missing <<'EOF'
redis-server [ -x /usr/bin/redis-server ]
redis-tools command -v redis-benchmark
EOF
)

# --- The initramfs (cached; rebuilt when an input is newer) and the accelerator ---------
# redis-server and every library ldd names (the dynamic loader included), each at the
# path the loader looks for it.
initramfs=$out/linux-$version-redis.cpio.gz
linux_initramfs "$initramfs" "$here/init.sh" --program "bin/redis-server=$(readlink -f /usr/bin/redis-server)" \
    --modules "/lib/modules/$version" virtio_mmio virtio_net
linux_accel

# A copy, so a rebuild of build/kv.elf during the bench cannot mix two images.
cp "$kv_elf" "$out/kv.elf"

echo "kv bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel; Linux guest: $version, $(redis-server --version | cut -d' ' -f1-3))"
load_average before
echo

# --- Sizes -------------------------------------------------------------------------------
image_size kv "$out/kv.elf"
kbytes=$(stat -c %s "$kernel") ibytes=$(stat -c %s "$initramfs")
printf 'Linux guest, for scale:  kernel %d KiB + initramfs %d KiB (gzip; redis-server and its libraries)\n' \
    $((kbytes / 1024)) $((ibytes / 1024))
echo

python3 "$here/bench.py" --torito "$out/kv.elf" --kernel "$kernel" --initrd "$initramfs" \
    --out "$out" --mem "${MEM:-128M}" --accel "$accel" --tsc-khz "$tsc_khz" \
    --reps "${REPS:-3}" --requests "${REQUESTS:-10000}" --pipelined-requests "${PIPELINED:-100000}" \
    --mem-candidates "${MEM_CANDIDATES:-1280K,1536K,2M,3M,4M,8M}" --linux-append "${LINUX_APPEND:-}"
load_average after
