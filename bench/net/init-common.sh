# What every bench Linux guest's /init (bench/{net,block,vsock}/init.sh) does first,
# sourced from /lib/init-common.sh (bench/net/mkinitramfs.py puts it there): mount the
# kernel's file systems and load the modules in /lib/modules/order, dependencies first
# (Debian's cloud kernel builds virtio_mmio and the virtio drivers as modules). Then
# `wait_for`, for the device the guest needs.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for module in $(cat /lib/modules/order); do
    insmod "/lib/modules/$module.ko" || echo "init: insmod $module failed"
done

# wait_for COMMAND...: runs COMMAND until it succeeds, every 20 ms and at most 200 times
# after the first (4 s): virtio_mmio finds devices through ACPI (microvm's DSDT) and the
# drivers bind asynchronously. Fails when COMMAND never succeeded.
wait_for() {
    tries=0
    until "$@"; do
        [ $tries -lt 200 ] || return 1
        usleep 20000
        tries=$((tries + 1))
    done
}
