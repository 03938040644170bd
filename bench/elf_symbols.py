"""An ELF's symbols as `nm` lists them: shared by bench/translated.py and bench/executed/.

Why: both attribute guest instruction addresses to functions and look up the kernel's
bounds (__kernel_start, __kernel_end) and a stop symbol by name; one reading of `nm`
keeps the two measures attributing the same way.
"""

import re
import subprocess


def symbols(elf):
    """(sorted addresses, names) of the ELF's code symbols, and name -> address of all of
    its symbols (code and data), names demangled."""
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
