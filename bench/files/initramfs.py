#!/usr/bin/env python3
"""Writes the files bench's Linux initramfs: what bench/net/mkinitramfs.py writes (busybox,
/lib/init-common.sh, the modules), plus nginx with the shared libraries `ldd` names, its
configuration (bench/files/nginx.conf), mime.types, and /etc/passwd and /etc/group (nginx
looks its user up).

usage: initramfs.py OUT.cpio.gz INIT BUSYBOX NGINX NGINX_CONF MIME_TYPES --modules /lib/modules/VERSION NAME...
"""

import gzip
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "net"))
import mkinitramfs  # noqa: E402

APPLETS = mkinitramfs.APPLETS + ["mkdir", "grep"]


def libraries(binary):
    """The shared libraries (and the loader) `ldd` says BINARY needs: (path in guest, host)."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found.append(parts[2])
        elif parts and parts[0].startswith("/"):
            found.append(parts[0])
    return found


def main(argv):
    if len(argv) < 8 or argv[6] != "--modules":
        sys.exit(__doc__)
    out, init, busybox, nginx, conf, mime = argv[:6]
    modules = mkinitramfs.resolve_modules(argv[7], argv[8:])
    a = mkinitramfs.Cpio()
    for d in ["bin", "dev", "proc", "sys", "lib", "lib/modules", "etc", "tmp", "srv",
              "lib64", "lib/x86_64-linux-gnu"]:
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.file("init", init)
    a.file("lib/init-common.sh", mkinitramfs.COMMON, 0o644)
    a.file("bin/busybox", busybox)
    for applet in APPLETS:
        a.symlink("bin/" + applet, "busybox")
    a.file("bin/nginx", nginx)
    for library in libraries(nginx):
        a.file(library.lstrip("/"), os.path.realpath(library))
    a.file("etc/nginx.conf", conf, 0o644)
    a.file("etc/mime.types", mime, 0o644)
    a.entry("etc/passwd", 0o100644, b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    a.entry("etc/group", 0o100644, b"root:x:0:\nnogroup:x:65534:\n")
    names = []
    for module in modules:
        name = mkinitramfs.module_name(module)
        names.append(name)
        a.entry("lib/modules/%s.ko" % name, 0o100644, mkinitramfs.module_bytes(module))
    a.entry("lib/modules/order", 0o100644, ("\n".join(names) + "\n").encode())
    tmp = out + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(a.finish())
    os.replace(tmp, out)


if __name__ == "__main__":
    main(sys.argv[1:])
