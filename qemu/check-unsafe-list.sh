#!/usr/bin/env bash
# Keeps docs/unsafe.md honest: every source file with unsafe code must have a row in its
# table, with the number of unsafe lines the file has now. `make lint` runs it.
#
# usage: qemu/check-unsafe-list.sh            check; on a mismatch, print the rows to fix
#        qemu/check-unsafe-list.sh --table    print the table rows the code calls for
#
# What counts: a line of a `.rs` file whose code (the text before any `//`) has the word
# `unsafe` (an `unsafe` block, fn, impl, trait, extern block or attribute) or
# `global_asm!` (assembly, which needs no `unsafe` keyword but is unsafe code all the
# same). Files under a `tests/` directory and `tests.rs`/`fuzz_tests.rs` modules are not
# counted; test fakes inside `src/` are. A row looks like
#     | `kernel/src/arch/paging.rs` | 20 | page tables ... |
# When a change adds or removes unsafe code, fix the row (and the file's section below
# the table, which says what each site relies on).
set -euo pipefail
cd "$(dirname "$0")/.."

DOC=docs/unsafe.md
CRATES=(boot kernel executor virtio netstack examples qemu)

count() {
    sed 's://.*$::' "$1" | grep -cE '\bunsafe\b|\bglobal_asm!' || true
}

actual() {
    find "${CRATES[@]}" -name '*.rs' -not -path '*/tests/*' -not -name tests.rs \
        -not -name fuzz_tests.rs -not -path '*/target/*' | LC_ALL=C sort |
        while read -r file; do
            n=$(count "$file")
            [ "$n" -gt 0 ] && printf '%s %s\n' "$file" "$n"
        done
    return 0
}

listed() {
    sed -nE 's/^\| `([^`]+\.rs)` \| ([0-9]+) \|.*/\1 \2/p' "$DOC" | LC_ALL=C sort
}

if [ "${1:-}" = --table ]; then
    actual | while read -r file n; do printf '| `%s` | %s | |\n' "$file" "$n"; done
    exit 0
fi

[ -f "$DOC" ] || { echo "check-unsafe-list: $DOC is missing" >&2; exit 1; }

if ! difference=$(diff <(actual) <(listed)); then
    echo "check-unsafe-list: $DOC does not match the code (unsafe lines per file)." >&2
    echo "$difference" | sed -nE 's/^< (.*) ([0-9]+)$/  the code: \1 has \2/p; s/^> (.*) ([0-9]+)$/  the doc:  \1 has \2/p' >&2
    echo "Fix the table rows (and say what new sites rely on); qemu/check-unsafe-list.sh --table prints the counts." >&2
    exit 1
fi
echo "check-unsafe-list: $DOC lists all $(actual | wc -l) files with unsafe code"
