"""Messages per second a groupcast server takes from clients, handled by
the built-in commands or handed to a Python ``on_message``.

    python tests/python/bench_messages.py [--messages N] [--clients C] [--workers W] [--json FILE]

Clients are raw sockets that send pre-encoded (masked) websocket frames with
one ``sendall`` each, so the client side costs almost nothing and the figure
is the server's. Three runs, each from the first byte sent to the last
message handled:

- builtin: ``send_to_group`` commands, each client to a group whose only
  member is itself; done when every delivery came back.
- python no-op: plain text messages to ``on_message`` (``builtin_commands``
  off) that only compares the data to an end marker.
- python echo: the same, with ``server.send(conn, data)`` back to the
  sender; done when every echo came back.

``--json FILE`` also writes the settings and each run's messages/s (or
``failed`` with the reason) as one JSON object, for benches/run.py. A run
that fails is reported and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import sys
import threading
import time

import groupcast

MASK = b"\x01\x02\x03\x04"


def frame(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + MASK + masked


def handshake(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def read_bytes(sock: socket.socket, count: int) -> None:
    """Reads `count` bytes of server frames and drops them."""
    while count > 0:
        chunk = sock.recv(min(count, 1 << 20))
        if not chunk:
            raise ConnectionError("server closed")
        count -= len(chunk)


def blast(socks: list[socket.socket], blobs: list[bytes], reply_bytes: int) -> None:
    def one(sock: socket.socket, blob: bytes) -> None:
        reader = threading.Thread(target=read_bytes, args=(sock, reply_bytes)) if reply_bytes else None
        if reader:
            reader.start()
        sock.sendall(blob)
        if reader:
            reader.join()

    threads = [threading.Thread(target=one, args=pair) for pair in zip(socks, blobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run(kind: str, messages: int, clients: int, workers: int) -> tuple[int, float]:
    per_client = messages // clients
    server = groupcast.Server("127.0.0.1:0", workers=workers, builtin_commands=(kind == "builtin"))
    done = threading.Event()
    finished = [0]

    if kind == "python no-op":

        @server.on_message
        def noop(conn: int, data: str | bytes) -> None:
            if data == "end":
                finished[0] += 1
                if finished[0] == clients:
                    done.set()

    elif kind == "python echo":
        send = server.send

        @server.on_message
        def echo(conn: int, data: str | bytes) -> None:
            send(conn, data)

    with server:
        address = server.addresses.websocket
        socks = [handshake(address) for _ in range(clients)]
        text = "m" * 16
        if kind == "builtin":
            # Each client alone in a group of its own: one delivery per
            # message, like the echo run.
            for i, sock in enumerate(socks):
                sock.sendall(frame(json.dumps({"cmd": "add_group", "group_id": f"b{i}"})))
            while len(server.groups()) < clients:
                time.sleep(0.001)
            blobs = [
                frame(json.dumps({"cmd": "send_to_group", "group_id": f"b{i}", "message": text}))
                * per_client
                for i in range(clients)
            ]
            reply_bytes = (len(text) + 2) * per_client
        elif kind == "python echo":
            blobs = [frame(text) * per_client] * clients
            reply_bytes = (len(text) + 2) * per_client
        else:
            blobs = [frame(text) * per_client + frame("end")] * clients
            reply_bytes = 0
        started = time.perf_counter()
        blast(socks, blobs, reply_bytes)
        if kind == "python no-op":
            assert done.wait(120), "messages did not all arrive"
        elapsed = time.perf_counter() - started
        for sock in socks:
            sock.close()
    return per_client * clients, per_client * clients / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    args = parser.parse_args()
    report: dict = dict(
        messages=args.messages,
        clients=args.clients,
        workers=args.workers,
        python=sys.version.split()[0],
        runs=[],
    )
    failed = False
    for kind in ("builtin", "python no-op", "python echo"):
        entry: dict = dict(kind=kind, load1=os.getloadavg()[0])
        try:
            count, rate = run(kind, args.messages, args.clients, args.workers)
        except Exception as error:  # one failed run should not hide the others
            failed = True
            entry["failed"] = f"{type(error).__name__}: {error}"
            print(f"{kind:14} failed: {entry['failed']}")
        else:
            entry.update(messages=count, messages_per_s=rate)
            print(f"{kind:14} {rate:12,.0f} messages/s")
        report["runs"].append(entry)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
