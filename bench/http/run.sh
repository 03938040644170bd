#!/usr/bin/env bash
# The HTTP bench: examples/http (build/http.elf) against Debian's nginx in a Linux guest,
# both on microvm, virtio-net-device and QEMU user networking, at 1 vCPU and at 2, served
# the same 612-byte page (examples/http/src/index.html) and measured by the same client,
# wrk, on GET / at 1 and 8 connections. A report, not a test: nothing passes or fails on
# a number, and the numbers are noisy.
#
# usage: bench/http/run.sh       (bench/run.sh calls it; needs build/http.elf)
#   REPS=N          interleaved rounds (default 3; medians are reported)
#   DURATION=S      seconds per wrk run (default 10)
#   SMP=LIST        vCPU counts, comma-separated (default 1,2)
#   MEM=SIZE        -m for both guests (default 256M)
#   TORITO_ACCEL    kvm or tcg; otherwise chosen as qemu/run.sh does
#
# The Linux guest: Debian's linux-image-cloud-amd64 kernel and an initramfs built here
# (bench/linux/initramfs.py: busybox and the virtio modules, plus Debian's nginx with its
# libraries, bench/http/nginx.conf and bench/http/init.sh as /init), cached in
# build/bench/; what the benches' Linux guests share is in bench/linux/. wrk and nginx come from Debian (wrk, nginx-light): installed
# when run as root, else the missing ones are named.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/http
http_elf=$root/build/http.elf
page=$root/examples/http/src/index.html
out=$root/build/bench
mkdir -p "$out"

# shellcheck source=bench/linux/guest.sh
. "$root/bench/linux/guest.sh"
bench_needs http "$http_elf" python3 qemu-system-x86_64 readelf ldd
# shellcheck disable=SC2046  # the package names are words
linux_install http $(linux_missing <<'EOF'
wrk command -v wrk
nginx-light [ -x /usr/sbin/nginx ]
EOF
)
initramfs=$out/linux-$version-nginx.cpio.gz
# nginx at the path Debian's build expects its configuration relative to, with the
# directories it opens before it reads that configuration.
linux_initramfs "$initramfs" "$here/init.sh" --program usr/sbin/nginx=/usr/sbin/nginx \
    --file "etc/nginx/nginx.conf=$here/nginx.conf" --file "www/index.html=$page" --users \
    --dir var/log/nginx --dir var/lib/nginx --modules "/lib/modules/$version" virtio_mmio virtio_net
linux_accel

# A copy, so a rebuild of build/http.elf during the bench cannot mix two images.
cp "$http_elf" "$out/http.elf"
echo "HTTP bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, accel $accel; Linux guest: $version, $(/usr/sbin/nginx -v 2>&1))"
load_average before
python3 "$here/bench.py" --torito "$out/http.elf" --kernel "$kernel" --initrd "$initramfs" \
    --out "$out" --mem "${MEM:-256M}" --accel "$accel" --tsc-khz "$tsc_khz" \
    --reps "${REPS:-3}" --duration "${DURATION:-10}" --smp "${SMP:-1,2}"
load_average after
