#!/bin/sh
# /init of the bench's Linux guest (bench/net/mkinitramfs.py puts it in the initramfs):
# load the virtio modules (Debian's cloud kernel builds virtio, virtio_mmio and virtio_net
# as modules), configure eth0 statically as QEMU's user networking expects it
# (10.0.2.15/24, gateway 10.0.2.2; no DHCP round trip on the boot path), and run the echo
# server, which prints "echo: listening on port 5555" on the console when it listens.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for module in $(cat /lib/modules/order); do
    insmod "/lib/modules/$module.ko" || echo "init: insmod $module failed"
done
# virtio_mmio finds the device through ACPI (microvm's DSDT); the driver binds
# asynchronously, so wait (bounded) for the interface.
tries=0
while [ ! -e /sys/class/net/eth0 ] && [ $tries -lt 200 ]; do
    usleep 20000
    tries=$((tries + 1))
done
if [ ! -e /sys/class/net/eth0 ]; then
    echo "init: no eth0; interfaces: $(ls /sys/class/net)"
    dmesg | tail -n 30
    poweroff -f
fi
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
exec /bin/echod
