# What the benches' run.sh scripts share about their Linux guest, sourced by each
# (bench/{net,http,kv,files,block,vsock}/run.sh): finding Debian's cloud kernel, the
# packages it needs, the TSC rate under TCG, the QEMU line (qemu/run.sh's flags, with
# -initrd added: run.sh has none), the image-size line, and the medians table. Each
# run.sh keeps only what its bench does differently. Needs $root and $out set.

# bench_needs BENCH IMAGE TOOL...: exits 2 with the reason unless IMAGE (a build/*.elf)
# exists and every TOOL is on the PATH.
bench_needs() {
    local bench=$1 image=$2 tool; shift 2
    [ -f "$image" ] || { echo "bench/$bench: no $image: run 'make images' first" >&2; exit 2; }
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "bench/$bench: $tool not found (qemu/setup.sh and bench/$bench/run.sh's" \
                 "header name the Debian packages)" >&2; exit 2; }
    done
}

# stale OUTPUT INPUT...: true when OUTPUT is missing or older than an input.
stale() {
    local target=$1; shift
    [ -f "$target" ] || return 0
    for input in "$@"; do [ "$input" -nt "$target" ] && return 0; done
    return 1
}

# linux_kernel: sets kernel (the newest /boot/vmlinuz-*-cloud-amd64) and version; false
# when there is none or its modules are missing.
linux_kernel() {
    kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1 || true)
    version=${kernel#/boot/vmlinuz-}
    [ -n "$kernel" ] && [ -d "/lib/modules/$version" ]
}

# static_busybox: true when /bin/busybox runs without a loader (it is the guest's only
# shell, and the initramfs has no libc for it).
static_busybox() {
    [ -x /bin/busybox ] && ! readelf -l /bin/busybox 2>/dev/null | grep -q 'program interpreter'
}

# linux_missing: the Debian packages the Linux guest lacks, plus the bench's own needs
# given as "PACKAGE CHECK-COMMAND" lines on stdin (e.g. "nginx-light [ -x /usr/sbin/nginx ]";
# PACKAGE is missing when CHECK-COMMAND fails); prints them space-separated.
linux_missing() {
    local missing=()
    linux_kernel || missing+=(linux-image-cloud-amd64)
    static_busybox || missing+=(busybox-static)
    while read -r package check; do
        [ -n "$package" ] || continue
        eval "$check" >/dev/null 2>&1 || missing+=("$package")
    done
    echo "${missing[*]}"
}

# linux_install BENCH PACKAGES...: installs PACKAGES (linux_missing's answer) as root, the
# log in $out/apt-BENCH.log, else names them and exits 2; then sets kernel and version
# (linux_kernel), or exits 2.
linux_install() {
    local bench=$1; shift
    local log=$out/apt-$bench.log
    if [ $# -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
        echo "bench/$bench: needs Debian packages; run: sudo apt-get install -y $*" >&2
        exit 2
    elif [ $# -gt 0 ]; then
        echo "bench/$bench: installing $*"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "$@" >"$log" 2>&1 || {
            apt-get update -q >>"$log" 2>&1
            apt-get install -y -q "$@" >>"$log" 2>&1; } || {
            tail -n 20 "$log" >&2; echo "bench/$bench: apt-get install failed" >&2; exit 2; }
    fi
    linux_kernel || { echo "bench/$bench: no cloud kernel with its /lib/modules" >&2; exit 2; }
}

# linux_initramfs OUT INIT ARGS...: builds OUT with bench/linux/initramfs.py (INIT as
# /init, ARGS its options) when OUT is older than INIT, the builder, init-common.sh,
# busybox, modules.dep or any existing file named in ARGS (DEST=SOURCE counts SOURCE).
linux_initramfs() {
    local target=$1 init=$2; shift 2
    local inputs=("$init" "$root/bench/linux/initramfs.py" "$root/bench/linux/init-common.sh"
        /bin/busybox "/lib/modules/$version/modules.dep") arg
    for arg in "$@"; do
        arg=${arg#*=}
        [ -f "$arg" ] && inputs+=("$arg")
    done
    if stale "$target" "${inputs[@]}"; then
        python3 "$root/bench/linux/initramfs.py" "$target" "$init" "$@"
    fi
}

# linux_accel: sets accel (qemu/run.sh's choice, so both guests get the same), cpu (the
# -cpu run.sh passes), tsc_khz (under TCG the host's TSC rate, else empty: Linux's PIT
# calibration of the TSC fails often under TCG and the boot hangs, bench/linux/tsc_khz.c)
# and append (the Linux kernel's command line, with tsc_early_khz= under TCG).
linux_accel() {
    accel=$("$root/qemu/run.sh" --which-accel)
    cpu=max
    [ "$accel" = kvm ] && cpu="host,-arch-capabilities"
    tsc_khz=""
    append="console=ttyS0 quiet panic=-1"
    if [ "$accel" = tcg ]; then
        stale "$out/tsc_khz" "$root/bench/linux/tsc_khz.c" &&
            gcc -O2 -o "$out/tsc_khz" "$root/bench/linux/tsc_khz.c"
        tsc_khz=$("$out/tsc_khz")
        append+=" tsc_early_khz=$tsc_khz"
    fi
}

# linux_qemu MACHINE MEM APPEND QEMU-ARGS...: runs the Linux guest in the foreground with
# qemu/run.sh's flags for microvm + PVH (console on stdout), QEMU-ARGS (its devices) and
# $kernel, $initramfs. KEEP IN SYNC with qemu/run.sh and bench/linux/guests.py.
linux_qemu() {
    local machine=$1 mem=$2 line=$3; shift 3
    qemu-system-x86_64 \
        -machine "$machine" -accel "$accel" -cpu "$cpu" -smp 1 -m "$mem" \
        -nodefaults -no-user-config -display none -no-reboot \
        -chardev stdio,id=console,signal=on -serial chardev:console \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        "$@" -kernel "$kernel" -initrd "$initramfs" -append "$line" </dev/null
}

# image_size NAME ELF: prints ELF's size stripped (what the size target counts) and as
# built (with its symbol table, for backtraces).
image_size() {
    local bytes stripped
    bytes=$(stat -c %s "$2")
    objcopy --strip-all "$2" "$out/$1.stripped"
    stripped=$(stat -c %s "$out/$1.stripped")
    printf '%s image: %d bytes stripped (%d.%d KiB); %d with its symbol table, as built\n' \
        "$1" "$stripped" $((stripped / 1024)) $((stripped % 1024 * 10 / 1024)) "$bytes"
}

# load_average WHEN: the machine's load, which skews every number.
load_average() {
    local note=""
    [ "$1" = before ] && note=" (other work on the machine skews every number)"
    echo "load average $1: $(cut -d' ' -f1-3 /proc/loadavg)$note"
}
