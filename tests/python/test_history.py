"""Group history from Python: the options, send_to_group_with_offset,
history(), and a client recovering what it missed with `since`."""

import shutil
import socket
import subprocess
from typing import Any, Iterator

import pytest

from conftest import assert_silent, client, command, recv, recv_json, wait_for


def test_history_options_are_checked(make_server):
    with pytest.raises(ValueError, match="history_size"):
        make_server(history_size=0)
    with pytest.raises(ValueError, match="history_ttl"):
        make_server(history_size=5, history_ttl=0)
    with pytest.raises(ValueError, match="history_max_bytes"):
        make_server(history_size=5, history_max_bytes=0)


def test_history_off_has_no_offsets(make_server):
    server = make_server()
    server.start()
    assert server.send_to_group_with_offset("g", "x") == (0, None)
    with pytest.raises(ValueError, match="history"):
        server.history("g")


def test_a_client_recovers_what_it_missed(make_server):
    server = make_server(history_size=10, history_ttl=60, history_max_bytes=1 << 20)
    server.start()
    with client(server) as raw, client(server) as member:
        command(raw, cmd="add_group", group_id="g")
        command(member, cmd="add_group", group_id="g", positions=True)
        joined = recv_json(member)
        assert joined["type"] == "joined" and joined["offset"] == 0
        epoch = joined["epoch"]
        assert server.send_to_group_with_offset("g", "first") == (2, 1)
        assert recv(raw) == "first"
        assert recv_json(member) == {
            "type": "message",
            "group_id": "g",
            "offset": 1,
            "message": "first",
        }
    for i in range(2, 7):
        assert server.send_to_group_with_offset("g", f"m{i}")[1] == i
    assert server.history("g", since=4) == (epoch, [(5, "m5"), (6, "m6")])
    assert server.history("g", limit=2) == (epoch, [(1, "first"), (2, "m2")])
    with client(server) as member:
        command(member, cmd="add_group", group_id="g", since={"offset": 1, "epoch": epoch})
        joined = recv_json(member)
        assert (joined["recovered"], joined["missed"], joined["offset"]) == (True, 5, 6)
        assert [recv_json(member)["offset"] for _ in range(5)] == [2, 3, 4, 5, 6]
        assert_silent(member)
        command(member, cmd="add_group", group_id="h", since={"offset": 1, "epoch": "old"})
        assert recv_json(member)["recovered"] is False
    stats = server.stats()
    assert stats["history_recovered"] == 1
    assert stats["history_not_recovered"] == 1
    assert stats["history_bytes"] > 0


@pytest.fixture
def redis_url(tmp_path: Any) -> Iterator[str]:
    """A redis-server of its own on a free loopback port (skipped when
    redis-server is not installed: `bash tests/redis/run.sh` installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(answers, what="redis-server answers")
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=5)


def test_history_on_a_redis_bus(make_server, redis_url):
    options = dict(bus=redis_url, history_size=10, history_ttl=60)
    a = make_server(**options)
    b = make_server(**options)
    a.start()
    b.start()
    wait_for(lambda: a.stats()["bus_connected"] and b.stats()["bus_connected"],
             what="both servers reach redis")
    with client(a) as member:
        command(member, cmd="add_group", group_id="g", positions=True)
        joined = recv_json(member)
        assert joined["offset"] == 0
        epoch = joined["epoch"]
        # Redis numbers it: the offset is its answer.
        assert b.send_to_group_with_offset("g", "first") == (0, 1)
        assert recv_json(member)["offset"] == 1
    for i in range(2, 7):
        assert b.send_to_group_with_offset("g", f"m{i}") == (0, i)
    assert a.history("g", since=4) == (epoch, [(5, "m5"), (6, "m6")])
    # Back on the other server: exactly the 5 missed, then live ones.
    with client(b) as member:
        command(member, cmd="add_group", group_id="g", since={"offset": 1, "epoch": epoch})
        joined = recv_json(member)
        assert (joined["recovered"], joined["missed"], joined["offset"]) == (True, 5, 6)
        assert [recv_json(member)["message"] for _ in range(5)] == ["m2", "m3", "m4", "m5", "m6"]
        assert a.send_to_group_with_offset("g", "live") == (0, 7)
        assert recv_json(member)["offset"] == 7
        assert_silent(member)
    assert b.stats()["history_recovered"] == 1


def test_on_a_channel_server_bus_a_send_has_no_offset(make_server):
    # The channel server numbers the message without answering the sender:
    # the offset is None there (the same from Rust and C), and history()
    # asks the channel server.
    server = make_server(channel_listen="127.0.0.1:0", history_size=10)
    server.start()
    wait_for(lambda: server.stats()["bus_connected"], what="the embedded channel server")
    with client(server) as member:
        command(member, cmd="add_group", group_id="g", positions=True)
        epoch = recv_json(member)["epoch"]
        assert server.send_to_group_with_offset("g", "x") == (0, None)
        assert recv_json(member)["offset"] == 1
    assert server.history("g") == (epoch, [(1, "x")])
