#!/usr/bin/env python3
"""Where examples/files spends its guest instructions serving from an ext4 disk.

usage: bench/files/instructions.py ELF [--baseline ELF] [--by-function N] [--part P]

Boots ELF (build/files.elf: the image as linked, with its symbol table) under TCG with
the counting plugin (bench/executed/plugin.c, without main=: it counts every guest
instruction until QEMU exits) and bench/files' disk image (bench/files/run.sh makes it:
a 64 MiB big.bin and 200 files of 4 KiB), fetches one part of the work over HTTP, and
ends QEMU. Each measure is the difference of two boots that differ only in the work:
the 64 MiB file read 2 times against 1 (instructions per MiB), or 800 small-file GETs
against 200 on one keep-alive connection (per request), or 200 small-file GETs against
1 (per first request of a file: the path walks and the cold caches); boot, the first
reads of the metadata and idle time cancel out. With --baseline, a second image is measured too.
--by-function N lists the N functions with the largest share (or, with --baseline, the
largest changes).

Why this measure: bench/files/run.sh's MiB/s and requests/s move with the load of the
shared machine; the instruction count is the guest's own work, as real hardware would
run it (it leaves out the device's time, which is QEMU's). Lower is better.
The plugin must be built first (bench/executed/build.sh).
"""

import collections
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "executed"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "bench", "linux"))
from executed import PLUGIN, RUN_SH, by_function, mangled, print_profile, wait_for_counts  # noqa: E402
from guests import free_port  # noqa: E402

DISK = os.path.join(ROOT, "build", "bench", "files-bench.img")
BOOT_TIMEOUT = 120.0  # seconds: bounds a hung guest, not a measurement
# part: (unit, work for the small run, for the large run, units between them)
PARTS = {
    "big": ("MiB", ("big", 1), ("big", 2), 64),
    "small": ("request", ("small", 200), ("small", 800), 600),
    "first": ("first request of a file", ("small", 1), ("small", 200), 199),
}


def work(port, what, times):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request("GET", "/small/0.bin")  # the path's metadata, in both runs
    connection.getresponse().read()
    for i in range(times):
        path = "/big.bin" if what == "big" else f"/small/{i % 200}.bin"
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200 or (what == "small" and len(body) != 4096):
            sys.exit(f"instructions: GET {path}: {response.status}, {len(body)} bytes")
    connection.close()


def run(elf, what, times):
    """Boots ELF, does the work, ends QEMU; returns {address: instructions executed}."""
    names = mangled(elf)
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "executed.txt")
        spec = f"{PLUGIN},start={names['__kernel_start']:#x},end={names['__kernel_end']:#x},out={out}"
        process = subprocess.Popen(
            [RUN_SH, elf, "--accel", "tcg", "--mem", "256M", "--plugin", spec,
             "--disk", f"{DISK},ro", "--forward", f"{port}:8080", "--append", "fs.disk=0:/srv"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as a whole
        )
        console = b""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while b"serving on port" not in console and time.monotonic() < deadline:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            console += chunk
        if b"serving on port" not in console:
            os.killpg(process.pid, signal.SIGKILL)
            sys.exit(f"instructions: {elf} never served:\n{console.decode(errors='replace')}")
        work(port, what, times)
        # QEMU writes the count as it exits, on SIGTERM too.
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        counts = wait_for_counts(out)
        if counts is None:
            sys.exit(f"instructions: {elf}: no count written")
        return counts


def main(argv):
    if not argv or argv[0].startswith("-"):
        sys.exit(__doc__)
    images, rest, functions, parts = {"image": argv[0]}, argv[1:], 0, list(PARTS)
    while rest:
        if rest[0] == "--baseline" and len(rest) > 1:
            images = {"baseline": rest[1], **images}
        elif rest[0] == "--by-function" and len(rest) > 1:
            functions = int(rest[1])
        elif rest[0] == "--part" and len(rest) > 1 and rest[1] in PARTS:
            parts = [rest[1]]
        else:
            sys.exit(__doc__)
        rest = rest[2:]
    if not os.path.exists(PLUGIN):
        sys.exit(f"instructions: no {PLUGIN}: run bench/executed/build.sh first")
    if not os.path.exists(DISK):
        sys.exit(f"instructions: no {DISK}: run bench/files/run.sh once first")
    for name, elf in images.items():
        print(f"{name}: {elf}")
    for part in parts:
        unit, small, large, units = PARTS[part]
        totals, profile = {}, {}
        for name, elf in images.items():
            low, high = run(elf, *small), run(elf, *large)
            totals[name] = (sum(high.values()) - sum(low.values())) / units
            difference = by_function(elf, high)
            difference.subtract(by_function(elf, low))
            profile[name] = collections.Counter({k: v / units for k, v in difference.items()})
        print(f"{part}: guest instructions per {unit}")
        for name, total in totals.items():
            print(f"  {name:<10} {total:12.0f}")
        if "baseline" in totals:
            print(f"  image/baseline {totals['image'] / totals['baseline']:.3f}x")
        print_profile(profile, unit, functions)
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
