"""ChannelServer and ChannelClient (the seed's Channel\\Server and
Channel\\Client), alone and with a groupcast node's channel."""

import threading

import pytest

import groupcast
from conftest import LOCAL, Recorder, client, command, recv, wait_for


def address(pair):
    return "%s:%d" % pair


@pytest.fixture
def channel_server():
    with groupcast.ChannelServer(LOCAL) as server:
        yield server


def test_publish_reaches_subscribers_on_their_own_thread(channel_server):
    seen = Recorder()
    with groupcast.ChannelClient().connect(address(channel_server.address)) as sub, \
            groupcast.ChannelClient().connect(address(channel_server.address)) as pub:
        assert sub.connected
        sub.on("news", seen.add)
        wait_for(lambda: channel_server.subscriber_count("news") == 1, what="subscription")
        pub.publish("news", {"headline": "hi", "n": [1, 2]})
        pub.publish("other", "ignored")
        pub.publish("news", "second")
        assert seen.wait(2) == [{"headline": "hi", "n": [1, 2]}, "second"]
        assert threading.get_native_id() not in seen.threads

        sub.unsubscribe("news")
        wait_for(lambda: channel_server.subscriber_count("news") == 0, what="unsubscribe")
        pub.publish("news", "late")
        pub.publish("other", "flush")
    assert seen.items == [{"headline": "hi", "n": [1, 2]}, "second"]


def test_client_errors(channel_server, unraisable):
    cli = groupcast.ChannelClient()
    with pytest.raises(groupcast.StoppedError):
        cli.publish("x", 1)
    cli.connect(address(channel_server.address))
    with pytest.raises(ValueError, match="already connected"):
        cli.connect(address(channel_server.address))
    with pytest.raises(TypeError):
        cli.publish("x", object())  # not JSON-serializable
    with pytest.raises(TypeError, match="callable"):
        cli.on("x", "not callable")

    def broken(data):
        raise KeyError(data)

    cli.on("boom", broken)
    wait_for(lambda: channel_server.subscriber_count("boom") == 1)
    cli.publish("boom", "payload")
    (info,) = unraisable.wait(1)
    assert isinstance(info.exc_value, KeyError)
    cli.close()
    cli.close()
    with pytest.raises(groupcast.StoppedError):
        cli.publish("x", 1)


def test_connect_timeout_is_a_timeout_error():
    with socket_port() as port:
        with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
            groupcast.ChannelClient().connect(f"127.0.0.1:{port}", timeout=0.3)


def socket_port():
    """A loopback port with nothing listening (bound, not listening)."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def reserved():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            yield sock.getsockname()[1]

    return reserved()


def test_python_publishes_into_a_cluster_channel(make_server):
    node = make_server(channel_listen=LOCAL)
    received = Recorder()
    node.subscribe("jobs", received.add)  # before start
    node.start()
    channel = address(node.addresses.channel)
    heard = Recorder()
    with groupcast.ChannelClient().connect(channel) as python_client:
        python_client.on("replies", heard.add)
        wait_for(lambda: python_client.connected)
        # A Python program publishes; the node's subscription hears it.
        def delivered():
            python_client.publish("jobs", {"id": 1})
            return received.items
        wait_for(delivered, what="node subscription")
        assert received.items[0] == {"id": 1}
        # The node publishes; the Python client hears it.
        wait_for(lambda: (node.publish("replies", [1, "two"]), heard.items)[1], what="reply")
        assert heard.items[0] == [1, "two"]
        # A subscription made while running.
        late = Recorder()
        node.subscribe("late", late.add)
        wait_for(lambda: (python_client.publish("late", 3), late.items)[1], what="late subscription")
        node.unsubscribe("late")


def test_channel_errors_on_a_node(make_server):
    local = make_server()
    with pytest.raises(groupcast.ChannelError, match="no channel server"):
        local.subscribe("x", print)
    node = make_server(channel_listen=LOCAL)
    node.start()
    with pytest.raises(groupcast.ChannelError, match="reserved"):
        node.publish(node_group_channel(), 1)
    with pytest.raises(TypeError, match="callback"):
        node.subscribe("x")


def node_group_channel():
    # The prefix the core reserves for group traffic.
    return "groupcast:group:x"


def test_channel_server_port_in_use():
    with groupcast.ChannelServer(LOCAL) as first:
        second = groupcast.ChannelServer(address(first.address))
        with pytest.raises(OSError):
            second.start()


def test_groupcast_node_with_python_channel_server(make_server):
    """A standalone Python ChannelServer as the bus of two nodes."""
    with groupcast.ChannelServer(LOCAL) as hub:
        a = make_server(channel=address(hub.address))
        b = make_server(channel=address(hub.address))
        a.start()
        b.start()
        with client(a) as wa, client(b) as wb:
            command(wb, cmd="add_group", group_id="x")
            wait_for(lambda: b.group_size("x") == 1)

            def crossed():
                command(wa, cmd="send_to_group", group_id="x", message="hop")
                try:
                    return recv(wb, timeout=0.2) == "hop"
                except TimeoutError:
                    return False

            wait_for(crossed, what="message through the Python channel server")


def test_channel_events_in_poll_mode(make_server):
    node = make_server(channel_listen=LOCAL, events=True)
    node.subscribe("feed")  # before start: subscribed at start
    with pytest.raises(ValueError, match="omit the callback"):
        node.subscribe("feed", print)
    node.start()
    with groupcast.ChannelClient().connect(address(node.addresses.channel)) as publisher:
        def heard():
            publisher.publish("feed", {"n": 1})
            return [e for e in node.poll(timeout=0.1) if isinstance(e, groupcast.ChannelEvent)]

        event = wait_for(heard, what="a ChannelEvent")[0]
        assert (event.channel, event.data) == ("feed", {"n": 1})


def test_publish_to_group_reaches_members_on_every_node(make_server):
    """A program outside the cluster sends to a group: the node delivers to
    its members as it does another node's group message."""
    node = make_server(channel_listen=LOCAL)
    node.start()
    with client(node) as member, \
            groupcast.ChannelClient().connect(address(node.addresses.channel)) as outside:
        command(member, cmd="add_group", group_id="g")
        wait_for(lambda: node.group_size("g") == 1, what="join")

        def delivered():
            # The node subscribes to the group's channel once it has a
            # member: publish until that subscription is in place.
            outside.publish_to_group("g", "from outside")
            try:
                return recv(member, timeout=0.2) == "from outside"
            except TimeoutError:
                return False

        wait_for(delivered, what="a group message from outside")
        outside.publish_to_group(7, "numbered group")  # 7 and "7" are one group
        with pytest.raises(ValueError, match="empty"):
            outside.publish_to_group("", "x")
        with pytest.raises(TypeError):
            outside.publish_to_group("g", b"bytes")
    with pytest.raises(groupcast.StoppedError):
        groupcast.ChannelClient().publish_to_group("g", "x")


def test_channel_secret():
    with groupcast.ChannelServer(LOCAL, secret="s3cret") as hub:
        where = address(hub.address)
        seen = Recorder()
        with groupcast.ChannelClient(secret="s3cret").connect(where) as good:
            good.on("c", seen.add)
            wait_for(lambda: hub.subscriber_count("c") == 1, what="subscription")
            good.publish("c", "authenticated")
            assert seen.wait(1) == ["authenticated"]
        with pytest.raises(TimeoutError, match="refused the secret"):
            groupcast.ChannelClient(secret="wrong").connect(where, timeout=0.5)
    with pytest.raises(ValueError, match="secret"):
        groupcast.ChannelServer(LOCAL, secret="")
    with pytest.raises(ValueError, match="secret"):
        groupcast.ChannelClient(secret="")


def test_publish_to_group_through_a_secret_channel_server(make_server):
    node = make_server(channel_listen=LOCAL, channel_secret="s3cret")
    node.start()
    with client(node) as member, \
            groupcast.ChannelClient(secret="s3cret").connect(address(node.addresses.channel)) as outside:
        command(member, cmd="add_group", group_id=5)
        wait_for(lambda: node.group_size("5") == 1, what="join")

        def delivered():
            outside.publish_to_group(5, "hi")
            try:
                return recv(member, timeout=0.2) == "hi"
            except TimeoutError:
                return False

        wait_for(delivered, what="a group message through a secret channel server")
