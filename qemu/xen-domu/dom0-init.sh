#!/bin/sh
# Dom0's /init for qemu/xen-domu.sh: Debian's Linux as Xen's dom0, from an initramfs,
# with Xen's own tools. It starts what `xl create` needs (xenfs, the event-channel and
# grant devices, the back ends, xenstored, xenconsoled, a bridge), starts the one domU
# /etc/xen/domu.cfg describes, copies its console to this one (Xen's COM1, QEMU's
# serial), optionally probes its echo server, and ends the whole machine with a status.
#
# Settings come from dom0's command line (qemu/xen-domu.sh writes them):
#   xendomu.wait=TEXT    probe only after the domU's console shows TEXT (spaces as '+')
#   xendomu.rounds=N     then N round trips of 64 bytes to 10.0.0.2:5555 (0: no probe)
#   xendomu.timeout=S    give up on the domU after S seconds (default 240)
#   xendomu.reboot=1     after the probe, `xl reboot` the domU, wait for TEXT again (the
#                        fresh domain xl create -F starts), probe again, then shut it down
# Lines this script prints start with "dom0: " so a test can tell them from the rest.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run/xen /run/xenstored /run/lock /var/lib/xen \
    /var/log/xen/console /var/lib/xenstored
# xenconsoled gives each domU's console a pseudo-terminal (xl waits for it).
mount -t devpts devpts /dev/pts
for module in $(cat /lib/modules/order); do
    insmod "/lib/modules/$module.ko" || echo "dom0: insmod $module failed"
done

say() { echo "dom0: $*"; }

# end STATUS: the machine's end. Dom0 reaches isa-debug-exit's port (QEMU then exits
# with (STATUS<<1)|1); without that device, a reboot, which QEMU's -no-reboot ends.
end() {
    sync
    /bin/qemu-exit "$1"
    reboot -f
}

setting() {
    for word in $(cat /proc/cmdline); do
        case $word in "xendomu.$1="*) echo "${word#*=}" | tr + ' '; return ;; esac
    done
    echo "$2"
}
wait_text=$(setting wait "")
rounds=$(setting rounds 0)
timeout=$(setting timeout 240)
reboot=$(setting reboot 0)

mount -t xenfs xenfs /proc/xen || { say "no xenfs: not Xen's dom0?"; end 3; }
started=$(cut -d' ' -f1 /proc/uptime)
say "up at ${started}s; starting xenstored"
/usr/sbin/xenstored --pid-file /run/xenstored.pid || { say "xenstored failed"; end 3; }
/usr/lib/xen-4.17/bin/xen-init-dom0 >/tmp/init-dom0.log 2>&1 ||
    { cat /tmp/init-dom0.log; say "xen-init-dom0 failed"; end 3; }
/usr/sbin/xenconsoled --pid-file=/run/xenconsoled.pid --log=guest \
    --log-dir=/var/log/xen/console || { say "xenconsoled failed"; end 3; }

# The domU's network: a bridge with dom0's address; the vif joins it through
# /etc/xen/scripts/vif-busybox (named in domu.cfg).
brctl addbr xenbr0
ip addr add 10.0.0.1/24 dev xenbr0
ip link set xenbr0 up
ip link set lo up

say "xl create"
xl create -F /etc/xen/domu.cfg >/tmp/xl.log 2>&1 &
xl_pid=$!
log=/var/log/xen/console/guest-domu.log
# The domU's console, line by line, as it comes (xenconsoled creates the log when the
# domain appears, named after the domain, and opens it for appending: a domain xl
# restarts after a reboot has the same name, so its lines follow the first one's).
(
    while [ ! -e $log ]; do usleep 50000; kill -0 $xl_pid 2>/dev/null || exit; done
    tail -f $log | while IFS= read -r line; do echo "domu: $line"; done
) &
tail_pid=$!

# show_xenstore: the domU's devices as xenstore has them (front end and back end: state,
# ring references, event channels, hotplug-status), for a domU that never got ready.
show_xenstore() {
    local id
    id=$(xl domid domu 2>/dev/null) || return 0
    say "xenstore: the domU's devices (front end, then dom0's back end):"
    xenstore-ls -f "/local/domain/$id/device" 2>&1 | sed 's/^/dom0:   /'
    xenstore-ls -f "/local/domain/0/backend/vif/$id" 2>&1 | sed 's/^/dom0:   /'
    xenstore-ls -f "/local/domain/$id/control" 2>&1 | sed 's/^/dom0:   /'
}

# destroy: `xl destroy domu`, saying how long it took (libxl waits for the back ends to
# let go of the domU's pages; a front end that never closes makes that slow).
destroy() {
    local from
    from=$(cut -d' ' -f1 /proc/uptime)
    xl destroy domu >/tmp/destroy.log 2>&1 || sed 's/^/dom0:   /' /tmp/destroy.log
    say "xl destroy took $(awk -v a="$from" '{printf "%.1f", $1 - a}' /proc/uptime) s"
}

deadline=$(( ${started%.*} + timeout ))
now() { cut -d' ' -f1 /proc/uptime | cut -d. -f1; }

# wait_ready N: until the console log shows the wait text N times (one per boot of the
# domU), or the domU ends, or the deadline; says which and returns 1 on the last two.
wait_ready() {
    local seen
    while :; do
        seen=$(grep -cF "$wait_text" $log 2>/dev/null)
        [ "${seen:-0}" -ge "$1" ] && return 0
        if ! kill -0 $xl_pid 2>/dev/null; then
            say "the domU ended before \"$wait_text\" (boot $1)"
            return 1
        fi
        if [ "$(now)" -ge $deadline ]; then
            say "no \"$wait_text\" (boot $1) after ${timeout}s"
            show_xenstore
            return 1
        fi
        usleep 100000
    done
}

# probe: the round trips, reported; fails when one did.
probe() {
    local result=0
    /bin/rtt 10.0.0.2 5555 "$rounds" >/tmp/rtt.log 2>&1 || result=1
    sed 's/^/dom0: /' /tmp/rtt.log
    return $result
}

# feature NAME: whether the running domU wrote control/feature-NAME = 1.
feature() {
    local id
    id=$(xl domid domu 2>/dev/null) || return 1
    [ "$(xenstore-read "/local/domain/$id/control/feature-$1" 2>/dev/null)" = 1 ]
}

status=0
if [ "$rounds" -gt 0 ]; then
    wait_ready 1 || status=1
    if [ $status -eq 0 ]; then
        say "domU ready at $(cut -d' ' -f1 /proc/uptime)s; probing"
        probe || status=1
    fi
    # xendomu.reboot=1: `xl reboot` asks through xenstore (control/shutdown = reboot);
    # the domU stops and ends in SHUTDOWN_reboot, and xl create -F (on_reboot =
    # "restart") destroys it and creates a fresh one, which must get ready and answer.
    if [ $status -eq 0 ] && [ "$reboot" = 1 ]; then
        if feature reboot; then
            say "asking the domU to reboot: xl reboot domu"
            if ! xl reboot domu >/tmp/reboot.log 2>&1; then
                sed 's/^/dom0:   /' /tmp/reboot.log
                say "xl reboot failed"
                status=1
            elif wait_ready 2; then
                say "domU ready again at $(cut -d' ' -f1 /proc/uptime)s (domain $(xl domid domu 2>/dev/null)); probing"
                probe || status=1
            else
                ls -l /var/log/xen/console | sed 's/^/dom0:   /'
                status=1
            fi
        else
            say "the domU does not listen for reboots (no control/feature-reboot)"
            status=1
        fi
    fi
    if kill -0 $xl_pid 2>/dev/null; then
        # Echo servers run until stopped: the probe's end is the domU's end. `xl shutdown`
        # asks through xenstore (control/shutdown), but only a domU that said it listens
        # there (control/feature-poweroff = 1) answers; for another, libxl waits 60 s
        # before it gives up, so that one is destroyed at once.
        if feature poweroff; then
            xl shutdown domu >/tmp/shutdown.log 2>&1 || sed 's/^/dom0:   /' /tmp/shutdown.log
            wait_end=$(( $(now) + 20 ))
            while kill -0 $xl_pid 2>/dev/null && [ "$(now)" -lt $wait_end ]; do usleep 100000; done
            kill -0 $xl_pid 2>/dev/null && { say "no shutdown after 20s: destroying"; destroy; }
        else
            say "the domU does not listen on control/shutdown (no feature-poweroff): destroying"
            destroy
        fi
    fi
fi
while kill -0 $xl_pid 2>/dev/null; do
    if [ "$(now)" -ge $deadline ]; then
        say "the domU still runs after ${timeout}s: destroying it"
        xl list | sed 's/^/dom0:   /'
        show_xenstore
        destroy
        status=1
        break
    fi
    usleep 100000
done
wait $xl_pid
# on_crash="preserve": a crashed domU stays, so its console can still be drained and its
# vCPU shown (with the image's symbols when /domu/symbols came along) before it goes.
if domid=$(xl domid domu 2>/dev/null); then
    usleep 500000
    say "the domU is kept after a crash; vCPU 0 (xenctx):"
    symbols=""
    [ -f /domu/symbols ] && symbols="-s /domu/symbols"
    /usr/lib/xen-4.17/bin/xenctx $symbols -k 0 -a -S -l 16 "$domid" 0 2>&1 | sed 's/^/dom0:   /'
    destroy
fi
usleep 300000
kill $tail_pid 2>/dev/null
say "xl create -F said:"
sed 's/^/dom0:   /' /tmp/xl.log
# libxl's words for each end: "Domain N has shut down, reason code R 0x0" (0 poweroff,
# 1 reboot, 2 suspend, 3 crash, 4 watchdog, 5 soft reset), one per domain xl watched (a
# reboot's restart is a second domain). One line per end, in order, then all of them.
ends=""
reason=""
for reason in $(sed -n 's/.*has shut down, reason code \([0-9]*\).*/\1/p' /tmp/xl.log); do
    case $reason in
        0) end_name=poweroff ;;
        1) end_name=reboot ;;
        3) end_name=crash ;;
        *) end_name="reason $reason" ;;
    esac
    say "domU end: $end_name"
    ends="$ends${ends:+, }$end_name"
done
if [ -z "$ends" ]; then
    say "domU end: unknown (destroyed, or never started)"
    ends=unknown
fi
say "domU ends, in order: $ends"
# Without a probe the domU is expected to end by itself, powered off.
[ "$rounds" -gt 0 ] || [ "$reason" = 0 ] || [ $status -ne 0 ] || status=2
say "console log's last lines:"
tail -n 5 $log 2>/dev/null | sed 's/^/dom0:   /'
xl list | sed 's/^/dom0:   /'
say "done at $(cut -d' ' -f1 /proc/uptime)s, status $status"
end $status
