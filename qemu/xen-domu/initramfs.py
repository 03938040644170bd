#!/usr/bin/env python3
"""The two archives qemu/xen-domu.sh gives Debian's Linux dom0 as one initramfs (Linux
unpacks concatenated gzip'd cpio archives one after the other):

usage: initramfs.py dom0 OUT ROOT VERSION INIT --busybox PATH --file DEST=SOURCE...
       initramfs.py guest OUT --file DEST=SOURCE...

dom0:  what never changes between runs, so it is built once: INIT at /init; busybox
       with a link per applet; Xen's tools from ROOT (where qemu/xen-domu.sh unpacked
       the Debian packages) at the paths they have when installed, with every shared
       library `ldd` names (those from ROOT at their installed path, the rest from this
       machine); dom0's modules (MODULES, from ROOT/lib/modules/VERSION, with their
       dependencies, listed dependencies first in /lib/modules/order); /etc/xen/xl.conf;
       /var/run and /var/lock linked to /run.
guest: the run's own files (the domU's kernel, its config, ...), each --file at DEST.

The archive writer and the module resolution are bench/linux/initramfs.py's.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "linux"))
import initramfs  # noqa: E402  (bench/linux/initramfs.py)

# What dom0's /init loads: the Xen devices xl and the daemons open (privcmd, evtchn,
# gntdev, gntalloc; xenfs for /proc/xen), the back ends a domU's devices need (netback;
# blkback for disks) and the bridge the vif joins.
MODULES = ["xenfs", "xen-privcmd", "xen-evtchn", "xen-gntdev", "xen-gntalloc",
           "xen-netback", "xen-blkback", "bridge"]
# Installed path -> path in ROOT, for the programs dom0 runs. xl and xenstore-* are
# the real binaries (Debian's /usr/sbin/xl is a wrapper script that picks a toolstack).
PROGRAMS = {
    "usr/sbin/xl": "usr/lib/xen-4.17/bin/xl",
    "usr/sbin/xenstored": "usr/lib/xen-4.17/bin/xenstored",
    "usr/sbin/xenconsoled": "usr/lib/xen-4.17/bin/xenconsoled",
    "usr/lib/xen-4.17/bin/xen-init-dom0": "usr/lib/xen-4.17/bin/xen-init-dom0",
    "usr/lib/xen-4.17/bin/xenctx": "usr/lib/xen-4.17/bin/xenctx",
    "usr/bin/xenstore-read": "usr/bin/xenstore-read",
    "usr/bin/xenstore-write": "usr/bin/xenstore-write",
    "usr/bin/xenstore-rm": "usr/bin/xenstore-rm",
    "usr/bin/xenstore-ls": "usr/bin/xenstore-ls",
}
# xl's own settings: dom0's memory is fixed by Xen's dom0_mem, so no ballooning, and the
# lock file where /init created a directory.
XL_CONF = b'autoballoon="off"\nlockfile="/run/lock/xl"\n'


def libraries(binary, root):
    """(installed path, source) for each library and the loader `ldd` names for BINARY,
    looking in ROOT's library directories first."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(
        os.path.join(root, d) for d in ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu",
                                        "usr/lib/xen-4.17/lib/x86_64-linux-gnu"])
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True,
                         env=env).stdout
    found = []
    for line in out.splitlines():
        if "not found" in line:
            sys.exit(f"initramfs.py: {binary}: {line.strip()}")
        for word in line.split():
            if word.startswith("/"):
                installed = word
                if word.startswith(root.rstrip("/") + "/"):
                    installed = word[len(root.rstrip("/")):]
                found.append((installed, word))
                break
    return found


def files(tree, specs):
    for dest, source in initramfs.pairs(specs):
        tree.file(dest, source)


def option(argv, name):
    values, rest = [], []
    i = 0
    while i < len(argv):
        if argv[i] == name and i + 1 < len(argv):
            values.append(argv[i + 1])
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return values, rest


def write(tree, out):
    import gzip
    tmp = out + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(tree.archive.finish())
    os.replace(tmp, out)


def dom0(argv):
    busybox, argv = option(argv, "--busybox")
    specs, argv = option(argv, "--file")
    if len(argv) != 4 or len(busybox) != 1:
        sys.exit(__doc__.split("usage: ")[1].split("\n\n")[0])
    out, root, version, init = argv
    root = os.path.abspath(root)
    tree = initramfs.Tree()
    for d in ["bin", "sbin", "dev", "proc", "sys", "tmp", "run", "var/lib", "var/log",
              "lib/modules", "etc/xen/scripts"]:
        tree.dir(d)
    tree.archive.chardev("dev/console", 5, 1)
    tree.archive.symlink("var/run", "../run")
    tree.archive.symlink("var/lock", "../run/lock")
    tree.file("init", init, 0o755)
    tree.file("bin/busybox", busybox[0], 0o755)
    applets = subprocess.run([busybox[0], "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            tree.archive.symlink("bin/" + applet, "busybox")
    for installed, source in PROGRAMS.items():
        path = os.path.join(root, source)
        tree.file(installed, path, 0o755)
        for lib_installed, lib_source in libraries(path, root):
            tree.file(lib_installed, lib_source)
    # glibc loads it when a thread is cancelled (xl's and libxl's threads are).
    tree.file("lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libgcc_s.so.1")
    tree.data("etc/xen/xl.conf", XL_CONF)
    files(tree, specs)
    moddir = os.path.join(root, "lib", "modules", version)
    names = []
    for module in initramfs.resolve_modules(moddir, MODULES):
        name = initramfs.module_name(module)
        names.append(name)
        tree.data("lib/modules/%s.ko" % name, initramfs.module_bytes(module))
    tree.data("lib/modules/order", ("\n".join(names) + "\n").encode())
    write(tree, out)


def guest(argv):
    specs, argv = option(argv, "--file")
    if len(argv) != 1:
        sys.exit(__doc__.split("usage: ")[1].split("\n\n")[0])
    tree = initramfs.Tree()
    files(tree, specs)
    write(tree, argv[0])


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("dom0", "guest"):
        sys.exit(__doc__.split("usage: ")[1].split("\n\n")[0])
    (dom0 if sys.argv[1] == "dom0" else guest)(sys.argv[2:])
