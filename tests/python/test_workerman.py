"""channel_protocol="workerman": a node that speaks the seed's own
Channel protocol (PHP serialize() bodies, every group message on
send_to_group), beside a worker of the seed written here byte for byte."""

import socket
import struct

import pytest

import groupcast
from conftest import LOCAL, TIMEOUT, assert_silent, client, command, recv, wait_for


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body) + 4) + body


def php_str(text: str) -> bytes:
    data = text.encode()
    return b's:%d:"%s";' % (len(data), data)


def read_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            assert chunk, "the channel server closed the connection"
            out += chunk
        return out

    (length,) = struct.unpack(">I", exactly(4))
    return exactly(length - 4)


def test_channel_protocol_names_are_checked():
    with pytest.raises(ValueError, match="groupcast or workerman"):
        groupcast.Server(LOCAL, channel_protocol="php")
    with pytest.raises(ValueError, match="channel_protocol workerman needs a channel server"):
        groupcast.Server(LOCAL, channel_protocol="workerman")


def test_a_workerman_node_and_a_seed_worker_deliver_each_other_s_messages(make_server):
    with groupcast.ChannelServer(LOCAL) as channel:
        address = "%s:%d" % channel.address
        server = make_server(channel=address, channel_protocol="workerman")
        server.start()
        wait_for(lambda: channel.subscriber_count("send_to_group") == 1, what="the node subscribes")
        worker = socket.create_connection(channel.address, timeout=TIMEOUT)
        worker.sendall(frame(
            b'a:2:{s:4:"type";s:9:"subscribe";s:8:"channels";a:1:{i:0;s:13:"send_to_group";}}'
        ))
        wait_for(lambda: channel.subscriber_count("send_to_group") == 2, what="the worker subscribes")
        ws = client(server)
        command(ws, cmd="add_group", group_id="123")
        command(ws, cmd="send_to_group", group_id="123", message="from Python")
        assert recv(ws) == "from Python"
        event = read_frame(worker)
        assert event.startswith(b'a:3:{s:4:"type";s:5:"event";s:7:"channel";s:13:"send_to_group";')
        assert b's:8:"group_id";s:3:"123";s:7:"message";s:11:"from Python";' in event

        data = b'a:2:{s:8:"group_id";i:123;s:7:"message";' + php_str("from PHP") + b"}"
        worker.sendall(frame(
            b'a:3:{s:4:"type";s:7:"publish";s:8:"channels";a:1:{i:0;s:13:"send_to_group";}s:4:"data";'
            + data + b"}"
        ))
        assert recv(ws) == "from PHP"
        assert_silent(ws)
        assert server.health()["status"] == "ok"
        ws.close()
        worker.close()
        server.stop()


def test_a_channel_server_counts_a_refused_php_object():
    with groupcast.ChannelServer(LOCAL) as channel:
        assert channel.stats()["channel_refused"] == 0
        evil = socket.create_connection(channel.address, timeout=TIMEOUT)
        evil.sendall(frame(
            b'a:3:{s:4:"type";s:7:"publish";s:8:"channels";a:1:{i:0;s:1:"c";}'
            b's:4:"data";O:8:"stdClass":0:{}}'
        ))
        assert evil.recv(16) == b"", "closed"
        evil.close()
        wait_for(lambda: channel.stats()["channel_refused"] == 1, what="counted")
    assert channel.stats()["channel_refused"] == 1, "readable after stop"
