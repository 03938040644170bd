#!/bin/sh
# /init of the bench's Linux guest (bench/net/mkinitramfs.py puts it in the initramfs):
# mount and load the virtio modules (bench/net/init-common.sh), wait for eth0, configure
# it statically as QEMU's user networking expects it (10.0.2.15/24, gateway 10.0.2.2; no
# DHCP round trip on the boot path), and run the echo server, which prints
# "echo: listening on port 5555" on the console when it listens.
. /lib/init-common.sh
if ! wait_for [ -e /sys/class/net/eth0 ]; then
    echo "init: no eth0; interfaces: $(ls /sys/class/net)"
    dmesg | tail -n 30
    poweroff -f
fi
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
exec /bin/echod
