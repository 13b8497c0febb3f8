"""Users and presence from Python, on two nodes sharing a channel server:
bind_uid / send_to_uid reach a user's every device once, presence and
cluster_stats agree from both nodes, join/leave events come once per user,
actions reach a connection held by the other node, ungroup empties the
group everywhere, and bad uids raise ValueError."""

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import LOCAL, Recorder, assert_silent, client, command, recv, recv_json, wait_for


def address(addr):
    host, port = addr
    return f"{host}:{port}"


@pytest.fixture
def cluster(make_server):
    """Two nodes on one channel server, each recording its connections;
    `open_client(i, uid)` opens a client of node i bound to uid."""
    first = make_server(channel_listen=LOCAL)
    conns = [Recorder(), Recorder()]
    first.on_connect(lambda info: conns[0].add(info.conn))
    first.start()
    second = make_server(channel=address(first.addresses.channel))
    second.on_connect(lambda info: conns[1].add(info.conn))
    second.start()
    nodes = [first, second]
    wait_for(lambda: all(n.cluster_stats()["nodes"] == 2 for n in nodes), what="both nodes meet")

    def open_client(i, uid=None):
        count = len(conns[i].items) + 1
        ws = client(nodes[i])
        conn = conns[i].wait(count)[count - 1]
        if uid is not None:
            nodes[i].bind_uid(conn, uid)
        return ws, conn

    return nodes, open_client


def test_send_to_uid_reaches_every_device_once(cluster):
    (a, b), open_client = cluster
    phone, phone_id = open_client(0, "bob")
    laptop, _ = open_client(1, "bob")
    other, _ = open_client(1, "carol")
    with phone, laptop, other:
        assert a.uid_of(phone_id) == "bob"
        wait_for(lambda: a.is_uid_online("carol"), what="carol seen from node a")
        assert a.send_to_uid("bob", "for bob") == 1
        assert recv(phone) == "for bob"
        assert recv(laptop) == "for bob"
        b.send_to_uid(["bob", "carol", "bob"], "all")
        for ws in (phone, laptop, other):
            assert recv(ws) == "all"
            assert_silent(ws)
        assert a.unbind_uid(phone_id) == "bob"
        assert a.uid_of(phone_id) is None


def test_presence_counts_and_events_once_per_user(cluster):
    nodes, open_client = cluster
    a, b = nodes
    watcher, _ = open_client(0, "watcher")
    with watcher:
        command(watcher, cmd="add_group", group_id="room", presence=True)
        command(watcher, cmd="presence", group_id="room")
        assert recv_json(watcher)["type"] == "presence"  # the join is done
        tab1, t1 = open_client(1, "bob")
        tab2, t2 = open_client(1, "bob")
        with tab1, tab2:
            b.join(t1, "room")
            assert recv_json(watcher) == {"type": "join", "group_id": "room", "uid": "bob"}
            b.join(t2, "room")
            wait_for(
                lambda: all(n.presence("room")["connections"] == 3 for n in nodes),
                what="both nodes count 3",
            )
            for n in nodes:
                assert n.presence("room") == {
                    "connections": 3,
                    "users": 2,
                    "uids": ["bob", "watcher"],
                    "truncated": False,
                }
                assert n.presence("room", max_uids=1)["truncated"] is True
                stats = n.cluster_stats()
                assert (stats["connections"], stats["users"], stats["groups"]) == (3, 2, 1)
            b.leave(t1, "room")
            assert_silent(watcher)
            b.leave(t2, "room")
            assert recv_json(watcher) == {"type": "leave", "group_id": "room", "uid": "bob"}
            command(watcher, cmd="presence", group_id="room")
            answer = recv_json(watcher)
            assert (answer["type"], answer["users"], answer["uids"]) == ("presence", 1, ["watcher"])


def test_actions_reach_a_connection_on_the_other_node(cluster):
    (a, b), open_client = cluster
    far, conn = open_client(1)
    with far:
        a.send(conn, "from node a")
        assert recv(far) == "from node a"
        assert a.join(conn, "remote") is True
        wait_for(lambda: b.group_size("remote") == 1, what="the remote join")
        a.close(conn, 4002, "moved")
        with pytest.raises(ConnectionClosed) as closed:
            recv(far)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4002, "moved")


def test_ungroup_empties_the_group_on_every_node(cluster):
    (a, b), open_client = cluster
    one, c1 = open_client(0)
    two, c2 = open_client(1)
    with one, two:
        a.join(c1, "doomed")
        b.join(c2, "doomed")
        wait_for(lambda: a.presence("doomed")["connections"] == 2, what="both members seen")
        assert a.ungroup("doomed") == 1
        wait_for(lambda: b.group_size("doomed") == 0, what="node b emptied it")
        a.send_to_group("doomed", "anyone?")
        assert_silent(one)
        assert_silent(two)


def test_bad_uids_raise_value_error(cluster):
    (a, _), open_client = cluster
    ws, conn = open_client(0)
    with ws:
        with pytest.raises(ValueError, match="invalid uid: a uid must not be empty"):
            a.bind_uid(conn, "")
        with pytest.raises(ValueError, match="at most 256 bytes"):
            a.send_to_uid("x" * 257, "hi")
        with pytest.raises(TypeError, match="uids must be a str or an iterable of str"):
            a.send_to_uid(7, "hi")
        with pytest.raises(ValueError, match="presence_lease must be at least 1 second"):
            type(a)(listen=LOCAL, presence_lease=0.5)
