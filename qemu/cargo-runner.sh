#!/usr/bin/env bash
# Cargo's runner for a service crate made by `make new-service`: boots the image that
# `cargo run` built through qemu/run.sh, and exits with the guest's exit code.
#
# usage: qemu/cargo-runner.sh [RUN.SH OPTION VALUE]... -- IMAGE [COMMAND LINE WORD]...
#
# The service's .cargo/config.toml names this script with the service's port forward
# and a `--`; cargo adds the image and whatever follows `cargo run --`. Then:
# - $RUN_ARGS adds run.sh options, quoted as in a shell (RUN_ARGS="--smp 4" or
#   RUN_ARGS="--append 'log=debug ip=dhcp'"); a --forward in RUN_ARGS replaces the
#   config's forwards (to serve on another host port);
# - the words after IMAGE become the kernel command line (run.sh --append).
set -euo pipefail

fail() { echo "cargo-runner: $*" >&2; exit 2; }

configured=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    configured+=("$1"); shift
done
[ $# -ge 2 ] || fail "usage: cargo-runner.sh [RUN.SH OPTION VALUE]... -- IMAGE [WORD]... (cargo adds IMAGE)"
shift
image=$1; shift

# RUN_ARGS, split into words the way a shell would (xargs understands quotes), without
# evaluating anything in it.
extra=()
if [ -n "${RUN_ARGS:-}" ]; then
    mapfile -d '' extra < <(printf '%s' "$RUN_ARGS" | xargs printf '%s\0') ||
        fail "cannot split RUN_ARGS into words (an unbalanced quote?): $RUN_ARGS"
fi

# Every run.sh option takes one value, so options come in pairs.
[ $((${#extra[@]} % 2)) -eq 0 ] ||
    fail "RUN_ARGS must be run.sh options with their values, e.g. RUN_ARGS=\"--smp 4\"; got: $RUN_ARGS"
replaces_forwards=no has_append=no
for ((i = 0; i < ${#extra[@]}; i += 2)); do
    case ${extra[i]} in
        --forward) replaces_forwards=yes ;;
        --append) has_append=yes ;;
        --*) ;;
        *) fail "RUN_ARGS: '${extra[i]}' is not a run.sh option (see qemu/run.sh --help)" ;;
    esac
done

options=()
for ((i = 0; i < ${#configured[@]}; i += 2)); do
    if [ "${configured[i]}" = --forward ] && [ $replaces_forwards = yes ]; then continue; fi
    options+=("${configured[i]}" "${configured[i + 1]}")
done
options+=("${extra[@]}")
if [ $# -gt 0 ]; then
    [ $has_append = no ] ||
        fail "a kernel command line both after 'cargo run --' and in RUN_ARGS' --append: give it once"
    options+=(--append "$*")
fi

echo "cargo-runner: qemu/run.sh $image ${options[*]}" >&2
exec "$(dirname "$0")/run.sh" "$image" "${options[@]}"
