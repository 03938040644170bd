#!/bin/sh
# /init of the bench's Linux guest (bench/linux/initramfs.py puts it in the initramfs):
# mount and load the virtio modules (bench/linux/init-common.sh), wait for eth0, configure
# it statically as QEMU's user networking expects it (10.0.2.15/24, gateway 10.0.2.2; no
# DHCP round trip on the boot path), and run the echo server, which prints
# "echo: listening on port 5555" on the console when it listens.
. /lib/init-common.sh
network_up
exec /bin/echod
