"""Hooks: on_connect (refusal by token), on_message, on_close, the host
thread, exceptions in callbacks, stop() from a callback."""

import json
import threading
from collections.abc import Mapping
from urllib.parse import parse_qs

import pytest

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import groupcast

from conftest import Recorder, assert_silent, client, command, recv, recv_json, wait_for


def test_on_connect_sees_path_query_and_peer(make_server):
    server = make_server()
    seen = Recorder()
    server.on_connect(seen.add)
    server.start()
    with client(server, "/chat?token=abc&x=1") as ws:
        (info,) = seen.wait(1)
        assert info.path == "/chat"
        assert info.query == "token=abc&x=1"
        assert info.peer == ws.local_address[:2]
        assert server.peer(info.conn) == info.peer
        command(ws, cmd="add_group", group_id="g")
        command(ws, cmd="send_to_group", group_id="g", message="admitted")
        assert recv(ws) == "admitted"


def test_on_connect_refuses_with_false_before_the_upgrade(make_server):
    server = make_server()

    @server.on_connect
    def check(info):
        return parse_qs(info.query).get("token") == ["secret"]

    server.start()
    with pytest.raises(InvalidStatus) as refused:
        client(server, "/?token=wrong")
    assert refused.value.response.status_code == 403
    with client(server, "/?token=secret") as ws:
        command(ws, cmd="add_group", group_id="g")
        command(ws, cmd="send_to_group", group_id="g", message="welcome")
        assert recv(ws) == "welcome"


def test_on_connect_authenticates_on_a_cookie_and_refuses_with_a_status(make_server):
    server = make_server()
    seen = Recorder()

    @server.on_connect
    def authenticate(info):
        seen.add(info)
        if info.headers.get("cookie") != "session=good; theme=dark":
            return groupcast.Refuse(401, body="log in first")
        return None

    server.start()
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url, additional_headers={"Cookie": "session=bad"}, open_timeout=5)
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b"log in first"
    (info,) = seen.wait(1)
    assert info.headers["Cookie"] == info.headers["COOKIE"] == "session=bad"
    assert isinstance(info.headers, Mapping)
    assert "cookie" in info.headers and "Authorization" not in info.headers
    assert info.headers.get("Authorization") is None
    with pytest.raises(KeyError):
        info.headers["Authorization"]
    # Two Cookie headers read as one, joined the way cookies are.
    headers = [("Cookie", "session=good"), ("Cookie", "theme=dark"), ("Authorization", "Bearer t")]
    with connect(server.url, additional_headers=headers, open_timeout=5) as ws:
        command(ws, cmd="add_group", group_id="g")
        command(ws, cmd="send_to_group", group_id="g", message="in")
        assert recv(ws) == "in"
    info = seen.wait(2)[1]
    assert info.headers.get("authorization") == "Bearer t"
    assert [name for name, _ in info.headers.raw].count("Cookie") == 2
    with pytest.raises(ValueError):
        groupcast.Refuse(200)


def test_on_connect_chooses_an_offered_subprotocol(make_server):
    server = make_server()
    seen = Recorder()

    @server.on_connect
    def choose(info):
        seen.add(info.subprotocols)
        return "chat.v2" if "chat.v2" in info.subprotocols else "not offered"

    server.start()
    with connect(server.url, subprotocols=["chat.v1", "chat.v2"], open_timeout=5) as ws:
        assert ws.subprotocol == "chat.v2"
    with connect(server.url, open_timeout=5) as ws:
        assert ws.subprotocol is None  # a str that was not offered admits plainly
    assert seen.wait(2) == [["chat.v1", "chat.v2"], []]


def test_on_connect_may_greet_before_admitting(make_server):
    server = make_server()

    @server.on_connect
    def greet(info):
        server.send(info.conn, "hello " + info.query)

    server.start()
    with client(server, "/?me") as ws:
        assert recv(ws) == "hello me"


def test_on_message_gets_text_and_bytes_not_builtins(make_server):
    server = make_server()
    seen = Recorder()
    server.on_message(lambda conn, data: seen.add((conn, data)))
    server.start()
    with client(server) as ws:
        command(ws, cmd="add_group", group_id="g")  # built-in: not for the hook
        ws.send("plain text")
        ws.send(b"\x00\x01binary")
        items = seen.wait(2)
        assert [data for _, data in items] == ["plain text", b"\x00\x01binary"]
        conn = items[0][0]
        assert server.connection_groups(conn) == ["g"]
        assert_silent(ws)  # no error reply: the hook took them


def test_builtin_commands_off_sends_everything_to_the_hook(make_server):
    server = make_server(builtin_commands=False)
    seen = Recorder()

    @server.on_message
    def handle(conn, data):
        seen.add(data)
        server.send(conn, "echo " + data)

    server.start()
    with client(server) as ws:
        command(ws, cmd="add_group", group_id="g")
        assert json.loads(recv(ws)[5:]) == {"cmd": "add_group", "group_id": "g"}
        assert server.groups() == []  # the core did not act on it


def test_without_on_message_unknown_input_gets_the_core_error(make_server):
    server = make_server()
    server.on_close(lambda conn, code: None)
    server.start()
    with client(server) as ws:
        ws.send("not json")
        assert recv_json(ws)["code"] == "not_json"


def test_on_close_gets_the_code_after_groups_are_left(make_server):
    server = make_server()
    closed = Recorder()

    @server.on_close
    def gone(conn, code):
        closed.add((conn, code, server.group_size("g")))

    server.start()
    with client(server) as ws:
        command(ws, cmd="add_group", group_id="g")
        wait_for(lambda: server.group_size("g") == 1, what="join")
    (conn, code, size), = closed.wait(1)
    assert code == 1000
    assert size == 0


def test_callbacks_run_on_one_host_thread(make_server):
    server = make_server()
    calls = Recorder()
    server.on_connect(lambda info: calls.add("connect"))
    server.on_message(lambda conn, data: calls.add("message"))
    server.on_close(lambda conn, code: calls.add("close"))
    server.start()
    for _ in range(3):
        with client(server) as ws:
            ws.send("x")
            wait_for(lambda: calls.items.count("message") >= 1)
    calls.wait(9)
    assert len(calls.threads) == 1
    assert threading.get_native_id() not in calls.threads


def test_exception_in_callback_goes_to_unraisablehook_and_serving_goes_on(
    make_server, unraisable
):
    server = make_server()

    @server.on_message
    def broken(conn, data):
        if data == "boom":
            raise RuntimeError("callback failed")
        server.send(conn, "ok " + data)

    server.start()
    with client(server) as ws:
        ws.send("boom")
        ws.send("after")
        assert recv(ws) == "ok after"
    (info,) = unraisable.wait(1)
    assert isinstance(info.exc_value, RuntimeError)
    assert str(info.exc_value) == "callback failed"
    # The server's wrapper of the hook (it refuses awaitable results):
    # shown as the hook, which it names.
    assert info.object.__wrapped__ is broken
    assert repr(info.object) == repr(broken)


def test_exception_in_on_connect_refuses_with_500(make_server, unraisable):
    server = make_server()

    @server.on_connect
    def broken(info):
        raise ValueError("no")

    server.start()
    with pytest.raises(InvalidStatus) as refused:
        client(server)
    assert refused.value.response.status_code == 500
    assert isinstance(unraisable.wait(1)[0].exc_value, ValueError)


def test_stop_from_inside_a_callback(make_server):
    server = make_server()
    stopped = threading.Event()

    @server.on_message
    def handle(conn, data):
        server.stop()
        stopped.set()

    server.start()
    with client(server) as ws:
        ws.send("stop please")
        assert stopped.wait(5)
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
        assert closed.value.rcvd.code == 1001
    assert not server.running
    server.stop()  # again: nothing happens


def test_serve_forever_returns_when_a_callback_stops_the_server(make_server):
    server = make_server()

    @server.on_message
    def handle(conn, data):
        server.stop()

    def poke():
        wait_for(lambda: server.running)
        with client(server) as ws:
            ws.send("stop")

    threading.Thread(target=poke).start()
    server.serve_forever()
    assert not server.running


def test_hooks_must_be_registered_before_start(make_server):
    server = make_server()
    server.start()
    with pytest.raises(ValueError, match="before start"):
        server.on_message(lambda conn, data: None)
    with pytest.raises(TypeError, match="callable"):
        make_server().on_close(42)
