#!/usr/bin/env python3
"""Writes the bench's Linux initramfs: a gzip'd newc cpio archive, built without root and
without the cpio tool (the format is simple: a 110-byte ASCII header per entry).

usage: mkinitramfs.py OUT.cpio.gz INIT BUSYBOX ECHOD --modules /lib/modules/VERSION NAME...
                      [--files DEST=SOURCE...]

Contents: /init (INIT), /lib/init-common.sh (bench/net/init-common.sh, which every INIT
sources), /bin/busybox and the applet links /init uses, /bin/echod (ECHOD),
/lib/modules/M.ko for each module NAME and its dependencies (from modules.dep; modules
built into the kernel, per modules.builtin, are left out), /lib/modules/order listing them
dependencies first (the order /init loads them in), /dev/console (the kernel opens it for
init's stdio before /init can mount devtmpfs), and empty /proc, /sys, /dev.
ECHOD may be "-" for none. --files adds each SOURCE at DEST (a path in the archive,
its directories created; symbolic links followed), e.g. a server and its libraries
(bench/kv/run.sh: redis-server).
"""

import gzip
import lzma
import os
import sys

COMMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init-common.sh")
APPLETS = ["sh", "mount", "insmod", "usleep", "ls", "cat", "echo", "ip", "dmesg", "tail",
           "poweroff"]


class Cpio:
    def __init__(self):
        self.out = bytearray()
        self.ino = 1

    def entry(self, name, mode, data=b"", rdev=(0, 0)):
        namez = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(namez), 0]
        self.ino += 1
        self.out += b"070701" + b"".join(b"%08X" % f for f in fields) + namez
        self.out += b"\0" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\0" * (-len(self.out) % 4)

    def dir(self, name):
        self.entry(name, 0o040755)

    def file(self, name, path, perm=0o755):
        with open(path, "rb") as f:
            self.entry(name, 0o100000 | perm, f.read())

    def symlink(self, name, target):
        self.entry(name, 0o120777, target.encode())

    def chardev(self, name, major, minor):
        self.entry(name, 0o020600, rdev=(major, minor))

    def finish(self):
        self.entry("TRAILER!!!", 0)
        return bytes(self.out)


def module_name(path):
    base = os.path.basename(path)
    return base[: base.index(".ko")].replace("-", "_")


def resolve_modules(moddir, names):
    """Paths of NAMES and their dependencies, each after what it depends on."""
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            module, _, needs = line.partition(":")
            deps[module_name(module)] = (module, [module_name(n) for n in needs.split()])
    builtin = set()
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            builtin = {module_name(line.strip()) for line in f if line.strip()}
    except OSError:
        pass
    ordered, seen = [], set()

    def visit(name):
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        if name not in deps:
            sys.exit(f"mkinitramfs: module {name} is neither in modules.dep nor built in")
        seen.add(name)
        path, needs = deps[name]
        for need in needs:
            visit(need)
        ordered.append(os.path.join(moddir, path))

    for name in names:
        visit(name)
    return ordered


def module_bytes(path):
    """A module's bytes, uncompressed (busybox insmod wants a plain .ko)."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if not path.endswith(".ko"):
        sys.exit(f"mkinitramfs: cannot uncompress {path}")
    return data


def main(argv):
    files = []
    if "--files" in argv:
        at = argv.index("--files")
        argv, files = argv[:at], argv[at + 1:]
    if len(argv) < 6 or argv[4] != "--modules":
        sys.exit(__doc__)
    out, init, busybox, echod = argv[:4]
    modules = resolve_modules(argv[5], argv[6:])
    a = Cpio()
    for d in ["bin", "dev", "proc", "sys", "lib", "lib/modules"]:
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.file("init", init)
    a.file("lib/init-common.sh", COMMON, 0o644)
    a.file("bin/busybox", busybox)
    for applet in APPLETS:
        a.symlink("bin/" + applet, "busybox")
    if echod != "-":
        a.file("bin/echod", echod)
    made = {"bin", "dev", "proc", "sys", "lib", "lib/modules"}
    for spec in files:
        dest, _, source = spec.partition("=")
        parts = dest.strip("/").split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in made:
                a.dir(parent)
                made.add(parent)
        a.file("/".join(parts), os.path.realpath(source))
    names = []
    for module in modules:
        name = module_name(module)
        names.append(name)
        a.entry("lib/modules/%s.ko" % name, 0o100644, module_bytes(module))
    a.entry("lib/modules/order", 0o100644, ("\n".join(names) + "\n").encode())
    tmp = out + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(a.finish())
    os.replace(tmp, out)


if __name__ == "__main__":
    main(sys.argv[1:])
