#!/usr/bin/env bash
# groupcast benchmark suite: builds groupcast and the load generator, installs
# the baselines (Node `ws`, Python `websockets`), runs every scenario against
# each server and writes BENCHMARKS.md at the repo root.
#
#   bash benches/run.sh           full suite (about 10 minutes), writes BENCHMARKS.md
#   bash benches/run.sh --smoke   one tiny scenario against groupcast only;
#                                 exits non-zero if a delivery was lost
#   bash benches/run.sh --only flood,idle   a subset (see benches/run.py --help)
#
# Environment: CARGO_TARGET_DIR (default benches/target); GROUPCAST_BIN to use
# that groupcast binary instead of building the work tree, with
# GROUPCAST_COMMIT naming what it was built from in the report.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

smoke=0
for arg in "$@"; do
    [[ $arg == --smoke ]] && smoke=1
done

# 10,000-19,000 connections need more than the default soft fd limit; the
# servers started by run.py inherit it.
ulimit -n "$(ulimit -Hn)"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/benches/target}
if [[ -z ${GROUPCAST_BIN:-} ]]; then
    cargo build --release --quiet --bin groupcast
    export GROUPCAST_BIN=$CARGO_TARGET_DIR/release/groupcast
fi
cargo build --release --quiet --manifest-path benches/loadgen/Cargo.toml
export LOADGEN_BIN=$CARGO_TARGET_DIR/release/loadgen

if [[ $smoke == 0 ]]; then
    if [[ ! -d benches/baselines/node/node_modules/ws ]]; then
        (cd benches/baselines/node && npm ci --no-audit --no-fund --silent)
    fi
    if [[ ! -x benches/.venv/bin/python ]]; then
        python3 -m venv benches/.venv
    fi
    if ! benches/.venv/bin/python -c 'import websockets' 2>/dev/null; then
        benches/.venv/bin/pip install --quiet -r benches/baselines/python/requirements.txt
    fi
fi

exec python3 benches/run.py "$@"
