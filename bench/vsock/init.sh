#!/bin/sh
# /init of the vsock bench's Linux guest (bench/net/mkinitramfs.py builds the initramfs):
# load virtio_mmio and the vsock transport (modules in Debian's cloud kernel), wait
# (bounded) for the transport to bind, and run the vsock echo server.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for module in $(cat /lib/modules/order); do
    insmod "/lib/modules/$module.ko" || echo "init: insmod $module failed"
done
tries=0
bound() { set -- /sys/bus/virtio/drivers/vmw_vsock_virtio_transport/virtio*; [ -e "$1" ]; }
while ! bound && [ $tries -lt 200 ]; do
    usleep 20000
    tries=$((tries + 1))
done
exec /bin/echod
