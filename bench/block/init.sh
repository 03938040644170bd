#!/bin/sh
# /init of the block bench's Linux guest (built by bench/net/mkinitramfs.py, which puts
# its fourth argument at /bin/echod: here that is the block benchmark, blockbench.c):
# mount and load the virtio modules (bench/net/init-common.sh), wait for /dev/vda, run
# the benchmark on it, power off.
. /lib/init-common.sh
if wait_for [ -e /dev/vda ]; then
    /bin/echod /dev/vda
else
    echo "init: no /dev/vda"
    dmesg | tail -n 30
fi
poweroff -f
