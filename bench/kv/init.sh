#!/bin/sh
# /init of the kv bench's Linux guest (bench/net/mkinitramfs.py puts it in the
# initramfs, with Debian's redis-server and its libraries): mount and load the virtio
# modules (bench/net/init-common.sh), configure eth0 statically as QEMU's user
# networking expects it (10.0.2.15/24, gateway 10.0.2.2), and run redis-server as a
# benchmark wants it: no persistence, reachable from outside (slirp's connections come
# from 10.0.2.2, which protected mode would refuse). It prints "Ready to accept
# connections" on the console when it listens.
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
exec /bin/redis-server --bind 0.0.0.0 --port 6379 --protected-mode no --save "" \
    --appendonly no --daemonize no --dir /
