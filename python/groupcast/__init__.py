"""groupcast: group broadcasting for websocket clients, served from Rust.

Clients connect over websocket, join groups and send to them; this process
runs the server (on threads of its own) and takes part through hooks or, in
asyncio programs, through ``async for event in server.events()``.

    import groupcast

    server = groupcast.Server(listen="127.0.0.1:1234")

    @server.on_message
    def handle(conn, data):
        server.send(conn, data)

    server.serve_forever()
"""

import atexit as _atexit
from collections.abc import Mapping as _Mapping

from ._groupcast import (
    Addresses,
    ChannelClient,
    ChannelError,
    ChannelEvent,
    ChannelServer,
    CloseEvent,
    ConnectEvent,
    GroupcastError,
    GroupLimitError,
    Headers,
    MessageEvent,
    Refuse,
    Server,
    StoppedError,
    UnknownConnectionError,
    __version__,
    _shutdown,
)

from ._types import ClusterStats, Health, Presence, Stats

# A read-only mapping (lookups ignore case): isinstance(h, Mapping) holds.
_Mapping.register(Headers)

# Host threads must not call into an interpreter that is finalizing: stop
# whatever still runs while the interpreter is whole.
_atexit.register(_shutdown)

__all__ = [
    "Addresses",
    "ChannelClient",
    "ChannelError",
    "ChannelEvent",
    "ChannelServer",
    "CloseEvent",
    "ClusterStats",
    "ConnectEvent",
    "GroupLimitError",
    "GroupcastError",
    "Headers",
    "Health",
    "MessageEvent",
    "Presence",
    "Refuse",
    "Server",
    "Stats",
    "StoppedError",
    "UnknownConnectionError",
    "__version__",
]
