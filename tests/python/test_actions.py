"""Actions from Python: send, close, join, leave, send_to_group, broadcast
and the queries; and the errors bad calls raise."""

import errno
import socket

import pytest
from websockets.exceptions import ConnectionClosed

import groupcast
from conftest import LOCAL, Recorder, assert_silent, client, recv, wait_for


@pytest.fixture
def hosted(make_server):
    """A server whose on_connect records connection ids, and a helper that
    opens a client and returns it with its id."""
    server = make_server(builtin_commands=False)
    conns = Recorder()
    server.on_connect(lambda info: conns.add(info.conn))
    server.on_message(lambda conn, data: None)
    server.start()

    def open_client(path=""):
        count = len(conns.items) + 1
        ws = client(server, path)
        return ws, conns.wait(count)[count - 1]

    return server, open_client


def test_send_text_and_binary(hosted):
    server, open_client = hosted
    ws, conn = open_client()
    with ws:
        server.send(conn, "text")
        server.send(conn, b"\xffbytes")
        server.send(conn, bytearray(b"ba"))
        assert recv(ws) == "text"
        assert recv(ws) == b"\xffbytes"
        assert recv(ws) == b"ba"


def test_close_with_code_and_reason(hosted):
    server, open_client = hosted
    ws, conn = open_client()
    with ws:
        server.send(conn, "last words")
        server.close(conn, 4001, "bye")
        assert recv(ws) == "last words"
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")
    wait_for(lambda: server.connection_count() == 0, what="connection gone")


def test_join_leave_groups_and_counts(hosted):
    server, open_client = hosted
    a, conn_a = open_client()
    b, conn_b = open_client()
    with a, b:
        assert server.connection_count() == 2
        assert server.join(conn_a, "room") is True
        assert server.join(conn_a, "room") is False
        assert server.join(conn_b, "room") is True
        assert server.join(conn_b, 42) is True
        assert sorted(server.groups()) == ["42", "room"]
        assert server.group_size("room") == 2
        assert set(server.connection_groups(conn_b)) == {"room", "42"}
        assert server.leave(conn_b, "42") is True
        assert server.leave(conn_b, "42") is False
        assert server.groups() == ["room"]

        assert server.send_to_group("room", "to all") == 2
        assert recv(a) == "to all"
        assert recv(b) == "to all"
        assert server.send_to_group("room", "not to a", exclude=[conn_a]) == 1
        assert recv(b) == "not to a"
        assert_silent(a)
        assert server.send_to_group("empty", "nobody") == 0

        assert server.broadcast("everyone") == 2
        assert recv(a) == "everyone"
        assert recv(b) == "everyone"
        assert server.broadcast("not b", exclude={conn_b}) == 1
        assert recv(a) == "not b"
        assert_silent(b)


def test_action_errors(hosted):
    server, open_client = hosted
    ws, conn = open_client()
    with ws:
        with pytest.raises(groupcast.UnknownConnectionError, match="12345"):
            server.send(12345, "x")
        with pytest.raises(groupcast.UnknownConnectionError):
            server.join(12345, "g")
        assert issubclass(groupcast.UnknownConnectionError, groupcast.GroupcastError)
        with pytest.raises(ValueError, match="close code 1005"):
            server.close(conn, 1005)
        with pytest.raises(ValueError, match="group"):
            server.join(conn, "")
        with pytest.raises(TypeError, match="str .* or bytes"):
            server.send(conn, 3.5)
        with pytest.raises(TypeError, match="message must be str"):
            server.send_to_group("g", b"bytes")
        with pytest.raises(TypeError, match="group must be str or int"):
            server.join(conn, 1.5)
        with pytest.raises(TypeError, match="exclude"):
            server.broadcast("x", exclude="12")
        with pytest.raises(OverflowError):
            server.send(-1, "x")


def test_group_limit(make_server):
    server = make_server(max_groups_per_connection=1)
    conns = Recorder()
    server.on_connect(lambda info: conns.add(info.conn))
    server.start()
    with client(server):
        (conn,) = conns.wait(1)
        server.join(conn, "one")
        with pytest.raises(groupcast.GroupLimitError):
            server.join(conn, "two")


def test_not_running(make_server):
    server = make_server()
    with pytest.raises(groupcast.StoppedError, match="start"):
        server.send(1, "x")
    with pytest.raises(groupcast.StoppedError):
        server.addresses
    assert server.groups() == []
    assert server.connection_count() == 0
    server.start()
    address = server.addresses
    server.stop()
    assert server.addresses.websocket == address.websocket  # kept after stop
    with pytest.raises(groupcast.StoppedError):
        server.broadcast("x")


def test_port_in_use_raises_oserror(make_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        host, port = taken.getsockname()
        server = make_server(listen=f"{host}:{port}")
        with pytest.raises(OSError) as raised:
            server.start()
        assert raised.value.errno == errno.EADDRINUSE
        assert f"{host}:{port}" in str(raised.value)
    assert not server.running


@pytest.mark.parametrize(
    "options, error, text",
    [
        ({"listen": "nowhere"}, ValueError, "listen must be"),
        ({"listen": "127.0.0.1:99999"}, ValueError, "listen must be"),
        ({"channel_listen": "x"}, ValueError, "channel_listen must be"),
        ({"channel": LOCAL, "channel_listen": LOCAL}, ValueError, "not both"),
        ({"workers": 0}, ValueError, "workers"),
        ({"max_message_size": 0}, ValueError, "max_message_size must be at least 1"),
        ({"approval_timeout": -1.0}, ValueError, "approval_timeout"),
        ({"listen": 1234}, TypeError, "listen"),
        ({"workers": "two"}, TypeError, "workers"),
        ({"bogus": 1}, TypeError, "bogus"),
    ],
)
def test_bad_arguments(options, error, text):
    with pytest.raises(error, match=text):
        groupcast.Server(**options)


def test_context_manager_starts_and_stops():
    with groupcast.Server(LOCAL, workers=1) as server:
        assert server.running
        with client(server) as ws:
            ws.send('{"cmd":"add_group","group_id":"g"}')
            wait_for(lambda: server.group_size("g") == 1)
    assert not server.running
