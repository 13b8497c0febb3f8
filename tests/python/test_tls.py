"""TLS from Python: Server(tls_cert=, tls_key=) serves wss://, reload_tls()
swaps the certificate for new connections while open ones stay, bad files
are clear errors, plain ws:// to the TLS port is refused and counted, and
the channel server and client speak TLS."""

import asyncio
import json
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

import groupcast
from conftest import LOCAL, TIMEOUT, Recorder, wait_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tls"
# Two self-signed pairs for localhost and 127.0.0.1: EC (SEC1 key) and RSA
# (PKCS#1 key).
EC = (FIXTURES / "ec.crt", FIXTURES / "ec-sec1.key")
RSA = (FIXTURES / "rsa.crt", FIXTURES / "rsa-pkcs1.key")

# The websocket clients here are websockets' asyncio ones, not the sync
# ones the other tests use: the sync client reads its SSL socket in a
# thread of its own while the caller writes to it, and CPython's ssl does
# not survive that (about one connection in twenty never gets its request
# out, against any TLS server: reproduced with `openssl s_server` too, and
# websockets#1648 sees the same).


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def trusting(*certs: Path) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for cert in certs:
        context.load_verify_locations(cafile=str(cert))
    return context


def wss(server: groupcast.Server) -> Any:
    return connect(server.url, ssl=trusting(EC[0], RSA[0]),
                   open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def served_cert(ws: ClientConnection) -> bytes:
    return ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)


async def command(ws: ClientConnection, **fields: Any) -> None:
    await ws.send(json.dumps(fields, separators=(",", ":")))


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


@pytest.fixture
def pair(tmp_path):
    """The EC pair copied where a renewal can replace it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(EC[0], cert)
    shutil.copy(EC[1], key)
    return cert, key


def test_wss_round_trip_and_reload_keeps_open_connections(make_server, pair):
    cert, key = pair
    server = make_server(tls_cert=cert, tls_key=str(key))
    server.start()
    assert server.url.startswith("wss://127.0.0.1:")

    async def drive() -> None:
        async with wss(server) as old:
            assert served_cert(old) == der(EC[0])
            await command(old, cmd="add_group", group_id="g")
            await command(old, cmd="send_to_group", group_id="g", message="before")
            assert await recv(old) == "before"

            # Renewed files in place, then reload: new connections see them.
            shutil.copy(RSA[0], cert)
            shutil.copy(RSA[1], key)
            server.reload_tls()
            async with wss(server) as new:
                assert served_cert(new) == der(RSA[0])
                await command(new, cmd="add_group", group_id="g")
                await command(new, cmd="send_to_group", group_id="g", message="after")
                assert await recv(new) == "after"
                assert await recv(old) == "after"
                await command(old, cmd="send_to_group", group_id="g", message="old still talks")
                assert await recv(new) == "old still talks"

            # A bad reload says which file and keeps the certificate in use.
            key.write_text("not a key")
            with pytest.raises(ValueError, match="no private key in it"):
                server.reload_tls()
            async with wss(server) as again:
                assert served_cert(again) == der(RSA[0])

    asyncio.run(drive())
    assert server.stats()["tls_handshake_failures"] == 0


def test_bad_files_are_clear_start_errors(make_server, tmp_path):
    mismatched = make_server(tls_cert=EC[0], tls_key=RSA[1])
    with pytest.raises(ValueError, match="does not match the certificate"):
        mismatched.start()
    missing = make_server(tls_cert=tmp_path / "nope.pem", tls_key=EC[1])
    with pytest.raises(ValueError, match="nope.pem: cannot read it"):
        missing.start()
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        groupcast.Server(LOCAL, tls_cert=EC[0])
    plain = make_server()
    plain.start()
    with pytest.raises(ValueError, match="serves no TLS"):
        plain.reload_tls()


def test_plain_ws_to_the_tls_port_is_refused_and_counted(make_server):
    server = make_server(tls_cert=EC[0], tls_key=EC[1])
    server.start()
    plain_url = server.url.replace("wss://", "ws://")

    async def drive() -> None:
        with pytest.raises(Exception, match="400"):
            await connect(plain_url, open_timeout=TIMEOUT)
        wait_for(lambda: server.stats()["tls_handshake_failures"] == 1,
                 what="the refusal counted")
        async with wss(server) as ws:
            await command(ws, cmd="add_group", group_id="g")
            await command(ws, cmd="send_to_group", group_id="g", message="fine")
            assert await recv(ws) == "fine"

    asyncio.run(drive())


def test_channel_server_and_client_over_tls(tmp_path):
    seen = Recorder()
    with groupcast.ChannelServer(LOCAL, secret="s", tls_cert=EC[0], tls_key=EC[1]) as hub:
        address = "%s:%d" % hub.address
        with groupcast.ChannelClient(secret="s", tls_ca=EC[0]).connect(address) as sub, \
                groupcast.ChannelClient(secret="s", tls_ca=str(EC[0]),
                                        tls_server_name="localhost").connect(address) as pub:
            sub.on("news", seen.add)
            wait_for(lambda: hub.subscriber_count("news") == 1, what="subscription")
            pub.publish("news", "over TLS")
            assert seen.wait(1) == ["over TLS"]
        hub.reload_tls()
        # A client that does not trust the server's certificate never
        # connects (and never sends its secret).
        stranger = groupcast.ChannelClient(secret="s", tls_ca=RSA[0])
        with pytest.raises(TimeoutError):
            stranger.connect(address, timeout=0.5)
        stranger.close()
        wait_for(lambda: hub.stats()["tls_handshake_failures"] >= 1,
                 what="the refused handshake counted by the channel server")
    with pytest.raises(ValueError, match="go together"):
        groupcast.ChannelServer(LOCAL, tls_cert=EC[0])
