#!/usr/bin/env python3
"""Time from starting qemu/run.sh to a kernel's first console output, interleaved.

usage: boot_time.py RUNS NAME IMAGE MARKER [NAME IMAGE MARKER]... [-- RUN.SH OPTIONS]

For each of RUNS rounds, every kernel is run once (the order rotates each round, so a
kernel is not always the one that starts on a cold or warm machine). Each run starts the
clock (time.perf_counter) just before spawning qemu/run.sh and stops it when QEMU's
stdout, read unbuffered from the pipe, first holds MARKER; an empty MARKER means the first
byte. Every run must then exit 0 (run.sh's exit status is the guest's exit code), or the
script fails: a timing of a broken boot means nothing.

Prints one line per kernel: NAME median min max, in milliseconds.
"""

import os
import select
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SH = os.path.join(ROOT, "qemu", "run.sh")
TIMEOUT = 60.0  # seconds: a bound for a hung guest, not a measurement


def time_to_marker(image, marker, options):
    """Seconds from spawning run.sh until MARKER appears on QEMU's stdout."""
    wanted = marker.encode()
    start = time.perf_counter()
    # bufsize=0: read the pipe with os.read, no Python-side buffering to hide the moment
    # the bytes arrive. stdin is a pipe nobody writes, like the Rust harness does.
    process = subprocess.Popen(
        [RUN_SH, image] + options,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        start_new_session=True,  # its own process group: a hang is killed as a whole
    )
    seen = b""
    elapsed = None
    try:
        fd = process.stdout.fileno()
        while True:
            remaining = TIMEOUT - (time.perf_counter() - start)
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError(f"{image}: no exit within {TIMEOUT} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
            if elapsed is None and (wanted in seen if wanted else seen):
                elapsed = time.perf_counter() - start
        status = process.wait(timeout=TIMEOUT)
    except BaseException:
        os.killpg(process.pid, 15)
        process.wait()
        raise
    stderr = process.stderr.read().decode(errors="replace")
    if status != 0 or elapsed is None:
        sys.exit(
            f"boot_time: {image} {' '.join(options)}: exit status {status}, "
            f"marker {marker!r} {'seen' if elapsed is not None else 'never seen'}\n"
            f"--- console ---\n{seen.decode(errors='replace')}--- stderr ---\n{stderr}"
        )
    return elapsed


def main(argv):
    options = []
    if "--" in argv:
        options = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    if len(argv) < 4 or (len(argv) - 1) % 3 != 0:
        sys.exit(__doc__)
    runs = int(argv[0])
    kernels = [tuple(argv[i:i + 3]) for i in range(1, len(argv), 3)]
    samples = {name: [] for name, _, _ in kernels}
    for round_ in range(runs):
        shift = round_ % len(kernels)
        for name, image, marker in kernels[shift:] + kernels[:shift]:
            samples[name].append(time_to_marker(image, marker, options))
    for name, _, _ in kernels:
        ms = [s * 1000 for s in samples[name]]
        print(f"{name} {statistics.median(ms):.1f} {min(ms):.1f} {max(ms):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
