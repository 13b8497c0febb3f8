"""SIGTERM and SIGINT (Ctrl-C) during serve_forever() are a graceful stop:
clients get close code 1001, serve_forever() returns, the process exits 0
without a traceback; the previous handlers are restored afterwards."""

import signal
import subprocess
import sys
import textwrap

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import groupcast
from conftest import LOCAL, TIMEOUT, recv

# Prints its URL once running: serve_forever() installs its handlers before
# it starts, so from then on a signal stops it cleanly.
SERVER = """
import sys, threading, time
import groupcast

server = groupcast.Server("127.0.0.1:0", workers=1)

def announce():
    while not server.running:
        time.sleep(0.01)
    print(server.url, flush=True)

threading.Thread(target=announce, daemon=True).start()
server.serve_forever()
print("returned", flush=True)
"""

CHANNEL_SERVER = """
import threading, time
import groupcast

hub = groupcast.ChannelServer("127.0.0.1:0")

def announce():
    while not hub.running:
        time.sleep(0.01)
    print("%s:%d" % hub.address, flush=True)

threading.Thread(target=announce, daemon=True).start()
hub.serve_forever()
print("returned", flush=True)
"""


def run(script):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_server_stops_gracefully_on_signal(signum):
    process = run(SERVER)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("ws://"), process.stderr.read()
        with connect(url, open_timeout=TIMEOUT) as ws:
            ws.send('{"cmd":"add_group","group_id":"g"}')
            ws.send('{"cmd":"send_to_group","group_id":"g","message":"up"}')
            assert recv(ws) == "up"
            process.send_signal(signum)
            with pytest.raises(ConnectionClosed) as closed:
                recv(ws, timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert err == ""
    assert out == "returned\n"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_channel_server_stops_gracefully_on_signal(signum):
    process = run(CHANNEL_SERVER)
    try:
        address = process.stdout.readline().strip()
        assert address, process.stderr.read()
        with groupcast.ChannelClient().connect(address) as cli:
            assert cli.connected
            process.send_signal(signum)
            out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert err == ""
    assert out == "returned\n"


def test_previous_handlers_are_restored():
    def mine(signum, frame):
        pass

    before_int = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        server = groupcast.Server(LOCAL, workers=1)

        def stop_soon():
            import threading

            threading.Timer(0.2, server.stop).start()

        stop_soon()
        server.serve_forever()
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is before_int
    finally:
        signal.signal(signal.SIGTERM, previous)
