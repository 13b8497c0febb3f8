"""The seed (a Workerman channel + websocket group example) as a Python host
of groupcast. Built-in commands are off: this script implements the client
protocol itself,

    {"cmd":"add_group","group_id":"123"}
    {"cmd":"leave_group","group_id":"123"}
    {"cmd":"send_to_group","group_id":"123","message":"..."}

in an on_message hook, with the join / leave / send_to_group actions.
groupcast does the networking on its own threads; this code runs on the one
host thread that calls hooks.

    python examples/python/seed.py [--listen HOST:PORT] [--channel-listen HOST:PORT]
                                   [--workers N]

Defaults are the seed's: websocket 0.0.0.0:1234, channel 127.0.0.1:2206 (an
embedded channel server other nodes can join with `groupcast serve
--channel`). Prints "listening websocket=ADDR channel=ADDR" once up, runs
until SIGINT or SIGTERM, then stops cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

import groupcast

COMMANDS = ("add_group", "leave_group", "send_to_group")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="0.0.0.0:1234", metavar="HOST:PORT")
    parser.add_argument("--channel-listen", default="127.0.0.1:2206", metavar="HOST:PORT")
    parser.add_argument("--workers", type=int, default=None, metavar="N")
    args = parser.parse_args(argv)

    server = groupcast.Server(
        listen=args.listen,
        channel_listen=args.channel_listen,
        workers=args.workers,
        builtin_commands=False,
    )

    def reply_error(conn: int, code: str, message: str) -> None:
        server.send(conn, json.dumps({"type": "error", "code": code, "message": message}))

    @server.on_message
    def on_message(conn: int, data: str | bytes) -> None:
        if isinstance(data, bytes):
            return reply_error(conn, "binary_not_command", "send commands as JSON text")
        try:
            command: Any = json.loads(data)
        except ValueError:
            return reply_error(conn, "not_json", "a command is a JSON object")
        if not isinstance(command, dict):
            return reply_error(conn, "not_object", "a command is a JSON object")
        cmd = command.get("cmd")
        if not isinstance(cmd, str):
            return reply_error(conn, "missing_cmd", "the cmd field is missing")
        if cmd not in COMMANDS:
            return reply_error(conn, "unknown_cmd", "use add_group, leave_group or send_to_group")
        # 123 and "123" name the same group.
        group = command.get("group_id")
        if isinstance(group, bool) or not (isinstance(group, int) or (isinstance(group, str) and group)):
            return reply_error(conn, "missing_group_id", "group_id must be a string or an integer")
        try:
            if cmd == "add_group":
                server.join(conn, group)
            elif cmd == "leave_group":
                server.leave(conn, group)
            else:
                if "message" not in command:
                    return reply_error(conn, "missing_message", "the message field is missing")
                message = command["message"]
                # A string goes as is; any other value as its JSON text.
                text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
                server.send_to_group(group, text)
        except groupcast.UnknownConnectionError:
            pass  # the client left meanwhile
        except (ValueError, groupcast.GroupcastError) as error:
            reply_error(conn, "invalid_group_id", str(error))

    # serve_forever() stops gracefully on SIGINT (Ctrl-C) and SIGTERM and
    # returns; these cover the moments before it runs.
    signal.signal(signal.SIGTERM, lambda signum, frame: server.stop())

    try:
        server.start()
        addresses = server.addresses
        websocket = "%s:%d" % addresses.websocket
        channel = "%s:%d" % addresses.channel if addresses.channel else ""
        print(f"listening websocket={websocket} channel={channel}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
