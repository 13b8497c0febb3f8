"""asyncio support: ``Server.events()`` returns the async iterator below.

It takes events from the server's queue on the event loop's own thread:
the loop watches the queue's notification descriptor (``loop.add_reader``)
and each wake-up drains a whole batch with a non-blocking ``poll(0)``, so no
thread is added and no event crosses threads one by one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, AsyncIterator, Union

if TYPE_CHECKING:
    from ._groupcast import ChannelEvent, CloseEvent, ConnectEvent, MessageEvent, Server

    _Event = Union[ConnectEvent, MessageEvent, CloseEvent, ChannelEvent]


async def server_events(server: Server, max_events: int = 1024) -> AsyncIterator[_Event]:
    """Yields the server's events until it stops and its queue is drained."""
    loop = asyncio.get_running_loop()
    fd = server.fileno()
    readable = asyncio.Event()
    # Level-triggered: the callback fires while events wait, so an event
    # arriving between poll(0) and clear() is not missed.
    loop.add_reader(fd, readable.set)
    try:
        while True:
            batch = server.poll(0, max_events)
            if batch:
                for event in batch:
                    yield event
                continue
            if server.finished:
                return
            readable.clear()
            await readable.wait()
    finally:
        loop.remove_reader(fd)
