# What every bench Linux guest's /init (bench/*/init.sh) does first, sourced from
# /lib/init-common.sh (bench/linux/initramfs.py puts it there): mount the
# kernel's file systems and load the modules in /lib/modules/order, dependencies first
# (Debian's cloud kernel builds virtio_mmio and the virtio drivers as modules). Then
# `wait_for`, for the device the guest needs, and `network_up` for the guests that serve
# over QEMU's user networking.
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

# network_up: waits for eth0 and configures it statically as QEMU's user networking
# expects it (10.0.2.15/24, gateway 10.0.2.2; no DHCP round trip on the boot path).
# Without eth0 it says so, with the kernel's last words, and powers off.
network_up() {
    if ! wait_for [ -e /sys/class/net/eth0 ]; then
        echo "init: no eth0; interfaces: $(ls /sys/class/net)"
        dmesg | tail -n 30
        poweroff -f
    fi
    ip link set lo up
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
}
