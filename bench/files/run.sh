#!/usr/bin/env bash
# The files bench: examples/files against nginx in a Linux guest, serving the same tree
# from the same source on the same QEMU line: microvm, 1 vCPU, 256 MiB, user networking
# with a port forward, and either a read-only virtio-blk-device with an ext4 image
# (Torito: fs.disk=0:/srv) or a virtio-fs share through virtiofsd (Torito:
# fs.share=share:/srv; run.sh --share; cache=none for both guests). bench/files/client.py
# reads a 64 MiB file (MiB/s) and 4 KiB files (requests/s, one keep-alive connection,
# then 8, then 8 opened before the clock starts: the requests without the handshakes).
# A report, not a test: nothing passes or fails on a number, and the numbers are noisy
# (the machine is shared). bench/files/instructions.py counts the guest instructions
# Torito spends per MiB and per request on the disk, by function (where the time goes).
#
# usage: bench/files/run.sh      (needs build/files.elf: make images)
#   REPS=N        interleaved rounds, Torito then Linux (default 3; medians reported)
#   SOURCES=...   which of "disk share" to run (default both)
#   TORITO_ACCEL  kvm or tcg; otherwise chosen as qemu/run.sh does
#   IMAGE=FILE    the Torito image to run (default build/files.elf; say, an older build
#                 to compare against, each run with its own Linux rounds)
#
# The Linux guest reuses the other benches' pieces (bench/linux/): Debian's
# linux-image-cloud-amd64 and busybox-static (bench/net/run.sh installs them), nginx from
# Debian (apt-get install -y nginx).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/files
out=$root/build/bench
mkdir -p "$out"
reps=${REPS:-3} mem=256M sources=${SOURCES:-disk share}

# shellcheck source=bench/linux/guest.sh
. "$root/bench/linux/guest.sh"
image=${IMAGE:-$root/build/files.elf}
bench_needs files "$image" gcc python3 qemu-system-x86_64 mke2fs
linux=yes
if ! linux_kernel || ! static_busybox || [ ! -x /usr/sbin/nginx ]; then
    echo "bench/files: no Debian cloud kernel, busybox or nginx for the Linux guest" \
         "(apt-get install -y linux-image-cloud-amd64 busybox-static nginx); Torito alone"
    linux=no
fi
linux_accel
if [ "$linux" = yes ]; then
    initramfs=$out/linux-files-$version.cpio.gz
    linux_initramfs "$initramfs" "$here/init.sh" --program bin/nginx=/usr/sbin/nginx \
        --file "etc/nginx.conf=$here/nginx.conf" --file etc/mime.types=/etc/nginx/mime.types \
        --users --dir srv --modules "/lib/modules/$version" virtio_mmio virtio_blk virtio_net virtiofs
fi

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
cp "$image" "$out/files.elf"   # a rebuild during the bench cannot mix images

free_port() { python3 -c "import sys; sys.path.insert(0, '$root/bench/linux'); import guests; print(guests.free_port())"; }

# The Linux guest: bench/linux/guest.sh's linux_qemu (qemu/run.sh's flags) with one
# --forward and either one read-only --disk or --share (virtiofsd started here, as run.sh
# does it).
linux_guest() {  # linux_guest PORT SOURCE
    local source_args=() line=$append machine=microvm
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
    fi
    linux_qemu "$machine" "$mem" "$line" \
        -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$1-:8080" -device virtio-net-device,netdev=net0 \
        "${source_args[@]}"
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
load_average before
results=$out/files-bench.txt
: >"$results"
for round in $(seq "$reps"); do
  for source in $sources; do
    for guest in torito linux; do
        [ "$guest" = linux ] && [ "$linux" = no ] && continue
        port=$(free_port)
        log=$out/files-$guest.log
        # Emptied here, not only by the guest's redirection: the wait below must not find
        # the last round's "serving" line before the new guest's shell has started.
        : >"$log"
        # Its own process group, so that the whole guest (run.sh and QEMU) ends with it.
        setsid bash -c "$(declare -f linux_guest torito_guest linux_qemu); \
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
python3 "$root/bench/linux/guests.py" table "$results" \
    '^bench: (.*?): .*: ([\d.]+) (MiB/s|requests/s)$' 52
echo "  (medians of $reps rounds; every round's lines: $results)"
load_average after
