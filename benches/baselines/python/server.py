"""Baseline for the groupcast benchmarks: the seed protocol (add_group,
leave_group, send_to_group) on the PyPI `websockets` package, fanning out
with `websockets.broadcast`.

Usage: python server.py [PORT] [HOST]   (PORT 0 = any free port)
Prints `python-websockets listening websocket=HOST:PORT` once listening;
SIGTERM stops it.
"""

import asyncio
import json
import signal
import sys

from websockets.asyncio.server import broadcast, serve

# group id -> set of member connections
groups: dict[str, set] = {}


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
                members = groups.get(key)
                if members:
                    message = msg.get("message")
                    if not isinstance(message, str):
                        message = json.dumps(message)
                    broadcast(members, message)
            else:
                await ws.send(json.dumps({"error": "unknown cmd"}))
    finally:
        for key in list(mine):
            leave(ws, key, mine)


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 1234
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, host, port) as server:
        address = server.sockets[0].getsockname()
        print(f"python-websockets listening websocket={address[0]}:{address[1]}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
