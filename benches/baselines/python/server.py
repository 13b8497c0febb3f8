"""Baseline for the groupcast benchmarks: the seed protocol (add_group,
leave_group, send_to_group) on the PyPI `websockets` package, fanning out
with `websockets.broadcast`.

Usage: python server.py [PORT] [HOST] [CHANNEL_HOST:PORT]   (PORT 0 = any free port)
Prints `python-websockets listening websocket=HOST:PORT` once listening;
SIGTERM stops it.

With CHANNEL_HOST:PORT it runs like a process of the seed's cluster: it
subscribes to the `send_to_group` channel of a (groupcast) channel server,
publishes every send_to_group there, and delivers each event it receives (its
own publications included) to its local members.
"""

import asyncio
import json
import signal
import struct
import sys

from websockets.asyncio.server import broadcast, serve

# group id -> set of member connections
groups: dict[str, set] = {}
# Writer to the channel server, when running as part of a cluster.
channel = None


def deliver(key, message):
    members = groups.get(key)
    if members:
        broadcast(members, message)


def frame(body):
    """Channel protocol: 4-byte big-endian length (header included), JSON body."""
    data = json.dumps(body).encode()
    return struct.pack(">I", len(data) + 4) + data


async def channel_reader(reader):
    while True:
        header = await reader.readexactly(4)
        (length,) = struct.unpack(">I", header)
        body = await reader.readexactly(length - 4)
        if not body:
            continue  # ping
        event = json.loads(body)
        if event.get("type") == "event" and event.get("channel") == "send_to_group":
            deliver(str(event["data"]["group_id"]), event["data"]["message"])


def leave(ws, key, mine):
    members = groups.get(key)
    if members is not None:
        members.discard(ws)
        if not members:
            del groups[key]  # no empty groups left behind
    mine.discard(key)


async def handler(ws):
    mine: set[str] = set()
    try:
        async for raw in ws:
            try:
                msg = json.loads(raw)
            except ValueError:
                await ws.send(json.dumps({"error": "invalid JSON"}))
                continue
            if not isinstance(msg, dict):
                await ws.send(json.dumps({"error": "not an object"}))
                continue
            gid = msg.get("group_id")
            if gid is None or gid == "":
                await ws.send(json.dumps({"error": "missing group_id"}))
                continue
            key = str(gid)
            cmd = msg.get("cmd")
            if cmd == "add_group":
                groups.setdefault(key, set()).add(ws)
                mine.add(key)
            elif cmd == "leave_group":
                leave(ws, key, mine)
            elif cmd == "send_to_group":
                message = msg.get("message")
                if not isinstance(message, str):
                    message = json.dumps(message)
                if channel is not None:
                    channel.write(frame({"type": "publish", "channels": ["send_to_group"],
                                         "data": {"group_id": key, "message": message}}))
                else:
                    deliver(key, message)
            else:
                await ws.send(json.dumps({"error": "unknown cmd"}))
    finally:
        for key in list(mine):
            leave(ws, key, mine)


async def main():
    global channel
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 1234
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    loop = asyncio.get_running_loop()
    if len(sys.argv) > 3:
        chost, cport = sys.argv[3].rsplit(":", 1)
        reader, channel = await asyncio.open_connection(chost, int(cport))
        channel.write(frame({"type": "subscribe", "channels": ["send_to_group"]}))
        reader_task = asyncio.create_task(channel_reader(reader))  # noqa: F841 (kept alive)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, host, port) as server:
        address = server.sockets[0].getsockname()
        print(f"python-websockets listening websocket={address[0]}:{address[1]}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
