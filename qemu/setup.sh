#!/usr/bin/env bash
# Installs what building and testing Torito needs, or says exactly what to run.
#
# usage: qemu/setup.sh DEBIAN_PACKAGE...
# - the Rust target x86_64-unknown-none (rustup; RUSTUP_AUTO_INSTALL=0 here, so a
#   rust-toolchain.toml alone fetches nothing), plus rustfmt and clippy;
# - the Debian packages given (QEMU, GRUB for the multiboot2 ISO, xorriso, mtools;
#   iproute2 for the orchestrator contract test's namespaces, tap and tc; python3 for
#   `make oci`; skopeo to push and check OCI images; redis-tools: redis-cli for the kv
#   service's tests;
#   qemu-system-common for virtiofsd, behind run.sh --share; curl and e2fsprogs (mke2fs)
#   for the files test;
# - vhost-device-vsock (crates.io), the userspace vsock backend behind run.sh --vsock:
#   there is no /dev/vhost-vsock on the build machines;
# - Debian's Xen hypervisor binary, for run.sh --boot xen (qemu/xen.sh);
# - for qemu/xen-domu.sh (a domU under a Linux dom0): Debian's regular and cloud kernels,
#   Xen's tools and libraries and busybox-static, downloaded and unpacked (never
#   installed), plus gcc and libc6-dev for its static helpers (the echo probe) and kmod
#   (depmod) for the unpacked kernels' modules.
set -euo pipefail
set -- "$@" gcc libc6-dev kmod

# Pinned and --locked: 0.3.0 builds on stable Rust 1.95 (about a minute). Checked at
# the path cargo installs to too, since ~/.cargo/bin may not be on PATH.
if ! command -v vhost-device-vsock >/dev/null && [ ! -x "$HOME/.cargo/bin/vhost-device-vsock" ]; then
    echo "setup: installing vhost-device-vsock 0.3.0 (cargo install; about a minute)"
    cargo install vhost-device-vsock --version 0.3.0 --locked --quiet
fi

if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    echo "setup: adding the Rust target x86_64-unknown-none"
    rustup target add x86_64-unknown-none
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        rustup component add "$component"
    fi
done

# Debian's Xen hypervisor for run.sh --boot xen (qemu/tests/xen.rs): downloaded and
# unpacked into a cache directory, never installed (the machine must not boot into it).
if [ ! -f "$("$(dirname "$0")/xen.sh" path)" ]; then
    "$(dirname "$0")/xen.sh" fetch || echo "setup: could not fetch Xen (qemu/xen.sh fetch); run.sh --boot xen needs it" >&2
fi

missing=()
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# The domU environment (qemu/tests/xen_domu.rs), after the packages (it needs depmod):
# unpacked into a cache directory too.
fetch_domu() {
    "$(dirname "$0")/xen-domu.sh" fetch ||
        echo "setup: could not fetch the dom0 packages (qemu/xen-domu.sh fetch); qemu/tests/xen_domu.rs needs them" >&2
}
if [ ${#missing[@]} -eq 0 ]; then
    fetch_domu
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo="sudo"
else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fetch_domu
