#!/usr/bin/env python3
"""Writes the bench's Linux initramfs: a gzip'd newc cpio archive, built without root and
without the cpio tool (the format is simple: a 110-byte ASCII header per entry).

usage: mkinitramfs.py OUT.cpio.gz INIT BUSYBOX ECHOD MODULE.ko...

Contents: /init (INIT), /bin/busybox and the applet links /init uses, /bin/echod (ECHOD),
/lib/modules/NAME.ko for each MODULE in the order given (dependencies first) and
/lib/modules/order listing them, /dev/console (the kernel opens it for init's stdio
before /init can mount devtmpfs), and empty /proc, /sys, /dev.
"""

import gzip
import os
import sys

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


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    out, init, busybox, echod, modules = argv[0], argv[1], argv[2], argv[3], argv[4:]
    a = Cpio()
    for d in ["bin", "dev", "proc", "sys", "lib", "lib/modules"]:
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.file("init", init)
    a.file("bin/busybox", busybox)
    for applet in APPLETS:
        a.symlink("bin/" + applet, "busybox")
    a.file("bin/echod", echod)
    names = []
    for module in modules:
        name = os.path.basename(module)[: -len(".ko")]
        names.append(name)
        a.file("lib/modules/%s.ko" % name, module, 0o644)
    a.entry("lib/modules/order", 0o100644, ("\n".join(names) + "\n").encode())
    tmp = out + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(a.finish())
    os.replace(tmp, out)


if __name__ == "__main__":
    main(sys.argv[1:])
