#!/usr/bin/env bash
# A small report on the hello image: its size, its boot time against a do-nothing
# kernel's, and the least memory it runs in. Not a test: nothing here passes or fails on a
# number, and the numbers are noisy (shared machines; see shared/PLATFORM.md).
#
# usage: bench/run.sh            (make bench calls this; needs build/hello.elf; the
#                                 networking part, bench/net/run.sh, needs build/echo.elf;
#                                 the block part, bench/block/run.sh, build/block.elf)
#   RUNS=N         boot-time rounds (default 10)
#   TORITO_ACCEL   passed through to qemu/run.sh, which picks kvm or tcg by itself
#
# Every QEMU run goes through qemu/run.sh, so the bench boots exactly what the tests and
# a person boot (same flags, same accelerator choice); the networking and block benches'
# Linux guests alone run QEMU directly, with run.sh's flags copied (run.sh has no -initrd).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
hello=$root/build/hello.elf
runs=${RUNS:-10}
out=$root/target/bench          # scratch: a stripped copy and the floor kernel
mkdir -p "$out"

[ -f "$hello" ] && [ -f "$root/build/unpacked/hello.elf" ] || {
    echo "bench: no $hello or build/unpacked/hello.elf: run 'make images' first" >&2; exit 2; }
for tool in objcopy as ld python3 qemu-system-x86_64; do
    command -v "$tool" >/dev/null || {
        echo "bench: $tool not found (apt-get install -y binutils python3 qemu-system-x86)" >&2; exit 2; }
done

# The accelerator qemu/run.sh picks (asked, not repeated).
accel=$("$root/qemu/run.sh" --which-accel)

echo "Torito bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel, $(qemu-system-x86_64 --version | head -n 1))"
echo

# --- 1. Image size ---------------------------------------------------------------------
# What a loader reads: build/hello.elf, the packed image (torito-pack writes no symbols or
# section headers, so there is nothing to strip). For scale, the kernel before packing,
# stripped of its symbols.
bytes=$(stat -c %s "$hello")
objcopy --strip-all "$root/build/unpacked/hello.elf" "$out/hello.unpacked.stripped"
unpacked=$(stat -c %s "$out/hello.unpacked.stripped")
printf 'hello image, stripped:  %d bytes (%d.%d KiB), packed; %d bytes unpacked\n' \
    "$bytes" $((bytes / 1024)) $((bytes % 1024 * 10 / 1024)) "$unpacked"
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
        "$(python3 "$root/bench/translated.py" "$out/hello.in_asm" "$root/build/unpacked/hello.elf")"
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

# --- 5. SMP: bring-up per core, inter-core round trip vs host threads, idle CPU ----------
echo
"$root/bench/smp.sh"

# --- 6. Block: disk throughput and IOPS against a Linux guest (bench/block/run.sh) ------
echo
if [ -f "$root/build/block.elf" ]; then
    "$root/bench/block/run.sh"
else
    echo "block bench skipped: no $root/build/block.elf yet (run 'make images')"
fi
