#!/usr/bin/env python3
"""Instructions a kernel executes before main, counted by QEMU (bench/executed/plugin.c).

usage: executed.py ELF [--shift S] [--mem SIZE] [--by-function N] [-- RUN.SH OPTIONS]

Boots ELF (build/NAME.elf: the image as linked, with its symbol table) once through
qemu/run.sh (with no devices: echo then exits after main) under TCG with `-icount shift=S` and the plugin, which counts every guest
instruction executed from the kernel's first instruction to the application's main
(`torito_app_main`). Prints "executed N"; with --by-function N, then the N functions that
executed the most.

Why this measure: it is the same on every run and every host, and it prices the work a
boot does, as real hardware would, not what QEMU's translator happens to charge for it
(that is bench/translated.py's measure; docs/performance.md). Under `-icount shift=S`
the guest's clocks (TSC, PIT, APIC timer) advance 2^S ns per executed instruction, so
even a loop that waits for a time runs a fixed number of times. S sets how many: at 0
(the default, a CPU of one instruction per ns, as real ones roughly are) a 1 ms wait
costs about a million instructions; at 10 (one instruction per 1.024 us) about a
thousand, so the count is then the boot's work with its waits all but left out.
The plugin must be built first (bench/executed/build.sh).
"""

import bisect
import collections
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_SH = os.path.join(ROOT, "qemu", "run.sh")
PLUGIN = os.path.join(ROOT, "target", "bench", "libexecuted.so")


def symbols(elf):
    """(sorted addresses, names) of the ELF's code symbols, and name -> address."""
    listing = subprocess.run(
        ["nm", "-n", "--demangle", elf], capture_output=True, text=True, check=True
    ).stdout
    addresses, names, by_name = [], [], {}
    for line in listing.splitlines():
        parts = line.split(" ", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]+", parts[0]):
            continue
        address = int(parts[0], 16)
        by_name.setdefault(parts[2], address)
        if parts[1] in "tTwW":
            addresses.append(address)
            names.append(parts[2])
    return addresses, names, by_name


def count(elf, shift, options):
    """Boots ELF with the plugin; returns (total, [(address, instructions, executions)])."""
    if not os.path.exists(PLUGIN):
        sys.exit(f"executed: no {PLUGIN}: run bench/executed/build.sh first")
    _, _, by_name = symbols(elf)
    for needed in ("__kernel_start", "__kernel_end", "torito_app_main"):
        if needed not in by_name:
            sys.exit(f"executed: {elf} has no symbol {needed}: give it build/NAME.elf")
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "executed.txt")
        spec = (
            f"{PLUGIN},start={by_name['__kernel_start']:#x},end={by_name['__kernel_end']:#x},"
            f"main={by_name['torito_app_main']:#x},out={out}"
        )
        run = subprocess.run(
            [RUN_SH, elf, "--accel", "tcg", "--icount", str(shift), "--plugin", spec] + options,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # The exit status is the application's (echo without a network device exits 1
        # after main): only a missing count means the kernel never reached main.
        if not os.path.exists(out):
            sys.exit(
                f"executed: {elf} {' '.join(options)}: exit status {run.returncode}, "
                "no count written: main was never reached\n"
                f"--- console ---\n{run.stdout}--- stderr ---\n{run.stderr}"
            )
        with open(out) as lines:
            total = int(lines.readline().split()[1])
            blocks = []
            for line in lines:
                address, instructions, executions = line.split()
                blocks.append((int(address, 16), int(instructions), int(executions)))
    return total, blocks


def main(argv):
    options = []
    if "--" in argv:
        options = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    if not argv:
        sys.exit(__doc__)
    elf, rest, by_function, shift = argv[0], argv[1:], 0, 0
    while rest:
        if rest[0] == "--shift" and len(rest) > 1:
            shift, rest = int(rest[1]), rest[2:]
        elif rest[0] == "--mem" and len(rest) > 1:
            options += ["--mem", rest[1]]
            rest = rest[2:]
        elif rest[0] == "--by-function" and len(rest) > 1:
            by_function, rest = int(rest[1]), rest[2:]
        else:
            sys.exit(__doc__)
    total, blocks = count(elf, shift, options)
    print(f"executed {total}")
    if by_function:
        addresses, names, _ = symbols(elf)
        per_symbol = collections.Counter()
        for address, instructions, executions in blocks:
            at = bisect.bisect_right(addresses, address) - 1
            per_symbol[names[at] if at >= 0 else f"{address:#x}"] += instructions * executions
        for name, executed in per_symbol.most_common(by_function):
            print(f"  {executed:8d}  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
