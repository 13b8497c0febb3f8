"""TLS from Python: Server(tls_cert=, tls_key=) serves wss://, reload_tls()
swaps the certificate for new connections while open ones stay, bad files
are clear errors, plain ws:// to the TLS port is refused and counted, and
the channel server and client speak TLS."""

import shutil
import ssl
from pathlib import Path

import pytest
from websockets.sync.client import connect

import groupcast
from conftest import LOCAL, TIMEOUT, Recorder, command, recv, wait_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tls"
# Two self-signed pairs for localhost and 127.0.0.1: EC (SEC1 key) and RSA
# (PKCS#1 key).
EC = (FIXTURES / "ec.crt", FIXTURES / "ec-sec1.key")
RSA = (FIXTURES / "rsa.crt", FIXTURES / "rsa-pkcs1.key")


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def trusting(*certs: Path) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for cert in certs:
        context.load_verify_locations(cafile=str(cert))
    return context


def wss(server: groupcast.Server):
    return connect(server.url, ssl=trusting(EC[0], RSA[0]),
                   open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def served_cert(ws) -> bytes:
    return ws.socket.getpeercert(binary_form=True)


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
    with wss(server) as old:
        assert served_cert(old) == der(EC[0])
        command(old, cmd="add_group", group_id="g")
        command(old, cmd="send_to_group", group_id="g", message="before")
        assert recv(old) == "before"

        # Renewed files in place, then reload: new connections see them.
        shutil.copy(RSA[0], cert)
        shutil.copy(RSA[1], key)
        server.reload_tls()
        with wss(server) as new:
            assert served_cert(new) == der(RSA[0])
            command(new, cmd="add_group", group_id="g")
            command(new, cmd="send_to_group", group_id="g", message="after")
            assert recv(new) == "after"
            assert recv(old) == "after"
            command(old, cmd="send_to_group", group_id="g", message="old still talks")
            assert recv(new) == "old still talks"

        # A bad reload says which file and keeps the certificate in use.
        key.write_text("not a key")
        with pytest.raises(ValueError, match="no private key in it"):
            server.reload_tls()
        with wss(server) as again:
            assert served_cert(again) == der(RSA[0])
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
    with pytest.raises(Exception, match="400"):
        connect(plain_url, open_timeout=TIMEOUT)
    wait_for(lambda: server.stats()["tls_handshake_failures"] == 1,
             what="the refusal counted")
    with wss(server) as ws:
        command(ws, cmd="add_group", group_id="g")
        command(ws, cmd="send_to_group", group_id="g", message="fine")
        assert recv(ws) == "fine"


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
    with pytest.raises(ValueError, match="go together"):
        groupcast.ChannelServer(LOCAL, tls_cert=EC[0])
