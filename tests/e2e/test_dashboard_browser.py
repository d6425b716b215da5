"""The dashboard in headless Chromium against a tracker with real HTTP and UDP traffic.

The page's totals and client mix, as rendered by its own JavaScript, must match the
tracker's state. A screenshot is saved to test-artifacts/dashboard.png; with
SHOAL_UPDATE_SCREENSHOT=1 it also replaces docs/dashboard.png (the README's picture).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from support.net import has_ipv6_loopback
from support.running import RunningTracker

from shoal.config import Settings, apply_assignments
from shoal.protocol import udp as udp_codec
from shoal.server import admin, app
from shoal.server.dashboard import client_mix
from shoal.types import Event, StoreTotals

from .cdp import HEADLESS_SWITCHES

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
BROWSERS = ("chromium", "chromium-browser")


def chromium() -> str:
    """The Chromium binary; fail on CI, skip elsewhere, when it is missing."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    message = (
        "headless Chromium not found: install Debian's chromium package "
        "(bash scripts/install-browser-deps.sh)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message + " -- CI must run the dashboard browser test", pytrace=False)
    pytest.skip(message)


class Swarmer:
    """Announces and scrapes like a population of clients would, over HTTP and UDP."""

    def __init__(self, rt: RunningTracker, hosts: list[str]) -> None:
        self.rt = rt
        self.hosts = hosts

    def http_announce(
        self, host: str, info_hash: bytes, peer_id: bytes, port: int, left: int, event: str = ""
    ) -> None:
        h, p = self.rt.listener("http", host)
        url_host = f"[{h}]" if ":" in h else h
        query = (
            f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(peer_id)}"
            f"&port={port}&uploaded=0&downloaded=0&left={left}&compact=1"
        )
        if event:
            query += f"&event={event}"
        with urllib.request.urlopen(f"http://{url_host}:{p}/announce?{query}", timeout=5) as r:
            assert r.read().startswith(b"d")

    def http_scrape(self, host: str, info_hash: bytes) -> None:
        h, p = self.rt.listener("http", host)
        url_host = f"[{h}]" if ":" in h else h
        url = f"http://{url_host}:{p}/scrape?info_hash={quote_from_bytes(info_hash)}"
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()

    def udp_announce(
        self, host: str, info_hash: bytes, peer_id: bytes, port: int, left: int
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        target = self.rt.listener("udp", host)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(udp_codec.encode_connect_request(1), target)
            connection_id = udp_codec.parse_connect_reply(sock.recv(2048)).connection_id
            request = udp_codec.AnnounceRequestUdp(
                connection_id=connection_id,
                transaction_id=2,
                info_hash=info_hash,
                peer_id=peer_id,
                downloaded=0,
                left=left,
                uploaded=0,
                event=Event.STARTED,
                ip=0,
                key=port,
                num_want=20,
                port=port,
            )
            sock.sendto(udp_codec.encode_announce_request(request), target)
            udp_codec.parse_announce_reply(sock.recv(2048))


# Who is in the swarms: (peer_id prefix, how many peers). Real-world-looking client mix.
POPULATION = [
    (b"-qB4620-", 14),
    (b"-TR4050-", 9),
    (b"-TR2940-", 4),
    (b"-DE2110-", 5),
    (b"-lt0D80-", 5),
    (b"-UT355W-", 3),
    (b"A2-1-37-0-", 3),
    (b"-BI3610-", 2),
    (b"-LT2090-", 2),
    (b"XBT054d-", 1),
    (b"-KT5230-", 2),
    (b"-qB4520-", 4),
]
TORRENTS = [hashlib.sha1(f"shoal dashboard torrent {i}".encode()).digest() for i in range(9)]


class Population:
    """Peers of many clients spread over torrents of different sizes; each peer keeps one
    address family and one protocol for joining."""

    def __init__(self, swarmer: Swarmer) -> None:
        self.swarmer = swarmer
        self.peers: list[tuple[bytes, bytes, int, int]] = []
        total = sum(count for _, count in POPULATION)
        for prefix, count in POPULATION:
            for _ in range(count):
                n = len(self.peers)
                peer_id = prefix + n.to_bytes(20 - len(prefix), "big")
                torrent = TORRENTS[min(int(len(TORRENTS) * (n / total) ** 1.6), len(TORRENTS) - 1)]
                self.peers.append((peer_id, torrent, 20000 + n, 0 if n % 3 == 0 else 500))
        self.joined = 0

    def touch(self, i: int, kind: int) -> None:
        peer_id, torrent, port, left = self.peers[i]
        hosts = self.swarmer.hosts
        host = hosts[i % len(hosts)]
        if kind % 3 == 0:
            self.swarmer.udp_announce(host, torrent, peer_id, port, left)
        elif kind % 5 == 0:
            self.swarmer.http_scrape(host, torrent)
        else:
            self.swarmer.http_announce(host, torrent, peer_id, port, left)

    def tick(self, tick: int, joining: int) -> None:
        """One second: ``joining`` more peers join, the joined ones announce or scrape at a
        rate that rises and falls."""
        started = time.monotonic()
        target = min(len(self.peers), self.joined + joining)
        for i in range(self.joined, target):
            self.touch(i, 0 if i % 4 == 1 else 1)
        self.joined = target
        for j in range(int(12 * (1.0 + 0.8 * math.sin(tick / 1.7)))):
            self.touch((tick * 7 + j) % self.joined, j)
        rest = 1.0 - (time.monotonic() - started)
        if rest > 0:
            time.sleep(rest)

    def run(self, seconds: int) -> None:
        """Everyone joins over the first half of ``seconds``; then the churn goes on."""
        per_tick = math.ceil(len(self.peers) / max(1, seconds // 2))
        for tick in range(seconds):
            self.tick(tick, per_tick)

    def keep_announcing(self, stop: threading.Event) -> None:
        tick = 0
        while not stop.is_set():
            self.tick(tick, 0)
            tick += 1


class DashboardDom(HTMLParser):
    """The figures the page shows, read from its data attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, str] = {}
        self.clients: dict[str, int] = {}
        self.loaded = False
        self.health = ""
        self.swarms: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "data-stat" in a and "data-value" in a:
            self.stats[a["data-stat"]] = a["data-value"]
        if "data-client" in a:
            self.clients[a["data-client"]] = int(a["data-peers"])
        if "data-info-hash" in a:
            self.swarms.append(a["data-info-hash"])
        if tag == "body" and a.get("data-loaded") == "true":
            self.loaded = True
        if a.get("id") == "health":
            self.health = a.get("data-state", "")


def browser_args(binary: str, profile: Path) -> list[str]:
    return [
        binary,
        *HEADLESS_SWITCHES,
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
    ]


def run_browser(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture
def tracker(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningTracker]:
    # Sample the chart every second (not 10 s) so a short test draws a curve.
    monkeypatch.setattr(
        app, "AdminOptions", functools.partial(admin.AdminOptions, sample_period=1.0)
    )
    hosts = ["127.0.0.1", "::1"] if has_ipv6_loopback(socket.SOCK_DGRAM) else ["127.0.0.1"]
    settings = apply_assignments(
        Settings(),
        [
            f"http.hosts={hosts!r}".replace("'", '"'),
            "http.port=0",
            f"udp.hosts={hosts!r}".replace("'", '"'),
            "udp.port=0",
            "admin.port=0",
            "tracker.interval_jitter=0",
        ],
    )
    with RunningTracker(settings) as rt:
        yield rt


def test_dashboard_shows_the_trackers_totals_and_client_mix(
    tracker: RunningTracker, tmp_path: Path
) -> None:
    binary = chromium()
    hosts = [x.host for x in tracker.tracker.listeners if x.kind == "http"]
    population = Population(Swarmer(tracker, hosts))
    population.run(int(os.environ.get("SHOAL_TRAFFIC_SECONDS", "12")))
    store = tracker.tracker.store
    totals = tracker.in_loop(store.totals)
    assert isinstance(totals, StoreTotals)
    counters = tracker.tracker.counters
    requests = tracker.in_loop(lambda: (counters.pull(), sum(counters.requests.values()))[1])
    ids = tracker.in_loop(lambda: store.sample_peer_ids(5000))
    assert isinstance(ids, list)
    expected_mix = [(c["client"], c["peers"]) for c in client_mix(ids)]
    assert len(ids) == totals.seeders + totals.leechers  # small enough to sample every peer

    dom_text = run_browser(
        [*browser_args(binary, tmp_path / "profile"), "--dump-dom", tracker.admin_url + "/"]
    )
    dom = DashboardDom()
    dom.feed(dom_text)
    assert dom.loaded, "the dashboard's script did not render /stats"
    assert dom.health == "ok"
    assert dom.stats["torrents"] == str(totals.torrents)
    assert dom.stats["peers"] == str(totals.seeders + totals.leechers)
    assert dom.stats["seeders"] == str(totals.seeders)
    assert dom.stats["leechers"] == str(totals.leechers)
    assert dom.stats["completed"] == str(totals.completed)
    assert int(dom.stats["requests"]) >= requests
    assert list(dom.clients.items()) == expected_mix[:8]  # the page lists the top 8
    assert dom.clients["qBittorrent"] == 18
    assert dom.clients["Transmission"] == 13
    largest = tracker.in_loop(lambda: store.top_swarms(1))
    assert isinstance(largest, list)
    assert dom.swarms[0] == largest[0][0].hex()

    # The screenshot shows a live tracker: announces go on while it is taken.
    ARTIFACTS.mkdir(exist_ok=True)
    # One file per engine pass: `make test` runs both passes at once.
    engine = "-python" if os.environ.get("SHOAL_ENGINE") == "python" else ""
    shot = ARTIFACTS / f"dashboard{engine}.png"
    shot.unlink(missing_ok=True)
    stop = threading.Event()
    churn = threading.Thread(target=population.keep_announcing, args=(stop,), daemon=True)
    churn.start()
    try:
        time.sleep(2)
        run_browser(
            [
                *browser_args(binary, tmp_path / "profile"),
                f"--screenshot={shot}",
                "--window-size=1280,1480",
                tracker.admin_url + "/",
            ]
        )
    finally:
        stop.set()
        churn.join(10)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SHOAL_UPDATE_SCREENSHOT") == "1":
        (REPO_ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO_ROOT / "docs" / "dashboard.png")
