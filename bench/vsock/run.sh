#!/usr/bin/env bash
# vsock bench: 64-byte round trip and bulk MiB/s against examples/vsock-echo, through
# qemu/run.sh --vsock (vhost-device-vsock). Not a test: the numbers are noisy.
#
# usage: bench/vsock/run.sh      (needs build/vsock-echo.elf and vhost-device-vsock)
#   RUNS=N            boots per machine (default 3), each measured once
#   TORITO_ACCEL      passed through to qemu/run.sh
#
# No Linux guest on the same QEMU line yet (the issue's comparison): bench/net's guest
# would need the vsock modules (vmw_vsock_virtio_transport) in its initramfs and a
# vsock echo server (socat VSOCK-LISTEN or a small C program).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
image=$root/build/vsock-echo.elf
runs=${RUNS:-3}
[ -f "$image" ] || { echo "vsock bench skipped: no $image (run 'make images')"; exit 0; }

work=$(mktemp -d)
guest=""
cleanup() {
    # Only the process group this script started (run.sh, the backend, QEMU).
    if [ -n "$guest" ]; then kill -- -"$guest" 2>/dev/null || true; fi
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
