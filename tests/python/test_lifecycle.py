"""Lifetimes: reference cycles through callbacks are collected; start/stop
cycles leak no threads or descriptors; asyncio events; the atexit hook."""

import asyncio
import gc
import os
import subprocess
import sys
import weakref

import groupcast
from conftest import LOCAL, client, recv, wait_for


def os_threads():
    return len(os.listdir("/proc/self/task"))


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_server_referenced_by_its_callback_is_collected():
    gc.collect()
    for started in (False, True):
        server = groupcast.Server(LOCAL, workers=1, channel_listen=LOCAL)

        @server.on_message
        def echo(conn, data):
            server.send(conn, data)  # server → hooks → echo → server

        server.subscribe("ch", lambda data: server.publish("ch", data))
        if started:
            server.start()
            server.stop()
        ref = weakref.ref(server)
        del server, echo
        gc.collect()
        assert ref() is None, f"cycle kept the server (started={started})"


def test_running_server_dropped_is_stopped_and_collected():
    before = os_threads()
    server = groupcast.Server(LOCAL, workers=1)
    server.on_close(lambda conn, code: server.connection_count())
    server.start()
    port = server.addresses.websocket[1]
    ref = weakref.ref(server)
    del server
    gc.collect()
    assert ref() is None
    wait_for(lambda: os_threads() <= before, what="threads to end")
    import socket

    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "still listening"


def test_channel_client_referenced_by_its_callback_is_collected():
    with groupcast.ChannelServer(LOCAL) as hub:
        cli = groupcast.ChannelClient().connect("%s:%d" % hub.address)
        cli.on("x", lambda data: cli.publish("y", data))
        cli.close()
        ref = weakref.ref(cli)
        del cli
        gc.collect()
        assert ref() is None


def test_hundred_start_stop_cycles_leak_no_threads_or_sockets():
    def cycle(server):
        server.start()
        with client(server) as ws:
            ws.send('{"cmd":"add_group","group_id":"g"}')
            ws.send('{"cmd":"send_to_group","group_id":"g","message":"m"}')
            assert recv(ws) == "m"
        server.stop()

    def fresh():
        server = groupcast.Server(LOCAL, workers=2, channel_listen=LOCAL)
        server.on_close(lambda conn, code: None)
        return server

    cycle(fresh())  # warm up lazily created state (json module, ...)
    gc.collect()
    threads, fds = os_threads(), open_fds()
    reused = fresh()
    for i in range(100):
        cycle(reused if i % 2 else fresh())
    gc.collect()
    wait_for(lambda: os_threads() <= threads, what=f"threads back to {threads}")
    assert open_fds() <= fds, "file descriptors leaked"


def test_asyncio_events():
    async def main():
        server = groupcast.Server(LOCAL, workers=1, events=True)
        with server:
            seen = []

            async def talk():
                def sync_client():
                    with client(server, "/room?x=1") as ws:
                        ws.send("ping")
                        assert recv(ws) == "pong"
                        ws.send(b"\x01")
                        assert recv(ws) == b"\x01"
                return await asyncio.to_thread(sync_client)

            talking = asyncio.create_task(talk())
            async for event in server.events():
                seen.append(type(event).__name__)
                match event:
                    case groupcast.ConnectEvent(conn, peer, path, query):
                        assert (path, query) == ("/room", "x=1")
                    case groupcast.MessageEvent(conn, data):
                        server.send(conn, "pong" if data == "ping" else data)
                    case groupcast.CloseEvent(conn, code):
                        assert code == 1000
                        break
            await talking
            assert seen == ["ConnectEvent", "MessageEvent", "MessageEvent", "CloseEvent"]

    asyncio.run(asyncio.wait_for(main(), 10))


def test_events_end_when_the_server_stops():
    async def main():
        server = groupcast.Server(LOCAL, workers=1, events=True)
        server.start()
        asyncio.get_running_loop().call_later(0.2, server.stop)
        return [event async for event in server.events()]

    assert asyncio.run(asyncio.wait_for(main(), 10)) == []


def test_poll_blocking_and_timeout():
    with groupcast.Server(LOCAL, workers=1, events=True) as server:
        assert server.poll(timeout=0.05) == []
        with client(server):
            (event,) = server.poll(timeout=5)
            assert isinstance(event, groupcast.ConnectEvent)
        (event,) = server.poll(timeout=5)
        assert isinstance(event, groupcast.CloseEvent)
        server.stop()
        assert server.poll() == []  # stopped: returns at once
        assert server.finished


def test_events_mode_refuses_hooks():
    server = groupcast.Server(LOCAL, events=True)
    try:
        server.on_message(print)
    except ValueError as error:
        assert "events=True" in str(error)
    else:
        raise AssertionError("hook accepted in events mode")
    hooked = groupcast.Server(LOCAL)
    try:
        hooked.poll(0)
    except ValueError as error:
        assert "events=True" in str(error)
    else:
        raise AssertionError("poll accepted in hooks mode")


def test_running_server_at_exit_stops_cleanly():
    code = (
        "import groupcast\n"
        "s = groupcast.Server('127.0.0.1:0', workers=1)\n"
        "s.on_message(lambda c, d: None)\n"
        "s.start()\n"
        "c = groupcast.ChannelServer('127.0.0.1:0'); c.start()\n"
        "cl = groupcast.ChannelClient().connect('%s:%d' % c.address)\n"
        "cl.on('x', print)\n"
        "print('up', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "up\n"
    assert done.stderr == ""


def test_asyncio_approval_by_token():
    from websockets.exceptions import InvalidStatus

    async def main():
        server = groupcast.Server(LOCAL, workers=1, events=True, approve_connections=True)
        with server:
            def clients():
                refused = []
                for token in ("no", "old"):
                    try:
                        client(server, f"/?token={token}").close()
                    except InvalidStatus as error:  # refused before the upgrade
                        refused.append((error.response.status_code, error.response.body))
                with client(server, "/?token=yes") as ws:
                    ws.send("hi")
                    return refused, ws.recv(timeout=5)

            talking = asyncio.create_task(asyncio.to_thread(clients))
            closes = 0
            async for event in server.events():
                if isinstance(event, groupcast.ConnectEvent):
                    if event.query == "token=yes":
                        server.admit(event.conn)
                    elif event.query == "token=no":
                        server.refuse(event.conn, 401, "bad token")
                    else:
                        server.close(event.conn)  # refuses with 403
                elif isinstance(event, groupcast.MessageEvent):
                    server.send(event.conn, "admitted " + event.data)
                elif isinstance(event, groupcast.CloseEvent):
                    closes += 1
                    if closes == 3:
                        break
            return await talking

    refused, reply = asyncio.run(asyncio.wait_for(main(), 10))
    assert reply == "admitted hi"
    assert refused[0] == (401, b"bad token")
    assert refused[1][0] == 403


def test_approve_connections_needs_events_mode():
    import pytest

    with pytest.raises(ValueError, match="approve_connections"):
        groupcast.Server(LOCAL, approve_connections=True)


def test_blocking_waits_release_the_gil():
    """While one thread waits in poll() / serve_forever() / connect(), another
    keeps running Python code."""
    import threading
    import time

    server = groupcast.Server(LOCAL, workers=1, events=True)
    forever = groupcast.Server(LOCAL, workers=1)
    server.start()
    started = time.monotonic()
    waits = [
        threading.Thread(target=server.poll, args=(1.5,)),
        threading.Thread(target=forever.serve_forever),
        threading.Thread(target=_unreachable_connect),
    ]
    try:
        for wait in waits:
            wait.start()
        # A wait that held the GIL would freeze this thread until it ends
        # (1.5 s): spinning until 0.5 s must finish well before that.
        spins = 0
        while time.monotonic() < started + 0.5:
            spins += 1
        assert time.monotonic() - started < 1.2, "main thread was blocked by a wait"
        assert spins > 10_000, f"main thread starved: {spins} iterations"
        assert all(wait.is_alive() for wait in waits)
    finally:
        forever.stop()
        server.stop()
        for wait in waits:
            wait.join(5)
    assert not any(wait.is_alive() for wait in waits)


def _unreachable_connect():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: refused
        try:
            groupcast.ChannelClient().connect("127.0.0.1:%d" % sock.getsockname()[1], timeout=1.5)
        except TimeoutError:
            pass
