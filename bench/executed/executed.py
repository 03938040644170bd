#!/usr/bin/env python3
"""Instructions a kernel executes before main, counted by QEMU (bench/executed/plugin.c).

usage: executed.py ELF [--shift S] [--mem SIZE] [--until SYMBOL] [--by-function N]
                       [-- RUN.SH OPTIONS]

Boots ELF (build/NAME.elf: the image as linked, with its symbol table) once through
qemu/run.sh under TCG with `-icount shift=S` and the plugin, which counts every guest
instruction executed from the kernel's first instruction to the application's main
(`torito_app_main`), or to the first call of SYMBOL with --until (a name as `nm`
prints it, mangled). Prints "executed N"; with --by-function N, then the N functions that
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
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_SH = os.path.join(ROOT, "qemu", "run.sh")
PLUGIN = os.path.join(ROOT, "target", "bench", "libexecuted.so")
TIMEOUT = 300.0  # seconds: a bound for a hung guest, not a measurement

sys.path.insert(0, os.path.join(ROOT, "bench"))
from elf_symbols import symbols  # noqa: E402 (bench/ is on the path only from here)


def mangled(elf):
    """name -> address for the ELF's symbols as they are spelled in it (not demangled)."""
    listing = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    return {
        parts[2]: int(parts[0], 16)
        for parts in (line.split(" ", 2) for line in listing.splitlines())
        if len(parts) == 3 and re.fullmatch(r"[0-9a-f]+", parts[0])
    }


def count(elf, shift, options, until="torito_app_main"):
    """Boots ELF with the plugin; returns (total, [(address, instructions, executions)])."""
    if not os.path.exists(PLUGIN):
        sys.exit(f"executed: no {PLUGIN}: run bench/executed/build.sh first")
    _, _, by_name = symbols(elf)
    by_name.update(mangled(elf))
    for needed in ("__kernel_start", "__kernel_end", until):
        if needed not in by_name:
            sys.exit(f"executed: {elf} has no symbol {needed}: give it build/NAME.elf")
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "executed.txt")
        spec = (
            f"{PLUGIN},start={by_name['__kernel_start']:#x},end={by_name['__kernel_end']:#x},"
            f"main={by_name[until]:#x},out={out}"
        )
        # The guest may run on after the count is written (echo serves forever): wait
        # for the count or the end of QEMU, whichever comes first, then end QEMU.
        process = subprocess.Popen(
            [RUN_SH, elf, "--accel", "tcg", "--icount", str(shift), "--plugin", spec] + options,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, ended as a whole
        )
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(out) and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        console, errors = process.communicate()
        if not os.path.exists(out):
            sys.exit(
                f"executed: {elf} {' '.join(options)}: no count written: {until} was never "
                f"reached (exit status {process.returncode})\n"
                f"--- console ---\n{console.decode(errors='replace')}"
                f"--- stderr ---\n{errors.decode(errors='replace')}"
            )
        with open(out) as lines:
            total = int(lines.readline().split()[1])
            blocks = []
            for line in lines:
                address, instructions, executions = line.split()
                blocks.append((int(address, 16), int(instructions), int(executions)))
    return total, blocks


def wait_for_counts(out, seconds=30):
    """Waits for the plugin's count file OUT (QEMU writes it as it exits, on SIGTERM too);
    returns {address: instructions executed there}, or None if none was written."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not os.path.exists(out):
        return None
    counts = collections.Counter()
    with open(out) as lines:
        lines.readline()
        for line in lines:
            address, instructions, executions = line.split()
            counts[int(address, 16)] += int(instructions) * int(executions)
    return counts


def by_function(elf, counts):
    """{function name: instructions} from {address: instructions}, by the ELF's symbols."""
    addresses, names, _ = symbols(elf)
    result = collections.Counter()
    for address, executed in counts.items():
        at = bisect.bisect_right(addresses, address) - 1
        result[names[at] if at >= 0 else f"{address:#x}"] += executed
    return result


def print_profile(profile, unit, functions, width=110):
    """Prints the `functions` largest entries of profile["image"] ({function: instructions
    per unit}), or, when profile has a "baseline", the largest changes from it."""
    if not functions:
        return
    if "baseline" in profile:
        changes = profile["image"].copy()
        changes.subtract(profile["baseline"])
        listed = sorted(changes.items(), key=lambda item: -abs(item[1]))[:functions]
        print(f"  largest changes per {unit} (image - baseline; names differ when code moved):")
    else:
        listed = profile["image"].most_common(functions)
        print(f"  largest shares per {unit}:")
    for name, value in listed:
        print(f"    {value:+12.0f}  {name[:width]}")


def main(argv):
    options = []
    if "--" in argv:
        options = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    if not argv:
        sys.exit(__doc__)
    elf, rest, functions, shift, until = argv[0], argv[1:], 0, 0, "torito_app_main"
    while rest:
        if rest[0] == "--until" and len(rest) > 1:
            until, rest = rest[1], rest[2:]
            continue
        if rest[0] == "--shift" and len(rest) > 1:
            shift, rest = int(rest[1]), rest[2:]
        elif rest[0] == "--mem" and len(rest) > 1:
            options += ["--mem", rest[1]]
            rest = rest[2:]
        elif rest[0] == "--by-function" and len(rest) > 1:
            functions, rest = int(rest[1]), rest[2:]
        else:
            sys.exit(__doc__)
    total, blocks = count(elf, shift, options, until)
    print(f"executed {total}")
    if functions:
        counts = collections.Counter()
        for address, instructions, executions in blocks:
            counts[address] += instructions * executions
        for name, executed in by_function(elf, counts).most_common(functions):
            print(f"  {executed:8d}  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
