#!/usr/bin/env bash
# Writes a new service crate that depends on this checkout's Torito (`make new-service`).
#
# usage: qemu/new-service.sh NAME DIR [PORT]
#
# Creates DIR/NAME (DIR is made if missing; DIR/NAME must not exist) from
# qemu/service-template/: Cargo.toml, src/lib.rs, src/main.rs, .cargo/config.toml,
# README.md, .gitignore and this checkout's Cargo.lock. PORT (default 8080) is the TCP
# port the service listens on and `cargo run` forwards.
#
# The image's rustflags and the release profile are copied from this checkout's
# .cargo/config.toml and Cargo.toml, so they stay one list each (docs/services.md).
set -euo pipefail

usage() { sed -n '4p' "$0" | sed 's/^# //' >&2; exit 2; }
fail() { echo "new-service: $*" >&2; exit 2; }

[ $# -ge 2 ] && [ $# -le 3 ] || usage
name=$1 dir=$2 port=${3:-8080}
checkout=$(cd "$(dirname "$0")/.." && pwd)
template=$checkout/qemu/service-template

# Cargo's rules for a package name, checked here so the message comes before any file is
# written. Names that are Rust keywords, or the crates every Rust program already sees
# (and torito itself), would not build as a library of that name.
[ -n "$name" ] || fail "NAME is empty: give the crate a name, e.g. NAME=myapp"
[[ $name =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] ||
    fail "NAME '$name' is not a crate name: use letters, digits, '-' and '_', starting with a letter"
[ ${#name} -le 64 ] || fail "NAME '$name' is longer than 64 characters"
crate=${name//-/_}
case $crate in
    as|async|await|break|const|continue|crate|dyn|else|enum|extern|false|fn|for|gen|if|impl|in|\
    let|loop|match|mod|move|mut|pub|ref|return|self|Self|static|struct|super|trait|true|type|\
    unsafe|use|where|while|abstract|become|box|do|final|macro|override|priv|try|typeof|\
    unsized|virtual|yield)
        fail "NAME '$name' is a Rust keyword: pick another name" ;;
    std|core|alloc|proc_macro|test|torito)
        fail "NAME '$name' is the name of a crate the service already uses: pick another name" ;;
    build|deps|examples|incremental)
        fail "NAME '$name' would clash with a directory cargo makes under target/: pick another name" ;;
esac
[[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] ||
    fail "PORT '$port' is not a TCP port (1-65535)"

[ -n "$dir" ] || fail "DIR is empty: say where to put the crate, e.g. DIR=.."
mkdir -p "$dir" || fail "cannot create DIR '$dir'"
dir=$(cd "$dir" && pwd)
target=$dir/$name
[ ! -e "$target" ] && [ ! -L "$target" ] ||
    fail "$target already exists; choose another NAME or DIR (nothing was written)"

# The [target.x86_64-unknown-none] table of this checkout's cargo configuration: the
# header and its keys, up to the next table.
rustflags=$(awk '
    /^\[/ { copying = ($0 == "[target.x86_64-unknown-none]") }
    copying { print }
' "$checkout/.cargo/config.toml")
[ -n "$rustflags" ] || fail "no [target.x86_64-unknown-none] table in $checkout/.cargo/config.toml"

# The release and dev profiles of this checkout's Cargo.toml, each paragraph (comments,
# header, keys) as written. Per-package overrides for packages the service does not
# link (the dev profile's) are left out: cargo would warn about them.
profiles=$(awk '
    function flush() {
        if (paragraph != "" && headers > 0 && headers == wanted) printf "%s\n", paragraph
        paragraph = ""; headers = 0; wanted = 0
    }
    /^[ \t]*$/ { flush(); next }
    {
        if ($0 ~ /^\[/) {
            headers++
            if ($0 ~ /^\[profile\.(release|dev)\]$/ || $0 ~ /^\[profile\.release\.package\.[^]]+\]$/) wanted++
        }
        paragraph = paragraph $0 "\n"
    }
    END { flush() }
' "$checkout/Cargo.toml")
[ -n "$profiles" ] || fail "no [profile.release] in $checkout/Cargo.toml"

# Writes template file $1 to $2 with the placeholders filled in; a line that is exactly
# @RUSTFLAGS@ or @PROFILES@ becomes that block.
fill() {
    RUSTFLAGS_BLOCK=$rustflags PROFILES_BLOCK=$profiles awk \
        -v name="$name" -v crate="$crate" -v port="$port" \
        -v checkout="$checkout" -v torito="$checkout/kernel" '
        $0 == "@RUSTFLAGS@" { print ENVIRON["RUSTFLAGS_BLOCK"]; next }
        $0 == "@PROFILES@" { print ENVIRON["PROFILES_BLOCK"]; next }
        {
            gsub(/@NAME@/, name); gsub(/@CRATE@/, crate); gsub(/@PORT@/, port)
            gsub(/@CHECKOUT@/, checkout); gsub(/@TORITO@/, torito)
            print
        }
    ' "$template/$1" > "$target/$2"
}

# Written into a scratch directory next to the target and renamed at the end, so that a
# failure leaves no half-made crate behind.
scratch=$dir/.new-service-$name.$$
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch"
final=$target target=$scratch
mkdir -p "$target/src" "$target/.cargo"
fill Cargo.toml.in Cargo.toml
fill config.toml.in .cargo/config.toml
fill src/lib.rs.in src/lib.rs
fill src/main.rs.in src/main.rs
fill README.md.in README.md
fill gitignore.in .gitignore
# The dependency versions this checkout is built and tested with; cargo drops the
# entries the service does not use and adds the service itself.
cp "$checkout/Cargo.lock" "$target/Cargo.lock"
mv -T "$scratch" "$final"
trap - EXIT

cat <<DONE
new-service: wrote $final
new-service: next:
    cd $final
    cargo run --release      # boots it in QEMU; then: nc 127.0.0.1 $port
    cargo host-test          # its tests, on this machine
DONE
