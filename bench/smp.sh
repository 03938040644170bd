#!/usr/bin/env bash
# SMP report: time to bring up each additional core, the inter-core round trip over a
# channel against two host threads exchanging messages through a Rust channel (same
# batch), and the host CPU an idle 4-vCPU guest uses over 5 s. Not a test: numbers only.
#
# usage: bench/smp.sh   (needs build/hello.elf, build/intercore.elf, build/echo.elf)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run=$root/qemu/run.sh
for image in hello intercore echo; do
    [ -f "$root/build/$image.elf" ] || { echo "bench/smp: no build/$image.elf: run 'make images'" >&2; exit 2; }
done

echo "SMP: bring-up (microvm and q35, PVH; the kernel's own 'smp:' line)"
for machine in microvm q35; do
    for cores in 2 4; do
        for attempt in 1 2 3; do
            line=$("$run" "$root/build/hello.elf" --machine "$machine" --smp "$cores" | grep -a 'smp:' || true)
            total=$(sed -n 's/.*starting the other \([0-9]*\) took \([0-9]*\) us.*/\2/p' <<<"$line")
            others=$(sed -n 's/.*starting the other \([0-9]*\) took.*/\1/p' <<<"$line")
            if [ -n "$total" ] && [ -n "$others" ]; then
                printf '  %-8s %d cores: %6d us for %d cores = %5d us per core\n' \
                    "$machine" "$cores" "$total" "$others" $((total / others))
            fi
        done
    done
done

echo "SMP: inter-core round trip over a channel (median of 10000), same batch as host threads"
# The host side is one std-only file (bench/pingpong.rs): rustc builds it, no crate needed.
mkdir -p "$root/target/bench"
rustc --edition 2024 -O -o "$root/target/bench/pingpong" "$root/bench/pingpong.rs"
for attempt in 1 2 3; do
    "$run" "$root/build/intercore.elf" --smp 2 --append "app.rounds=10000" | grep -a 'cores 0<->1' | sed 's/^/  torito /'
    "$root/target/bench/pingpong" 10000 | sed 's/^/  /'
done

echo "SMP: host CPU of an idle 4-vCPU echo guest over 5 s (microvm)"
log=$(mktemp)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$run" "$root/build/echo.elf" --smp 4 --forward "$port:5555" --log "$log" >/dev/null 2>&1 &
runner=$!
for _ in $(seq 1 120); do grep -q 'listening' "$log" 2>/dev/null && break; sleep 0.25; done
qemu=$(pgrep -P "$runner" -f qemu-system-x86_64 | head -n 1)
ticks() { awk '{print $14 + $15}' "/proc/$qemu/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks); sleep 5; after=$(ticks)
# QEMU first: once run.sh is gone, its child is re-parented and `pkill -P` misses it.
kill "$qemu" 2>/dev/null || true; kill "$runner" 2>/dev/null || true; wait "$runner" 2>/dev/null || true
rm -f "$log"
python3 -c "used=($after-$before)/$hz; print(f'  {used:.2f} s of host CPU in 5 s = {used/5*100:.1f}% of one CPU')"
