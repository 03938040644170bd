#!/bin/sh
# /init of the block bench's Linux guest (built by bench/linux/initramfs.py, with
# the block benchmark, blockbench.c, at /bin/blockbench):
# mount and load the virtio modules (bench/linux/init-common.sh), wait for /dev/vda, run
# the benchmark on it, power off.
. /lib/init-common.sh
if wait_for [ -e /dev/vda ]; then
    /bin/blockbench /dev/vda
else
    echo "init: no /dev/vda"
    dmesg | tail -n 30
fi
poweroff -f
