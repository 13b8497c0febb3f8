"""Limits, policies and stats from Python (the knobs of issue 6)."""

import pytest
from websockets.exceptions import InvalidStatus

import groupcast
from conftest import client, command, recv, wait_for


def test_stats_count_traffic(make_server):
    server = make_server()
    server.start()
    with client(server) as ws:
        command(ws, cmd="add_group", group_id="g")
        command(ws, cmd="send_to_group", group_id="g", message="hi")
        assert recv(ws) == "hi"
        stats = server.stats()
        assert stats["connections"] == 1
        assert stats["groups"] == 1
        assert stats["messages_in"] == 2
        assert stats["messages_out"] == 1
        assert stats["bytes_out"] == 2
    wait_for(lambda: server.stats()["connections"] == 0)
    assert server.stats()["connections_opened"] == 1


def test_stats_need_a_running_server(make_server):
    server = make_server()
    with pytest.raises(groupcast.StoppedError):
        server.stats()


def test_max_connections_refuses_at_the_handshake(make_server):
    server = make_server(max_connections=1)
    server.start()
    with client(server):
        with pytest.raises(InvalidStatus) as refused:
            client(server)
        assert refused.value.response.status_code == 503
    assert server.stats()["connections_refused"] == 1


def test_message_size_limit_closes_with_1009(make_server):
    server = make_server(max_message_size=32)
    server.start()
    with client(server) as ws:
        ws.send("x" * 100)
        reply = recv(ws)
        assert '"code":"message_too_big"' in reply
        with pytest.raises(Exception):
            recv(ws)
        assert ws.protocol.close_rcvd.code == 1009


def test_bad_policy_values_are_value_errors():
    with pytest.raises(ValueError, match="slow_consumer"):
        groupcast.Server("127.0.0.1:0", slow_consumer="sometimes")
    with pytest.raises(ValueError, match="ping_interval"):
        groupcast.Server("127.0.0.1:0", ping_interval=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        groupcast.Server("127.0.0.1:0", ping_interval=10, idle_timeout=1)


def test_a_bus_and_a_channel_server_are_exclusive():
    with pytest.raises(ValueError, match="bus"):
        groupcast.Server("127.0.0.1:0", bus="redis://127.0.0.1:1", channel_listen="127.0.0.1:0")


def test_metrics_endpoint(make_server):
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = make_server(metrics_listen=f"127.0.0.1:{port}")
    server.start()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "\ngroupcast_connections 0\n" in text


def test_the_demo_page_is_served_only_when_asked(make_server):
    import urllib.error
    import urllib.request

    def get(server, path="/"):
        port = server.addresses.websocket[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"], error.read().decode()

    plain = make_server()
    plain.start()
    assert get(plain)[0] == 426
    demo = make_server(demo_page=True)
    demo.start()
    status, content_type, body = get(demo)
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert 'id="send"' in body
    assert get(demo, "/other")[0] == 404
    with client(demo) as ws:
        command(ws, cmd="add_group", group_id="g")
        command(ws, cmd="send_to_group", group_id="g", message="still a websocket")
        assert recv(ws) == "still a websocket"
