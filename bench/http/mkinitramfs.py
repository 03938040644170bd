#!/usr/bin/env python3
"""Writes the HTTP bench's Linux initramfs: bench/net/mkinitramfs.py's archive (busybox,
the virtio modules, init-common.sh) with Debian's nginx instead of the echo server.

usage: mkinitramfs.py OUT.cpio.gz INIT BUSYBOX NGINX NGINX.CONF PAGE --modules DIR NAME...

Adds /usr/sbin/nginx and every shared library `ldd` lists for it (at the same paths,
with the dynamic loader), /etc/nginx/nginx.conf, /www/index.html (PAGE), a /etc/passwd
and /etc/group with root and nobody (nginx looks its worker's user up), and the
directories nginx opens before it reads its configuration (/var/log/nginx,
/var/lib/nginx).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "net"))
import mkinitramfs as base  # noqa: E402  (bench/net/mkinitramfs.py)

APPLETS = base.APPLETS + ["sleep"]


def libraries(binary):
    """The absolute paths `ldd` prints for BINARY (its libraries and the loader)."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        words = line.split()
        for word in words:
            if word.startswith("/"):
                paths.append(word)
                break
    return paths


def parents(path):
    """The directories above PATH (relative, without a leading /), outermost first."""
    parts = path.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def main(argv):
    if len(argv) < 8 or argv[6] != "--modules":
        sys.exit(__doc__)
    out, init, busybox, nginx, conf, page = argv[:6]
    modules = base.resolve_modules(argv[7], argv[8:])
    a = base.Cpio()
    made = set()

    def mkdirs(path):
        for d in parents(path) + [path.strip("/")]:
            if d and d not in made:
                made.add(d)
                a.dir(d)

    for d in ["bin", "dev", "proc", "sys", "tmp", "run", "lib/modules", "etc/nginx", "www",
              "var/log/nginx", "var/lib/nginx"]:
        mkdirs(d)
    a.chardev("dev/console", 5, 1)
    a.file("init", init)
    a.file("lib/init-common.sh", base.COMMON, 0o644)
    a.file("bin/busybox", busybox)
    for applet in APPLETS:
        a.symlink("bin/" + applet, "busybox")
    for path in [nginx] + libraries(nginx):
        for d in parents(path):
            mkdirs(d)
        # The real file (ldd may name a symlink), at the path the loader looks for.
        a.file(path.lstrip("/"), os.path.realpath(path))
    a.file("etc/nginx/nginx.conf", conf, 0o644)
    a.file("www/index.html", page, 0o644)
    a.entry("etc/passwd", 0o100644,
            b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    a.entry("etc/group", 0o100644, b"root:x:0:\nnogroup:x:65534:\n")
    names = []
    for module in modules:
        name = base.module_name(module)
        names.append(name)
        a.entry("lib/modules/%s.ko" % name, 0o100644, base.module_bytes(module))
    a.entry("lib/modules/order", 0o100644, ("\n".join(names) + "\n").encode())
    tmp = out + ".tmp"
    import gzip
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(a.finish())
    os.replace(tmp, out)


if __name__ == "__main__":
    main(sys.argv[1:])
