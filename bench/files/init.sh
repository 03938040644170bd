#!/bin/sh
# /init of the files bench's Linux guest (bench/linux/initramfs.py): load the virtio
# modules (bench/linux/init-common.sh), mount the ext4 disk read-only at /srv as the Torito
# guest does (fs.disk=0:/srv), or the virtio-fs share (fs.share=share:/srv), configure eth0 as QEMU's user networking expects, and run
# nginx on port 8080 over /srv; then say so on the console, as examples/files does.
. /lib/init-common.sh
mkdir -p /srv /tmp
network_up
# files.source=share on the command line: the virtio-fs share tagged `share` (as the
# Torito guest's fs.share=share:/srv); otherwise the disk.
if grep -q 'files.source=share' /proc/cmdline; then
    wait_for mount -t virtiofs share /srv || { echo "init: cannot mount the share"; dmesg | tail -n 30; poweroff -f; }
else
    wait_for [ -e /dev/vda ] || { echo "init: no /dev/vda"; poweroff -f; }
    mount -t ext4 -o ro /dev/vda /srv || { echo "init: cannot mount /dev/vda"; poweroff -f; }
fi
/bin/nginx -e stderr -c /etc/nginx.conf &
usleep 200000
echo "files: serving on port 8080"
wait
poweroff -f
