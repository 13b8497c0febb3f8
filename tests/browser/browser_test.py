#!/usr/bin/env python3
"""The demo page and the README's console snippet in a real browser.

Starts a groupcast node and a headless Chromium, and drives Chromium through
the DevTools protocol (a websocket, spoken with the `websockets` package):

- two tabs open http://ADDR/ (the demo page) and reach "connected";
- both join group "demo" by filling #group and clicking #join, and each sees
  its own probe come back (so both joins took effect before the next step);
- tab 1 sends "hello from tab 1" with #message and #send: it appears in the
  #log of both tabs;
- the README's console snippet ("The two commands"), run in a tab with its
  address replaced by the node's, logs "C'est le message";
- a screenshot of a tab with messages is a valid PNG (written to
  --screenshot; docs/demo.png is a copy made once);
- SIGTERM stops the node (exit code 0) and both pages show close code 1001
  in #status;
- over https: a node serving wss:// with the test certificate of
  tests/fixtures/tls (Chromium runs with --ignore-certificate-errors): two
  tabs open https://ADDR/, connect (wss:// from the page), join, and tab
  1's message appears in both tabs' #log.

Every wait is bounded. Prints one line per check and "browser: N passed, N
failed"; exits 1 when any failed.

    .venv/bin/python tests/browser/browser_test.py --groupcast target/debug/groupcast \\
        --chromium chromium --screenshot target/demo.png
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[2]
# How long anything that should happen may take.
ARRIVES = 5.0
# Chromium's first start in a container can be slow.
BROWSER_START = 30.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Failed(Exception):
    """A check that did not hold."""


class DevTools:
    """A browser-level DevTools connection; tabs are flat sessions on it."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.changed = asyncio.Condition()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if "id" in message:
                future = self.pending.pop(message["id"], None)
                if future and not future.done():
                    future.set_result(message)
            else:
                async with self.changed:
                    self.events.append(message)
                    self.changed.notify_all()

    async def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        request = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send(json.dumps(request))
        reply = await asyncio.wait_for(future, ARRIVES * 2)
        if "error" in reply:
            raise Failed(f"{method}: {reply['error']}")
        return reply["result"]

    async def wait_event(self, what: str, match) -> dict:
        """The first event (already seen or to come) for which match(event)."""
        async def find() -> dict:
            async with self.changed:
                while True:
                    for event in self.events:
                        if match(event):
                            return event
                    await self.changed.wait()

        try:
            return await asyncio.wait_for(find(), ARRIVES)
        except asyncio.TimeoutError:
            raise Failed(f"no {what} within {ARRIVES:g} s") from None


class Tab:
    def __init__(self, devtools: DevTools, session: str, name: str) -> None:
        self.devtools = devtools
        self.session = session
        self.name = name

    @classmethod
    async def open(cls, devtools: DevTools, url: str, name: str) -> "Tab":
        target = await devtools.call("Target.createTarget", {"url": "about:blank"})
        attached = await devtools.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        tab = cls(devtools, attached["sessionId"], name)
        await tab.call("Runtime.enable")
        await tab.call("Page.enable")
        # A small, fixed viewport: the screenshot stays light and the same
        # from run to run.
        await tab.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 720, "height": 520, "deviceScaleFactor": 1, "mobile": False},
        )
        await tab.call("Page.navigate", {"url": url})
        return tab

    async def call(self, method: str, params: dict | None = None) -> dict:
        return await self.devtools.call(method, params, self.session)

    async def eval(self, expression: str):
        result = await self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise Failed(f"{self.name}: {expression!r} threw {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, what: str, expression: str):
        """Polls expression until it is truthy; returns its value."""
        deadline = time.monotonic() + ARRIVES
        value = None
        while time.monotonic() < deadline:
            try:
                value = await self.eval(expression)
            except Failed:
                value = None  # the page may still be loading
            if value:
                return value
            await asyncio.sleep(0.05)
        raise Failed(f"{self.name}: {what} not within {ARRIVES:g} s (last: {value!r})")

    async def fill_and_click(self, field: str, value: str, button: str) -> None:
        await self.eval(
            f"document.querySelector({json.dumps(field)}).value = {json.dumps(value)};"
            f"document.querySelector({json.dumps(button)}).click(); true"
        )

    async def log_has(self, text: str) -> None:
        await self.until(
            f"{text!r} in #log",
            f"document.querySelector('#log').textContent.includes({json.dumps(text)})",
        )


def readme_snippet(addr: str) -> str:
    """The ```js block of README.md's "The two commands", aimed at addr."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```js\n(.*?)```", section, re.S)
    if not match:
        raise Failed("no ```js block in README.md's \"The two commands\"")
    code = match.group(1)
    if "ws://127.0.0.1:1234" not in code:
        raise Failed("the README snippet no longer connects to ws://127.0.0.1:1234")
    return code.replace("ws://127.0.0.1:1234", f"ws://{addr}")


TLS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tls"


def start_node(groupcast: str, *extra: str) -> tuple[subprocess.Popen, str]:
    node = subprocess.Popen(
        [groupcast, "serve", "--listen", "127.0.0.1:0", "--channel-listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = node.stdout.readline()
    match = re.search(r"groupcast listening websocket=(\S+)", line)
    if not match:
        node.kill()
        raise Failed(f"no listening line from groupcast: {line!r}")
    return node, match.group(1)


def start_chromium(chromium: str, profile: Path, log) -> tuple[subprocess.Popen, str]:
    browser = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--no-proxy-server",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            # The https pass uses a self-signed test certificate.
            "--ignore-certificate-errors",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=log,
        stderr=log,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + BROWSER_START
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            raise Failed(f"chromium exited with {browser.returncode} before listening")
        lines = port_file.read_text().split("\n") if port_file.exists() else []
        if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
            return browser, f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        time.sleep(0.05)
    browser.kill()
    raise Failed(f"chromium did not listen within {BROWSER_START:g} s")


async def scenario(args, devtools: DevTools, node: subprocess.Popen, addr: str, check) -> None:
    url = f"http://{addr}/"
    tabs = [await Tab.open(devtools, url, f"tab {n}") for n in (1, 2)]

    async def connected() -> None:
        for tab in tabs:
            await tab.until("connected", "document.querySelector('#status').dataset.state === 'open'")

    await check("both tabs load the page and connect", connected())

    async def join() -> None:
        for n, tab in enumerate(tabs, 1):
            await tab.fill_and_click("#group", "demo", "#join")
            # Its own probe coming back proves the join took effect.
            await tab.fill_and_click("#message", f"tab {n} is here", "#send")
            await tab.log_has(f"tab {n} is here")

    await check("both tabs join group demo (#group, #join)", join())

    async def broadcast() -> None:
        await tabs[0].fill_and_click("#message", "hello from tab 1", "#send")
        for tab in tabs:
            await tab.log_has("hello from tab 1")

    await check("tab 1's message appears in both tabs' #log", broadcast())

    async def screenshot() -> None:
        await tabs[1].fill_and_click("#message", "and hello back from tab 2", "#send")
        await tabs[1].log_has("and hello back from tab 2")
        shot = await tabs[1].call("Page.captureScreenshot", {"format": "png"})
        data = base64.b64decode(shot["data"])
        if not data.startswith(PNG_MAGIC) or len(data) < 1000:
            raise Failed(f"not a PNG screenshot ({len(data)} bytes)")
        Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
        Path(args.screenshot).write_bytes(data)
        print(f"  screenshot: {args.screenshot} ({len(data)} bytes)")

    await check("a screenshot of a tab with messages is a PNG", screenshot())

    async def seed_snippet() -> None:
        tab = tabs[0]
        await tab.eval(readme_snippet(addr) + "\n;true")
        await devtools.wait_event(
            "console.log of \"C'est le message\"",
            lambda e: e.get("sessionId") == tab.session
            and e.get("method") == "Runtime.consoleAPICalled"
            and e["params"]["type"] == "log"
            and any("C'est le message" in str(a.get("value", "")) for a in e["params"]["args"]),
        )

    await check("the README's console snippet logs \"C'est le message\"", seed_snippet())

    async def stop() -> None:
        node.send_signal(signal.SIGTERM)
        for tab in tabs:
            status = await tab.until(
                "close code 1001 in #status",
                "(t => t.includes('1001') && t)(document.querySelector('#status').textContent)",
            )
            print(f"  {tab.name}: {status}")
        code = await asyncio.to_thread(node.wait, ARRIVES)
        if code != 0:
            raise Failed(f"groupcast exited with {code}")

    await check("SIGTERM: both pages show close code 1001, groupcast exits 0", stop())


async def https_scenario(devtools: DevTools, node: subprocess.Popen, addr: str, check) -> None:
    url = f"https://{addr}/"
    tabs = [await Tab.open(devtools, url, f"https tab {n}") for n in (1, 2)]

    async def connected() -> None:
        for tab in tabs:
            await tab.until("connected", "document.querySelector('#status').dataset.state === 'open'")
            scheme = await tab.eval("location.protocol")
            if scheme != "https:":
                raise Failed(f"the page was loaded over {scheme}")

    await check("https: both tabs load the page and connect over wss://", connected())

    async def join_and_send() -> None:
        for n, tab in enumerate(tabs, 1):
            await tab.fill_and_click("#group", "secure", "#join")
            await tab.fill_and_click("#message", f"https tab {n} is here", "#send")
            await tab.log_has(f"https tab {n} is here")
        await tabs[0].fill_and_click("#message", "hello over wss", "#send")
        for tab in tabs:
            await tab.log_has("hello over wss")

    await check("https: both tabs join, tab 1's message appears in both", join_and_send())


async def main_async(args) -> int:
    passed = failed = 0

    async def check(name: str, step) -> None:
        nonlocal passed, failed
        try:
            await step
        except (Failed, asyncio.TimeoutError, OSError, websockets.WebSocketException) as error:
            failed += 1
            print(f"FAIL {name}: {error or type(error).__name__}")
        else:
            passed += 1
            print(f"ok   {name}")

    profile = Path(tempfile.mkdtemp(prefix="groupcast-chromium-"))
    chromium_log = open(profile.parent / f"{profile.name}.log", "w+")
    node = browser = secure = None
    try:
        node, addr = start_node(args.groupcast)
        secure, secure_addr = start_node(
            args.groupcast,
            "--tls-cert", str(TLS_FIXTURES / "ec.crt"),
            "--tls-key", str(TLS_FIXTURES / "ec-sec1.key"),
        )
        browser, devtools_url = start_chromium(args.chromium, profile, chromium_log)
        async with websockets.connect(devtools_url, max_size=None, open_timeout=ARRIVES) as ws:
            devtools = DevTools(ws)
            await scenario(args, devtools, node, addr, check)
            await https_scenario(devtools, secure, secure_addr, check)
            devtools.reader.cancel()
    except Failed as error:
        failed += 1
        print(f"FAIL setup: {error}")
    finally:
        for process in (browser, node, secure):
            if process and process.poll() is None:
                process.kill()
                process.wait()
        if failed:
            chromium_log.seek(0)
            tail = chromium_log.read()[-3000:]
            if tail:
                print("chromium's output (end):\n" + tail)
        chromium_log.close()
        os.unlink(chromium_log.name)
        shutil.rmtree(profile, ignore_errors=True)
    print(f"browser: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groupcast", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--screenshot", required=True)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
