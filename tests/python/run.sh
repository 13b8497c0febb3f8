#!/usr/bin/env bash
# The Python package's tests: builds the extension into a virtualenv (.venv
# at the repository root) the way a user's `pip install .` does, checks the
# stubs against the compiled module, then runs pytest.
#
#   bash tests/python/run.sh [pytest arguments]
#
# Needs cargo and python3 (>= 3.9); installs python3-venv with apt when the
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

# Build (release) and install the extension, with the venv's maturin.
echo "building the extension (maturin, release)"
"$py" -m pip install "${quiet_pip[@]}" --no-build-isolation --editable .

echo "mypy.stubtest groupcast"
"$py" -m mypy.stubtest groupcast

"$py" -m pytest tests/python -q "$@"
