#!/bin/sh
# /init of the kv bench's Linux guest (bench/linux/initramfs.py puts it in the
# initramfs, with Debian's redis-server and its libraries): mount and load the virtio
# modules (bench/linux/init-common.sh), configure eth0 statically as QEMU's user
# networking expects it (10.0.2.15/24, gateway 10.0.2.2), and run redis-server as a
# benchmark wants it: no persistence, reachable from outside (slirp's connections come
# from 10.0.2.2, which protected mode would refuse). It prints "Ready to accept
# connections" on the console when it listens.
. /lib/init-common.sh
network_up
exec /bin/redis-server --bind 0.0.0.0 --port 6379 --protected-mode no --save "" \
    --appendonly no --daemonize no --dir /
