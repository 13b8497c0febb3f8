#!/usr/bin/env python3
"""Runs the seed scenario against a seed host (PHP or C) and checks that it
stops cleanly on SIGTERM.

    python3 tests/php/seed_scenario.py -- php examples/php/seed.php

The host is started with `--listen 127.0.0.1:0 --channel-listen 127.0.0.1:0`
and must print one line `listening websocket=ADDR channel=ADDR`. Only the
standard library is used: a minimal websocket client is below.
"""

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

ARRIVES = 5.0
QUIET = 0.3


class Client:
    """A blocking websocket client: handshake, masked frames out."""

    def __init__(self, addr, path="/"):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=ARRIVES)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = self.sock.recv(1)
            if not byte:
                raise AssertionError("connection closed during the handshake")
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, text, opcode=1):
        payload = text.encode() if isinstance(text, str) else text
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_json(self, value):
        self.send(json.dumps(value))

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def recv(self, timeout=ARRIVES):
        """The next (opcode, payload) frame, pings skipped."""
        self.sock.settimeout(timeout)
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode in (9, 10):
                continue
            return opcode, payload

    def recv_text(self):
        opcode, payload = self.recv()
        assert opcode == 1, (opcode, payload)
        return payload.decode()

    def expect_nothing(self):
        try:
            frame = self.recv(timeout=QUIET)
        except (socket.timeout, TimeoutError):
            return
        raise AssertionError(f"expected nothing, got {frame!r}")

    def close(self):
        try:
            self.send(struct.pack("!H", 1000), opcode=8)
            self.recv(timeout=2)
        except (OSError, EOFError):
            pass
        self.sock.close()


def scenario(websocket):
    checks = 0

    def check(cond, what):
        nonlocal checks
        if not cond:
            raise AssertionError(what)
        checks += 1

    # The seed's browser test: join 123, send to 123, the page prints it.
    a = Client(websocket)
    a.send_json({"cmd": "add_group", "group_id": "123"})
    a.send_json({"cmd": "send_to_group", "group_id": "123", "message": "hello"})
    check(a.recv_text() == "hello", "a member receives its group's message")

    # A second member joins with a numeric id: the same group.
    b = Client(websocket)
    b.send_json({"cmd": "add_group", "group_id": 123})
    b.send_json({"cmd": "send_to_group", "group_id": 123, "message": "b joined"})
    check(b.recv_text() == "b joined", "numeric ids name the same group")
    check(a.recv_text() == "b joined", "every member receives")

    # A non-member can send; members receive; it does not.
    c = Client(websocket)
    c.send_json({"cmd": "send_to_group", "group_id": "123", "message": "from c"})
    check(a.recv_text() == "from c", "a non-member's message reaches a")
    check(b.recv_text() == "from c", "a non-member's message reaches b")
    c.expect_nothing()
    checks += 1

    # Non-string messages arrive as their JSON text.
    c.send_json({"cmd": "send_to_group", "group_id": "123", "message": {"n": 1}})
    check(json.loads(a.recv_text()) == {"n": 1}, "an object message arrives as JSON")
    check(json.loads(b.recv_text()) == {"n": 1}, "an object message arrives as JSON")

    # Leave: no more delivery.
    b.send_json({"cmd": "leave_group", "group_id": "123"})
    b.send_json({"cmd": "add_group", "group_id": "sync"})
    b.send_json({"cmd": "send_to_group", "group_id": "sync", "message": "synced"})
    check(b.recv_text() == "synced", "b's commands are handled in order")
    c.send_json({"cmd": "send_to_group", "group_id": "123", "message": "after leave"})
    check(a.recv_text() == "after leave", "a still receives")
    b.expect_nothing()
    checks += 1

    # Bad input gets an error reply and the connection stays usable.
    c.send("not json")
    reply = json.loads(c.recv_text())
    check(reply.get("type") == "error", f"an error reply: {reply}")
    c.send_json({"cmd": "dance", "group_id": "1"})
    check(json.loads(c.recv_text()).get("type") == "error", "unknown cmd gets an error")
    c.send_json({"cmd": "send_to_group", "group_id": "123", "message": "still fine"})
    check(a.recv_text() == "still fine", "the connection stays usable")

    # Closing frees the group: a message to it reaches nobody.
    a.close()
    c.send_json({"cmd": "add_group", "group_id": "123"})
    c.send_json({"cmd": "send_to_group", "group_id": "123", "message": "alone"})
    check(c.recv_text() == "alone", "a closed member is gone from its group")
    for client in (b, c):
        client.close()
    return checks


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    command = sys.argv[sys.argv.index("--") + 1 :]
    command += ["--listen", "127.0.0.1:0", "--channel-listen", "127.0.0.1:0"]
    host = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = host.stdout.readline().strip()
        fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
        assert line.startswith("listening ") and "websocket" in fields, f"got {line!r}"
        checks = scenario(fields["websocket"])
        host.send_signal(signal.SIGTERM)
        code = host.wait(timeout=20)
        assert code == 0, f"the host exited with {code} after SIGTERM"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    print(f"seed scenario ({os.path.basename(command[-5])}): {checks + 1} checks passed")


if __name__ == "__main__":
    main()
