#!/usr/bin/env python3
"""What the benches' bench.py scripts and run.sh scripts share about running two guests,
Torito and Linux, side by side (bench/{net,http,kv}/bench.py import it; bench/files and
bench/block run.sh call its `table` command):

- torito_command and linux_command: the two QEMU lines, Torito's through qemu/run.sh and
  Linux's with run.sh's flags copied (run.sh has no -initrd);
- Guest: a running guest whose console is collected into a log, with its ready line
  awaited (bounded) and its QEMU's CPU time readable;
- orders: the interleaved order of the rounds, so drift in the machine's load hits both;
- median, ratio, fmt: the report's arithmetic, tolerant of missing values;
- memory_sweep: the least memory a Torito service works in;
- `guests.py table FILE PATTERN`: medians per guest of result lines, and Torito/Linux.
"""

import os
import re
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
BOOT_TIMEOUT = 120.0  # s: a bound for a hung guest, not a measurement
MEM_TIMEOUT = 15.0  # s: the same in the memory sweep (a working service listens in < 1 s)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torito_command(image, mem, accel, port, guest_port, smp=1):
    """qemu/run.sh booting IMAGE with host PORT forwarded to the guest's GUEST_PORT."""
    return [RUN_SH, image, "--mem", mem, "--accel", accel, "--smp", str(smp),
            "--forward", f"{port}:{guest_port}"]


def linux_command(args, port, guest_port, smp=1):
    """The Linux guest's QEMU command line: qemu/run.sh's flags for microvm + PVH boot +
    one --forward (host PORT to the guest's GUEST_PORT), with -initrd added. ARGS carries
    kernel, initrd, mem, accel, tsc_khz and (optional) linux_append, as add_arguments
    declares them. KEEP IN SYNC with qemu/run.sh and bench/linux/guest.sh's linux_qemu
    (run.sh has no -initrd option, so the bench cannot go through it)."""
    cpu = "host,-arch-capabilities" if args.accel == "kvm" else "max"
    append = "console=ttyS0 quiet panic=-1"
    if args.tsc_khz:
        # Under TCG the guest's TSC is the host's; Linux's PIT calibration of it fails
        # often under TCG, and that kernel then hangs early (see tsc_khz.c).
        append += f" tsc_early_khz={args.tsc_khz}"
    if getattr(args, "linux_append", ""):
        append += " " + args.linux_append
    return [
        "qemu-system-x86_64",
        "-machine", "microvm",
        "-accel", args.accel,
        "-cpu", cpu,
        "-smp", str(smp),
        "-m", args.mem,
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-chardev", "stdio,id=console,signal=on",
        "-serial", "chardev:console",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:{guest_port}",
        "-device", "virtio-net-device,netdev=net0",
        "-kernel", args.kernel,
        "-initrd", args.initrd,
        "-append", append,
    ]


def add_arguments(parser, mem):
    """The options every bench.py takes from its run.sh: the images, where logs go, and
    the guests' memory (default MEM), accelerator and Linux's TSC rate."""
    parser.add_argument("--torito", required=True)
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--initrd", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mem", default=mem)
    parser.add_argument("--accel", default="tcg")
    parser.add_argument("--tsc-khz", default="")
    parser.add_argument("--reps", type=int, default=3)


class Guest:
    """A guest VM whose console (QEMU's stdout) is collected by a thread into a log."""

    def __init__(self, name, command, log_path, ready):
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


def start_guests(guests, what):
    """Waits for each of GUESTS ({name: Guest}, started one after the other by the caller
    or not) to print its ready line; on a timeout says which did not, with its console's
    tail, and returns False."""
    for name, guest in guests.items():
        if not guest.wait_ready():
            print(f"{what}: {name} never printed its ready line; console tail:\n"
                  f"{guest.tail()}", file=sys.stderr)
            return False
    return True


def orders(reps, names=("torito", "linux")):
    """(round number, the guests in the order that round measures them) for REPS rounds:
    the order alternates, so that drift in the machine's load hits both alike."""
    for rep in range(reps):
        yield rep, tuple(names) if rep % 2 == 0 else tuple(reversed(names))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def ratio_text(a, b):
    """"1.23x", or "-" when either side is missing."""
    r = ratio(a, b)
    return "-" if r is None else f"{r:.2f}x"


def memory_sweep(candidates, out, what, command, ready, probe):
    """Boots COMMAND(mem, port) under each of CANDIDATES (comma-separated sizes) and prints
    whether it printed READY within MEM_TIMEOUT and then passed PROBE(port) (which returns
    None, or what went wrong); then the smallest that worked. Every size is tried, so a
    size that fails above one that works shows."""
    smallest = None
    for mem in candidates.split(","):
        port = free_port()
        guest = Guest("torito", command(mem, port), os.path.join(out, f"{what}-mem-{mem}.log"),
                      ready)
        verdict = "ok"
        try:
            if not guest.wait_ready(MEM_TIMEOUT):
                verdict = (f"hung: no listening line within {MEM_TIMEOUT:.0f} s"
                           if guest.alive()
                           else f"QEMU ended (status {guest.process.returncode}) before listening")
            else:
                problem = probe(port)
                if problem:
                    verdict = f"listens, but {problem}"
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


def table(path, pattern, width):
    """Prints, for result lines "GUEST REST" in PATH whose REST matches PATTERN (groups:
    the measurement's name, its value, its unit; KiB/s shown as MiB/s), the median per
    guest and measurement and the ratio Torito/Linux."""
    rows = {}
    with open(path) as f:
        for line in f:
            guest, _, rest = line.partition(" ")
            m = re.match(pattern, rest.strip())
            if m:
                name, value, unit = m.group(1), float(m.group(2)), m.group(3)
                if unit == "KiB/s":
                    value, unit = value / 1024, "MiB/s"
                rows.setdefault((name, unit), {}).setdefault(guest, []).append(value)
    print(f"  {'':{width}} {'Torito':>10} {'Linux':>10} {'Torito/Linux':>13}")
    for (name, unit), guests in rows.items():
        t, lx = median(guests.get("torito", [])), median(guests.get("linux", []))
        print(f"  {name + ' (' + unit + ')':{width}} {fmt(t):>10} {fmt(lx):>10} "
              f"{ratio_text(t, lx):>13}")


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "table":
        sys.exit("usage: guests.py table RESULTS PATTERN WIDTH")
    table(sys.argv[2], sys.argv[3], int(sys.argv[4]))
