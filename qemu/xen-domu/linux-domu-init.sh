#!/bin/sh
# The Linux domU's /init for qemu/xen-domu.sh --linux: the baseline guest, Debian's
# cloud kernel (CONFIG_XEN_PVH=y, netfront as a module) with busybox and the bench's
# TCP echo server (bench/net/echo.c) on 10.0.0.2:5555. Its console is hvc0, Xen's PV
# console ring, which dom0's xenconsoled logs.
. /lib/init-common.sh
if ! wait_for [ -e /sys/class/net/eth0 ]; then
    echo "init: no eth0; interfaces: $(ls /sys/class/net)"
    dmesg | tail -n 30
    poweroff -f
fi
ip link set lo up
ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
# `xl shutdown` reaches the kernel through xenstore, which then runs poweroff_cmd
# (/sbin/poweroff by default: not in this initramfs).
echo "/bin/poweroff -f" > /proc/sys/kernel/poweroff_cmd
exec /bin/echod
