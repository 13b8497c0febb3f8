"""The package as a user gets it: `maturin build` makes one abi3 wheel
(cp39-abi3, every CPython from 3.9), which installs without any Rust
toolchain and brings the `groupcast` console command.

Builds with the venv's maturin and the `python` profile of the tests' own
editable install (target/python/), so the wheel reuses that compilation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    maturin = Path(sys.executable).with_name("maturin")
    if not maturin.exists():
        pytest.skip("maturin is not installed next to this interpreter")
    out = tmp_path_factory.mktemp("wheels")
    # No --release: that would mean the `release` profile; pyproject.toml
    # names the `python` profile, built in release mode.
    subprocess.run(
        [str(maturin), "build", "--quiet", "--out", str(out), "--interpreter", sys.executable],
        cwd=ROOT,
        check=True,
    )
    (built,) = out.glob("*.whl")
    return built


def test_one_abi3_wheel(wheel: Path) -> None:
    name, version, python, abi, platform = wheel.stem.split("-")
    assert (name, python, abi) == ("groupcast", "cp39", "abi3"), wheel.name


def test_installs_and_runs_without_a_rust_toolchain(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, symlinks=True)
    bin_dir = env_dir / "bin"
    # Only the new venv and the system's own directories: no cargo, rustc.
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    for tool in ("cargo", "rustc", "maturin"):
        assert shutil.which(tool, path=path) is None, f"{tool} on the restricted PATH"
    env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    python = str(bin_dir / "python")

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, **kwargs
        )

    no_toolchain = run(python, "-c", 'import shutil; print(shutil.which("cargo"), shutil.which("rustc"))')
    assert no_toolchain.stdout.split() == ["None", "None"], no_toolchain
    installed = run(
        python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-index", "--no-deps", str(wheel),
    )
    assert installed.returncode == 0, installed.stderr

    imported = run(python, "-c", "import groupcast, sys; print(groupcast.__file__)")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(env_dir)), imported.stdout  # not the checkout's

    usage = run(str(bin_dir / "groupcast"), "--help")
    assert usage.returncode == 0, usage.stderr
    assert "serve" in usage.stdout

    served = run(
        python, "-c",
        "import groupcast\n"
        "with groupcast.Server('127.0.0.1:0', workers=1) as server:\n"
        "    assert server.running\n"
        "    print(server.url)\n"
        "assert not server.running\n",
    )
    assert served.returncode == 0, served.stderr
    assert served.stdout.startswith("ws://127.0.0.1:"), served.stdout
