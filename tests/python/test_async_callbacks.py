"""async callbacks are never awaited (callbacks run on a thread of the
server's own, outside any event loop): an `async def` is refused when it is
registered, and an awaitable returned by a plain callable is closed unrun
and reported through sys.unraisablehook."""

import gc
import warnings

import pytest

import groupcast
from conftest import LOCAL, Recorder, client, recv, wait_for


async def async_hook(*args):
    raise AssertionError("never runs")


async def async_gen_hook(*args):
    yield args


class AsyncCall:
    async def __call__(self, *args):
        raise AssertionError("never runs")


@pytest.mark.parametrize("hook", ["on_connect", "on_message", "on_close"])
@pytest.mark.parametrize("callback", [async_hook, async_gen_hook, AsyncCall()])
def test_async_hooks_are_refused_at_registration(make_server, hook, callback):
    server = make_server()
    with pytest.raises(TypeError, match=r"must not be an async function.*events\(\)"):
        getattr(server, hook)(callback)


@pytest.mark.parametrize("callback", [async_hook, AsyncCall()])
def test_async_channel_callbacks_are_refused(make_server, callback):
    node = make_server(channel_listen=LOCAL)
    with pytest.raises(TypeError, match="must not be an async function"):
        node.subscribe("x", callback)
    with groupcast.ChannelServer(LOCAL) as hub:
        cli = groupcast.ChannelClient().connect("%s:%d" % hub.address)
        with pytest.raises(TypeError, match="must not be an async function"):
            cli.on("x", callback)
        cli.close()


def test_a_returned_coroutine_is_closed_and_reported(make_server, unraisable):
    server = make_server(builtin_commands=False)
    ran = Recorder()

    async def handler(conn, data):
        ran.add(data)  # never: the coroutine is closed before it starts

    server.on_message(lambda conn, data: handler(conn, data))
    server.on_close(lambda conn, code: None)  # a plain result passes
    server.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... never awaited" would fail
        with client(server) as ws:
            ws.send("hello")
            (info,) = unraisable.wait(1)
        gc.collect()
    assert isinstance(info.exc_value, TypeError)
    message = str(info.exc_value)
    assert "returned an awaitable" in message and "coroutine" in message
    assert "events()" in message
    assert "<lambda>" in repr(info.object)
    assert info.object.__wrapped__.__name__ == "<lambda>"
    assert ran.items == []
    # The server keeps serving.
    with client(server) as ws:
        ws.send("again")
        unraisable.wait(2)


def test_a_channel_callback_returning_a_coroutine_is_reported(make_server, unraisable):
    node = make_server(channel_listen=LOCAL)

    async def handler(data):
        raise AssertionError("never runs")

    node.subscribe("jobs", lambda data: handler(data))
    node.start()
    with groupcast.ChannelClient().connect("%s:%d" % node.addresses.channel) as publisher:
        wait_for(lambda: (publisher.publish("jobs", 1), unraisable.items)[1], what="report")
    assert isinstance(unraisable.items[0].exc_value, TypeError)
    assert "returned an awaitable" in str(unraisable.items[0].exc_value)


def test_on_connect_returning_a_coroutine_refuses(make_server, unraisable):
    """No verdict came back: the connection is refused (as when on_connect
    raises), however the server refuses at that stage."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    server = make_server()

    async def check(info):
        return True

    server.on_connect(lambda info: check(info))
    server.start()
    with pytest.raises((ConnectionClosed, InvalidHandshake)):
        with client(server) as ws:
            recv(ws)
    assert isinstance(unraisable.wait(1)[0].exc_value, TypeError)
