#!/usr/bin/env bash
# The C tests: checks the committed header against a fresh cbindgen run,
# builds the library, compiles the C tests and examples/c/seed.c with
# warnings as errors under AddressSanitizer and UndefinedBehaviorSanitizer,
# runs the tests, and the seed scenario against the C seed. Ends with "N passed, N failed".
#
#   tests/c/run.sh                    (CARGO_TARGET_DIR defaults to target)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

tests/c/gen-header.sh --check

target=${CARGO_TARGET_DIR:-target}
[[ "$target" = /* ]] || target="$root/$target"
cargo build --quiet --lib
lib_dir="$target/debug"
[[ -f "$lib_dir/libgroupcast.so" ]] || { echo "no $lib_dir/libgroupcast.so" >&2; exit 1; }

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cflags=(-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Wpedantic -Werror
    -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
    -I include -I tests/c)
ldflags=(-L "$lib_dir" -lgroupcast -Wl,-rpath,"$lib_dir" -pthread)

cc "${cflags[@]}" examples/c/seed.c -o "$build/seed" "${ldflags[@]}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
passed=0
failed=0
for src in tests/c/test_*.c; do
    name=$(basename "$src" .c)
    cc "${cflags[@]}" "$src" -o "$build/$name" "${ldflags[@]}"
    if timeout 120 "$build/$name"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $name" >&2
        failed=$((failed + 1))
    fi
done
# The seed as a C host: the seed scenario through websocket clients, then
# SIGTERM must stop it cleanly (exit 0, no leak).
if timeout 120 python3 tests/php/seed_scenario.py -- "$build/seed"; then
    passed=$((passed + 1))
else
    echo "FAILED: seed scenario against examples/c/seed.c" >&2
    failed=$((failed + 1))
fi
echo "c: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
