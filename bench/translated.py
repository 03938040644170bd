#!/usr/bin/env python3
"""How much kernel code QEMU translated on the way to main, from a --trace-code log.

usage: translated.py LOG ELF [--until SYMBOL] [--by-function N]

LOG is what `qemu/run.sh IMAGE --trace-code LOG` wrote (QEMU's `-d in_asm`: one "IN:"
block per translation, with its instructions). ELF is the kernel as linked, with its
symbols (build/NAME.elf).

Counts the translation blocks that start inside the kernel image, the distinct
instructions in them and how many of those access memory, up to the first block at SYMBOL (default torito_app_main, the
application's main: what comes before it is the kernel's boot). Firmware and option-ROM
code lie outside the image and are not counted: the floor kernel pays for them too.

Why: under TCG a boot's cost is mostly QEMU translating code that runs once, about in
proportion to these numbers, an instruction that accesses memory costing several times
one that does not (docs/performance.md, "What the emulator charges"; bench/run.sh prices
each kind in the same batch). They do not depend on the machine's load, unlike the
wall-clock timings next to them.

Prints "instructions N (M access memory) blocks B"; with --by-function, then the N symbols that hold the
most of those instructions.
"""

import bisect
import collections
import re
import sys

from elf_symbols import symbols


# Mnemonics that access memory without a memory operand: the stack and string operations.
IMPLICIT_MEMORY = re.compile(r"(push|pop|call|ret|leave|enter|iret|stos|movs|lods|cmps|scas)")


def blocks(log):
    """Each translated block's instructions as (address, accesses memory), in order."""
    block = None
    with open(log, errors="replace") as lines:
        for line in lines:
            if line.startswith("IN:"):
                if block:
                    yield block
                block = []
                continue
            # "0xADDRESS:  BYTES  MNEMONIC OPERANDS" (AT&T syntax: memory operands have
            # parentheses, e.g. 8(%rsp) or 0x10(%rip)). A long instruction's last bytes
            # continue on a line of their own, with no mnemonic: not an instruction.
            match = re.match(r"^0x([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*([a-z]\S*)\s*(.*)", line)
            if match and block is not None:
                mnemonic, operands = match.group(2), match.group(3)
                memory = "(" in operands or bool(IMPLICIT_MEMORY.match(mnemonic))
                block.append((int(match.group(1), 16), memory))
    if block:
        yield block


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    log, elf, rest = argv[0], argv[1], argv[2:]
    until, by_function = "torito_app_main", 0
    while rest:
        if rest[0] == "--until" and len(rest) > 1:
            until, rest = rest[1], rest[2:]
        elif rest[0] == "--by-function" and len(rest) > 1:
            by_function, rest = int(rest[1]), rest[2:]
        else:
            sys.exit(__doc__)
    addresses, names, by_name = symbols(elf)
    for needed in ("__kernel_start", "__kernel_end", until):
        if needed not in by_name:
            sys.exit(f"translated: {elf} has no symbol {needed} (use build/NAME.elf)")
    start, end, stop = by_name["__kernel_start"], by_name["__kernel_end"], by_name[until]

    count, seen, reached = 0, {}, False
    for block in blocks(log):
        if block[0][0] == stop:
            reached = True
            break
        if start <= block[0][0] < end:
            count += 1
            seen.update((address, memory) for address, memory in block if start <= address < end)
    if not reached:
        sys.exit(f"translated: no block at {until} ({stop:#x}) in {log}: did the kernel reach it?")
    print(f"instructions {len(seen)} ({sum(seen.values())} access memory) blocks {count}")

    if by_function:
        per_symbol = collections.Counter(
            names[bisect.bisect_right(addresses, address) - 1] for address in seen
        )
        for name, instructions in per_symbol.most_common(by_function):
            print(f"  {instructions:6d}  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
