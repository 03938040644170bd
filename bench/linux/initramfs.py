#!/usr/bin/env python3
"""Writes a bench's Linux initramfs: a gzip'd newc cpio archive, built without root and
without the cpio tool (the format is simple: a 110-byte ASCII header per entry). Every
bench's Linux guest (bench/{net,http,kv,files,block,vsock}) is built by this one script;
what differs between them is in its options.

usage: initramfs.py OUT.cpio.gz INIT --modules /lib/modules/VERSION NAME...
           [--busybox PATH] [--file DEST=SOURCE...]
           [--program DEST=SOURCE...] [--dir DEST...] [--users]

Always in it: /init (INIT), /lib/init-common.sh (bench/linux/init-common.sh, which every
INIT sources), /bin/busybox (default /bin/busybox, which must be static) and the applet
links init-common.sh and the INITs use (APPLETS), /lib/modules/M.ko for
each module NAME and its dependencies (from modules.dep; modules built into the kernel,
per modules.builtin, are left out), /lib/modules/order listing them dependencies first
(the order /init loads them in), /dev/console (the kernel opens it for init's stdio
before /init can mount devtmpfs), and empty /proc, /sys, /dev, /tmp, /run.

  --file DEST=SOURCE     SOURCE at DEST (a path in the archive; symbolic links followed;
                         mode 0755 when SOURCE is executable, else 0644)
  --program DEST=SOURCE  the same, plus every shared library and the dynamic loader `ldd`
                         names for SOURCE, each at the path the loader looks for it
  --dir DEST             an empty directory (e.g. one a server opens before it reads its
                         configuration)
  --users                /etc/passwd and /etc/group with root and nobody (servers such as
                         nginx look their worker's user up)

Every file's parent directories are created.
"""

import argparse
import gzip
import lzma
import os
import subprocess
import sys

COMMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init-common.sh")
# The busybox applets init-common.sh and the benches' INITs call (links cost nothing).
APPLETS = ["sh", "mount", "insmod", "usleep", "sleep", "ls", "cat", "echo", "ip", "dmesg",
           "tail", "poweroff", "mkdir", "grep"]


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
            sys.exit(f"initramfs.py: module {name} is neither in modules.dep nor built in")
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
        sys.exit(f"initramfs.py: cannot uncompress {path}")
    return data


def libraries(binary):
    """The absolute paths `ldd` prints for BINARY: its shared libraries and the loader."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        for word in line.split():
            if word.startswith("/"):
                paths.append(word)
                break
    return paths


class Tree:
    """A Cpio archive that creates each entry's parent directories once, as it goes."""

    def __init__(self):
        self.archive = Cpio()
        self.made = set()
        self.files = set()

    def dir(self, path):
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent and parent not in self.made:
                self.made.add(parent)
                self.archive.dir(parent)

    def file(self, dest, source, perm=None):
        dest = dest.strip("/")
        if dest in self.files:
            return  # a library two programs share
        self.files.add(dest)
        self.dir(os.path.dirname(dest))
        source = os.path.realpath(source)
        if perm is None:
            perm = 0o755 if os.access(source, os.X_OK) else 0o644
        self.archive.file(dest, source, perm)

    def data(self, dest, data, perm=0o644):
        dest = dest.strip("/")
        self.dir(os.path.dirname(dest))
        self.archive.entry(dest, 0o100000 | perm, data)


def pairs(specs):
    for spec in specs:
        dest, sep, source = spec.partition("=")
        if not sep or not dest or not source:
            sys.exit(f"initramfs.py: {spec!r} is not DEST=SOURCE")
        yield dest, source


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                     usage=__doc__.split("usage: ")[1].split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("init")
    parser.add_argument("--modules", nargs="+", required=True, metavar="DIR NAME")
    parser.add_argument("--busybox", default="/bin/busybox")
    parser.add_argument("--file", action="append", default=[])
    parser.add_argument("--program", action="append", default=[])
    parser.add_argument("--dir", action="append", default=[])
    parser.add_argument("--users", action="store_true")
    args = parser.parse_args(argv)
    if len(args.modules) < 2:
        sys.exit("initramfs.py: --modules needs the modules directory and at least one name")
    modules = resolve_modules(args.modules[0], args.modules[1:])
    tree = Tree()
    for d in ["bin", "dev", "proc", "sys", "tmp", "run", "lib/modules"] + args.dir:
        tree.dir(d)
    tree.archive.chardev("dev/console", 5, 1)
    tree.file("init", args.init, 0o755)
    tree.file("lib/init-common.sh", COMMON, 0o644)
    tree.file("bin/busybox", args.busybox, 0o755)
    for applet in APPLETS:
        tree.archive.symlink("bin/" + applet, "busybox")
    for dest, source in pairs(args.file):
        tree.file(dest, source)
    for dest, source in pairs(args.program):
        tree.file(dest, source, 0o755)
        for library in libraries(source):
            tree.file(library, library)
    if args.users:
        tree.data("etc/passwd",
                  b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
        tree.data("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    names = []
    for module in modules:
        name = module_name(module)
        names.append(name)
        tree.data("lib/modules/%s.ko" % name, module_bytes(module))
    tree.data("lib/modules/order", ("\n".join(names) + "\n").encode())
    tmp = args.out + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(tree.archive.finish())
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
