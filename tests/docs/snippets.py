#!/usr/bin/env python3
"""Runs every code block of README.md and docs/*.md, so a snippet a reader
copies works.

Each fenced block (```lang) is handled by its language:

- rust: compiled and run by `cargo test --doc` (src/lib.rs includes these
  files as doctests); here it is only counted.
- python: run with the test virtualenv's interpreter (`--python`), in a
  fresh temporary directory, with a time limit.
- c: compiled with warnings as errors against include/ and the library, and
  run.
- php: checked with `php -l`, and run with the library.
- js, javascript: checked with `node --check` (browser code: no browser
  here).
- sh: each command run with `bash -e` in the checkout, the built
  `groupcast` first on PATH.

A comment on the line before a block changes that:

    <!-- snippet: server -->     runs forever: started, must print a
                                  "listening" line (or stay up for 2 s),
                                  then stopped with SIGTERM and must exit 0
    <!-- snippet: compile -->    compiled or checked, not run
    <!-- snippet: skip WHY -->   not run, with the reason (a fragment, a
                                  command that needs a Redis on 6379, the
                                  test command itself)

Prints one line per block and ends with "N passed, N failed"; exits 1 when
any failed. Fixed ports in snippets (1234, 2206, ...) must be free.

    python3 tests/docs/snippets.py --python .venv/bin/python --lib target/debug
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\S*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*snippet:\s*(server|compile|skip)\b\s*(.*?)\s*-->\s*$")
TIMEOUT = 60


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    kind: str  # run, server, compile, skip
    why: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    found = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i
        lang = fence.group(1).lower()
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        kind, why = "run", ""
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        directive = DIRECTIVE.match(lines[before]) if before >= 0 else None
        if directive:
            kind, why = directive.group(1), directive.group(2)
        found.append(Block(path, start + 1, lang, "\n".join(body) + "\n", kind, why))
    return found


class Runner:
    def __init__(self, python: str, lib: Path, work: Path):
        self.python = python
        self.lib = lib
        self.work = work
        self.env = dict(os.environ)
        venv_bin = Path(python).parent
        self.env["PATH"] = f"{lib}:{venv_bin}:{self.env.get('PATH', '')}"
        self.env["GROUPCAST_LIB"] = str(lib / "libgroupcast.so")
        self.env["PYTHONUNBUFFERED"] = "1"

    def run(self, args: list[str], block: Block, cwd: Path, server: bool = False) -> str | None:
        """Runs `args`; returns None on success, else what went wrong."""
        if server:
            return self.serve(args, cwd)
        try:
            done = subprocess.run(
                args, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=TIMEOUT
            )
        except subprocess.TimeoutExpired:
            return f"did not finish in {TIMEOUT} s"
        if done.returncode != 0:
            return f"exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        return None

    def serve_all(self, commands: list[str], cwd: Path) -> str | None:
        """Starts each command (one per line, in order, each once the one
        before it is up), then stops them all, last first."""
        started = []
        problem = None
        for command in commands:
            process, problem = self.start_server(["bash", "-c", "exec " + command], cwd)
            if problem:
                problem = f"{command}: {problem}"
                break
            started.append((command, process))
        for command, process in reversed(started):
            stopped = self.stop_server(process)
            problem = problem or (stopped and f"{command}: {stopped}")
        return problem

    def serve(self, args: list[str], cwd: Path) -> str | None:
        """Starts a program that serves until stopped; it must come up, and
        stop cleanly on SIGTERM."""
        process, problem = self.start_server(args, cwd)
        return problem or self.stop_server(process)

    def start_server(self, args: list[str], cwd: Path):
        """Starts `args` and waits until it says it listens (or, for a
        quiet program, is still up after 2 s)."""
        process = subprocess.Popen(
            args, cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output = []
        deadline = time.monotonic() + TIMEOUT
        up = False
        os.set_blocking(process.stdout.fileno(), False)
        started = time.monotonic()
        while time.monotonic() < deadline:
            chunk = process.stdout.read()
            if chunk:
                output.append(chunk.decode(errors="replace"))
            if "listening" in "".join(output):
                up = True
                break
            if process.poll() is not None:
                break
            if time.monotonic() - started > 2 and "cargo" not in " ".join(args):
                up = True  # quiet servers: alive after 2 s is up
                break
            time.sleep(0.05)
        if process.poll() is not None:
            return process, f"exited {process.returncode} before serving\n{''.join(output)[-2000:]}"
        if not up:
            os.killpg(process.pid, signal.SIGKILL)
            return process, "never said it was listening"
        process.output = "".join(output)
        return process, None

    def stop_server(self, process) -> str | None:
        """SIGTERM; it must exit 0 within 10 s."""
        if process.poll() is not None:
            return None
        output = [getattr(process, "output", "")]
        os.killpg(process.pid, signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return "did not stop on SIGTERM"
        rest = (process.stdout.read() or b"").decode(errors="replace")
        if code != 0:
            return f"exit {code} on SIGTERM\n{(''.join(output) + rest)[-2000:]}"
        return None

    def handle(self, block: Block) -> str | None:
        lang = block.lang
        tmp = Path(tempfile.mkdtemp(dir=self.work))
        if lang == "python":
            script = tmp / "snippet.py"
            script.write_text(block.code)
            if block.kind == "compile":
                return self.run([self.python, "-m", "py_compile", str(script)], block, tmp)
            return self.run([self.python, str(script)], block, tmp, block.kind == "server")
        if lang == "c":
            source = tmp / "snippet.c"
            source.write_text(block.code)
            binary = tmp / "snippet"
            compiled = self.run(
                ["cc", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                 f"-I{ROOT / 'include'}", str(source), "-o", str(binary),
                 f"-L{self.lib}", "-lgroupcast", f"-Wl,-rpath,{self.lib}", "-pthread"],
                block, tmp,
            )
            if compiled or block.kind == "compile":
                return compiled
            return self.run([str(binary)], block, tmp, block.kind == "server")
        if lang == "php":
            source = tmp / "snippet.php"
            source.write_text(block.code)
            checked = self.run(["php", "-l", str(source)], block, tmp)
            if checked or block.kind == "compile":
                return checked
            return self.run(["php", str(source)], block, ROOT, block.kind == "server")
        if lang in ("js", "javascript"):
            source = tmp / "snippet.js"
            source.write_text(block.code)
            return self.run(["node", "--check", str(source)], block, tmp)
        if lang in ("sh", "bash", "shell"):
            if block.kind == "compile":
                return self.run(["bash", "-n", "-c", block.code], block, ROOT)
            if block.kind == "server":
                commands = [
                    line.strip() for line in block.code.splitlines()
                    if line.strip() and not line.strip().startswith("#")
                ]
                return self.serve_all(commands, ROOT)
            return self.run(["bash", "-e", "-c", block.code], block, ROOT)
        return f"no runner for language {lang!r}: mark the block or add one"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    parser.add_argument("--lib", default=str(ROOT / "target/debug"))
    parser.add_argument("--list", action="store_true", help="list the blocks and exit")
    args = parser.parse_args()
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [b for f in files for b in blocks(f)]
    if args.list:
        for b in found:
            print(f"{b.where}: {b.lang or '(none)'} {b.kind} {b.why}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="groupcast-snippets-"))
    # Absolute, but not resolved: the virtualenv's python is a link to the
    # system's, and only through the link is it the virtualenv's.
    python = os.path.abspath(args.python)
    runner = Runner(python, Path(args.lib).resolve(), work)
    passed = failed = skipped = 0
    for block in found:
        if block.lang in ("", "text", "console", "json"):
            if block.kind != "skip":
                print(f"FAILED {block.where}: a block without a runnable language; "
                      "give it one, or mark it <!-- snippet: skip WHY -->")
                failed += 1
            else:
                skipped += 1
            continue
        if block.lang == "rust":
            print(f"ok     {block.where}: rust (run by cargo test --doc)")
            passed += 1
            continue
        if block.kind == "skip":
            if not block.why:
                print(f"FAILED {block.where}: skipped without a reason")
                failed += 1
            else:
                print(f"skip   {block.where}: {block.why}")
                skipped += 1
            continue
        problem = runner.handle(block)
        if problem:
            print(f"FAILED {block.where}: {block.lang} {block.kind}\n{problem}")
            failed += 1
        else:
            print(f"ok     {block.where}: {block.lang} {block.kind}")
            passed += 1
    shutil.rmtree(work, ignore_errors=True)
    print(f"docs: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
