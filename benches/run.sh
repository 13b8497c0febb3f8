#!/usr/bin/env bash
# groupcast benchmark suite: builds groupcast and the load generator, installs
# the baselines (Node `ws`, Python `websockets`), runs every scenario against
# each server and writes BENCHMARKS.md at the repo root.
#
#   bash benches/run.sh           full suite (about 13 minutes), writes BENCHMARKS.md
#   bash benches/run.sh --smoke   one tiny scenario against groupcast only;
#                                 exits non-zero if a delivery was lost
#   bash benches/run.sh --only flood,idle   a subset (see benches/run.py --help);
#                                 --servers groupcast keeps the groupcast rows only
#
# Scenario 6 (`hosts`) measures the C, PHP and Python hosts, so a run that
# includes it also installs a C compiler and php-cli (with apt, if missing)
# and builds the Python extension from this tree into benches/.venv.
#
# Environment: CARGO_TARGET_DIR (default benches/target); GROUPCAST_BIN to use
# that groupcast binary instead of building the work tree, with
# GROUPCAST_COMMIT naming what it was built from in the report (the hosts of
# scenario 6 are built from the work tree regardless).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

smoke=0
render=0
only=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --smoke) smoke=1 ;;
        --render) render=1 ;;
        --only) only=${args[i + 1]:-} ;;
        --only=*) only=${args[i]#--only=} ;;
    esac
done
# Whether run.py will run scenario 6, which needs the hosts set up below.
hosts=0
if [[ $smoke == 0 && $render == 0 ]] && [[ -z $only || ,$only, == *,hosts,* ]]; then
    hosts=1
fi
# The Python extension is built where `bash tests/python/run.sh` builds it
# (the caller's CARGO_TARGET_DIR, else target/), so an unchanged tree is not
# compiled again; the servers and hosts go to benches/target.
extension_target=${CARGO_TARGET_DIR:-$root/target}

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
    # python3-venv for benches/.venv; for scenario 6, a C compiler for
    # examples/c/seed.c and php-cli (Debian's enables FFI for the CLI) for
    # examples/php/seed.php. A failed install is not fatal: the host that
    # needs it is then recorded as failed in the report.
    need=()
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
    # The cluster scenario's Redis row.
    if [[ -z $only || ,$only, == *,cluster,* ]]; then
        command -v redis-server >/dev/null || need+=(redis-server)
    fi
    if [[ $hosts == 1 ]]; then
        command -v cc >/dev/null || need+=(gcc libc6-dev)
        command -v php >/dev/null || need+=(php-cli)
    fi
    if ((${#need[@]})); then
        echo "installing ${need[*]}" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
            echo "warning: could not install ${need[*]}" >&2
    fi
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

if [[ $hosts == 1 ]]; then
    # Scenario 6's Python figures: the extension built from this tree
    # (release) and installed as a wheel into benches/.venv, not into the
    # tests' .venv, whose editable install a test run may be using. Steps as
    # in tests/python/run.sh: the build backend runs the venv's `maturin`.
    quiet_pip=(--quiet --disable-pip-version-check)
    built=1
    [[ -x benches/.venv/bin/maturin ]] ||
        benches/.venv/bin/pip install "${quiet_pip[@]}" "maturin>=1.9.4,<2" || built=0
    echo "building the Python extension (maturin, release)" >&2
    [[ $built == 0 ]] || PATH="$root/benches/.venv/bin:$PATH" CARGO_TARGET_DIR=$extension_target \
        benches/.venv/bin/pip install "${quiet_pip[@]}" --no-build-isolation --force-reinstall --no-deps . || built=0
    if [[ $built == 0 ]]; then
        # Not fatal, but an older build must not be measured instead: the
        # Python rows then fail with "No module named 'groupcast'".
        echo "warning: the Python extension did not build" >&2
        benches/.venv/bin/pip uninstall "${quiet_pip[@]}" -y groupcast || true
    fi
fi

exec python3 benches/run.py "$@"
