#!/bin/sh
# /init of the vsock bench's Linux guest (bench/linux/initramfs.py builds the initramfs):
# mount and load virtio_mmio and the vsock transport (bench/linux/init-common.sh), wait
# (bounded) for the transport to bind, and run the vsock echo server.
. /lib/init-common.sh
bound() { set -- /sys/bus/virtio/drivers/vmw_vsock_virtio_transport/virtio*; [ -e "$1" ]; }
wait_for bound
exec /bin/vecho
