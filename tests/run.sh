#!/usr/bin/env bash
# Runs every test of groupcast: formatting and lints, the Rust unit and
# integration tests, the C ABI tests (ASan/UBSan), the PHP-FFI host, the
# Python package, the demo page in a real browser, a benchmark smoke run,
# and every code block of the docs.
# Installs what it needs on a fresh Debian machine (each part's own script
# does its installs).
#
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
failed=()
run() {
    local name=$1
    shift
    step "$name"
    if "$@"; then
        passed+=("$name")
    else
        failed+=("$name")
    fi
}
passed=()

# The Rust tests of the Redis bus start their own redis-server processes.
step "installing what the Rust tests need (redis-server)"
bash tests/redis/run.sh --install-only

run "cargo fmt --check" cargo fmt --all -- --check
run "cargo clippy" cargo clippy --all-targets -- -D warnings
run "cargo clippy (python feature)" cargo clippy --all-targets --features python -- -D warnings
# --no-fail-fast: one failing test binary does not hide the others.
run "rust tests" cargo test --all-targets --no-fail-fast
# README.md's and docs/'s Rust blocks (src/lib.rs includes them as doctests).
run "rust doc snippets" cargo test --doc
run "c tests (ASan/UBSan, header check)" bash tests/c/run.sh
run "php tests" bash tests/php/run.sh
run "python tests" bash tests/python/run.sh
# The demo page and the README's console snippet in headless Chromium
# (installed when missing), with python tests' .venv.
run "browser tests" bash tests/browser/run.sh
# Reuse the main target dir: the smoke run needs a release groupcast.
run "benchmark smoke run" env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" bash benches/run.sh --smoke
# Every other code block of README.md and docs/, with what the suites above
# built and installed (the debug library and binary, .venv, php, node).
command -v node >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null
}
run "docs snippets" python3 tests/docs/snippets.py --python .venv/bin/python \
    --lib "${CARGO_TARGET_DIR:-$PWD/target}/debug"

echo
echo "suites: ${passed[*]:-none} passed; ${failed[*]:-none} failed"
echo "${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
