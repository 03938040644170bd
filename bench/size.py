#!/usr/bin/env python3
"""Where an image's bytes go: the stripped size, the sections, the largest symbols and
the symbols grouped by crate/module; with two ELFs, what changed between them.

Why: issue 11 sets size targets on the stripped linked image (hello <= 64 KB, echo <=
160 KB). Every size change is measured symbol by symbol against the image before it, so
a commit can say what it saved and where; the grouping shows which module to read next.

    python3 bench/size.py build/hello.elf                 # sizes, top symbols, groups
    python3 bench/size.py OLD.elf NEW.elf                 # the difference, per symbol
    python3 bench/size.py --top 40 --depth 3 build/echo.elf

Symbols come from `nm -S -C` (the image keeps its symbol table); the stripped size is
what `objcopy --strip-all` leaves.
"""

import argparse
import os
import re
import signal
import subprocess
import tempfile
from collections import defaultdict


def stripped_size(elf):
    """Bytes of the ELF after `objcopy --strip-all`."""
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "stripped")
        subprocess.run(["objcopy", "--strip-all", elf, out], check=True)
        return os.path.getsize(out)


def sections(elf):
    """name -> size of the allocated sections (`size -A`)."""
    listing = subprocess.run(["size", "-A", elf], capture_output=True, text=True, check=True)
    result = {}
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            result[parts[0]] = int(parts[1])
    return result


def sized_symbols(elf):
    """name -> (size, nm type letter) of every symbol with a size; a name defined twice
    (a generic instantiated twice, two `{closure}`s) adds up."""
    listing = subprocess.run(
        ["nm", "-S", "-C", elf], capture_output=True, text=True, check=True
    ).stdout
    result = {}
    for line in listing.splitlines():
        match = re.match(r"[0-9a-f]+ ([0-9a-f]+) (\w) (.*)", line)
        if not match:
            continue
        size, kind, name = int(match[1], 16), match[2], match[3]
        old = result.get(name, (0, kind))
        result[name] = (old[0] + size, kind)
    return result


def group(name, depth):
    """The first `depth` path segments of a demangled name, ignoring generic arguments
    and the `<T as Trait>` wrapper (the implementing type's path counts)."""
    name = re.sub(r"^<&?(?:mut )?(.*?) as .*$", r"\1", name)
    name = re.sub(r"^<([^<>]*)>::", r"\1::", name)
    plain, level = "", 0
    for char in name:
        if char == "<":
            level += 1
        elif char == ">":
            level -= 1
        elif level == 0:
            plain += char
    return "::".join(plain.split("::")[:depth])


def report(elf, top, depth):
    print(f"{elf}: {stripped_size(elf):,} B stripped")
    print("  " + ", ".join(f"{n} {s:,}" for n, s in sections(elf).items() if not n.startswith(".bss")))
    symbols = sized_symbols(elf)
    print(f"largest {top} symbols (text and read-only data):")
    shown = [(name, size, kind) for name, (size, kind) in symbols.items() if kind not in "bB"]
    for name, size, kind in sorted(shown, key=lambda s: -s[1])[:top]:
        print(f"  {size:7,} {kind} {name[:110]}")
    groups = defaultdict(int)
    for name, (size, kind) in symbols.items():
        if kind in "tTwWrR":
            groups[group(name, depth)] += size
    print(f"grouped to {depth} path segments:")
    for name, size in sorted(groups.items(), key=lambda g: -g[1])[:top]:
        print(f"  {size:7,} {name}")


def difference(old, new, top):
    before, after = stripped_size(old), stripped_size(new)
    print(f"stripped: {before:,} -> {after:,} B ({after - before:+,})")
    old_sections, new_sections = sections(old), sections(new)
    for name in new_sections:
        if not name.startswith(".bss") and old_sections.get(name) != new_sections[name]:
            print(f"  {name}: {old_sections.get(name, 0):,} -> {new_sections[name]:,}")
    old_symbols, new_symbols = sized_symbols(old), sized_symbols(new)
    changes = []
    for name in set(old_symbols) | set(new_symbols):
        a, b = old_symbols.get(name, (0, ""))[0], new_symbols.get(name, (0, ""))[0]
        if a != b:
            changes.append((b - a, a, b, name))
    changes.sort(key=lambda c: -abs(c[0]))
    print(f"largest {top} symbol changes (old -> new):")
    for delta, a, b, name in changes[:top]:
        print(f"  {delta:+7,} {a:7,} -> {b:7,} {name[:100]}")
    print(f"  sum of symbol changes: {sum(c[0] for c in changes):+,}")


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends quietly
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("elf", nargs="+", help="one ELF to report, or OLD NEW to compare")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--depth", type=int, default=2, help="path segments per group")
    arguments = parser.parse_args()
    if len(arguments.elf) == 1:
        report(arguments.elf[0], arguments.top, arguments.depth)
    elif len(arguments.elf) == 2:
        difference(*arguments.elf, arguments.top)
    else:
        parser.error("give one ELF or two")


if __name__ == "__main__":
    main()
