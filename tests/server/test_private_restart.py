"""A private tracker restarted (kill -9 after a flush, or SIGTERM at once) keeps its users,
torrents and accounting: real ``shoal serve`` processes with a SQLite database."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.ports import free_port
from support.serve import start_serve

from shoal.protocol.bencode import decode

WAIT = 20.0
TOKEN = "restart-token"
H1 = "d1" * 20


class PrivateShoal:
    """``python -m shoal serve`` in private mode, with its admin listener and API."""

    def __init__(self, tmp: Path, flush_interval: float) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.config = tmp / "shoal.toml"
        self.config.write_text(
            f'[tracker]\nmode = "private"\n'
            f'[storage]\ndata_dir = "{tmp / "data"}"\n'
            f'[accounting]\nflush_interval = {flush_interval}\n'
            f'[udp]\nenabled = false\n'
            f'[admin]\nport = {self.admin_port}\napi_token = "{TOKEN}"\n')
        self.log = tmp / "shoal.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_serve(self.config, self.port, self.log, udp=False,
                                ready_port=self.admin_port, wait=WAIT)

    def stop(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(WAIT)
        self.proc = None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", data=data,
                                     method=method, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=WAIT) as reply:
            return json.loads(reply.read())

    def announce(self, passkey: str, peer: int, **values: Any) -> dict[bytes, Any]:
        params = {"info_hash": bytes.fromhex(H1), "peer_id": f"-TR3000-{peer:012d}",
                  "port": 7000 + peer, "uploaded": 0, "downloaded": 0, "left": 10, **values}
        url = f"http://127.0.0.1:{self.port}/{passkey}/announce?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=WAIT) as reply:
            found = decode(reply.read())
        assert isinstance(found, dict)
        return found


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[PrivateShoal] = []

    def build(flush_interval: float) -> PrivateShoal:
        made.append(PrivateShoal(tmp_path, flush_interval))
        return made[-1]

    yield build
    for tracker in made:
        tracker.stop(signal.SIGKILL)


@pytest.mark.parametrize("how", ["kill -9 after a flush", "SIGTERM at once"])
def test_restart_keeps_users_torrents_and_accounting(make: Any, how: str) -> None:
    # With SIGTERM the flush interval is long: the final write at shutdown must do it.
    tracker = make(0.2 if how.startswith("kill") else 3600)
    tracker.start()
    users = [tracker.api("POST", "/api/v1/users", {"id": n}) for n in (1, 2)]
    tracker.api("POST", "/api/v1/torrents", {"info_hash": H1})
    for n, user in enumerate(users, 1):
        tracker.announce(user["passkey"], n, event="started")
        tracker.announce(user["passkey"], n, uploaded=1000 * n, downloaded=500 * n)
    before = [tracker.api("GET", f"/api/v1/users/{n}/stats")["totals"] for n in (1, 2)]
    assert [t["uploaded"] for t in before] == [1000, 2000]
    if how.startswith("kill"):
        time.sleep(1.5)  # several flush intervals
        tracker.stop(signal.SIGKILL)
    else:
        tracker.stop(signal.SIGTERM)
    tracker.start()
    after = [tracker.api("GET", f"/api/v1/users/{n}/stats")["totals"] for n in (1, 2)]
    assert after == before
    assert tracker.api("GET", f"/api/v1/torrents/{H1}")["info_hash"] == H1
    reply = tracker.announce(users[0]["passkey"], 1, uploaded=1500, downloaded=500)
    assert b"failure reason" not in reply
