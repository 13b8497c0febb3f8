"""Every Python snippet of docs/python.md runs as written, as a script of
its own (its fixed ports 1234 and 2206 made 0, so runs never collide).
Snippets that serve until stopped are driven by a websocket client and
stopped with SIGTERM."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import TIMEOUT, recv

DOC = Path(__file__).resolve().parents[2] / "docs" / "python.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def local(snippet: str) -> str:
    return re.sub(r"127\.0\.0\.1:(1234|2206)", "127.0.0.1:0", snippet)


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tls"


def start(snippet: str, tmp_path: Path) -> subprocess.Popen[str]:
    script = tmp_path / "snippet.py"
    script.write_text(local(snippet))
    if "fullchain.pem" in snippet:
        # The TLS snippet's files: the test certificate and its key.
        shutil.copy(FIXTURES / "ec.crt", tmp_path / "fullchain.pem")
        shutil.copy(FIXTURES / "ec-sec1.key", tmp_path / "privkey.pem")
    return subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_the_page_has_its_snippets():
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index: int, tmp_path: Path) -> None:
    snippet = SNIPPETS[index]
    process = start(snippet, tmp_path)
    try:
        if "serve_forever()" in snippet:
            url = process.stdout.readline().strip()
            assert url.startswith("ws://"), process.stderr.read()
            cookie = {"Cookie": "session=ok"}
            with connect(url + "?token=secret", open_timeout=TIMEOUT, additional_headers=cookie) as ws:
                ws.send("hi")
                assert recv(ws) == "you said hi"
                ws.send(b"\x01\x02")
                assert recv(ws) == b"\x01\x02"
            for query, headers, status in [
                ("?token=secret", {}, 401),  # no session cookie
                ("?token=wrong", cookie, 403),
            ]:
                with pytest.raises(InvalidStatus) as refused:
                    connect(url + query, open_timeout=TIMEOUT, additional_headers=headers)
                assert refused.value.response.status_code == status
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=15)
            assert process.returncode == 0, err
            assert err == ""
        elif "server.events()" in snippet:
            url = process.stdout.readline().strip()
            assert url.startswith("ws://"), process.stderr.read()
            with connect(url, open_timeout=TIMEOUT) as ws:
                assert recv(ws) == "welcome"
                ws.send("echo me")
                assert recv(ws) == "echo me"
            process.kill()
            process.communicate(timeout=15)
        else:
            out, err = process.communicate(timeout=30)
            assert process.returncode == 0, err
            if "publisher.publish" in snippet:
                assert out == "got {'id': 1}\n"
            if "fullchain.pem" in snippet:
                assert out.startswith("wss://127.0.0.1:"), out
    finally:
        process.kill()
