#!/usr/bin/env bash
# Builds the instruction-counting QEMU plugin (bench/executed/plugin.c) into
# target/bench/libexecuted.so, when missing or older than its source.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source=$root/bench/executed/plugin.c
plugin=$root/target/bench/libexecuted.so
command -v gcc >/dev/null || { echo "bench/executed: gcc not found (apt-get install -y gcc)" >&2; exit 2; }
mkdir -p "$(dirname "$plugin")"
if [ ! -f "$plugin" ] || [ "$source" -nt "$plugin" ]; then
    gcc -O2 -Wall -Wextra -Werror -shared -fPIC -o "$plugin" "$source"
fi
