#!/usr/bin/env bash
# Runs every test of groupcast: formatting and lints, the Rust unit and
# integration tests, the C ABI tests (ASan/UBSan), the PHP-FFI host, the
# Python package, and a benchmark smoke run. Installs what it needs on a
# fresh Debian machine (each part's own script does its installs).
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

run "cargo fmt --check" cargo fmt --all -- --check
run "cargo clippy" cargo clippy --all-targets -- -D warnings
run "rust tests" cargo test --all-targets
for part in c php python; do
    if [ -f "tests/$part/run.sh" ]; then
        run "$part tests" bash "tests/$part/run.sh"
    fi
done
if [ -f benches/run.sh ]; then
    run "benchmark smoke run" bash benches/run.sh --smoke
fi

echo
echo "suites: ${passed[*]:-none} passed; ${failed[*]:-none} failed"
echo "${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
