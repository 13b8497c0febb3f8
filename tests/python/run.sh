#!/usr/bin/env bash
# The Python package's tests: builds the extension into a virtualenv (.venv
# at the repository root) the way a user's `pip install .` does, checks that
# this build left the plain release cdylib (C, PHP) untouched and free of
# Python symbols, checks the stubs against the compiled module, then runs
# pytest (which also builds the abi3 wheel and installs it in a fresh venv).
#
#   bash tests/python/run.sh [pytest arguments]
#
# Needs cargo, nm and python3 (>= 3.9); installs python3-venv with apt when the
# interpreter cannot make a virtualenv. PYTHON picks another interpreter;
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=.venv
quiet_pip=(--quiet --disable-pip-version-check)

if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"
# The build backend runs the venv's `maturin` by name.
export PATH="$PWD/$VENV/bin:$PATH"

# Test tools, pinned to their major versions.
"$py" -m pip install "${quiet_pip[@]}" \
    "maturin>=1.9.4,<2" "pytest>=8,<10" "websockets>=13,<17" "mypy>=1.10,<2"

# The plain cdylib that C and PHP load (release, no `python` feature): the
# extension's build below must leave it as it is. Up to date (a no-op) when
# the benchmarks or an earlier run built it.
target=${CARGO_TARGET_DIR:-target}
plain=$target/release/libgroupcast.so
echo "building the plain cdylib (cargo, release)"
cargo build --quiet --release --lib
fingerprint() { stat -c '%Y.%y %s' "$plain" && sha256sum <"$plain"; }
before=$(fingerprint)

# Build (the `python` profile: release settings, in target/python/) and
# install the extension, with the venv's maturin.
echo "building the extension (maturin, profile python)"
# An editable install copies the extension into python/groupcast/; one left
# by an older build under another ABI tag (cpython-311 before abi3) would be
# imported instead of the new one.
rm -f python/groupcast/_groupcast.*.so
"$py" -m pip install "${quiet_pip[@]}" --no-build-isolation --editable .

echo "checking the builds are apart"
if [ "$(fingerprint)" != "$before" ]; then
    echo "FAIL: building the extension rewrote $plain" >&2
    exit 1
fi
# (Whole listings first: `grep -q` quitting early would fail the pipeline.)
plain_needs=$(nm -D --undefined-only "$plain")
extension_needs=$(nm -D --undefined-only "$target/python/libgroupcast.so")
if grep -E ' _?Py' <<<"$plain_needs" >&2; then
    echo "FAIL: $plain needs libpython's symbols (above)" >&2
    exit 1
fi
if ! grep -q ' PyExc_' <<<"$extension_needs"; then
    echo "FAIL: no extension in $target/python/ (the maturin profile's directory)" >&2
    exit 1
fi

echo "mypy.stubtest groupcast"
"$py" -m mypy.stubtest groupcast

"$py" -m pytest tests/python -q "$@"
