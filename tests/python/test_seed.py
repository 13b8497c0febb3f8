"""The seed's scenario through the Python API: built-in commands, one node
and a cluster of two sharing a channel server."""

from conftest import assert_silent, client, command, recv, recv_json, wait_for


def test_seed_browser_scenario(make_server):
    server = make_server(channel_listen="127.0.0.1:0")
    server.start()
    assert server.addresses.channel is not None
    with client(server) as ws:
        command(ws, cmd="add_group", group_id="123")
        command(ws, cmd="send_to_group", group_id="123", message="hello group")
        assert recv(ws) == "hello group"
        assert server.groups() == ["123"]
        assert server.group_size(123) == 1


def test_members_only_and_integer_group_ids(make_server):
    server = make_server()
    server.start()
    with client(server) as a, client(server) as b, client(server) as outsider:
        command(a, cmd="add_group", group_id=7)
        command(b, cmd="add_group", group_id="7")
        wait_for(lambda: server.group_size("7") == 2, what="two members")
        command(outsider, cmd="send_to_group", group_id="7", message={"n": 1})
        assert recv(a) == '{"n":1}'
        assert recv(b) == '{"n":1}'
        assert_silent(outsider)
        command(outsider, cmd="nope")
        assert recv_json(outsider)["code"] == "unknown_cmd"
    wait_for(lambda: server.connection_count() == 0, what="clients gone")
    assert server.groups() == []


def test_cluster_of_two_nodes(make_server):
    first = make_server(channel_listen="127.0.0.1:0")
    first.start()
    host, port = first.addresses.channel
    second = make_server(channel=f"{host}:{port}")
    second.start()
    with client(first) as a, client(second) as b:
        command(b, cmd="add_group", group_id="room")
        wait_for(lambda: second.group_size("room") == 1, what="join")
        # Interest reaches the channel server asynchronously: resend until
        # the first message crosses.
        def crossed():
            command(a, cmd="send_to_group", group_id="room", message="across")
            try:
                return recv(b, timeout=0.2) == "across"
            except TimeoutError:
                return False

        wait_for(crossed, what="a message across nodes")
        # From Python on node one, to node two's member.
        assert first.send_to_group("room", "from python") == 0
        received = recv(b)
        while received == "across":  # retries of the loop above
            received = recv(b)
        assert received == "from python"
