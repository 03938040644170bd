#!/usr/bin/env bash
# The block bench: Torito's examples/block in bench mode (app.bench=1) against a Linux
# guest running bench/block/blockbench.c, on the same QEMU line: microvm, 1 vCPU, one
# virtio-blk-device over a raw image on the host (QEMU's default writeback cache, so the
# host's page cache serves both alike). Sequential write and read MiB/s (64 KiB requests,
# 32 in flight) and 4 KiB random-read IOPS at depth 1 and 32. A report, not a test:
# nothing passes or fails on a number, and the numbers are noisy.
#
# usage: bench/block/run.sh      (bench/run.sh calls it; needs build/block.elf)
#   REPS=N        interleaved rounds, Torito then Linux (default 3; medians reported)
#   DISK_MIB=N    the disk's size (default 64)
#   MEM=SIZE      -m for the Linux guest (default 128M; Debian's cloud kernel needs more
#                 than 64M); Torito runs in run.sh's default
#   TORITO_ACCEL  kvm or tcg; otherwise chosen as qemu/run.sh does
#
# Linux's requests in flight come from 32 threads doing O_DIRECT pread/pwrite (fio's
# "psync" with numjobs=32), not io_uring: under TCG its per-request CPU cost bounds its
# numbers at any depth.
#
# The Linux guest reuses the networking bench's pieces: Debian's linux-image-cloud-amd64
# and busybox-static (bench/net/run.sh installs them), bench/linux/ for the initramfs
# (with virtio_mmio and virtio_blk), the QEMU line and the TSC rate under TCG.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/block
out=$root/build/bench
mkdir -p "$out"
reps=${REPS:-3} disk_mib=${DISK_MIB:-64} mem=${MEM:-128M}

# shellcheck source=bench/linux/guest.sh
. "$root/bench/linux/guest.sh"
bench_needs block "$root/build/block.elf" gcc python3 qemu-system-x86_64
linux=yes
if ! linux_kernel || ! static_busybox; then
    echo "bench/block: no Debian cloud kernel or busybox for the Linux guest (bench/net/run.sh" \
         "installs them: linux-image-cloud-amd64 busybox-static); Torito alone"
    linux=no
fi
linux_accel
if [ "$linux" = yes ]; then
    stale "$out/blockbench" "$here/blockbench.c" &&
        gcc -O2 -static -pthread -Wall -o "$out/blockbench" "$here/blockbench.c"
    initramfs=$out/linux-block-$version.cpio.gz
    linux_initramfs "$initramfs" "$here/init.sh" --file "bin/blockbench=$out/blockbench" \
        --modules "/lib/modules/$version" virtio_mmio virtio_blk
fi

disk=$out/block-bench.img
rm -f "$disk"
truncate -s "${disk_mib}M" "$disk"
cp "$root/build/block.elf" "$out/block.elf"   # a rebuild during the bench cannot mix images

# The Linux guest: bench/linux/guest.sh's linux_qemu (qemu/run.sh's flags) with one --disk.
linux_guest() {
    timeout 900 bash -c "$(declare -f linux_qemu); accel=$accel cpu='$cpu' kernel='$kernel' \
        initramfs='$initramfs' linux_qemu microvm '$mem' '$append' \
        -drive 'file=$disk,if=none,id=disk0,format=raw,readonly=off' \
        -device virtio-blk-device,drive=disk0"
}
torito_guest() {
    timeout 900 "$root/qemu/run.sh" "$out/block.elf" --accel "$accel" --disk "$disk" \
        --append app.bench=1 </dev/null
}

echo "block bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel, ${disk_mib} MiB disk," \
     "$reps rounds; Linux guest: ${version:-none})"
load_average before
results=$out/block-bench.txt
: >"$results"
for round in $(seq "$reps"); do
    for guest in torito linux; do
        [ "$guest" = linux ] && [ "$linux" = no ] && continue
        set +e
        "${guest}_guest" >"$out/block-$guest.log" 2>&1
        set -e
        lines=$(grep -a '^bench: ' "$out/block-$guest.log" | grep -v 'bench: done' || true)
        if [ "$(wc -l <<<"$lines")" -ne 4 ]; then
            echo "  $guest, round $round: no complete result; its console:"
            tail -n 15 "$out/block-$guest.log" | sed 's/^/    /'
            continue
        fi
        sed "s/^/$guest /" <<<"$lines" >>"$results"
    done
done
# Medians per guest and measurement: MiB/s for the sequential passes, IOPS for the rest.
python3 "$root/bench/linux/guests.py" table "$results" '^bench: (.*?): .* (\d+) (KiB/s|IOPS)$' 42
echo "  (medians of $reps rounds; every round's lines: $results)"
load_average after
