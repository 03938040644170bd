#!/usr/bin/env python3
"""The kv bench: Torito's Redis-protocol store against Debian's redis-server in a Linux
guest, same QEMU line, same client (redis-benchmark).

usage: bench.py --torito KV.ELF --kernel VMLINUZ --initrd INITRAMFS --out DIR
                [--mem SIZE] [--accel tcg|kvm] [--tsc-khz N] [--reps N]
                [--requests N] [--pipelined-requests N] [--mem-candidates 2M,3M,...]
                [--linux-append "..."]

Called by bench/kv/run.sh, which builds the initramfs and picks the accelerator.

1. Boots both guests (Torito through qemu/run.sh; Linux through bench/net/bench.py's
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "net"))
import bench as net  # noqa: E402  (bench/net/bench.py: Guest, free_port, linux_command)

RUN_SH = os.path.join(ROOT, "qemu", "run.sh")
TORITO_READY = b"kv: listening on port 6379"
LINUX_READY = b"Ready to accept connections"
MEM_TIMEOUT = 15.0  # s: a bound for a hung guest in the memory sweep, not a measurement
BENCH_TIMEOUT = 600  # s: one redis-benchmark run

# (label, redis-benchmark options, which request count)
CONFIGS = [
    ("1 client", ["-c", "1"], "requests"),
    ("8 clients", ["-c", "8"], "requests"),
    ("1 client, -P 16", ["-c", "1", "-P", "16"], "pipelined_requests"),
    ("8 clients, -P 16", ["-c", "8", "-P", "16"], "pipelined_requests"),
]
TESTS = ("SET", "GET")


def torito_command(image, mem, accel, port):
    return [RUN_SH, image, "--mem", mem, "--accel", accel, "--forward", f"{port}:6379"]


def linux_command(args, port):
    command = net.linux_command(args.kernel, args.initrd, args.mem, args.accel, port,
                                args.tsc_khz, args.linux_append)
    # bench/net's command forwards to the echo port; the same forward, to Redis's.
    at = command.index("-netdev") + 1
    command[at] = f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:6379"
    return command


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
    ports = {"torito": net.free_port(), "linux": net.free_port()}
    guests = {
        "torito": net.Guest("torito", torito_command(args.torito, args.mem, args.accel,
                                                     ports["torito"]),
                            os.path.join(args.out, "kv-torito.log"), TORITO_READY),
        "linux": net.Guest("linux", linux_command(args, ports["linux"]),
                           os.path.join(args.out, "kv-linux.log"), LINUX_READY),
    }
    try:
        for name, guest in guests.items():
            if not guest.wait_ready():
                print(f"kv bench: {name} did not start listening; console tail:\n{guest.tail()}")
                return
        print(f"guests: microvm, 1 vCPU, -m {args.mem}, virtio-net-device, user networking, "
              f"accel {args.accel}; Torito booted in {guests['torito'].ready_at:.2f} s, "
              f"Linux + redis-server in {guests['linux'].ready_at:.2f} s (to listening)")
        results = {name: {config[0]: {test: [] for test in TESTS} for config in CONFIGS}
                   for name in guests}
        for round_number in range(args.reps):
            order = ["torito", "linux"] if round_number % 2 == 0 else ["linux", "torito"]
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


def memory_sweep(args):
    print(f"least memory for Torito's kv (microvm; must listen within {MEM_TIMEOUT:.0f} s "
          f"and answer a SET and a GET):")
    smallest = None
    for mem in args.mem_candidates.split(","):
        port = net.free_port()
        log = os.path.join(args.out, f"kv-mem-{mem}.log")
        guest = net.Guest("torito", torito_command(args.torito, mem, args.accel, port), log,
                          TORITO_READY)
        verdict = "ok"
        try:
            if not guest.wait_ready(MEM_TIMEOUT):
                verdict = (f"hung: no listening line within {MEM_TIMEOUT:.0f} s"
                           if guest.alive()
                           else f"QEMU ended (status {guest.process.returncode}) before listening")
            else:
                cli = ["timeout", "30", "redis-cli", "-p", str(port)]
                subprocess.run(cli + ["SET", "probe", "value"], capture_output=True, timeout=60)
                got = subprocess.run(cli + ["GET", "probe"], capture_output=True, text=True,
                                     timeout=60)
                if got.stdout.strip() != "value":
                    verdict = f"listens, but GET gave {got.stdout.strip()[:60]!r}"
        finally:
            guest.stop()
        if verdict != "ok":
            last = [line for line in guest.tail(5).splitlines()
                    if line.strip() and "terminating on signal" not in line]
            if last:
                verdict += f" (last console line: {last[-1][:100]})"
        print(f"  {mem:<6} {verdict}")
        if verdict == "ok" and smallest is None:
            smallest = mem
    print(f"  smallest that works: {smallest or 'none of them'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torito", required=True)
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--initrd", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mem", default="128M")
    parser.add_argument("--accel", default="tcg")
    parser.add_argument("--tsc-khz", default="")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--pipelined-requests", type=int, default=100000)
    parser.add_argument("--mem-candidates", default="1280K,1536K,2M,3M,4M,8M")
    parser.add_argument("--linux-append", default="")
    args = parser.parse_args()
    measure(args)
    print()
    memory_sweep(args)


if __name__ == "__main__":
    main()
