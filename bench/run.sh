#!/usr/bin/env bash
# A small report on the hello image: its size, its boot time against a do-nothing
# kernel's, and the least memory it runs in. Not a test: nothing here passes or fails on a
# number, and the numbers are noisy (the machines running it are often shared).
#
# usage: bench/run.sh            (make bench calls this; needs build/hello.elf; the
#                                 networking part, bench/net/run.sh, needs build/echo.elf;
#                                 the vsock part, bench/vsock/run.sh, build/vsock-echo.elf;
#                                 the block part, bench/block/run.sh, build/block.elf;
#                                 the HTTP part, bench/http/run.sh, build/http.elf;
#                                 the files part, bench/files/run.sh, build/files.elf;
#                                 the kv part, bench/kv/run.sh, build/kv.elf)
#   RUNS=N         boot-time rounds (default 10)
#   TORITO_ACCEL   passed through to qemu/run.sh, which picks kvm or tcg by itself
#
# Every QEMU run goes through qemu/run.sh, so the bench boots exactly what the tests and
# a person boot (same flags, same accelerator choice); the networking and block benches'
# Linux guests alone run QEMU directly, with run.sh's flags copied (run.sh has no -initrd;
# bench/linux/ holds what every Linux guest shares: the initramfs builder, the QEMU line).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
hello=$root/build/hello.elf
runs=${RUNS:-10}
out=$root/target/bench          # scratch: a stripped copy and the floor kernel
mkdir -p "$out"

[ -f "$hello" ] || { echo "bench: no $hello: run 'make images' first" >&2; exit 2; }
for tool in objcopy as ld gcc python3 qemu-system-x86_64; do
    command -v "$tool" >/dev/null || {
        echo "bench: $tool not found (apt-get install -y binutils gcc python3 qemu-system-x86)" >&2; exit 2; }
done

# The accelerator qemu/run.sh picks (asked, not repeated).
accel=$("$root/qemu/run.sh" --which-accel)

echo "Torito bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel, $(qemu-system-x86_64 --version | head -n 1))"
echo

# --- 1. Image size ---------------------------------------------------------------------
# build/hello.elf is the kernel as linked with its symbol table (for backtraces); a
# loader reads only its segments (`size`: text, data). Stripped of the symbols too, it is
# what the size target counts.
bytes=$(stat -c %s "$hello")
objcopy --strip-all "$hello" "$out/hello.stripped"
stripped=$(stat -c %s "$out/hello.stripped")
printf 'hello image: %d bytes stripped (%d.%d KiB); %d with its symbol table, as built\n' \
    "$stripped" $((stripped / 1024)) $((stripped % 1024 * 10 / 1024)) "$bytes"
echo

# --- 2. Boot time against the floor ----------------------------------------------------
# The floor is a do-nothing PVH kernel (bench/floor/floor.s): its first console byte marks
# what QEMU, run.sh and the PVH loader cost before any kernel code of ours runs. hello's
# "Hello" line marks the end of Torito's boot. Same harness, same machine (microvm, the
# default), runs interleaved, so drift in the machine's load hits both alike.
floor() {   # floor NAME [as options]: assembles bench/floor/floor.s into $out/NAME.elf
    local name=$1; shift
    as --64 "$@" -o "$out/$name.o" "$root/bench/floor/floor.s"
    ld -m elf_x86_64 -nostdlib -static -T "$root/bench/floor/floor.ld" -o "$out/$name.elf" "$out/$name.o"
}
floor floor

# batch RUNS NAME IMAGE MARKER...: one interleaved batch, a row per kernel, and each
# median's difference from the floor's (which must be the first kernel).
batch() {
    local rounds=$1; shift
    local timings floor_median name median min max label
    timings=$(python3 "$root/bench/boot_time.py" "$rounds" "$@")
    floor_median=$(awk '$1 == "floor" { print $2 }' <<<"$timings")
    printf '  %-40s %8s %8s %8s %9s\n' "" median min max "- floor"
    while read -r name median min max; do
        case $name in
            floor) label="floor (first console byte)" ;;
            hello) label="hello (the Hello line)" ;;
            work1) label="floor + 4000 register instructions" ;;
            work2) label="floor + 2000 memory instructions" ;;
            work3) label="floor + 1000 two-instruction blocks" ;;
        esac
        printf '  %-40s %8s %8s %8s %9s\n' "$label" "$median" "$min" "$max" \
            "$(awk -v m="$median" -v f="$floor_median" 'BEGIN { printf "%+.1f", m - f }')"
    done <<<"$timings"
}

echo "boot time, microvm PVH, $runs interleaved runs each (ms from spawning run.sh):"
batch "$runs" floor "$out/floor.elf" "" hello "$hello" "Hello from Torito"

# Under TCG most of Torito's share is QEMU translating code that runs once. Three floors
# that run known code first price that, against the floor in a batch of their own: 30
# rounds by default (PRICE_RUNS), since each price is a small difference of noisy times.
if [ "$accel" = tcg ]; then
    price_runs=${PRICE_RUNS:-30}
    for work in 1 2 3; do
        floor "work$work" --defsym WORK=$work
    done
    echo "what TCG translation costs, $price_runs interleaved runs each:"
    batch "$price_runs" floor "$out/floor.elf" "" work1 "$out/work1.elf" "" \
        work2 "$out/work2.elf" "" work3 "$out/work3.elf" ""
fi
# What hello's kernel had QEMU translate before main, counted from QEMU's log: the same
# in every run, so it shows a change in boot cost that the timings' noise would hide.
if [ "$accel" = tcg ]; then
    "$root/qemu/run.sh" "$hello" --accel tcg --trace-code "$out/hello.in_asm" >/dev/null
    printf '  %-40s %s\n' "hello, translated before main:" \
        "$(python3 "$root/bench/translated.py" "$out/hello.in_asm" "$hello")"
fi
echo

# --- 2b. Instructions executed before main --------------------------------------------
# Counted by QEMU itself (a TCG plugin, bench/executed/plugin.c) under -icount, so the
# count is the same on every run and host: the measure of the boot's work, as real
# hardware prices it. At shift 10 the guest's clocks advance ~1 us per instruction, so a
# wait for a time (the clock calibration's 1 ms) costs only ~1000 instructions and the
# count is the work; at shift 0 (one instruction per ns, as a real CPU) the waits are
# counted at their full length. Both at 8 MiB and 2 GiB of RAM: nothing in the boot may
# grow with the guest's memory.
"$root/bench/executed/build.sh"
echo "instructions executed before main (QEMU -icount and bench/executed/plugin.c):"
for image in hello echo; do
    [ -f "$root/build/$image.elf" ] || continue
    for mem in 8M 2G; do
        for shift in 10 0; do
            printf '  %-6s %-4s shift %-2s %s\n' "$image" "$mem" "$shift" \
                "$(python3 "$root/bench/executed/executed.py" "$root/build/$image.elf" --shift "$shift" --mem "$mem")"
        done
    done
done
# echo from kernel entry to its listening socket (the first call of the netstack's
# listening_socket, which smoltcp's Socket::listen is inlined into), with a static address so that no DHCP exchange is waited for: the
# part of the way to the listening line that grew with the RAM (docs/performance.md).
if [ -f "$root/build/echo.elf" ]; then
    listen=$(nm "$root/build/echo.elf" | awk '/16listening_socket/ { print $3; exit }')
    [ -n "$listen" ] || { echo "bench: no listening_socket symbol in build/echo.elf" >&2; exit 2; }
    for mem in 8M 512M; do
        printf '  %-6s %-4s shift 10 %s (to the listening socket)\n' echo "$mem" \
            "$(python3 "$root/bench/executed/executed.py" "$root/build/echo.elf" --shift 10 \
                --mem "$mem" --until "$listen" -- --forward 0:5555 --append "ip=10.0.2.15/24 gw=10.0.2.2")"
    done
fi
echo

# --- 3. The least memory hello runs in -------------------------------------------------
# Every candidate is tried (they are cheap), so a size that fails above one that works
# shows up instead of being skipped by a bisection that assumes monotony. The image is
# linked at 1 MiB, so 1M cannot hold it: QEMU loads it into unbacked memory without a
# word and the guest hangs, hence the timeout (a working run takes well under 1 s).
echo "memory (microvm PVH, hello must exit 0):"
smallest=""
for mem in 1M 1280K 1536K 2M 3M 4M 6M 8M; do
    set +e
    timeout 15 "$root/qemu/run.sh" "$hello" --mem "$mem" >"$out/mem-$mem.log" 2>&1
    status=$?
    set -e
    if [ "$status" -eq 0 ]; then
        printf '  %-6s ok\n' "$mem"
        [ -n "$smallest" ] || smallest=$mem
    elif grep -q 'terminating on signal 15.*(timeout)' "$out/mem-$mem.log"; then
        printf '  %-6s hung: no exit within 15 s (console: %s)\n' "$mem" \
            "$(grep -vc -e '^\s*$' -e 'terminating on signal' "$out/mem-$mem.log" || true) lines"
    else
        # The last console or QEMU line says why (a QEMU refusal, a kernel report).
        printf '  %-6s exit %d: %s\n' "$mem" "$status" "$(grep -v '^\s*$' "$out/mem-$mem.log" | tail -n 1 | cut -c1-100)"
    fi
done
echo "  smallest that works: ${smallest:-none of them}"
echo

# --- 4. Networking: echo against a Linux guest (bench/net/run.sh) -----------------------
if [ -f "$root/build/echo.elf" ]; then
    "$root/bench/net/run.sh"
else
    echo "networking bench skipped: no $root/build/echo.elf yet (run 'make images')"
fi

# --- 5. vsock: echo round trip and bulk (bench/vsock/run.sh) -------------------------------
echo
"$root/bench/vsock/run.sh"

# --- 6. SMP: bring-up per core, inter-core round trip vs host threads, idle CPU ----------
echo
"$root/bench/smp.sh"

# --- 6. Block: disk throughput and IOPS against a Linux guest (bench/block/run.sh) ------
echo
if [ -f "$root/build/block.elf" ]; then
    "$root/bench/block/run.sh"
else
    echo "block bench skipped: no $root/build/block.elf yet (run 'make images')"
fi

# --- 7. HTTP: examples/http against nginx in a Linux guest (bench/http/run.sh) ----------
echo
if [ -f "$root/build/http.elf" ]; then
    "$root/bench/http/run.sh"
else
    echo "HTTP bench skipped: no $root/build/http.elf yet (run 'make images')"
fi

# --- 8. Files: a file server over an ext4 disk against nginx in Linux (bench/files/run.sh)
echo
if [ -f "$root/build/files.elf" ]; then
    "$root/bench/files/run.sh"
else
    echo "files bench skipped: no $root/build/files.elf yet (run 'make images')"
fi

# --- 9. kv: the Redis-protocol store against redis-server in Linux (bench/kv/run.sh) ------
echo
if [ -f "$root/build/kv.elf" ]; then
    "$root/bench/kv/run.sh"
else
    echo "kv bench skipped: no $root/build/kv.elf yet (run 'make images')"
fi
