#!/usr/bin/env python3
"""The HTTP bench: examples/http against Debian's nginx in a Linux guest, same QEMU line,
same client (wrk), same 612-byte page.

usage: bench.py --torito HTTP.ELF --kernel VMLINUZ --initrd INITRAMFS --out DIR
                [--mem SIZE] [--accel tcg|kvm] [--tsc-khz N] [--reps N]
                [--duration SECONDS] [--connections 1,8] [--smp 1,2]

Called by bench/http/run.sh, which builds the initramfs and picks the accelerator.

For each vCPU count in --smp: boots both guests (Torito through qemu/run.sh; Linux
through qemu-system-x86_64 with run.sh's flags, see linux_command), one after the other,
waits for "http: listening on port 8080" on each console, warms each up (a short wrk
run: under TCG the first requests pay for translating the code), then for each of
--reps rounds (the order alternating) runs `wrk -t1 -cN -dD` on GET / for each
connection count N, and reports the median requests/s and the ratio Torito/Linux.
A run with any socket error or non-2xx answer is reported as such. Every wait is bounded.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "net"))
from bench import Guest, free_port  # noqa: E402  (bench/net/bench.py)

RUN_SH = os.path.join(ROOT, "qemu", "run.sh")
READY = b"http: listening on port 8080"
WARM_UP_S = 3


def linux_command(kernel, initrd, mem, accel, port, tsc_khz, smp):
    """The Linux guest's QEMU command line: qemu/run.sh's flags for microvm + PVH boot +
    one --forward to 8080, with -initrd added. KEEP IN SYNC with qemu/run.sh and
    bench/net/bench.py's linux_command (run.sh has no -initrd option)."""
    cpu = "host,-arch-capabilities" if accel == "kvm" else "max"
    append = "console=ttyS0 quiet panic=-1"
    if tsc_khz:
        # Under TCG Linux's PIT calibration of the TSC often fails (bench/net/tsc_khz.c).
        append += f" tsc_early_khz={tsc_khz}"
    return [
        "qemu-system-x86_64",
        "-machine", "microvm",
        "-accel", accel,
        "-cpu", cpu,
        "-smp", str(smp),
        "-m", mem,
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-chardev", "stdio,id=console,signal=on",
        "-serial", "chardev:console",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:8080",
        "-device", "virtio-net-device,netdev=net0",
        "-kernel", kernel,
        "-initrd", initrd,
        "-append", append,
    ]


def torito_command(image, mem, accel, port, smp):
    return [RUN_SH, image, "--mem", mem, "--accel", accel, "--smp", str(smp),
            "--forward", f"{port}:8080"]


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
    parser.add_argument("--torito", required=True)
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--initrd", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mem", default="256M")
    parser.add_argument("--accel", default="tcg")
    parser.add_argument("--tsc-khz", default="")
    parser.add_argument("--reps", type=int, default=3)
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
        "torito": torito_command(args.torito, args.mem, args.accel, ports["torito"], smp),
        "linux": linux_command(args.kernel, args.initrd, args.mem, args.accel,
                               ports["linux"], args.tsc_khz, smp),
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
            guests[name] = Guest(name, commands[name], log, ready=READY)
            if not guests[name].wait_ready():
                print(f"bench/http: {name} never printed the listening line; console tail:\n"
                      f"{guests[name].tail()}", file=sys.stderr)
                return 1
            wrk(ports[name], max(connections), WARM_UP_S)
        for rep in range(args.reps):
            order = ("torito", "linux") if rep % 2 == 0 else ("linux", "torito")
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
        t = statistics.median(results[("torito", c)]) if results[("torito", c)] else None
        linux = statistics.median(results[("linux", c)]) if results[("linux", c)] else None
        ratio = f"{t / linux:.2f}x" if t and linux else "-"
        label = f"{smp} vCPU, {c} connection" + ("s" if c > 1 else "")
        print(f"  {label:<24} {t or 0:>13.0f} {linux or 0:>12.0f} {ratio:>13}")
    for note in notes:
        print(f"  note: {note}")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
