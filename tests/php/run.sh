#!/usr/bin/env bash
# The PHP tests: installs php-cli (Debian enables FFI for the CLI) if
# missing, checks that include/groupcast_ffi.h matches the header, builds
# the library, runs the wrapper test, then the seed scenario against
# examples/php/seed.php (websocket clients, then SIGTERM must stop it with
# exit 0). Ends with "N passed, N failed".
#
#   tests/php/run.sh                  (CARGO_TARGET_DIR defaults to target)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

need=()
command -v php >/dev/null || need+=(php-cli)
command -v python3 >/dev/null || need+=(python3)
command -v gcc >/dev/null || need+=(gcc)
if ((${#need[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
modules=$(php -m)
for ext in FFI pcntl; do
    grep -qx "$ext" <<<"$modules" || { echo "php has no $ext extension" >&2; exit 1; }
done

tests/c/gen-header.sh --check

target=${CARGO_TARGET_DIR:-target}
[[ "$target" = /* ]] || target="$root/$target"
cargo build --quiet --lib
# Name the library just built, so that an older release build in the same
# target dir is not picked up instead.
export GROUPCAST_LIB="$target/debug/libgroupcast.so"

passed=0
failed=0
run() {
    if timeout 120 "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $*" >&2
        failed=$((failed + 1))
    fi
}
run php tests/php/test_wrapper.php
run python3 tests/php/seed_scenario.py -- php examples/php/seed.php
echo "php: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
