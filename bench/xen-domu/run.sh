#!/usr/bin/env bash
# The Xen domU bench: echo round trips from a Linux dom0 to a PVH domU over Xen's split
# network driver (netfront in the domU, Linux's netback and a bridge in dom0), Torito's
# echo (build/echo.elf) against the Linux baseline (Debian's cloud kernel running
# bench/net/echo.c), both through qemu/xen-domu.sh and measured by the same client
# (qemu/xen-domu/rtt.c, 64-byte messages, every byte checked), in one batch and
# interleaved. A report, not a test: nothing passes or fails on a number, and under
# Xen under QEMU's emulator the numbers are noisy (the medians of REPS runs are shown).
#
# usage: bench/xen-domu/run.sh
#   REPS=N     runs of each guest, interleaved (default 3)
#   ROUNDS=N   round trips per run (default 500)
#   VCPUS=N    the domU's vCPUs (default 1)
#
# Prints one line per run and a summary:
#   xen-domu: linux run 1: median 1786 us, p10 1251 us, whole run 24 s
#   ...
#   xen-domu: linux median 1786 us (runs: ...), p10 1251 us (runs: ...)
#   xen-domu: torito median ... us (runs: ...), p10 ... us (runs: ...)
#   xen-domu: torito/linux round trip: median R, p10 F (below 1: Torito is faster)
# Each run's full console is kept in build/bench/xen-domu-GUEST-N.log. A guest whose run
# fails is reported as failed (with its log) and left out of the ratio.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/build/bench
mkdir -p "$out"
reps=${REPS:-3}
rounds=${ROUNDS:-500}
vcpus=${VCPUS:-1}
ready="echo: listening on port 5555"

[ -f "$root/build/echo.elf" ] || { echo "bench/xen-domu: no build/echo.elf: run 'make images' first" >&2; exit 2; }
"$root/qemu/xen-domu.sh" fetch

declare -A medians=() floors=()
# run GUEST N: one run; appends its median and its 10th percentile (us) to medians[GUEST]
# and floors[GUEST], or says it failed.
run() {
    local guest=$1 n=$2 log=$out/xen-domu-$1-$2.log target start end median
    if [ "$guest" = linux ]; then target=(--linux); else target=("$root/build/echo.elf"); fi
    start=$(date +%s)
    if "$root/qemu/xen-domu.sh" run "${target[@]}" --vcpus "$vcpus" --wait "$ready" \
            --rounds "$rounds" >"$log" 2>&1; then
        end=$(date +%s)
        median=$(sed -n 's/.*dom0: rtt: .* median \([0-9]*\) us.*/\1/p' "$log" | head -n 1)
        floor=$(sed -n 's/.*dom0: rtt: .* p10 \([0-9]*\) us.*/\1/p' "$log" | head -n 1)
        echo "xen-domu: $guest run $n: median $median us, p10 $floor us, whole run $((end - start)) s"
        medians[$guest]="${medians[$guest]:-} $median"
        floors[$guest]="${floors[$guest]:-} $floor"
    else
        echo "xen-domu: $guest run $n failed (status $?): see $log"
        grep -a '^dom0: ' "$log" | tail -n 8 | sed 's/^/    /'
    fi
}

for n in $(seq 1 "$reps"); do
    run linux "$n"
    run torito "$n"
done

# median_of WORDS...: the middle value (the lower one of an even count).
median_of() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

declare -A median=() floor=()
for guest in linux torito; do
    # shellcheck disable=SC2086  # the runs' values are words
    if [ -n "${medians[$guest]:-}" ]; then
        median[$guest]=$(median_of ${medians[$guest]})
        floor[$guest]=$(median_of ${floors[$guest]})
        echo "xen-domu: $guest median ${median[$guest]} us (runs:${medians[$guest]}), p10 ${floor[$guest]} us (runs:${floors[$guest]})"
    else
        echo "xen-domu: $guest: no run succeeded"
    fi
done
# The p10 is the floor the host's load disturbs least (a loaded build machine stalls an
# emulated CPU for tens of milliseconds now and then, which moves medians by runs).
if [ -n "${median[linux]:-}" ] && [ -n "${median[torito]:-}" ]; then
    echo "xen-domu: torito/linux round trip: median $(python3 -c "print(f'{${median[torito]} / ${median[linux]}:.2f}')"), p10 $(python3 -c "print(f'{${floor[torito]} / ${floor[linux]}:.2f}')")"
fi
