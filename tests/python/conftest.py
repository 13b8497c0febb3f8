"""Shared helpers: servers on 127.0.0.1 port 0, stopped by the fixture;
websocket clients from the `websockets` library (sync API); a capture of
sys.unraisablehook."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Callable, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

import groupcast

LOCAL = "127.0.0.1:0"
TIMEOUT = 5.0


@pytest.fixture
def make_server() -> Iterator[Callable[..., groupcast.Server]]:
    """Builds servers on loopback port 0 (2 workers) and stops them all."""
    servers: list[groupcast.Server] = []

    def make(**options: Any) -> groupcast.Server:
        options.setdefault("listen", LOCAL)
        options.setdefault("workers", 2)
        server = groupcast.Server(**options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def client(server: groupcast.Server, path: str = "") -> ClientConnection:
    return connect(server.url + path.lstrip("/"), open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def command(ws: ClientConnection, **fields: Any) -> None:
    ws.send(json.dumps(fields, separators=(",", ":")))


def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> str | bytes:
    return ws.recv(timeout=timeout)


def recv_json(ws: ClientConnection) -> Any:
    data = recv(ws)
    assert isinstance(data, str)
    return json.loads(data)


def assert_silent(ws: ClientConnection, wait: float = 0.2) -> None:
    """Asserts nothing arrives within `wait` seconds."""
    with pytest.raises(TimeoutError):
        ws.recv(timeout=wait)


def wait_for(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Recorder:
    """Collects calls from callbacks on other threads."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.threads: set[int] = set()
        self.lock = threading.Lock()

    def add(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)
            self.threads.add(threading.get_native_id())

    def wait(self, count: int = 1) -> list[Any]:
        wait_for(lambda: len(self.items) >= count, what=f"{count} calls (got {self.items})")
        with self.lock:
            return list(self.items)


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Records what reaches sys.unraisablehook."""
    seen = Recorder()
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.add(info))
    return seen
