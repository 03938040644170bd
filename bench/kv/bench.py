#!/usr/bin/env python3
"""The kv bench: Torito's Redis-protocol store against Debian's redis-server in a Linux
guest, same QEMU line, same client (redis-benchmark).

usage: bench.py --torito KV.ELF --kernel VMLINUZ --initrd INITRAMFS --out DIR
                [--mem SIZE] [--accel tcg|kvm] [--tsc-khz N] [--reps N]
                [--requests N] [--pipelined-requests N] [--mem-candidates 2M,3M,...]
                [--linux-append "..."]

Called by bench/kv/run.sh, which builds the initramfs and picks the accelerator.

1. Boots both guests (Torito through qemu/run.sh; Linux through bench/linux/guests.py's
   linux_command, the same flags, with the forward pointed at 6379), each with its own
   forwarded host port, and waits for each to listen.
2. For each of --reps rounds, runs `redis-benchmark -t set,get` against each (the order
   alternates between rounds) at 1 and 8 clients, each without and with -P 16 (16
   requests in flight per client), and reports the median requests per second of each
   and the ratio Torito/Linux. Both guests stay up, one batch.
3. Tries Torito's kv under each of --mem-candidates: boots, listens, answers a SET and
   a GET through redis-cli.
Console logs go to DIR. Prints the report on stdout. Every wait is bounded.
"""

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "linux"))
from guests import (MEM_TIMEOUT, Guest, add_arguments, free_port, linux_command,  # noqa: E402
                    memory_sweep, orders, start_guests, torito_command)

TORITO_READY = b"kv: listening on port 6379"
LINUX_READY = b"Ready to accept connections"
BENCH_TIMEOUT = 600  # s: one redis-benchmark run

# (label, redis-benchmark options, which request count)
CONFIGS = [
    ("1 client", ["-c", "1"], "requests"),
    ("8 clients", ["-c", "8"], "requests"),
    ("1 client, -P 16", ["-c", "1", "-P", "16"], "pipelined_requests"),
    ("8 clients, -P 16", ["-c", "8", "-P", "16"], "pipelined_requests"),
]
TESTS = ("SET", "GET")


def redis_benchmark(port, options, requests):
    """{test: requests per second} from one redis-benchmark run (its CSV output)."""
    command = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
               "-n", str(requests), "--csv"] + options
    done = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT)
    rates = {}
    for line in done.stdout.splitlines():
        fields = [field.strip('"') for field in line.split(",")]
        if len(fields) >= 2 and fields[0] in TESTS:
            rates[fields[0]] = float(fields[1])
    if set(rates) != set(TESTS):
        raise RuntimeError(f"redis-benchmark {' '.join(options)}: no figures "
                           f"(status {done.returncode}): {done.stdout[-200:]} {done.stderr[-200:]}")
    return rates


def measure(args):
    ports = {"torito": free_port(), "linux": free_port()}
    guests = {
        "torito": Guest("torito", torito_command(args.torito, args.mem, args.accel,
                                                 ports["torito"], 6379),
                        os.path.join(args.out, "kv-torito.log"), TORITO_READY),
        "linux": Guest("linux", linux_command(args, ports["linux"], 6379),
                       os.path.join(args.out, "kv-linux.log"), LINUX_READY),
    }
    try:
        if not start_guests(guests, "bench/kv"):
            return
        print(f"guests: microvm, 1 vCPU, -m {args.mem}, virtio-net-device, user networking, "
              f"accel {args.accel}; Torito booted in {guests['torito'].ready_at:.2f} s, "
              f"Linux + redis-server in {guests['linux'].ready_at:.2f} s (to listening)")
        results = {name: {config[0]: {test: [] for test in TESTS} for config in CONFIGS}
                   for name in guests}
        for _, order in orders(args.reps):
            for label, options, count in CONFIGS:
                for name in order:
                    rates = redis_benchmark(ports[name], options, getattr(args, count))
                    for test in TESTS:
                        results[name][label][test].append(rates[test])
        print(f"redis-benchmark -t set,get (requests per second, median of {args.reps} "
              f"interleaved rounds; -n {args.requests}, with -P 16 -n {args.pipelined_requests}):")
        print(f"  {'':<22} {'':<4} {'Torito':>10} {'Linux':>10} {'Torito/Linux':>13}")
        for label, _, _ in CONFIGS:
            for test in TESTS:
                torito = statistics.median(results["torito"][label][test])
                linux = statistics.median(results["linux"][label][test])
                print(f"  {label:<22} {test:<4} {torito:>10.0f} {linux:>10.0f} "
                      f"{torito / linux:>12.2f}x")
    finally:
        for guest in guests.values():
            guest.stop()


def memory_sweep_kv(args):
    print(f"least memory for Torito's kv (microvm; must listen within {MEM_TIMEOUT:.0f} s "
          f"and answer a SET and a GET):")

    def probe(port):
        cli = ["timeout", "30", "redis-cli", "-p", str(port)]
        subprocess.run(cli + ["SET", "probe", "value"], capture_output=True, timeout=60)
        got = subprocess.run(cli + ["GET", "probe"], capture_output=True, text=True, timeout=60)
        return None if got.stdout.strip() == "value" else f"GET gave {got.stdout.strip()[:60]!r}"

    memory_sweep(args.mem_candidates, args.out, "kv",
                 lambda mem, port: torito_command(args.torito, mem, args.accel, port, 6379),
                 TORITO_READY, probe)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, mem="128M")
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--pipelined-requests", type=int, default=100000)
    parser.add_argument("--mem-candidates", default="1280K,1536K,2M,3M,4M,8M")
    parser.add_argument("--linux-append", default="")
    args = parser.parse_args()
    measure(args)
    print()
    memory_sweep_kv(args)


if __name__ == "__main__":
    main()
