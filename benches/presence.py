#!/usr/bin/env python3
"""The cost of presence (issue 16), measured on 2 nodes + `groupcast channel`:

1. Group fan-out with presence on vs off: loadgen floods one group of 1000
   members split over the two nodes; the nodes run with presence (the
   default) or `--no-presence`, alternated A/B/A/B in the same run.
2. A presence query's latency at 10,000 members: 10,000 connections, each
   bound to its own uid (`--uid-query-param`), join one group, half on each
   node; a client on each node then sends `{"cmd":"presence"}` and times
   the reply. Baseline in the same run: the same query on a group of 10.

Run it with the release binaries (built as benches/run.sh builds them):

    cargo build --release --bin groupcast
    cargo build --release --manifest-path benches/loadgen/Cargo.toml
    GROUPCAST_BIN=target/release/groupcast LOADGEN_BIN=target/release/loadgen \
        python3 benches/presence.py

It prints the raw results as JSON (PRESENCE_ROUNDS, default 3, and
PRESENCE_MEMBERS, default 10000, change the size).
"""

import asyncio
import base64
import json
import os
import statistics
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (Proc, loadgen, GROUPCAST)

ROUNDS = int(os.environ.get("PRESENCE_ROUNDS", "3"))
MEMBERS = int(os.environ.get("PRESENCE_MEMBERS", "10000"))
QUERIES = 200


class Cluster:
    """`groupcast channel` and two nodes (one runtime thread each)."""

    def __init__(self, *node_args):
        self.procs = []
        self.urls = []
        channel = run.Proc([run.GROUPCAST, "channel", "--listen", "127.0.0.1:0"], r"channel=(\S+)")
        self.procs.append(channel)
        for _ in range(2):
            proc = run.Proc([run.GROUPCAST, "serve", "--listen", "127.0.0.1:0", "--channel", channel.address,
                             "--workers", "1", "--no-demo", *node_args], r"websocket=(\S+)")
            self.procs.append(proc)
            self.urls.append(f"ws://{proc.address}")
        self.addresses = [p.address for p in self.procs[1:]]

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for proc in reversed(self.procs):
            proc.stop()


def fan_out(presence):
    cluster = Cluster(*([] if presence else ["--no-presence"]))
    try:
        args = ["--mode", "flood", "--members", "1000", "--senders", "1", "--size", "64", "--window", "256",
                "--duration", "3", "--probes", "4"]
        return run.loadgen(cluster, args, "presence on" if presence else "presence off")
    finally:
        cluster.stop()


# --- a minimal websocket client for many connections ---------------------

async def ws_open(address, path):
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def ws_frame(text):
    data = text.encode()
    mask = os.urandom(4)
    n = len(data)
    header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def ws_recv(reader):
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await reader.readexactly(8))[0]
        data = await reader.readexactly(n)
        if b0 & 0x0F == 1:
            return data.decode()


async def query_latency(address, group, expect_connections):
    reader, writer = await ws_open(address, "/")
    times = []
    for _ in range(QUERIES):
        started = time.perf_counter()
        writer.write(ws_frame(json.dumps({"cmd": "presence", "group_id": group})))
        answer = json.loads(await ws_recv(reader))
        times.append((time.perf_counter() - started) * 1e6)
        assert answer["type"] == "presence", answer
        assert answer["connections"] == expect_connections, answer
    writer.close()
    times.sort()
    return {"p50_us": statistics.median(times), "p99_us": times[int(len(times) * 0.99) - 1]}


async def presence_queries():
    cluster = Cluster("--uid-query-param", "uid")
    held = []
    try:
        sem = asyncio.Semaphore(128)

        async def member(i, group):
            async with sem:
                reader, writer = await ws_open(cluster.addresses[i % 2], f"/?uid=u{group}{i}")
                writer.write(ws_frame(json.dumps({"cmd": "add_group", "group_id": group})))
                held.append(writer)

        started = time.monotonic()
        await asyncio.gather(*(member(i, "big") for i in range(MEMBERS)))
        await asyncio.gather(*(member(i, "small") for i in range(10)))
        joined_s = time.monotonic() - started
        # Until both nodes count every member (replication settled).
        deadline = time.monotonic() + 60
        settled_s = None
        for address in cluster.addresses:
            reader, writer = await ws_open(address, "/")
            while True:
                writer.write(ws_frame(json.dumps({"cmd": "presence", "group_id": "big"})))
                answer = json.loads(await ws_recv(reader))
                if answer["connections"] == MEMBERS and answer["users"] == MEMBERS:
                    break
                assert time.monotonic() < deadline, answer
                await asyncio.sleep(0.01)
            writer.close()
        settled_s = time.monotonic() - started
        results = {"members": MEMBERS, "joined_s": joined_s, "both_nodes_agree_s": settled_s}
        for n, address in enumerate(cluster.addresses):
            for _ in range(ROUNDS):
                results.setdefault(f"node{n + 1} big", []).append(await query_latency(address, "big", MEMBERS))
                results.setdefault(f"node{n + 1} small", []).append(await query_latency(address, "small", 10))
        return results
    finally:
        for writer in held:
            writer.close()
        cluster.stop()


def main():
    fan = {"on": [], "off": []}
    for _ in range(ROUNDS):
        for presence in (True, False):
            result = fan_out(presence)
            fan["on" if presence else "off"].append(result)
    queries = asyncio.run(presence_queries())
    print(json.dumps({"fan_out": fan, "queries": queries}, indent=1))


if __name__ == "__main__":
    main()
