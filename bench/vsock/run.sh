#!/usr/bin/env bash
# vsock bench: 64-byte round trip and bulk MiB/s against examples/vsock-echo, through
# qemu/run.sh --vsock (vhost-device-vsock). Not a test: the numbers are noisy.
#
# usage: bench/vsock/run.sh      (needs build/vsock-echo.elf and vhost-device-vsock)
#   RUNS=N            boots per machine (default 3), each measured once
#   TORITO_ACCEL      passed through to qemu/run.sh
#
# Then the same against a Linux guest on the same QEMU line (microvm; Debian's cloud
# kernel and busybox, as bench/net uses, with the vsock modules and vecho.c, a forking
# AF_VSOCK echo server), when bench/net's packages are installed. That guest runs QEMU
# directly with qemu/run.sh's flags (bench/linux/guest.sh's linux_qemu; run.sh has no
# -initrd).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
image=$root/build/vsock-echo.elf
runs=${RUNS:-3}
[ -f "$image" ] || { echo "vsock bench skipped: no $image (run 'make images')"; exit 0; }

work=$(mktemp -d)
guest="" backend=""
cleanup() {
    # Only the processes this script started (run.sh's group, the backend, QEMU).
    if [ -n "$guest" ]; then kill -- -"$guest" 2>/dev/null || true; fi
    if [ -n "$backend" ]; then kill "$backend" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "vsock echo (64-byte round trip, then 32 MiB echoed in 32 KiB rounds), accel $("$root/qemu/run.sh" --which-accel):"
for machine in microvm q35; do
    for run in $(seq "$runs"); do
        socket=$work/vsock-$machine-$run.sock
        log=$work/console-$machine-$run.log
        setsid "$root/qemu/run.sh" "$image" --machine "$machine" --vsock 3 \
            --vsock-socket "$socket" --log "$log" </dev/null >/dev/null 2>&1 &
        guest=$!
        for _ in $(seq 600); do
            grep -q "vsock-echo: listening" "$log" 2>/dev/null && break
            sleep 0.1
        done
        result=$(python3 "$root/bench/vsock/client.py" "$socket" 2>&1 || true)
        echo "  $machine run $run: $result"
        kill -- -"$guest" 2>/dev/null || true
        wait "$guest" 2>/dev/null || true
        guest=""
    done
done

# --- The Linux guest ---------------------------------------------------------------------
out=$root/build/bench-vsock
mkdir -p "$out"
# shellcheck source=bench/linux/guest.sh
. "$root/bench/linux/guest.sh"
backend_bin=$(command -v vhost-device-vsock || echo "$HOME/.cargo/bin/vhost-device-vsock")
if ! linux_kernel || ! static_busybox || ! command -v gcc >/dev/null; then
    echo "  Linux guest skipped: needs linux-image-cloud-amd64, busybox-static and gcc (bench/net installs them)"
    exit 0
fi
stale "$out/vecho" "$root/bench/vsock/vecho.c" &&
    gcc -O2 -static -Wall -o "$out/vecho" "$root/bench/vsock/vecho.c"
initramfs=$out/linux-$version.cpio.gz
linux_initramfs "$initramfs" "$root/bench/vsock/init.sh" --file "bin/vecho=$out/vecho" \
    --modules "/lib/modules/$version" virtio_mmio vmw_vsock_virtio_transport
linux_accel
for run in $(seq "$runs"); do
    socket=$work/linux-$run.sock control=$work/linux-$run.vhost log=$work/linux-$run.log
    "$backend_bin" --guest-cid 3 --socket "$control" --uds-path "$socket" >"$work/backend-$run.log" 2>&1 &
    backend=$!
    for _ in $(seq 100); do [ -S "$control" ] && break; sleep 0.05; done
    setsid bash -c "$(declare -f linux_qemu); accel=$accel cpu='$cpu' kernel='$kernel' \
        initramfs='$initramfs' linux_qemu microvm,memory-backend=mem 128M '$append' \
        -object memory-backend-memfd,id=mem,size=128M,share=on \
        -chardev 'socket,id=vsock0,path=$control' -device vhost-user-vsock-device,chardev=vsock0" \
        >"$log" 2>&1 &
    guest=$!
    for _ in $(seq 1200); do
        grep -q "vsock-echo: listening" "$log" 2>/dev/null && break
        sleep 0.1
    done
    result=$(python3 "$root/bench/vsock/client.py" "$socket" 2>&1 || true)
    echo "  Linux $version microvm run $run: $result"
    kill -- -"$guest" 2>/dev/null || true; wait "$guest" 2>/dev/null || true; guest=""
    kill "$backend" 2>/dev/null || true; wait "$backend" 2>/dev/null || true; backend=""
done
