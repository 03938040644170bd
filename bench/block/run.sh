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
# and busybox-static (bench/net/run.sh installs them), bench/net/mkinitramfs.py for the
# initramfs (with virtio_mmio and virtio_blk), bench/net/tsc_khz.c under TCG.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/block
out=$root/build/bench
mkdir -p "$out"
reps=${REPS:-3} disk_mib=${DISK_MIB:-64} mem=${MEM:-128M}

[ -f "$root/build/block.elf" ] || { echo "bench/block: no build/block.elf: run 'make images' first" >&2; exit 2; }
for tool in gcc python3 qemu-system-x86_64; do
    command -v "$tool" >/dev/null || {
        echo "bench/block: $tool not found (apt-get install -y gcc python3 qemu-system-x86)" >&2; exit 2; }
done
kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1 || true)
linux=yes
if [ -z "$kernel" ] || [ ! -x /bin/busybox ]; then
    echo "bench/block: no Debian cloud kernel or busybox for the Linux guest (bench/net/run.sh" \
         "installs them: linux-image-cloud-amd64 busybox-static); Torito alone"
    linux=no
fi

stale() {  # stale OUTPUT INPUT...: true when OUTPUT is missing or older than an input
    local target=$1; shift
    [ -f "$target" ] || return 0
    for input in "$@"; do [ "$input" -nt "$target" ] && return 0; done
    return 1
}
accel=$("$root/qemu/run.sh" --which-accel)
if [ "$linux" = yes ]; then
    version=${kernel#/boot/vmlinuz-}
    stale "$out/blockbench" "$here/blockbench.c" &&
        gcc -O2 -static -pthread -Wall -o "$out/blockbench" "$here/blockbench.c"
    initramfs=$out/linux-block-$version.cpio.gz
    if stale "$initramfs" "$out/blockbench" "$here/init.sh" "$root/bench/net/mkinitramfs.py"; then
        python3 "$root/bench/net/mkinitramfs.py" "$initramfs" "$here/init.sh" /bin/busybox \
            "$out/blockbench" --modules "/lib/modules/$version" virtio_mmio virtio_blk
    fi
    append="console=ttyS0 quiet panic=-1"
    if [ "$accel" = tcg ]; then
        stale "$out/tsc_khz" "$root/bench/net/tsc_khz.c" &&
            gcc -O2 -o "$out/tsc_khz" "$root/bench/net/tsc_khz.c"
        # Under TCG Linux's PIT calibration of the TSC fails often and the boot hangs.
        append+=" tsc_early_khz=$("$out/tsc_khz")"
    fi
fi
cpu=max
[ "$accel" = kvm ] && cpu="host,-arch-capabilities"

disk=$out/block-bench.img
rm -f "$disk"
truncate -s "${disk_mib}M" "$disk"
cp "$root/build/block.elf" "$out/block.elf"   # a rebuild during the bench cannot mix images

# The Linux guest's QEMU line: qemu/run.sh's flags for microvm + PVH + one --disk, with
# -initrd added (run.sh has no -initrd). KEEP IN SYNC with qemu/run.sh.
linux_guest() {
    timeout 900 qemu-system-x86_64 \
        -machine microvm -accel "$accel" -cpu "$cpu" -smp 1 -m "$mem" \
        -nodefaults -no-user-config -display none -no-reboot \
        -chardev stdio,id=console,signal=on -serial chardev:console \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -drive "file=$disk,if=none,id=disk0,format=raw,readonly=off" \
        -device virtio-blk-device,drive=disk0 \
        -kernel "$kernel" -initrd "$initramfs" -append "$append" </dev/null
}
torito_guest() {
    timeout 900 "$root/qemu/run.sh" "$out/block.elf" --accel "$accel" --disk "$disk" \
        --append app.bench=1 </dev/null
}

echo "block bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel, ${disk_mib} MiB disk," \
     "$reps rounds; Linux guest: ${version:-none})"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
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
python3 - "$results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    guest, rest = line.split(" ", 1)
    m = re.match(r"bench: (.*?): .* (\d+) (KiB/s|IOPS)$", rest.strip())
    if m:
        value = int(m.group(2)) / 1024 if m.group(3) == "KiB/s" else int(m.group(2))
        rows.setdefault(m.group(1), {}).setdefault(guest, []).append(value)
print(f"  {'':42} {'Torito':>10} {'Linux':>10} {'Torito/Linux':>13}")
for name, guests in rows.items():
    unit = "MiB/s" if name.startswith("sequential") else "IOPS"
    t = statistics.median(guests["torito"]) if "torito" in guests else None
    l = statistics.median(guests["linux"]) if "linux" in guests else None
    ratio = f"{t / l:.2f}x" if t and l else "-"
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    print(f"  {name + ' (' + unit + ')':42} {fmt(t):>10} {fmt(l):>10} {ratio:>13}")
PY
echo "  (medians of $reps rounds; every round's lines: $results)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
