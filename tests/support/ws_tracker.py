"""A tracker serving WebSocket peers only (HTTP port, no UDP), for the tests that drive real
WebTorrent clients, and its WebSocket figures from /stats."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import Iterator

from shoal.config import Settings
from support.running import RunningTracker


def websocket_tracker() -> Iterator[RunningTracker]:
    """Run the tracker for one test (no interval jitter, so replies are exact); after it,
    check that nothing failed inside."""
    base = Settings()
    settings = dataclasses.replace(
        base,
        http=dataclasses.replace(base.http, hosts=["127.0.0.1"], port=0),
        udp=dataclasses.replace(base.udp, enabled=False),
        admin=dataclasses.replace(base.admin, host="127.0.0.1", port=0),
        tracker=dataclasses.replace(base.tracker, interval_jitter=0),
    )
    with RunningTracker(settings) as rt:
        yield rt
    assert rt.tracker.counters.internal_errors == 0


def websocket_stats(rt: RunningTracker) -> dict[str, int]:
    """The ``websocket`` section of the admin listener's /stats."""
    with urllib.request.urlopen(rt.admin_url + "/stats", timeout=5) as reply:
        stats = json.load(reply)["websocket"]
    assert isinstance(stats, dict)
    return stats
