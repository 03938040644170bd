#!/usr/bin/env python3
"""The HTTP bench: examples/http against Debian's nginx in a Linux guest, same QEMU line,
same client (wrk), same 612-byte page.

usage: bench.py --torito HTTP.ELF --kernel VMLINUZ --initrd INITRAMFS --out DIR
                [--mem SIZE] [--accel tcg|kvm] [--tsc-khz N] [--reps N]
                [--duration SECONDS] [--connections 1,8] [--smp 1,2]

Called by bench/http/run.sh, which builds the initramfs and picks the accelerator.

For each vCPU count in --smp: boots both guests (Torito through qemu/run.sh; Linux
through qemu-system-x86_64 with run.sh's flags, bench/linux/guests.py), one after the other,
waits for "http: listening on port 8080" on each console, warms each up (a short wrk
run: under TCG the first requests pay for translating the code), then for each of
--reps rounds (the order alternating) runs `wrk -t1 -cN -dD` on GET / for each
connection count N, and reports the median requests/s and the ratio Torito/Linux.
A run with any socket error or non-2xx answer is reported as such. Every wait is bounded.
"""

import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "linux"))
from guests import (Guest, add_arguments, free_port, linux_command, median,  # noqa: E402
                    orders, ratio_text, start_guests, torito_command)

READY = b"http: listening on port 8080"
WARM_UP_S = 3


def wrk(port, connections, seconds):
    """Runs wrk on GET /; returns (requests/s or None, problem text or "")."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
               f"http://127.0.0.1:{port}/"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        return None, "wrk did not finish"
    text = done.stdout
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    problems = [line.strip() for line in text.splitlines()
                if "Socket errors" in line or "Non-2xx" in line]
    if done.returncode != 0 or rate is None:
        return None, (done.stderr.strip() or text.strip())[-200:]
    return float(rate.group(1)), "; ".join(problems)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, mem="256M")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", default="1,8")
    parser.add_argument("--smp", default="1,2")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    connections = [int(c) for c in args.connections.split(",")]
    status = 0
    for smp in [int(s) for s in args.smp.split(",")]:
        status |= batch(args, smp, connections)
    return status


def batch(args, smp, connections):
    ports = {"torito": free_port(), "linux": free_port()}
    commands = {
        "torito": torito_command(args.torito, args.mem, args.accel, ports["torito"], 8080, smp),
        "linux": linux_command(args, ports["linux"], 8080, smp),
    }
    print(f"guests: microvm, {smp} vCPU, -m {args.mem}, virtio-net-device, user networking, "
          f"accel {args.accel}")
    for name in ("torito", "linux"):
        print(f"  {name}: {' '.join(commands[name])}")
    guests = {}
    results = {(name, c): [] for name in commands for c in connections}
    notes = []
    try:
        for name in ("torito", "linux"):
            log = os.path.join(args.out, f"http-{name}-smp{smp}.log")
            guests[name] = Guest(name, commands[name], log, READY)
            if not start_guests({name: guests[name]}, "bench/http"):
                return 1
            wrk(ports[name], max(connections), WARM_UP_S)
        for rep, order in orders(args.reps):
            for c in connections:
                for name in order:
                    rate, problem = wrk(ports[name], c, args.duration)
                    if problem:
                        notes.append(f"{name}, {c} conn, round {rep + 1}: {problem}")
                    if rate is not None:
                        results[(name, c)].append(rate)
    finally:
        for guest in guests.values():
            guest.stop()
    print(f"GET / (612 bytes), wrk -t1, {args.duration} s per run; medians of {args.reps} "
          f"interleaved rounds" + (" (TCG: how the two compare under this emulator, not "
                                   "what hardware would do)" if args.accel == "tcg" else ""))
    print(f"  {'':<24} {'Torito req/s':>13} {'Linux req/s':>12} {'Torito/Linux':>13}")
    for c in connections:
        t, linux = median(results[("torito", c)]), median(results[("linux", c)])
        label = f"{smp} vCPU, {c} connection" + ("s" if c > 1 else "")
        print(f"  {label:<24} {t or 0:>13.0f} {linux or 0:>12.0f} {ratio_text(t, linux):>13}")
    for note in notes:
        print(f"  note: {note}")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
