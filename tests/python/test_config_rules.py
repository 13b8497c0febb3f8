"""The configuration's range rules, seen from Python. They live once in
the core (``Config::validate``) and every binding shares them: a count or
size is at least 1 (0 is never a sentinel; ``None`` means no limit), a
duration is above 0 except ``drain_timeout``, an address is HOST:PORT."""

from __future__ import annotations

import math

import pytest

import groupcast

from conftest import LOCAL


@pytest.mark.parametrize(
    "setting",
    [
        "max_connections",
        "workers",
        "send_buffer_size",
        "max_message_size",
        "max_group_id_len",
        "max_groups_per_connection",
        "outbound_queue_bytes",
        "queue_capacity",
    ],
)
def test_zero_is_no_count(setting):
    with pytest.raises(ValueError, match=f"{setting} must be at least 1"):
        groupcast.Server(LOCAL, **{setting: 0})


def test_no_limit_is_none():
    server = groupcast.Server(LOCAL, workers=1, max_connections=None, send_buffer_size=None)
    with server:
        assert server.running


@pytest.mark.parametrize(
    "setting", ["ping_interval", "idle_timeout", "handshake_timeout", "approval_timeout"]
)
def test_zero_is_no_duration(setting):
    with pytest.raises(ValueError, match=f"{setting} must be above 0"):
        groupcast.Server(LOCAL, **{setting: 0})


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_a_duration_is_a_number_of_seconds(value):
    with pytest.raises(ValueError, match="drain_timeout must be a number of seconds"):
        groupcast.Server(LOCAL, drain_timeout=value)


def test_drain_timeout_zero_closes_at_once():
    server = groupcast.Server(LOCAL, workers=1, drain_timeout=0)
    server.start()
    try:
        assert server.running
    finally:
        server.stop()
    assert not server.running


def test_idle_timeout_is_at_least_ping_interval():
    with pytest.raises(ValueError, match="idle_timeout must be at least ping_interval"):
        groupcast.Server(LOCAL, ping_interval=10, idle_timeout=5)


@pytest.mark.parametrize("setting", ["listen", "channel_listen", "channel", "metrics_listen"])
def test_addresses_are_host_and_port(setting):
    with pytest.raises(ValueError, match=f"{setting} must be HOST:PORT"):
        groupcast.Server(**{"listen": LOCAL, setting: "127.0.0.1"})


def test_channel_server_and_client_addresses_share_the_rule():
    with pytest.raises(ValueError, match="listen must be HOST:PORT"):
        groupcast.ChannelServer("nope")
    with pytest.raises(ValueError, match="address must be HOST:PORT"):
        groupcast.ChannelClient().connect("nope")
