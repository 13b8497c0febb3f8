#!/usr/bin/env bash
# Generates include/groupcast.h (cbindgen, pinned) and include/groupcast_ffi.h
# (the same declarations run through the C preprocessor: no #include, #define
# or #if, no comments, as PHP's FFI::cdef needs).
#
#   tests/c/gen-header.sh          rewrite both files
#   tests/c/gen-header.sh --check  regenerate into a temp dir, fail on any diff
set -euo pipefail
cd "$(dirname "$0")/../.."

CBINDGEN_VERSION=0.29.4 # keep in step with the comment in cbindgen.toml

if [[ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]]; then
    echo "installing cbindgen $CBINDGEN_VERSION" >&2
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cbindgen --quiet --config cbindgen.toml --crate groupcast --output "$out/groupcast.h"
# Drop the #include lines so system headers are not expanded, then let the
# preprocessor remove comments, macros and the C++/C23 conditionals.
grep -v '^#include' "$out/groupcast.h" |
    gcc -std=c11 -E -P -x c - |
    sed -e '/^[[:space:]]*$/d' >"$out/groupcast_ffi.h"

if [[ "${1:-}" == "--check" ]]; then
    status=0
    for f in groupcast.h groupcast_ffi.h; do
        if ! diff -u "include/$f" "$out/$f"; then
            echo "include/$f is stale: run tests/c/gen-header.sh and commit it" >&2
            status=1
        fi
    done
    exit $status
fi
cp "$out/groupcast.h" "$out/groupcast_ffi.h" include/
echo "wrote include/groupcast.h include/groupcast_ffi.h"
