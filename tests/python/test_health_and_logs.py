"""Health and logs from Python: ``Server.health()`` says whether the node
reaches its cluster, and groupcast's log records arrive through the
``logging`` module under the logger ``groupcast``."""

from __future__ import annotations

import logging
import threading
import time

import groupcast

from conftest import LOCAL, TIMEOUT


class Collect(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()

    def wait_for(self, text: str) -> logging.LogRecord:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for record in list(self.records):
                if text in record.getMessage():
                    return record
            time.sleep(0.02)
        seen = [r.getMessage() for r in self.records]
        raise AssertionError(f"no record with {text!r}; seen: {seen}")


def test_health_of_a_single_node_and_of_one_that_lost_its_bus(make_server):
    alone = make_server()
    alone.start()
    assert alone.health() == {"status": "ok", "bus": "none", "connections": 0}

    cut_off = make_server(channel="127.0.0.1:1")
    cut_off.start()
    deadline = time.monotonic() + TIMEOUT
    while "reason" not in cut_off.health() or "cannot connect" not in cut_off.health()["reason"]:
        assert time.monotonic() < deadline, cut_off.health()
        time.sleep(0.02)
    health = cut_off.health()
    assert health["status"] == "unavailable"
    assert health["bus"] == "disconnected"
    assert "the channel bus is down" in health["reason"]
    stats = cut_off.stats()
    assert stats["bus_connected"] == 0
    assert stats["bus_connect_attempts"] >= 1


def test_log_records_reach_the_groupcast_logger():
    logger = logging.getLogger("groupcast")
    handler = Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with groupcast.Server(listen=LOCAL, channel="127.0.0.1:1") as server:
            listening = handler.wait_for("node listening")
            assert listening.levelno == logging.INFO
            assert listening.name == "groupcast.node"
            assert server.addresses.websocket[1] != 0
            assert f":{server.addresses.websocket[1]}" in listening.getMessage()
            warning = handler.wait_for("channel server unreachable")
            assert warning.levelno == logging.WARNING
            assert warning.name == "groupcast.channel.client"
            assert "127.0.0.1:1" in warning.getMessage()
        handler.wait_for("stopping the node")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def test_stats_and_health_have_the_typed_keys(make_server):
    """groupcast.Stats and groupcast.Health (TypedDicts for type checkers)
    name exactly the keys the dicts have."""
    server = make_server()
    server.start()
    stats = server.stats()
    assert set(stats) == set(groupcast.Stats.__annotations__)
    assert all(type(value) is int for value in stats.values())
    health = server.health()
    required = set(groupcast.Health.__required_keys__)
    assert required <= set(health) <= required | set(groupcast.Health.__optional_keys__)
    assert groupcast.Health.__optional_keys__ == frozenset({"reason"})
