#!/usr/bin/env bash
# The files bench: examples/files against nginx in a Linux guest, serving the same tree
# from the same source on the same QEMU line: microvm, 1 vCPU, 256 MiB, user networking
# with a port forward, and either a read-only virtio-blk-device with an ext4 image
# (Torito: fs.disk=0:/srv) or a virtio-fs share through virtiofsd (Torito:
# fs.share=share:/srv; run.sh --share; cache=none for both guests). bench/files/client.py
# reads a 64 MiB file (MiB/s) and 4 KiB files (requests/s, one keep-alive connection,
# then 8). A report, not a test: nothing passes or fails on a number, and the numbers
# are noisy (the machine is shared).
#
# usage: bench/files/run.sh      (needs build/files.elf: make images)
#   REPS=N        interleaved rounds, Torito then Linux (default 3; medians reported)
#   SOURCES=...   which of "disk share" to run (default both)
#   TORITO_ACCEL  kvm or tcg; otherwise chosen as qemu/run.sh does
#
# The Linux guest reuses the other benches' pieces: Debian's linux-image-cloud-amd64 and busybox-static
# (bench/net/run.sh installs them), nginx from Debian (apt-get install -y nginx).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/files
out=$root/build/bench
mkdir -p "$out"
reps=${REPS:-3} mem=256M sources=${SOURCES:-disk share}

[ -f "$root/build/files.elf" ] || { echo "bench/files: no build/files.elf: run 'make images' first" >&2; exit 2; }
for tool in gcc python3 qemu-system-x86_64 mke2fs; do
    command -v "$tool" >/dev/null || {
        echo "bench/files: $tool not found (apt-get install -y gcc python3 qemu-system-x86 e2fsprogs)" >&2; exit 2; }
done
kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1 || true)
linux=yes
if [ -z "$kernel" ] || [ ! -x /bin/busybox ] || [ ! -x /usr/sbin/nginx ]; then
    echo "bench/files: no Debian cloud kernel, busybox or nginx for the Linux guest" \
         "(apt-get install -y linux-image-cloud-amd64 busybox-static nginx); Torito alone"
    linux=no
fi
stale() {  # stale OUTPUT INPUT...: true when OUTPUT is missing or older than an input
    local target=$1; shift
    [ -f "$target" ] || return 0
    for input in "$@"; do [ "$input" -nt "$target" ] && return 0; done
    return 1
}
accel=$("$root/qemu/run.sh" --which-accel)
append="console=ttyS0 quiet panic=-1"
if [ "$linux" = yes ]; then
    version=${kernel#/boot/vmlinuz-}
    initramfs=$out/linux-files-$version.cpio.gz
    if stale "$initramfs" "$here/init.sh" "$here/initramfs.py" "$here/nginx.conf" \
        "$root/bench/net/mkinitramfs.py" "$root/bench/net/init-common.sh" /usr/sbin/nginx; then
        python3 "$here/initramfs.py" "$initramfs" "$here/init.sh" /bin/busybox /usr/sbin/nginx \
            "$here/nginx.conf" /etc/nginx/mime.types \
            --modules "/lib/modules/$version" virtio_mmio virtio_blk virtio_net virtiofs
    fi
    if [ "$accel" = tcg ]; then
        stale "$out/tsc_khz" "$root/bench/net/tsc_khz.c" &&
            gcc -O2 -o "$out/tsc_khz" "$root/bench/net/tsc_khz.c"
        # Under TCG Linux's PIT calibration of the TSC fails often and the boot hangs.
        append+=" tsc_early_khz=$("$out/tsc_khz")"
    fi
fi
cpu=max
[ "$accel" = kvm ] && cpu="host,-arch-capabilities"

# The served tree: a 64 MiB file and 200 files of 4 KiB, in an ext4 image.
tree=$out/files-tree
disk=$out/files-bench.img
small=200
if [ ! -f "$disk" ] || [ ! -f "$tree/big.bin" ]; then
    rm -rf "$tree" && mkdir -p "$tree/small"
    head -c $((64 << 20)) /dev/urandom >"$tree/big.bin"
    for i in $(seq 0 $((small - 1))); do head -c 4096 /dev/urandom >"$tree/small/$i.bin"; done
    mke2fs -q -F -t ext4 -d "$tree" "$disk" 128M
fi
cp "$root/build/files.elf" "$out/files.elf"   # a rebuild during the bench cannot mix images

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The Linux guest's QEMU line: qemu/run.sh's flags for microvm + PVH + one --forward and
# either one read-only --disk or --share (virtiofsd started here, as run.sh does it), with
# -initrd added. KEEP IN SYNC with qemu/run.sh.
linux_guest() {  # linux_guest PORT SOURCE
    local source_args=() line=$append
    if [ "$2" = share ]; then
        local socket=$out/files-virtiofsd.sock
        rm -f "$socket"
        /usr/lib/qemu/virtiofsd --socket-path="$socket" -o source="$tree" -o cache=none \
            -o sandbox=chroot -o no_posix_lock -o no_xattr >"$out/files-virtiofsd.log" 2>&1 &
        for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done
        source_args=(-object "memory-backend-memfd,id=mem,size=$mem,share=on"
            -global virtio-mmio.force-legacy=false
            -chardev "socket,id=fs0,path=$socket"
            -device vhost-user-fs-device,chardev=fs0,tag=share,queue-size=128)
        machine=microvm,memory-backend=mem line+=" files.source=share"
    else
        source_args=(-drive "file=$disk,if=none,id=disk0,format=raw,readonly=on"
            -device virtio-blk-device,drive=disk0)
        machine=microvm
    fi
    qemu-system-x86_64 \
        -machine "$machine" -accel "$accel" -cpu "$cpu" -smp 1 -m "$mem" \
        -nodefaults -no-user-config -display none -no-reboot \
        -chardev stdio,id=console,signal=on -serial chardev:console \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$1-:8080" -device virtio-net-device,netdev=net0 \
        "${source_args[@]}" \
        -kernel "$kernel" -initrd "$initramfs" -append "$line" </dev/null
}
torito_guest() {  # torito_guest PORT SOURCE
    if [ "$2" = share ]; then
        exec "$root/qemu/run.sh" "$out/files.elf" --accel "$accel" --mem "$mem" \
            --share "$tree" --forward "$1:8080" --append "fs.share=share:/srv" </dev/null
    fi
    exec "$root/qemu/run.sh" "$out/files.elf" --accel "$accel" --mem "$mem" \
        --disk "$disk,ro" --forward "$1:8080" --append "fs.disk=0:/srv" </dev/null
}

echo "files bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel, $reps rounds;" \
     "Linux guest: ${version:-none})"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
results=$out/files-bench.txt
: >"$results"
for round in $(seq "$reps"); do
  for source in $sources; do
    for guest in torito linux; do
        [ "$guest" = linux ] && [ "$linux" = no ] && continue
        port=$(free_port)
        log=$out/files-$guest.log
        # Its own process group, so that the whole guest (run.sh and QEMU) ends with it.
        setsid bash -c "$(declare -f linux_guest torito_guest); \
            accel=$accel cpu='$cpu' mem=$mem disk='$disk' kernel='$kernel' tree='$tree' \
            initramfs='${initramfs:-}' append='$append' root='$root' out='$out' \
            ${guest}_guest $port $source" >"$log" 2>&1 &
        group=$!
        for _ in $(seq 600); do grep -qs 'files: serving on port 8080' "$log" && break; sleep 0.5; done
        if grep -q 'files: serving on port 8080' "$log"; then
            if ! python3 "$here/client.py" "$port" "$out/files-tree/big.bin" "$small" \
                >"$out/files-client.txt" 2>&1; then
                echo "  $guest ($source), round $round: the client failed:"
                sed 's/^/    /' "$out/files-client.txt"
            fi
            sed "s/^bench: /$guest bench: $source, /" "$out/files-client.txt" |
                grep "^$guest bench: " >>"$results" || true
        else
            echo "  $guest ($source), round $round: the guest did not start serving; its console:"
            tail -n 15 "$log" | sed 's/^/    /'
        fi
        kill -- -"$group" 2>/dev/null || true
        wait "$group" 2>/dev/null || true
    done
  done
done
# Medians per guest and measurement.
python3 - "$results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    guest, rest = line.split(" ", 1)
    m = re.match(r"bench: (.*?): .*: ([\d.]+) (MiB/s|requests/s)$", rest.strip())
    if m:
        rows.setdefault((m.group(1), m.group(3)), {}).setdefault(guest, []).append(float(m.group(2)))
print(f"  {'':46} {'Torito':>10} {'Linux':>10} {'Torito/Linux':>13}")
for (name, unit), guests in rows.items():
    t = statistics.median(guests["torito"]) if "torito" in guests else None
    l = statistics.median(guests["linux"]) if "linux" in guests else None
    ratio = f"{t / l:.2f}x" if t and l else "-"
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    print(f"  {name + ' (' + unit + ')':46} {fmt(t):>10} {fmt(l):>10} {ratio:>13}")
PY
echo "  (medians of $reps rounds; every round's lines: $results)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
