"""How long whole-store work holds the event loop, at a million torrents.

``python -m bench stalls`` fills an in-process tracker (the real ``Tracker``, listeners on
loopback, persistence on in a temporary directory) with ``--torrents`` torrents of one peer
each, then runs, one after the other, every piece of work that walks the whole store: the
JSON stats and the Prometheus metrics of the admin listener, the dashboard's details (top
swarms, client mix), a full scrape build, a sweep pass and a snapshot. A probe task asks to
wake every millisecond throughout; how late it wakes is how long something held the loop.
Reported per piece of work: its total time, the probe's worst and 99th-percentile
lateness and the longest pause of the cyclic garbage collector, plus memory per one-peer
torrent (RSS growth over the fill). The filled store is frozen for the collector, as a
restarted tracker's loaded store is; a store that grows by a quarter after that pays one
full collection pass (about a second at a million torrents: Python's rule).
Figures, not assertions: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from shoal.config import Settings
from shoal.server.app import Tracker
from shoal.storage.memory import MemoryStore
from shoal.types import AnnounceRequest, Event

RESULTS = Path(__file__).resolve().parent / "results"


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fill(store: MemoryStore, torrents: int, now: int) -> None:
    """One peer in each of ``torrents`` torrents, a quarter of them seeders."""
    for n in range(torrents):
        info_hash = n.to_bytes(20, "big")
        peer = b"-SH0100-" + n.to_bytes(12, "big")
        addr = bytes([10, n >> 16 & 255, n >> 8 & 255, n & 255, 0x1A, 0xE1])
        store.announce(AnnounceRequest(info_hash, peer, addr, 0, 0, 0 if n % 4 == 0 else 1,
                                       Event.STARTED, 0), now)


class GcWatch:
    """The longest pause of the cyclic garbage collector since the last :meth:`take`."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._started)

    def take(self) -> float:
        longest, self.longest = self.longest, 0.0
        return longest

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


class Probe:
    """Wakes every millisecond and records how late each wake-up was."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self.running = True

    async def run(self) -> None:
        while self.running:
            asked = time.perf_counter()
            await asyncio.sleep(0.001)
            self.late.append(time.perf_counter() - asked - 0.001)

    def take(self) -> list[float]:
        late, self.late = self.late, []
        return late


async def measure(
    probe: Probe, gcw: GcWatch, name: str, work: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    await asyncio.sleep(0.05)
    probe.take()
    gcw.take()
    started = time.perf_counter()
    await work()
    total = time.perf_counter() - started
    await asyncio.sleep(0.01)
    late = sorted(probe.take()) or [0.0]
    p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
    return {"work": name, "seconds": round(total, 3), "max_hold_ms": round(late[-1] * 1e3, 1),
            "p99_hold_ms": round(p99 * 1e3, 2), "gc_pause_ms": round(gcw.take() * 1e3, 1),
            "wakeups": len(late)}


async def run(torrents: int) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="shoal-stalls-"))
    base = Settings()
    settings = dataclasses.replace(
        base,
        http=dataclasses.replace(base.http, hosts=["127.0.0.1"], port=0),
        udp=dataclasses.replace(base.udp, hosts=["127.0.0.1"], port=0),
        admin=dataclasses.replace(base.admin, port=0),
        storage=dataclasses.replace(base.storage, data_dir=str(data)),
        tracker=dataclasses.replace(base.tracker, full_scrape=True),
    )
    store = MemoryStore()
    gc.collect()
    before = rss_bytes()
    now = int(time.time())
    fill(store, torrents, now)
    gc.collect()
    per_torrent = (rss_bytes() - before) / torrents
    # As after a restart, when the swarms come from the snapshot: Tracker.serve freezes them for
    # the cyclic garbage collector once loaded (see shoal/server/app.py).
    gc.freeze()
    tracker = Tracker(settings, store)
    await tracker.start()
    admin = tracker.admin
    assert admin is not None and tracker.persistence is not None
    persistence = tracker.persistence
    probe = Probe()
    gcw = GcWatch()
    probe_task = asyncio.ensure_future(probe.run())
    rows = []
    try:
        rows.append(await measure(probe, gcw, "/stats (totals, details)", admin.stats))
        rows.append(await measure(probe, gcw, "/metrics", admin.metrics))
        admin._details = None
        rows.append(await measure(probe, gcw, "dashboard details (top swarms, client mix)",
                                  admin.details))
        rows.append(await measure(probe, gcw, "full scrape build", tracker.http.full_scrape._build))
        rows.append(await measure(probe, gcw, "sweep pass", tracker.sweep_once))
        rows.append(await measure(probe, gcw, "snapshot", persistence.snapshot))
    finally:
        probe.running = False
        await probe_task
        gcw.close()
        await tracker.shutdown(grace=0.1)
    idle = Probe()
    idle_task = asyncio.ensure_future(idle.run())
    await asyncio.sleep(1.0)
    idle.running = False
    await idle_task
    late = sorted(idle.take())
    return {
        "torrents": torrents,
        "bytes_per_one_peer_torrent": round(per_torrent),
        "idle_max_ms": round(late[-1] * 1e3, 1),
        "idle_p99_ms": round(late[int(len(late) * 0.99)] * 1e3, 2),
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['torrents']:,} one-peer torrents; {result['bytes_per_one_peer_torrent']} "
        f"bytes per one-peer torrent (RSS growth over the fill). An idle loop's probe: worst "
        f"{result['idle_max_ms']} ms late, p99 {result['idle_p99_ms']} ms.",
        "",
        "| work | total s | longest hold of the loop (ms) | p99 (ms) | longest GC pause (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['work']} | {row['seconds']} | {row['max_hold_ms']} | "
                     f"{row['p99_hold_ms']} | {row['gc_pause_ms']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench stalls", description=__doc__)
    p.add_argument("--torrents", type=int, default=1_000_000)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    result = asyncio.run(run(args.torrents))
    text = table(result)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "stalls.md").write_text(text + "\n")
        with open(RESULTS / "stalls.jsonl", "a") as fh:
            fh.write(json.dumps({"time": time.time(), **result}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


