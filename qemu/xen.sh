#!/usr/bin/env bash
# Debian's Xen hypervisor binary, for run.sh --boot xen: the one place that names it.
#
# usage: qemu/xen.sh path     prints where the hypervisor binary is (or would be)
#        qemu/xen.sh fetch    downloads it there when missing
#
# The binary comes from Debian 12's xen-hypervisor-4.17-amd64 package, downloaded with
# `apt-get download` and unpacked into a cache directory: nothing is installed, so the
# machine running the tests never boots into Xen itself. The package ships it gzip'd
# (boot/xen-4.17-amd64.gz); unpacked it is a multiboot1 ELF32, which QEMU's -kernel
# loads. TORITO_XEN=FILE uses another build instead.
set -euo pipefail

package=xen-hypervisor-4.17-amd64
cache=${XDG_CACHE_HOME:-$HOME/.cache}/torito/$package
binary=${TORITO_XEN:-$cache/xen}

case ${1:-} in
    path) echo "$binary" ;;
    fetch)
        [ -f "$binary" ] && exit 0
        mkdir -p "$cache"
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        # apt-get download needs the package lists: update them once if it fails.
        if ! (cd "$work" && apt-get download -q "$package" >/dev/null 2>&1); then
            sudo=""
            [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
            $sudo apt-get update -qq
            (cd "$work" && apt-get download -q "$package" >/dev/null)
        fi
        dpkg-deb -x "$work"/"$package"_*.deb "$work/x"
        gunzip -c "$work"/x/boot/xen-4.17-amd64.gz > "$work/xen"
        mv "$work/xen" "$binary"
        echo "xen.sh: Xen hypervisor at $binary"
        ;;
    *) sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
