"""Persistence of the in-memory store on the event loop: completed counts flushed as they
happen, snapshots taken in steps, everything put back at start and written at shutdown."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from support.swarm_state import (
    LARGE,
    SMALL,
    T0,
    V6_ONLY,
    info_hash,
    populated_store,
    request,
    store_state,
)

from shoal.server.persist import Persistence
from shoal.storage.base import StoreSettings, SweepProgress
from shoal.storage.memory import Cursor, MemoryStore, SwarmImage
from shoal.storage.sqlite import DB_NAME, SqliteState
from shoal.types import AnnounceRequest, Event

HOUR = 3600.0


class Clock:
    def __init__(self, now: int = T0 + 1000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def persistence(data_dir: Path, store: MemoryStore, clock: Callable[[], int] | None = None,
                *, flush_interval: float = HOUR, step_budget: int = 20_000) -> Persistence:
    return Persistence(data_dir, store, clock or Clock(), HOUR, flush_interval,
                       step_budget=step_budget)


def announce(store: MemoryStore, keeper: Persistence, req: AnnounceRequest, now: int) -> None:
    keeper.on_announce(req, store.announce(req, now))


def completion(torrent: bytes, n: int) -> AnnounceRequest:
    return request(torrent, n, left=0, event=Event.COMPLETED)


def restarted(data_dir: Path) -> tuple[MemoryStore, Persistence]:
    store = MemoryStore()
    keeper = persistence(data_dir, store)
    keeper.open_and_load()
    return store, keeper


# -- completed counts ------------------------------------------------------------------


def test_flusher_writes_completed_counts_of_completed_announces(tmp_path: Path) -> None:
    store = MemoryStore()
    keeper = persistence(tmp_path, store, flush_interval=0.01)
    keeper.open_and_load()
    reader = SqliteState(tmp_path)

    async def main() -> dict[bytes, int]:
        flusher = asyncio.create_task(keeper.run_flusher())
        announce(store, keeper, completion(SMALL, 1), T0)
        announce(store, keeper, completion(SMALL, 2), T0)
        announce(store, keeper, request(LARGE, 3), T0)
        for _ in range(1000):  # up to ~10 s
            await asyncio.sleep(0.01)
            if reader.read_completed():
                break
        flusher.cancel()
        return reader.read_completed()

    assert asyncio.run(main()) == {SMALL: 2}


def test_only_completing_announces_mark_a_torrent_for_flushing(tmp_path: Path) -> None:
    store = MemoryStore()
    keeper = persistence(tmp_path, store)
    keeper.open_and_load()

    async def main() -> tuple[int, int]:
        announce(store, keeper, request(SMALL, 1), T0)
        announce(store, keeper, request(SMALL, 2, left=0), T0)
        nothing = await keeper.flush()
        announce(store, keeper, completion(LARGE, 3), T0)
        return nothing, await keeper.flush()

    assert asyncio.run(main()) == (0, 1)


def test_completed_counts_since_the_snapshot_survive_a_kill(tmp_path: Path) -> None:
    store = MemoryStore()
    keeper = persistence(tmp_path, store)
    keeper.open_and_load()

    async def main() -> None:
        announce(store, keeper, completion(SMALL, 1), T0)
        await keeper.snapshot()
        announce(store, keeper, completion(SMALL, 2), T0 + 1)
        announce(store, keeper, completion(LARGE, 3), T0 + 1)
        await keeper.flush()
        # no close(): the process dies here

    asyncio.run(main())
    loaded, _ = restarted(tmp_path)
    assert loaded.swarms[SMALL].completed == 2
    assert loaded.swarms[LARGE].completed == 1


def test_larger_completed_count_wins_on_load(tmp_path: Path) -> None:
    store = populated_store()
    assert store.swarms[SMALL].completed > 0 and store.swarms[LARGE].completed < 99
    state = SqliteState(tmp_path)
    state.write_snapshot(_images(store), T0)
    state.write_completed([(SMALL, 0), (LARGE, 99), (info_hash("gone"), 4)])
    state.close()
    loaded, _ = restarted(tmp_path)
    assert loaded.swarms[SMALL].completed == store.swarms[SMALL].completed
    assert loaded.swarms[LARGE].completed == 99
    assert loaded.swarms[info_hash("gone")].completed == 4
    assert loaded.totals().completed == sum(s.completed for s in loaded.swarms.values())


def _images(store: MemoryStore) -> list[SwarmImage]:
    return store.export_step(store.cursor(), 1 << 30)


# -- snapshots and restarts ------------------------------------------------------------


def test_snapshot_then_restart_restores_the_same_swarms(tmp_path: Path) -> None:
    store = populated_store()
    clock = Clock()
    keeper = persistence(tmp_path, store, clock, step_budget=7)
    keeper.open_and_load()
    report = asyncio.run(keeper.snapshot())
    totals = store.totals()
    assert (report.torrents, report.peers) == (totals.torrents, totals.seeders + totals.leechers)
    assert report.steps > 2

    clock.now += 90
    loaded = MemoryStore()
    load = persistence(tmp_path, loaded, clock).open_and_load()
    assert store_state(loaded) == store_state(store)
    assert loaded.totals() == totals
    assert (load.torrents, load.peers, load.skipped_rows) == (4, report.peers, 0)
    assert load.snapshot_age == 90


def test_close_writes_completed_counts_and_a_final_snapshot(tmp_path: Path) -> None:
    store = MemoryStore()
    keeper = persistence(tmp_path, store)
    keeper.open_and_load()

    async def main() -> None:
        announce(store, keeper, request(V6_ONLY, 1, v6=True), T0)
        announce(store, keeper, completion(SMALL, 2), T0)
        await keeper.close()

    asyncio.run(main())
    loaded, _ = restarted(tmp_path)
    assert store_state(loaded) == store_state(store)
    assert loaded.swarms[SMALL].completed == 1


def test_udp_secret_survives_a_restart(tmp_path: Path) -> None:
    _, first = restarted(tmp_path)
    secret = first.udp_secret()
    _, second = restarted(tmp_path)
    assert second.udp_secret() == secret
    assert len(secret) == 32


def test_malformed_snapshot_row_is_skipped_and_reported(tmp_path: Path) -> None:
    store = populated_store()
    keeper = persistence(tmp_path, store)
    keeper.open_and_load()
    asyncio.run(keeper.snapshot())
    db = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    db.execute("UPDATE swarms SET v6_meta = x'00' WHERE info_hash = ?", (V6_ONLY,))
    db.close()
    loaded = MemoryStore()
    report = persistence(tmp_path, loaded).open_and_load()
    assert (report.torrents, report.skipped_rows) == (3, 1)
    assert V6_ONLY not in loaded.swarms
    assert store_state(loaded)[LARGE] == store_state(store)[LARGE]


def test_persistence_must_be_opened_before_use(tmp_path: Path) -> None:
    keeper = persistence(tmp_path, MemoryStore())
    with pytest.raises(RuntimeError, match="open_and_load"):
        keeper.udp_secret()


class SteppedStore(MemoryStore):
    """Runs ``hook`` right after the ``at``-th export step, as if the loop had run other
    work (a sweep, a shutdown) between two steps of a snapshot."""

    def __init__(self, at: int, settings: StoreSettings | None = None) -> None:
        super().__init__(settings)
        self.at = at
        self.calls = 0
        self.hook: Callable[[], object] = lambda: None

    def export_step(self, cursor: Cursor, budget: int) -> list[SwarmImage]:
        out = super().export_step(cursor, budget)
        self.calls += 1
        if self.calls == self.at:
            self.hook()
        return out


def test_snapshot_covers_every_torrent_when_a_sweep_rebuilds_the_order_midway(
    tmp_path: Path,
) -> None:
    store = SteppedStore(at=3, settings=StoreSettings(peer_timeout=100))
    live = [info_hash(f"live {n}") for n in range(10)]
    stale = [info_hash(f"stale {n}") for n in range(10)]
    for n in range(10):
        store.set_completed(stale[n], 1, T0)  # empty since T0: the sweep drops these
        for peer in (2 * n, 2 * n + 1):
            store.announce(request(live[n], peer), T0 + 500)
    swept: list[SweepProgress] = []
    store.hook = lambda: swept.append(store.sweep(T0 + 550, 1 << 30))
    keeper = persistence(tmp_path, store, step_budget=3)
    keeper.open_and_load()
    asyncio.run(keeper.snapshot())
    assert swept[0].finished and swept[0].torrents_removed == 10

    _, images = SqliteState(tmp_path).read_snapshot()
    written = [image.info_hash for image in images]
    assert len(written) == len(set(written))
    assert set(live) <= set(written)


def test_cancelled_snapshot_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    store = SteppedStore(at=0)
    for n in range(20):
        store.announce(request(info_hash(f"t{n}"), n), T0)
    clock = Clock()
    keeper = persistence(tmp_path, store, clock, step_budget=1)
    keeper.open_and_load()

    async def main() -> None:
        await keeper.snapshot()
        first_calls = store.calls
        store.announce(request(info_hash("after the first snapshot"), 99), T0)
        clock.now += 60
        task = asyncio.create_task(keeper.snapshot())
        store.at = first_calls + 5
        store.hook = task.cancel
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    taken_at, images = SqliteState(tmp_path).read_snapshot()
    assert taken_at == T0 + 1000
    assert [image.info_hash for image in images] == [info_hash(f"t{n}") for n in range(20)]
