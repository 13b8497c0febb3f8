"""examples/python/seed.py and `python -m groupcast`, run as processes:
they print their addresses once up and stop cleanly on SIGINT and SIGTERM."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.sync.client import connect

from conftest import assert_silent, recv, recv_json

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = ["--listen", "127.0.0.1:0", "--channel-listen", "127.0.0.1:0"]


def launch(args):
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    match = re.search(r"listening websocket=(\S+) channel=(\S+)", line)
    if not match:
        process.kill()
        raise AssertionError(f"no address line: {line!r} {process.stderr.read()}")
    return process, match.group(1), match.group(2)


def stop(process, signum):
    process.send_signal(signum)
    out, err = process.communicate(timeout=15)
    return process.returncode, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_seed_example_serves_the_seed_protocol(signum):
    process, websocket, channel = launch(["examples/python/seed.py", *LOOPBACK])
    try:
        url = f"ws://{websocket}/"
        with connect(url) as a, connect(url) as b:
            a.send(json.dumps({"cmd": "add_group", "group_id": "123"}))
            b.send(json.dumps({"cmd": "add_group", "group_id": 123}))
            # Commands of one client are handled in order: a round trip on
            # each proves both joins happened.
            for ws in (a, b):
                ws.send("not json")
                assert recv_json(ws)["code"] == "not_json"
            a.send(json.dumps({"cmd": "send_to_group", "group_id": "123", "message": "hello"}))
            assert recv(a) == "hello"
            assert recv(b) == "hello"
            b.send(json.dumps({"cmd": "leave_group", "group_id": "123"}))
            b.send(json.dumps({"cmd": "nope"}))
            assert recv_json(b)["code"] == "unknown_cmd"
            a.send(json.dumps({"cmd": "send_to_group", "group_id": 123, "message": {"k": 1}}))
            assert recv(a) == '{"k":1}'
            assert_silent(b)
            a.send(json.dumps({"cmd": "add_group"}))
            assert recv_json(a)["code"] == "missing_group_id"
            a.send(b"\x00")
            assert recv_json(a)["code"] == "binary_not_command"
    finally:
        code, err = stop(process, signum)
    assert code == 0, err
    assert err.strip() == "stopped"


def test_python_m_groupcast_serve():
    process, websocket, channel = launch(["-m", "groupcast", "serve", "--workers", "1", *LOOPBACK])
    try:
        with connect(f"ws://{websocket}/") as ws:
            ws.send(json.dumps({"cmd": "add_group", "group_id": "g"}))
            ws.send(json.dumps({"cmd": "send_to_group", "group_id": "g", "message": "cli"}))
            assert recv(ws) == "cli"
    finally:
        code, err = stop(process, signal.SIGINT)
    assert code == 0, err


def test_python_m_groupcast_usage():
    done = subprocess.run([sys.executable, "-m", "groupcast", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "serve" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "groupcast", "bogus"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "bogus" in bad.stderr
