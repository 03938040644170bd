#!/bin/sh
# /init of the files bench's Linux guest (bench/files/initramfs.py): load the virtio
# modules (bench/net/init-common.sh), mount the ext4 disk read-only at /srv as the Torito
# guest does (fs.disk=0:/srv), configure eth0 as QEMU's user networking expects, and run
# nginx on port 8080 over /srv; then say so on the console, as examples/files does.
. /lib/init-common.sh
if ! wait_for [ -e /sys/class/net/eth0 ] || ! wait_for [ -e /dev/vda ]; then
    echo "init: no eth0 or /dev/vda"
    dmesg | tail -n 30
    poweroff -f
fi
mkdir -p /srv /tmp
mount -t ext4 -o ro /dev/vda /srv || { echo "init: cannot mount /dev/vda"; poweroff -f; }
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
/bin/nginx -e stderr -c /etc/nginx.conf &
usleep 200000
echo "files: serving on port 8080"
wait
poweroff -f
