#!/bin/sh
# /init of the block bench's Linux guest (built by bench/net/mkinitramfs.py, which puts
# its fourth argument at /bin/echod: here that is the block benchmark, blockbench.c):
# load the virtio modules (Debian's cloud kernel builds virtio_mmio and virtio_blk as
# modules), wait for /dev/vda, run the benchmark on it, power off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for module in $(cat /lib/modules/order); do
    insmod "/lib/modules/$module.ko" || echo "init: insmod $module failed"
done
# virtio_mmio finds the device through ACPI (microvm's DSDT) and the driver binds
# asynchronously: wait (bounded) for the disk.
tries=0
while [ ! -e /dev/vda ] && [ $tries -lt 200 ]; do
    usleep 20000
    tries=$((tries + 1))
done
if [ -e /dev/vda ]; then
    /bin/echod /dev/vda
else
    echo "init: no /dev/vda"
    dmesg | tail -n 30
fi
poweroff -f
