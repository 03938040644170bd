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
# (bench/linux/initramfs.py: busybox-static, the virtio modules, echo.c compiled with
# gcc -O2 -static, bench/net/init.sh as /init), cached in build/bench/; what the benches'
# Linux guests share is in bench/linux/.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/net
echo_elf=$root/build/echo.elf
out=$root/build/bench
mkdir -p "$out"

# shellcheck source=bench/linux/guest.sh
. "$root/bench/linux/guest.sh"
bench_needs net "$echo_elf" gcc objcopy readelf python3 qemu-system-x86_64

# --- The Linux guest: packages, echod, initramfs (cached in build/bench/), accelerator ----
# shellcheck disable=SC2046  # the package names are words
linux_install net $(linux_missing </dev/null)
if stale "$out/echod" "$here/echo.c"; then
    gcc -O2 -static -Wall -o "$out/echod" "$here/echo.c"
fi
initramfs=$out/linux-$version.cpio.gz
# The cloud kernel builds virtio, virtio_mmio and virtio_net as modules; the builder adds
# their dependencies from modules.dep and leaves out any that are built in.
linux_initramfs "$initramfs" "$here/init.sh" --file "bin/echod=$out/echod" \
    --modules "/lib/modules/$version" virtio_mmio virtio_net
linux_accel

# A copy, so a rebuild of build/echo.elf during the bench cannot mix two images.
cp "$echo_elf" "$out/echo.elf"

echo "networking bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel; Linux guest: $version)"
load_average before
echo

# --- Sizes -------------------------------------------------------------------------------
image_size echo "$out/echo.elf"
kbytes=$(stat -c %s "$kernel") ibytes=$(stat -c %s "$initramfs")
printf 'Linux guest, for scale:  kernel %d KiB + initramfs %d KiB (gzip; echod %d KiB static)\n' \
    $((kbytes / 1024)) $((ibytes / 1024)) $(($(stat -c %s "$out/echod") / 1024))
echo

# --- Boot both, measure interleaved, then the memory sweep ---------------------------------
python3 "$here/bench.py" --torito "$out/echo.elf" --kernel "$kernel" --initrd "$initramfs" \
    --echod "$out/echod" --out "$out" --mem "${MEM:-128M}" --accel "$accel" --tsc-khz "$tsc_khz" \
    --reps "${REPS:-3}" --mem-candidates "${MEM_CANDIDATES:-1M,1536K,2M,3M,4M,6M,8M,16M}" \
    --client-args "${CLIENT_ARGS:-}" --linux-append "${LINUX_APPEND:-}"
load_average after
