"""Drive headless Chromium over the DevTools protocol (CDP), with the `websockets` client.

One :class:`Chromium` is one browser process with a profile of its own, started in its own
process group so that :meth:`Chromium.close` stops it and every helper process it spawned.
Its DevTools endpoint is read from the ``DevToolsActivePort`` file Chromium writes into the
profile (``--remote-debugging-port=0`` picks a free port), so nothing parses its output.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

# What every headless Chromium the tests start runs with: no sandbox or GPU (containers), and
# none of the background traffic, updates, sync or first-run pages a profile would start.
HEADLESS_SWITCHES = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--mute-audio",
)

START_TIMEOUT = 30.0


class CdpError(Exception):
    """A DevTools call failed, or the page's JavaScript threw."""


class Chromium:
    """A headless Chromium process and a DevTools connection to it."""

    def __init__(self, binary: str, profile: Path, switches: Sequence[str], log: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._ids = itertools.count(1)
        self._closing = contextlib.ExitStack()
        args = [
            binary,
            *HEADLESS_SWITCHES,
            "--no-default-browser-check",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            *switches,
            "about:blank",
        ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            port, path = self._endpoint(profile / "DevToolsActivePort")
            self.ws: ClientConnection = self._closing.enter_context(connect(
                f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=START_TIMEOUT,
                compression=None,
            ))
        except BaseException:
            self._stop_process()
            raise

    def _endpoint(self, active_port: Path) -> tuple[int, str]:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise CdpError(f"chromium exited ({self.process.returncode}): {self.log_tail()}")
            with contextlib.suppress(FileNotFoundError, ValueError):
                lines = active_port.read_text().split("\n")
                if len(lines) >= 2 and lines[1].startswith("/devtools/"):
                    return int(lines[0]), lines[1]
            if time.monotonic() > deadline:
                raise CdpError(f"chromium opened no DevTools port: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def call(
        self, method: str, params: dict[str, Any] | None = None, *,
        session: str | None = None, timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply (events in between are dropped)."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"{method}: no reply in {timeout} s")
            try:
                reply = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                raise CdpError(f"{method}: no reply in {timeout} s") from None
            if reply.get("id") != message_id:
                continue
            if "error" in reply:
                raise CdpError(f"{method}: {reply['error']}")
            result = reply.get("result", {})
            assert isinstance(result, dict)
            return result

    def open_page(self, url: str) -> Page:
        """A new tab showing ``url``, attached for :meth:`Page.evaluate`."""
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        return Page(self, str(session["sessionId"]))

    def _stop_process(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._closing.close()
        self._stop_process()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab of a :class:`Chromium`, as a DevTools session."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def evaluate(self, expression: str, timeout: float = 10.0) -> Any:
        """The value of ``expression`` (awaited when it is a promise), as JSON."""
        result = self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=self.session, timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            thrown = details.get("exception", {})
            raise CdpError(str(thrown.get("description") or thrown.get("value") or details))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CdpError(f"{expression!r} still falsy after {timeout} s")
            time.sleep(0.05)
