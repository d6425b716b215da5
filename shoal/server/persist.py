"""Nothing lost on restart: the in-memory store's swarms and completed counts, kept in the
SQLite state database (:mod:`shoal.storage.sqlite`) of the data directory.

- Completed counts: every announce that counts a completed download marks its torrent
  dirty (:meth:`Persistence.on_announce`, a set add); :meth:`Persistence.run_flusher`
  writes the dirty torrents' counts every ``flush_interval`` seconds, so a ``kill -9``
  loses at most that much.
- Swarms: :meth:`Persistence.snapshot` writes every torrent with its peers, every
  ``snapshot_interval`` seconds and at shutdown. The store is exported on the loop in
  steps of about ``step_budget`` peers, yielding to the loop between steps, while a worker
  thread writes them in one transaction, asking the loop for the next step only as it
  goes (one step ahead), so memory stays bounded to about two steps' worth.
- At start, :meth:`Persistence.open_and_load` puts the snapshot back and then the completed
  counts written since.

Database calls run in worker threads (``asyncio.to_thread``); they are serialized by the
database object, so a flush waits while a snapshot is being written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shoal.storage.memory import MemoryStore, SwarmImage
from shoal.storage.sqlite import SqliteState, StateError
from shoal.types import AnnounceRequest, AnnounceResult

log = logging.getLogger("shoal.persist")

STEPS_PER_BATCH = 25
"""Export steps handed to the writing thread at once: a hand-over between the loop and a
thread costs a GIL switch (up to 5 ms), so one per step made a snapshot of 1,000,000 peers
take a minute (bench/stalls.py); the loop still yields between the steps of a batch."""
STEP_BUDGET = 2_000
"""Peers exported per step of a snapshot (each torrent counting one more): about 2 ms of
the loop for torrents of ten peers (measured: bench/snapshot.py); a step costs mostly per
torrent, so small torrents make it cheaper per peer."""
STEP_WAIT = 60.0
"""Seconds the writing thread waits for the loop to produce a step before it gives up."""
_ID = 20


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What :meth:`Persistence.open_and_load` put back."""

    torrents: int
    peers: int
    completed_rows: int
    skipped_rows: int
    snapshot_age: int | None  # seconds; None when there was no snapshot

    def describe(self) -> str:
        age = "no snapshot" if self.snapshot_age is None else (
            f"snapshot {self.snapshot_age} s old")
        skipped = f", {self.skipped_rows} malformed rows skipped" if self.skipped_rows else ""
        return (f"restored {self.torrents} torrents and {self.peers} peers ({age}), "
                f"{self.completed_rows} completed counts{skipped}")


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    """What one :meth:`Persistence.snapshot` wrote and what it cost."""

    torrents: int
    peers: int
    seconds: float
    longest_step_ms: float  # the longest the loop was held by one export step
    steps: int


class SnapshotAborted(Exception):
    """The snapshot was cancelled (or the loop stalled); its transaction is rolled back."""


class _Export:
    """The loop side of a snapshot: a walk over the store's torrents (a cursor that stays
    valid when the sweep rebuilds the order) and what has been exported so far. Only
    touched on the loop."""

    def __init__(self, store: MemoryStore, budget: int) -> None:
        self.store = store
        self.budget = budget
        self.cursor = store.cursor()
        self.torrents = self.peers = self.steps = 0
        self.longest = 0.0
        self.aborted = False

    def step(self) -> list[SwarmImage] | None:
        """The next images, or None when done."""
        if self.aborted:
            raise SnapshotAborted("snapshot cancelled")
        started = time.perf_counter()
        try:
            store = self.store
            if store.walked(self.cursor):
                return None
            # A torrent dropped and added again during the walk can come twice; the
            # database keeps the later image.
            images = store.export_step(self.cursor, self.budget)
            self.torrents += len(images)
            for image in images:
                if image.v4 is not None:
                    self.peers += len(image.v4.ids) // _ID
                if image.v6 is not None:
                    self.peers += len(image.v6.ids) // _ID
            return images
        finally:
            self.steps += 1
            self.longest = max(self.longest, time.perf_counter() - started)


class Persistence:
    """Keeps ``store`` in ``data_dir``'s state database; see the module docstring."""

    def __init__(
        self,
        data_dir: Path,
        store: MemoryStore,
        now: Callable[[], int],
        snapshot_interval: float,
        flush_interval: float,
        *,
        step_budget: int = STEP_BUDGET,
    ) -> None:
        self.data_dir = data_dir
        self.store = store
        self.now = now
        self.snapshot_interval = snapshot_interval
        self.flush_interval = flush_interval
        self.step_budget = step_budget
        self._state: SqliteState | None = None
        self._dirty: set[bytes] = set()
        self._snapshot_lock = asyncio.Lock()

    def _require(self) -> SqliteState:
        if self._state is None:
            raise RuntimeError("persistence is not open (call open_and_load first)")
        return self._state

    # -- start ------------------------------------------------------------------------

    def open_and_load(self) -> LoadReport:
        """Open the database and put its swarms and completed counts into the store
        (blocking; called once, before the listeners open)."""
        if self._state is not None:
            raise RuntimeError("persistence is already open")
        state = SqliteState(self.data_dir)
        store = self.store
        try:
            before = store.totals()
            taken_at, images = state.read_snapshot()
            torrents = skipped = 0
            for image in images:
                try:
                    store.restore(image)
                except ValueError:
                    skipped += 1
                    continue
                torrents += 1
            skipped += state.skipped_rows
            completed = state.read_completed()
            now = self.now()
            for info_hash, count in completed.items():
                swarm = store.swarms.get(info_hash)
                # The larger count wins: a count flushed before the snapshot may be older
                # than the snapshot's, and one flushed after it newer.
                if swarm is None or count > swarm.completed:
                    store.set_completed(info_hash, count, now)
        except BaseException:
            state.close()
            raise
        self._state = state
        after = store.totals()
        return LoadReport(
            torrents=torrents,
            peers=after.seeders + after.leechers - before.seeders - before.leechers,
            completed_rows=len(completed),
            skipped_rows=skipped,
            snapshot_age=None if taken_at is None else max(0, now - taken_at),
        )

    def udp_secret(self) -> bytes:
        """The UDP connection-id secret kept in the database (blocking)."""
        return self._require().udp_secret()

    # -- completed counts -------------------------------------------------------------

    def on_announce(self, request: AnnounceRequest, result: AnnounceResult) -> None:
        """After every announce: remember a torrent whose completed count went up."""
        if result.completed:
            self._dirty.add(request.info_hash)

    def mark_completed(self, info_hashes: Iterable[bytes]) -> None:
        """What :meth:`on_announce` does, for announces answered without it (the compiled
        UDP answer records the torrents whose completed count went up)."""
        self._dirty.update(info_hashes)

    async def flush(self) -> int:
        """Write the completed counts of the torrents marked since the last flush; returns
        how many. On failure they stay marked, for the next flush."""
        state = self._require()
        if not self._dirty:
            return 0
        dirty, self._dirty = self._dirty, set()
        swarms = self.store.swarms
        counts = [(h, swarm.completed) for h in dirty if (swarm := swarms.get(h)) is not None]
        try:
            await asyncio.to_thread(state.write_completed, counts)
        except BaseException:
            self._dirty |= dirty
            raise
        return len(counts)

    async def run_flusher(self) -> None:
        """Flush completed counts every ``flush_interval`` seconds, forever."""
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    # -- snapshots --------------------------------------------------------------------

    async def snapshot(self) -> SnapshotReport:
        """Write every torrent of the store as the new snapshot (one transaction)."""
        state = self._require()
        async with self._snapshot_lock:
            loop = asyncio.get_running_loop()
            export = _Export(self.store, self.step_budget)
            taken_at = self.now()
            started = time.perf_counter()

            async def next_step() -> list[SwarmImage] | None:
                # Several steps per hand-over to the writing thread (each hand-over waits on
                # the GIL), yielding to the loop between steps so it serves others.
                batch: list[SwarmImage] = []
                for _ in range(STEPS_PER_BATCH):
                    images = export.step()
                    if images is None:
                        return batch or None
                    batch.extend(images)
                    await asyncio.sleep(0)
                return batch

            def images() -> Iterator[SwarmImage]:
                # In the writing thread: one step is produced while the previous is written.
                pending = asyncio.run_coroutine_threadsafe(next_step(), loop)
                while True:
                    try:
                        batch = pending.result(STEP_WAIT)
                    except concurrent.futures.TimeoutError:
                        export.aborted = True
                        raise SnapshotAborted(
                            f"the event loop did not produce a snapshot step in {STEP_WAIT} s"
                        ) from None
                    except concurrent.futures.CancelledError:
                        raise SnapshotAborted("snapshot cancelled") from None
                    if batch is None:
                        return
                    pending = asyncio.run_coroutine_threadsafe(next_step(), loop)
                    yield from batch

            try:
                await asyncio.to_thread(state.write_snapshot, images(), taken_at)
            except BaseException:
                export.aborted = True  # a thread still running stops at its next step
                raise
            return SnapshotReport(
                torrents=export.torrents,
                peers=export.peers,
                seconds=time.perf_counter() - started,
                longest_step_ms=export.longest * 1000,
                steps=export.steps,
            )

    async def run_snapshots(self) -> None:
        """Take a snapshot every ``snapshot_interval`` seconds, forever."""
        while True:
            await asyncio.sleep(self.snapshot_interval)
            report = await self.snapshot()
            log.debug(
                "snapshot: %d torrents, %d peers in %.2f s (%d steps, longest %.1f ms)",
                report.torrents, report.peers, report.seconds, report.steps,
                report.longest_step_ms,
            )

    # -- shutdown ---------------------------------------------------------------------

    async def close(self) -> None:
        """Write the last completed counts and a final snapshot, then close the database.
        Does nothing when not open."""
        state = self._state
        if state is None:
            return
        try:
            await self.flush()
            await self.snapshot()
        finally:
            self._state = None
            await asyncio.to_thread(state.close)


__all__ = ["LoadReport", "Persistence", "SnapshotAborted", "SnapshotReport", "StateError"]
