#!/usr/bin/env bash
# The demo page and the README's console snippet in a real browser: a
# groupcast node (the debug binary) and headless Chromium driven through the
# DevTools protocol by browser_test.py. Installs Debian's chromium when it is
# missing, and fails (never skips) when it cannot run.
#
#   bash tests/browser/run.sh
#
# Uses .venv's python (made by tests/python/run.sh; made here with
# `websockets` when missing). The screenshot goes to $target/demo.png
# (docs/demo.png is a copy of one). CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium >/dev/null; then
    echo "installing chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
chromium --headless --no-sandbox --version

if ! .venv/bin/python -c 'import websockets' 2>/dev/null; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "websockets>=13,<17"
fi

target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --quiet --bin groupcast
# Each step inside is bounded; this bounds the whole, hangs included.
timeout 180 .venv/bin/python tests/browser/browser_test.py \
    --groupcast "$target/debug/groupcast" \
    --chromium "$(command -v chromium)" \
    --screenshot "$target/demo.png"
