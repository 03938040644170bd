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
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUN_SH = os.path.join(ROOT, "qemu", "run.sh")
CLIENT = os.path.join(HERE, "client.py")
READY = b"echo: listening on port 5555"
BOOT_TIMEOUT = 120.0  # s: a bound for a hung guest, not a measurement
PHASES = ("round_trip", "bulk", "concurrent")
MEM_TIMEOUT = 15.0  # s: the same in the memory sweep (a working echo listens in < 1 s)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def linux_command(kernel, initrd, mem, accel, port, tsc_khz, extra_append=""):
    """The Linux guest's QEMU command line: qemu/run.sh's flags for microvm + PVH boot +
    one --forward, with -initrd added. KEEP IN SYNC with qemu/run.sh (run.sh has no
    -initrd option, so the bench cannot go through it)."""
    cpu = "host,-arch-capabilities" if accel == "kvm" else "max"
    append = "console=ttyS0 quiet panic=-1"
    if tsc_khz:
        # Under TCG the guest's TSC is the host's; Linux's PIT calibration of it fails
        # often under TCG, and that kernel then hangs early (see tsc_khz.c).
        append += f" tsc_early_khz={tsc_khz}"
    if extra_append:
        append += " " + extra_append
    return [
        "qemu-system-x86_64",
        "-machine", "microvm",
        "-accel", accel,
        "-cpu", cpu,
        "-smp", "1",
        "-m", mem,
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-chardev", "stdio,id=console,signal=on",
        "-serial", "chardev:console",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:5555",
        "-device", "virtio-net-device,netdev=net0",
        "-kernel", kernel,
        "-initrd", initrd,
        "-append", append,
    ]


class Guest:
    """A guest VM whose console (QEMU's stdout) is collected by a thread into a log."""

    def __init__(self, name, command, log_path, ready=READY):
        self.name, self.command, self.log_path = name, command, log_path
        self.marker = ready
        self.console = bytearray()
        self.ready_at = None
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.start = time.perf_counter()
        # Its own process group (run.sh and its QEMU), stdin a pipe nobody writes.
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        bufsize=0, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        fd = self.process.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            with self.lock:
                self.console += chunk
                if self.ready_at is None and self.marker in self.console:
                    self.ready_at = time.perf_counter() - self.start
                    self.ready.set()
        self.ready.set()  # QEMU ended: wake a waiter (it checks ready_at)

    def wait_ready(self, timeout=BOOT_TIMEOUT):
        self.ready.wait(timeout)
        return self.ready_at is not None

    def qemu_pid(self):
        """QEMU's pid: the process itself, or run.sh's child."""
        children = self._children(self.process.pid)
        return children[0] if children else self.process.pid

    def cpu_ns(self):
        """(main thread, other threads) CPU time of QEMU so far, ns. The other threads are
        the vCPU thread and QEMU's mostly idle helpers (RCU)."""
        pid = self.qemu_pid()
        main = others = 0
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns = int(f.read().split()[0])
                if int(tid) == pid:
                    main += ns
                else:
                    others += ns
        except (OSError, ValueError):
            return None
        return main, others

    def alive(self):
        return self.process.poll() is None

    def tail(self, lines=25):
        with self.lock:
            text = self.console.decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self):
        """Ends QEMU. For run.sh, QEMU (its child) first, so run.sh's own cleanup runs."""
        if self.alive():
            for pid in self._children(self.process.pid) or [self.process.pid]:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.reader.join(5)
        with open(self.log_path, "wb") as f:
            f.write(self.console)

    @staticmethod
    def _children(pid):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(child) for child in f.read().split()]
        except OSError:
            return []


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


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def torito_command(image, mem, accel, port):
    return [RUN_SH, image, "--mem", mem, "--accel", accel, "--forward", f"{port}:5555"]


def memory_sweep(args):
    print(f"least memory for Torito's echo (microvm; must print the listening line within "
          f"{MEM_TIMEOUT:.0f} s and answer one echo):")
    smallest = None
    for mem in args.mem_candidates.split(","):
        port = free_port()
        log = os.path.join(args.out, f"torito-mem-{mem}.log")
        guest = Guest("torito", torito_command(args.torito, mem, args.accel, port), log)
        verdict = "ok"
        try:
            if not guest.wait_ready(MEM_TIMEOUT):
                verdict = (f"hung: no listening line within {MEM_TIMEOUT:.0f} s"
                           if guest.alive()
                           else f"QEMU ended (status {guest.process.returncode}) before listening")
            else:
                ping = subprocess.run([sys.executable, CLIENT, str(port), "--ping", "--timeout",
                                       "10"], capture_output=True, text=True, timeout=60)
                if ping.returncode != 0:
                    verdict = "listens, but no echo: " + ping.stderr.strip()[-100:]
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
    parser.add_argument("--echod", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mem", default="128M")
    parser.add_argument("--accel", default="tcg")
    parser.add_argument("--tsc-khz", default="")
    parser.add_argument("--linux-append", default="", help="more Linux kernel arguments")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--mem-candidates", default="2M,3M,4M,6M,8M,16M")
    parser.add_argument("--client-args", default="")
    parser.add_argument("--skip-mem", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    client_args = args.client_args.split()

    ports = {"torito": free_port(), "linux": free_port()}
    commands = {
        "torito": torito_command(args.torito, args.mem, args.accel, ports["torito"]),
        "linux": linux_command(args.kernel, args.initrd, args.mem, args.accel, ports["linux"],
                               args.tsc_khz, args.linux_append),
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
            guests[name] = Guest(name, commands[name], os.path.join(args.out, f"{name}.log"))
            if not guests[name].wait_ready():
                print(f"bench: {name} never printed the listening line; console tail:\n"
                      f"{guests[name].tail()}", file=sys.stderr)
                return 1
        boot = {name: guests[name].ready_at for name in guests}

        for rep in range(args.reps):
            order = ("torito", "linux") if rep % 2 == 0 else ("linux", "torito")
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
