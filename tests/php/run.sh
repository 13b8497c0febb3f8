#!/usr/bin/env bash
# The PHP tests: installs php-cli (Debian enables FFI for the CLI) if
# missing, checks that include/groupcast_ffi.h matches the header, builds
# the library, runs the wrapper test, then the seed scenario against
# examples/php/seed.php (websocket clients, then SIGTERM must stop it with
# exit 0) and its one-line exit 1 on a busy port; checks composer.json
# (`composer validate --strict` when Debian's composer package can be
# installed, and tests/php/check_package.php: the keys and the PSR-4
# layout). Ends with "N passed, N failed".
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
# composer only validates composer.json: install it when the package lists
# (updated above or by an earlier step) offer it.
if ! command -v composer >/dev/null && apt-cache policy composer 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq composer >/dev/null || true
fi
modules=$(php -m)
for ext in FFI pcntl; do
    grep -qx "$ext" <<<"$modules" || { echo "php has no $ext extension" >&2; exit 1; }
done

tests/c/gen-header.sh --check

target=${CARGO_TARGET_DIR:-target}
[[ "$target" = /* ]] || target="$root/$target"
cargo build --quiet --lib
# test_channel.php runs `groupcast channel` and a workerman-mode node.
cargo build --quiet --bin groupcast
# Name the library just built, so that an older release build in the same
# target dir is not picked up instead.
export GROUPCAST_LIB="$target/debug/libgroupcast.so"

passed=0
failed=0
failed_names=()
run() {
    if timeout 120 "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $*" >&2
        failed=$((failed + 1))
        failed_names+=("$*")
    fi
}
run php tests/php/test_wrapper.php
run php tests/php/test_presence.php
run python3 tests/php/seed_scenario.py -- php examples/php/seed.php
# A busy port: one line naming the address, exit 1 (not an uncaught
# exception's 255).
run python3 tests/php/busy_port.py -- php examples/php/seed.php
if command -v composer >/dev/null; then
    run env COMPOSER_ALLOW_SUPERUSER=1 composer validate --strict --no-interaction --quiet
else
    echo "composer is not installable here: checking composer.json with check_package.php only"
fi
run php tests/php/check_package.php
# The seed's Channel protocol (PHP serialize() bodies) against `groupcast
# channel`, and a workerman-mode node beside a PHP worker.
run env GROUPCAST_BIN="$target/debug/groupcast" php tests/php/test_channel.php
# The channel benchmark's driver and its PHP channel server baseline, a
# short run, so that the figures in BENCHMARKS.md can be produced again.
run php benches/channel_dialects.php "$target/debug/groupcast" --count 2000 --subs 2 --rounds 1
for name in "${failed_names[@]}"; do echo "php FAILED: $name"; done
echo "php: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
