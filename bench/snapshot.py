"""What a snapshot costs: ``python -m bench snapshot [--peers N] [--torrents N]``.

Fills an in-memory store (in this process, through the engine: no network) with
``--peers`` peers over ``--torrents`` torrents (a quarter seeders, one in ten over IPv6,
half with a key), then takes snapshots with :class:`shoal.server.persist.Persistence` on
an asyncio loop while another task measures how late the loop wakes it from
``sleep(0.001)`` (the loop lag a request would see). The first snapshot writes a new
database, the second replaces it (the steady state). Then a fresh store is loaded from the
database. Printed: seconds per snapshot, the longest single export step held on the loop,
loop lag (max and p99), database size, and load time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from shoal.server.persist import Persistence, SnapshotReport
from shoal.storage.memory import MemoryStore
from shoal.storage.sqlite import DB_NAME
from shoal.types import AnnounceRequest, Event

T0 = 1_700_000_000
LAG_PERIOD = 0.001


def fill(store: MemoryStore, peers: int, torrents: int) -> None:
    hashes = [i.to_bytes(4, "big") * 5 for i in range(torrents)]
    announce = store.announce
    for p in range(peers):
        v6 = p % 10 == 9
        port = (6881 + p % 1000).to_bytes(2, "big")
        ip = (bytes.fromhex("20010db8") + bytes(8) + p.to_bytes(4, "big") if v6
              else bytes([10]) + (p & 0xFFFFFF).to_bytes(3, "big"))
        announce(AnnounceRequest(
            hashes[p % torrents], b"-BN0001-" + p.to_bytes(12, "big"), ip + port,
            p, p * 3, 0 if p % 4 == 0 else 1000, Event.STARTED, 0,
            p & 0xFFFF if p % 2 else None,
        ), T0 + p % 600)


class GcPauses:
    """The longest cyclic garbage collection (ms) while active: a pause of the whole
    process, snapshot or not, that shows up as loop lag."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest = max(self.longest, (time.perf_counter() - self._started) * 1000)


async def idle_lag(seconds: float) -> tuple[float, float]:
    """The same probe on an idle loop (max and p99, ms): the machine's own noise."""
    lags: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        await asyncio.sleep(LAG_PERIOD)
        lags.append(time.perf_counter() - t - LAG_PERIOD)
    lags.sort()
    return lags[-1] * 1000, lags[int(0.99 * (len(lags) - 1))] * 1000


async def measured(keeper: Persistence) -> tuple[SnapshotReport, float, float, float]:
    """A snapshot, with the loop lag seen meanwhile (max and p99, ms) and the longest
    garbage collection meanwhile (ms)."""
    lags: list[float] = []
    done = False
    pauses = GcPauses()
    gc.callbacks.append(pauses)

    async def probe() -> None:
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(LAG_PERIOD)
            lags.append(time.perf_counter() - t - LAG_PERIOD)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.05)
    try:
        report = await keeper.snapshot()
    finally:
        done = True
        await prober
        gc.callbacks.remove(pauses)
    lags.sort()
    p99 = lags[int(0.99 * (len(lags) - 1))] if lags else 0.0
    return report, max(lags, default=0.0) * 1000, p99 * 1000, pauses.longest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench snapshot", description=__doc__)
    parser.add_argument("--peers", type=int, default=1_000_000)
    parser.add_argument("--torrents", type=int, default=100_000)
    parser.add_argument("--step-budget", type=int, default=None,
                        help="peers per export step (default: Persistence's)")
    args = parser.parse_args(argv)

    store = MemoryStore()
    t = time.perf_counter()
    fill(store, args.peers, args.torrents)
    totals = store.totals()
    print(f"filled {totals.torrents:,} torrents, {totals.seeders + totals.leechers:,} peers "
          f"in {time.perf_counter() - t:.1f} s")

    with tempfile.TemporaryDirectory(prefix="shoal-bench-snapshot-") as tmp:
        data_dir = Path(tmp)
        extra = {} if args.step_budget is None else {"step_budget": args.step_budget}
        keeper = Persistence(data_dir, store, lambda: T0 + 600, 3600.0, 5.0, **extra)
        keeper.open_and_load()

        async def run() -> list[tuple[SnapshotReport, float, float, float]]:
            idle_max, idle_p99 = await idle_lag(1.0)
            print(f"idle loop lag (no snapshot, 1 s): max {idle_max:.1f} ms, "
                  f"p99 {idle_p99:.2f} ms")
            results = [await measured(keeper), await measured(keeper)]
            await keeper.close()
            return results

        results = asyncio.run(run())
        for label, (report, lag_max, lag_p99, gc_ms) in zip(("first", "replace"), results,
                                                            strict=True):
            print(f"snapshot ({label}): {report.torrents:,} torrents, {report.peers:,} peers "
                  f"in {report.seconds:.2f} s, {report.steps} steps; longest step on the "
                  f"loop {report.longest_step_ms:.1f} ms; loop lag max {lag_max:.1f} ms, "
                  f"p99 {lag_p99:.2f} ms; longest gc pause meanwhile {gc_ms:.1f} ms")
        size = sum(os.path.getsize(data_dir / name) for name in os.listdir(data_dir)
                   if name.startswith(DB_NAME))
        print(f"database: {size / 2**20:.1f} MiB")

        fresh = MemoryStore()
        t = time.perf_counter()
        load = Persistence(data_dir, fresh, lambda: T0 + 700, 3600.0, 5.0).open_and_load()
        print(f"load: {time.perf_counter() - t:.2f} s ({load.describe()})")
        assert fresh.totals() == store.totals(), (fresh.totals(), store.totals())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
