#!/bin/sh
# /init of the HTTP bench's Linux guest (bench/linux/initramfs.py puts it in the
# initramfs): mount and load the virtio modules (bench/linux/init-common.sh), configure
# eth0 statically as QEMU's user networking expects it (10.0.2.15/24, gateway 10.0.2.2),
# start Debian's nginx on port 8080 (it forks into the background once it listens) and
# print the same line as examples/http, which the bench waits for.
. /lib/init-common.sh
network_up
mount -t tmpfs tmpfs /tmp
if ! /usr/sbin/nginx -c /etc/nginx/nginx.conf; then
    echo "init: nginx did not start"
    poweroff -f
fi
echo "http: listening on port 8080"
while :; do sleep 3600; done
