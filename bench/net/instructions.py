#!/usr/bin/env python3
"""Guest instructions per echo round trip and per MiB of bulk echo, counted by QEMU.

usage: bench/net/instructions.py ELF [--baseline ELF] [--reps N] [--by-function N]

Boots ELF (build/echo.elf: the image as linked, with its symbol table) under TCG with
the counting plugin (bench/executed/plugin.c, without main=: it counts every guest
instruction from the kernel's first one until QEMU exits) and user networking, runs
bench/net/client.py against it, and ends QEMU. Each measure is the difference of two
boots that differ only in the work: 1200 and 200 round trips (64 bytes, TCP_NODELAY,
one connection), or 5 and 1 MiB of bulk echo; boot, connection set-up and idle time
cancel out. With --baseline, a second image (say, the same tree before a change) is
measured in the same batch, rounds interleaved. --by-function N lists the N functions
whose share of the measure changed the most between the two (or, alone, the N largest).

Why this measure: the vCPU time bench/net/run.sh reports moves by tens of percent with
the machine's load (TCG on a shared host); the instruction count is the guest's own
work per packet, as real hardware would run it, and moves by a few percent at most (how
frames batch into polls still depends on timing). Lower is better.
The plugin must be built first (bench/executed/build.sh).
"""

import collections
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "executed"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "bench", "linux"))
from guests import free_port  # noqa: E402
from executed import PLUGIN, RUN_SH, by_function, mangled, print_profile, wait_for_counts  # noqa: E402

CLIENT = os.path.join(ROOT, "bench", "net", "client.py")
BOOT_TIMEOUT = 120.0  # seconds: bounds a hung guest, not a measurement
# (label, unit, client options for the small run, for the large run, units between them)
MEASURES = [
    ("round trip", "round trip",
     ["--phases", "round_trip", "--round-trips", "200", "--warmup", "0"],
     ["--phases", "round_trip", "--round-trips", "1200", "--warmup", "0"], 1000),
    ("bulk echo", "MiB", ["--phases", "bulk", "--bulk-mib", "1"],
     ["--phases", "bulk", "--bulk-mib", "5"], 4),
]


def run(elf, client_options):
    """Boots ELF, runs the client, ends QEMU; returns {address: instructions executed}."""
    names = mangled(elf)
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "executed.txt")
        spec = f"{PLUGIN},start={names['__kernel_start']:#x},end={names['__kernel_end']:#x},out={out}"
        process = subprocess.Popen(
            [RUN_SH, elf, "--accel", "tcg", "--mem", "128M", "--plugin", spec,
             "--forward", f"{port}:5555"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as a whole
        )
        console = b""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while b"listening on port" not in console and time.monotonic() < deadline:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            console += chunk
        if b"listening on port" not in console:
            os.killpg(process.pid, signal.SIGKILL)
            sys.exit(f"instructions: {elf} never listened:\n{console.decode(errors='replace')}")
        client = subprocess.run([sys.executable, CLIENT, str(port)] + client_options,
                                capture_output=True, text=True)
        # QEMU writes the count as it exits, on SIGTERM too (run.sh may end first).
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        counts = wait_for_counts(out)
        if client.returncode != 0 or counts is None:
            sys.exit(f"instructions: {elf} {client_options}: client status "
                     f"{client.returncode}, count written: {counts is not None}\n{client.stderr}")
        return counts


def main(argv):
    if not argv or argv[0].startswith("-"):
        sys.exit(__doc__)
    images, rest, reps, functions = {"image": argv[0]}, argv[1:], 3, 0
    while rest:
        if rest[0] == "--baseline" and len(rest) > 1:
            images = {"baseline": rest[1], **images}
        elif rest[0] == "--reps" and len(rest) > 1:
            reps = int(rest[1])
        elif rest[0] == "--by-function" and len(rest) > 1:
            functions = int(rest[1])
        else:
            sys.exit(__doc__)
        rest = rest[2:]
    if not os.path.exists(PLUGIN):
        sys.exit(f"instructions: no {PLUGIN}: run bench/executed/build.sh first")
    for name, elf in images.items():
        print(f"{name}: {elf}")
    for label, unit, small, large, units in MEASURES:
        per = {name: [] for name in images}
        profile = {name: collections.Counter() for name in images}
        for rep in range(reps):
            order = list(images) if rep % 2 == 0 else list(reversed(images))
            for name in order:
                low, high = run(images[name], small), run(images[name], large)
                per[name].append((sum(high.values()) - sum(low.values())) / units)
                if functions:
                    difference = by_function(images[name], high)
                    difference.subtract(by_function(images[name], low))
                    profile[name].update({k: v / units / reps for k, v in difference.items()})
        print(f"{label}: guest instructions per {unit} (median of {reps} rounds)")
        medians = {name: statistics.median(values) for name, values in per.items()}
        for name, values in per.items():
            print(f"  {name:<10} {medians[name]:12.0f}   runs: "
                  + ", ".join(f"{value:.0f}" for value in values))
        if "baseline" in medians:
            print(f"  image/baseline {medians['image'] / medians['baseline']:.3f}x")
        print_profile(profile, unit, functions, width=120)
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
