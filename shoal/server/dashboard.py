"""What the dashboard needs beyond the counters: a request history for its chart, the client
mix decoded from peer ids, and the page's static files shipped in the package.

Nothing here runs per request: the history samples the counters on a timer, and the client
mix is computed when someone asks for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Iterable
from importlib import resources
from typing import Any

from shoal.protocol.peerid import decode
from shoal.server.stats import Counters

PROTOCOLS = ("http", "udp")

# Static files served by the admin listener: URL path -> (file name, content type).
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


def load_assets() -> dict[str, tuple[bytes, str]]:
    """The dashboard files by URL path, read once from the installed package."""
    folder = resources.files("shoal.server").joinpath("static")
    return {
        path: (folder.joinpath(name).read_bytes(), content_type)
        for path, (name, content_type) in ASSETS.items()
    }


def requests_by_protocol(counters: Counters) -> dict[str, int]:
    """Requests of every kind so far, summed per protocol."""
    counters.pull()
    totals = dict.fromkeys(PROTOCOLS, 0)
    for (protocol, _family, _kind), count in list(counters.requests.items()):
        totals[protocol] = totals.get(protocol, 0) + count
    return totals


class RequestHistory:
    """Request totals per protocol, sampled every ``period`` seconds; the last ``size``
    samples are kept (360 of 10 s: one hour). Rates are differences of neighbours."""

    def __init__(self, counters: Counters, period: float = 10.0, size: int = 360) -> None:
        self.counters = counters
        self.period = period
        self.samples: deque[tuple[float, dict[str, int]]] = deque(maxlen=size)

    def sample(self, now: float | None = None) -> None:
        stamp = time.time() if now is None else now
        self.samples.append((stamp, requests_by_protocol(self.counters)))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.period)

    def series(self, now: float | None = None) -> dict[str, Any]:
        """The samples plus the present moment, as JSON-ready columns."""
        stamp = time.time() if now is None else now
        points = [*self.samples, (stamp, requests_by_protocol(self.counters))]
        return {
            "period_seconds": self.period,
            "columns": ["time", *PROTOCOLS],
            "points": [
                [round(t, 3), *(totals.get(p, 0) for p in PROTOCOLS)] for t, totals in points
            ],
        }


def count_clients(peer_ids: Iterable[bytes], versions: dict[str, Counter[str]]) -> None:
    """Add ``peer_ids`` to ``versions`` (client name -> version -> peers)."""
    for peer_id in peer_ids:
        client = decode(peer_id)
        versions.setdefault(client.name, Counter())[client.version] += 1


def client_mix(peer_ids: Iterable[bytes]) -> list[dict[str, Any]]:
    """Peers per client, most common first, each with its versions, most common first."""
    versions: dict[str, Counter[str]] = {}
    count_clients(peer_ids, versions)
    return mix_of(versions)


def mix_of(versions: dict[str, Counter[str]]) -> list[dict[str, Any]]:
    """The client mix from counts made by :func:`count_clients`."""
    mix: list[dict[str, Any]] = []
    for name, counts in versions.items():
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        mix.append({
            "client": name,
            "peers": sum(counts.values()),
            "versions": [{"version": version, "peers": peers} for version, peers in ordered],
        })
    mix.sort(key=lambda entry: (-entry["peers"], entry["client"] == "unknown", entry["client"]))
    return mix
