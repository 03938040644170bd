#!/usr/bin/env python3
"""The networking bench: Torito's echo against a Linux guest's, same QEMU, same client.

usage: bench.py --torito ECHO.ELF --kernel VMLINUZ --initrd INITRAMFS --echod ECHOD --out DIR
                [--mem SIZE] [--accel tcg|kvm] [--tsc-khz N] [--reps N]
                [--mem-candidates 2M,3M,...] [--client-args "..."] [--linux-append "..."]

Called by bench/net/run.sh, which builds the initramfs and picks the accelerator.

1. Boots both guests (Torito through qemu/run.sh; Linux through qemu-system-x86_64 with
   the same flags, see linux_command), one after the other, each with its own forwarded
   host port, and waits for "echo: listening on port 5555" on each console.
2. For each of --reps rounds, runs client.py against each (the order alternates between
   rounds), both guests staying up, and takes the median of each figure over the rounds.
   Each phase of the client (round trips, bulk, connections) runs on its own, and the CPU
   time QEMU's threads spend meanwhile is read from /proc/PID/task/*/schedstat: the vCPU
   thread's (under TCG: the guest's own work, plus the device registers it touches) and
   the main loop's (QEMU's user networking and the virtio-net device's receive side).
   They move less than wall-clock figures with the machine's other load (not none:
   contention costs TCG caches and the host scheduler).
   Each round also measures the floor: the same client against ECHOD run on the host
   (127.0.0.1, no VM), i.e. what the client and the host's loopback cost by themselves.
3. Tries Torito's echo under each of --mem-candidates: boots, prints the listening line,
   answers one echo.
Console logs go to DIR. Prints the report on stdout. Every wait is bounded.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "linux"))
from guests import (MEM_TIMEOUT, Guest, add_arguments, fmt, free_port,  # noqa: E402
                    linux_command, median, orders, ratio, start_guests, torito_command)
from guests import memory_sweep as memory_sweep_of  # noqa: E402  (bench/linux/guests.py)

CLIENT = os.path.join(HERE, "client.py")
READY = b"echo: listening on port 5555"
PHASES = ("round_trip", "bulk", "concurrent")


def run_client(port, extra, timeout=600):
    """client.py's JSON result, or a result whose errors say why there is none."""
    try:
        out = subprocess.run([sys.executable, CLIENT, str(port)] + extra, capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"errors": {"client": f"no result within {timeout} s"}}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"errors": {"client": f"exit {out.returncode}: {out.stderr.strip()[-300:]}"}}


def memory_sweep(args):
    print(f"least memory for Torito's echo (microvm; must print the listening line within "
          f"{MEM_TIMEOUT:.0f} s and answer one echo):")

    def probe(port):
        ping = subprocess.run([sys.executable, CLIENT, str(port), "--ping", "--timeout", "10"],
                              capture_output=True, text=True, timeout=60)
        return None if ping.returncode == 0 else "no echo: " + ping.stderr.strip()[-100:]

    memory_sweep_of(args.mem_candidates, args.out, "torito",
                    lambda mem, port: torito_command(args.torito, mem, args.accel, port, 5555),
                    READY, probe)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, mem="128M")
    parser.add_argument("--echod", required=True)
    parser.add_argument("--linux-append", default="", help="more Linux kernel arguments")
    parser.add_argument("--mem-candidates", default="2M,3M,4M,6M,8M,16M")
    parser.add_argument("--client-args", default="")
    parser.add_argument("--skip-mem", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    client_args = args.client_args.split()

    ports = {"torito": free_port(), "linux": free_port()}
    commands = {
        "torito": torito_command(args.torito, args.mem, args.accel, ports["torito"], 5555),
        "linux": linux_command(args, ports["linux"], 5555),
    }
    print(f"guests: microvm, 1 vCPU, -m {args.mem}, virtio-net-device, user networking, "
          f"accel {args.accel}")
    for name in ("torito", "linux"):
        print(f"  {name}: {' '.join(commands[name])}")
    print()

    guests = {}
    floor_port = free_port()
    floor = Guest("floor", [args.echod, str(floor_port)], os.path.join(args.out, "floor.log"),
                  ready=b"echo: listening on port")
    results = {"torito": [], "linux": [], "floor": []}
    try:
        if not floor.wait_ready(10):
            print(f"bench: the host echod did not start: {floor.tail()}", file=sys.stderr)
            return 1
        # Booted one after the other, so each boot time is taken on a machine not busy
        # booting the other.
        for name in ("torito", "linux"):
            guests[name] = Guest(name, commands[name], os.path.join(args.out, f"{name}.log"),
                                 READY)
            if not start_guests({name: guests[name]}, "bench/net"):
                return 1
        boot = {name: guests[name].ready_at for name in guests}

        for rep, order in orders(args.reps):
            for name in order:
                if not guests[name].alive():
                    results[name].append({"errors": {"guest": "QEMU has ended"}})
                    continue
                result = {"errors": {}}
                for phase in PHASES:
                    before = guests[name].cpu_ns()
                    part = run_client(ports[name], client_args + ["--phases", phase])
                    after = guests[name].cpu_ns()
                    result["errors"].update(part.pop("errors", {}))
                    result.update(part)
                    if before and after:
                        result[f"{phase}_main_ns"] = after[0] - before[0]
                        result[f"{phase}_vcpu_ns"] = after[1] - before[1]
                results[name].append(result)
                status = "ok" if not result.get("errors") else f"errors: {result['errors']}"
                shown = {k: v for k, v in result.items() if k != "errors" and not k.endswith("_ns")}
                print(f"  round {rep + 1} {name:<6} {json.dumps(shown)} {status}", file=sys.stderr)
            results["floor"].append(run_client(floor_port, client_args))
        for name in guests:
            if not guests[name].alive():
                print(f"bench: {name}'s QEMU ended during the bench; console tail:\n"
                      f"{guests[name].tail()}", file=sys.stderr)
    finally:
        for guest in guests.values():
            guest.stop()
        floor.stop()

    def med(name, key):
        return median([r.get(key) for r in results[name]])

    rows = [
        ("boot to listening (ms, 1 run)", boot["torito"] * 1000, boot["linux"] * 1000, 0,
         "lower", None),
    ] + [
        (label, med("torito", key), med("linux", key), digits, better, med("floor", key))
        for label, key, digits, better in [
            ("round trip 64 B, median (us)", "rt_median_us", 1, "lower"),
            ("round trip 64 B, p99 (us)", "rt_p99_us", 1, "lower"),
            ("bulk echo, one conn (MiB/s)", "bulk_mib_s", 2, "higher"),
            ("50 conns x 20 round trips (s)", "concurrent_s", 3, "lower"),
            ("50 connects, one by one (s)", "setup_s", 3, "lower"),
        ]
    ]
    print(f"results: medians of {args.reps} interleaved rounds (TCG numbers: they say how "
          f"the two compare under this emulator, not what hardware would do)" if args.accel
          == "tcg" else f"results: medians of {args.reps} interleaved rounds")
    print(f"  {'':<32} {'Torito':>10} {'Linux':>10} {'Torito/Linux':>13} {'floor':>10}")
    for label, t, l, digits, better, f in rows:
        r = ratio(t, l)
        print(f"  {label:<32} {fmt(t, digits):>10} {fmt(l, digits):>10} "
              f"{(fmt(r, 2) + 'x') if r is not None else '-':>13} {fmt(f, digits):>10}"
              f"  ({better} is better)")
    print("  floor: the same client against bench/net/echo.c on the host's loopback, no VM")
    rt, bulk = ratio(rows[1][1], rows[1][2]), ratio(rows[3][1], rows[3][2])
    print(f"  targets: round trip <= 0.5x: {'met' if rt is not None and rt <= 0.5 else 'not met'}"
          f"; bulk >= 2x: {'met' if bulk is not None and bulk >= 2 else 'not met'}")
    print()

    def per(name, phase, which, count_key, scale):
        values = []
        for r in results[name]:
            ns, count = r.get(f"{phase}_{which}_ns"), r.get(count_key)
            if ns is not None and count and not r["errors"].get(phase):
                values.append(ns / count / scale)
        return median(values)

    print("CPU time of the guest's QEMU process per unit of work (medians; under TCG the vCPU")
    print("thread's time is the guest's own work; the main loop runs user networking):")
    print(f"  {'':<40} {'Torito':>10} {'Linux':>10} {'Torito/Linux':>13}")
    for label, phase, which, count_key, scale, digits in [
        ("vCPU per round trip (us)", "round_trip", "vcpu", "rt_count", 1e3, 1),
        ("main loop per round trip (us)", "round_trip", "main", "rt_count", 1e3, 1),
        ("vCPU per MiB of bulk echo (ms)", "bulk", "vcpu", "bulk_mib", 1e6, 1),
        ("main loop per MiB of bulk echo (ms)", "bulk", "main", "bulk_mib", 1e6, 1),
        ("vCPU per round trip, 50-conn phase (us)", "concurrent", "vcpu", "conc_count", 1e3, 1),
    ]:
        t = per("torito", phase, which, count_key, scale)
        l = per("linux", phase, which, count_key, scale)
        r = ratio(t, l)
        print(f"  {label:<40} {fmt(t, digits):>10} {fmt(l, digits):>10} "
              f"{(fmt(r, 2) + 'x') if r is not None else '-':>13}")
    for name in ("torito", "linux", "floor"):
        for i, r in enumerate(results[name]):
            if r.get("errors"):
                print(f"  {name} round {i + 1} errors: {r['errors']}")
    print()

    if not args.skip_mem:
        memory_sweep(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
