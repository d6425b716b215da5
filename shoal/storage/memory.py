"""The in-memory store: the default, needing no setup, and the one every other store is
measured against.

Whole-store figures are kept as running totals (:class:`~shoal.engine.swarm.Tally`), so
``totals()`` costs O(1). Torrents are also listed in arrival order (``order``), which the
sweep, the full scrape and the snapshot walk in bounded steps: none of them copies the whole
torrent table in one go, so none holds the event loop for long at millions of torrents.
"""

from __future__ import annotations

import heapq
import importlib
import os
import random
import sys
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shoal.engine.swarm import INDEX_MIN, FamilyPeers, Limits, Swarm, Tally
from shoal.errors import ClientError
from shoal.storage.base import TRACKER_FULL, StoreSettings, SweepProgress
from shoal.types import (
    ZERO_COUNTS,
    AnnounceRequest,
    AnnounceResult,
    Event,
    StoreTotals,
    SwarmCounts,
)

_ID = 20
_WORDS = 4
TRASH_STEP = 100_000  # references freed per sweep step (about a millisecond)
SWARM_COST = 10
"""What visiting one torrent costs in the budgets of stepped work (sweep, snapshot), counted
in peers: per-torrent work (a lookup, a call, a record) costs about as much as ten peers,
so a store of many tiny torrents is walked in steps as short as one of few big ones."""


@dataclass(frozen=True, slots=True)
class FamilyImage:
    """One address family of a swarm as plain bytes: compact addresses, peer ids, and the
    per-slot words (last seen, key and flags, uploaded, downloaded) as little-endian u64."""

    seeders: int
    addrs: bytes
    ids: bytes
    meta: bytes


@dataclass(frozen=True, slots=True)
class SwarmImage:
    """One torrent as plain data, for snapshots: enough to rebuild it exactly."""

    info_hash: bytes
    completed: int
    last_seen: int
    v4: FamilyImage | None
    v6: FamilyImage | None


def _family_image(fam: FamilyPeers | None) -> FamilyImage | None:
    if fam is None or not len(fam):
        return None
    meta = array("Q", fam.meta)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        meta.byteswap()
    return FamilyImage(fam.seeders, bytes(fam.addrs), bytes(fam.ids), meta.tobytes())


def _family_from(image: FamilyImage, width: int, tally: Tally) -> FamilyPeers:
    n = len(image.ids) // _ID
    meta = array("Q")
    meta.frombytes(image.meta)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        meta.byteswap()
    if (len(image.ids) % _ID or len(image.addrs) != n * width or len(meta) != n * _WORDS
            or not 0 <= image.seeders <= n):
        raise ValueError("inconsistent swarm image")
    fam = FamilyPeers(width, tally)
    fam.addrs = bytearray(image.addrs)
    fam.ids = bytearray(image.ids)
    fam.meta = meta
    fam.seeders = image.seeders
    if n > INDEX_MIN:
        fam._build_index()
    tally.seeders += image.seeders
    tally.leechers += n - image.seeders
    return fam


ENGINES = ("auto", "native", "python")
ENGINE_ENV = "SHOAL_ENGINE"
"""Overrides ``tracker.engine`` (and a store's ``engine`` argument): the test suite runs
whole on one engine or the other with it."""


class EngineError(RuntimeError):
    """The engine asked for cannot be used (unknown, or ``native`` when not built)."""


_native: list[bool] = []


def native_available() -> bool:
    """Whether the compiled store (``shoal._native_store``) was built and loads."""
    if not _native:
        try:
            importlib.import_module("shoal._native_store")
        except ImportError:
            _native.append(False)
        else:
            _native.append(True)
    return _native[0]


def resolve_engine(setting: str = "auto", environ: Mapping[str, str] = os.environ) -> str:
    """``native`` or ``python``: the engine an in-memory store runs on for ``setting``
    (``tracker.engine``), which ``SHOAL_ENGINE`` overrides: ``auto`` is the compiled engine
    when it is built, else Python; ``native`` without it is an :class:`EngineError`."""
    name = environ.get(ENGINE_ENV) or setting
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}: auto, native or python")
    if name == "python":
        return "python"
    if native_available():
        return "native"
    if name == "native":
        raise EngineError(
            "engine native: the compiled store shoal._native_store is not built (reinstall "
            "with a C compiler and the Python headers, e.g. `make`), or use engine auto"
        )
    return "python"


class FamilyLike(Protocol):
    """One address family of a swarm, read slot by slot (stats and the REST API)."""

    @property
    def seeders(self) -> int: ...
    def __len__(self) -> int: ...
    def addr(self, slot: int) -> bytes: ...
    def peer_id(self, slot: int) -> bytes: ...
    def seen(self, slot: int) -> int: ...
    def key(self, slot: int) -> int: ...
    def counted_completed(self, slot: int) -> bool: ...
    def reported(self, slot: int) -> tuple[int, int]: ...
    def is_seeder(self, slot: int) -> bool: ...


class SwarmLike(Protocol):
    """A swarm as the rest of Shoal reads it, whichever engine holds it."""

    @property
    def completed(self) -> int: ...
    @property
    def last_seen(self) -> int: ...
    @property
    def v4(self) -> FamilyLike | None: ...
    @property
    def v6(self) -> FamilyLike | None: ...
    def __len__(self) -> int: ...
    def counts(self) -> tuple[int, int]: ...
    def scrape_counts(self) -> SwarmCounts: ...
    def peer_ids(self, limit: int) -> list[bytes]: ...


class Cursor:
    """A place in a store's torrent order, for work done in steps (full scrape, snapshot,
    top swarms). It stays valid when the sweep rebuilds the order: the store moves it back
    past the torrents the sweep dropped, so no torrent is skipped. A torrent dropped and
    added again while a walk is under way can be met twice; a walker that cares dedupes."""

    __slots__ = ("__weakref__", "pos")

    def __init__(self) -> None:
        self.pos = 0


class MemoryStore:
    """Swarms in this process's memory.

    ``MemoryStore(...)`` runs on the compiled engine (:class:`shoal.storage.native.
    NativeMemoryStore`, a subclass) or on this pure-Python one, which stays the reference:
    ``engine="native"`` or ``"python"`` names one; ``"auto"`` (the default) is
    :func:`resolve_engine`'s choice, so ``SHOAL_ENGINE`` can override it.
    """

    engine = "python"

    def __new__(cls, *args: Any, **kwargs: Any) -> MemoryStore:
        if cls is MemoryStore:
            engine = kwargs.get("engine", args[2] if len(args) > 2 else "auto")
            chosen = resolve_engine(engine) if engine == "auto" else resolve_engine(engine, {})
            if chosen == "native":
                from shoal.storage.native import NativeMemoryStore

                cls = NativeMemoryStore
        return object.__new__(cls)

    def __init__(self, settings: StoreSettings | None = None,
                 rng: random.Random | None = None, engine: str = "auto") -> None:
        self.settings = settings if settings is not None else StoreSettings()
        self.rng = rng if rng is not None else random.Random()
        self._swarms: dict[bytes, Swarm] = {}
        self.tally = Tally()
        self._limits = Limits(self.settings.max_peers_per_swarm, self.settings.max_peers_per_ip,
                              self.settings.keep_totals)
        # Every torrent once, in arrival order; the sweep rebuilds it without the torrents it
        # dropped, so it never grows past the torrents held plus those added during a pass.
        self.order: list[bytes] = []
        self._kept: list[bytes] = []
        self._sweep_pos = 0
        self._dropped: list[int] = []  # positions in ``order`` the current sweep pass dropped
        self._trash: list[bytes] = []  # the order list a pass replaced, freed in slices
        self._cursors: weakref.WeakSet[Cursor] = weakref.WeakSet()
        # (info_hash, family index, next top slot) of a swarm a sweep step left half done
        self._sweep_partial: tuple[bytes, int, int] | None = None

    @property
    def swarms(self) -> Mapping[bytes, SwarmLike]:
        """Every torrent held, by info_hash (read-only)."""
        return self._swarms

    def configure(self, settings: StoreSettings) -> None:
        self.settings = settings
        self._limits = Limits(settings.max_peers_per_swarm, settings.max_peers_per_ip,
                              settings.keep_totals)

    def announce(self, request: AnnounceRequest, now: int) -> AnnounceResult:
        swarm = self._swarms.get(request.info_hash)
        if swarm is None:
            if request.event == Event.STOPPED:  # a stop for a torrent we never saw leaves no trace
                return AnnounceResult(0, 0, 0)
            if len(self._swarms) >= self.settings.max_torrents:
                raise ClientError(TRACKER_FULL, 30)
            swarm = Swarm(self.tally)
            # A refused first announce raises before anything is added: no torrent is left.
            found = swarm.announce(request, now, self.settings.peer_timeout, self.rng,
                                   self._limits)
            self._swarms[request.info_hash] = swarm
            self.order.append(request.info_hash)
        else:
            found = swarm.announce(request, now, self.settings.peer_timeout, self.rng,
                                   self._limits)
        peers4, peers6, ids4, ids6, before, after, completed, up, down = found
        seeders, leechers = swarm.counts()
        # Positional: the order of AnnounceResult's fields (a little cheaper on this path).
        return AnnounceResult(
            seeders, leechers, swarm.completed, 0, 0, peers4, peers6, ids4, ids6,
            before, after, completed, up, down,
        )  # fmt: skip

    def scrape(self, info_hashes: Sequence[bytes]) -> list[SwarmCounts]:
        out = []
        swarms = self._swarms
        for info_hash in info_hashes:
            swarm = swarms.get(info_hash)
            if swarm is None:
                out.append(ZERO_COUNTS)
            else:
                out.append(swarm.scrape_counts())
        return out

    def full_scrape(self) -> list[tuple[bytes, SwarmCounts]]:
        return [(info_hash, swarm.scrape_counts()) for info_hash, swarm in self._swarms.items()]

    def cursor(self) -> Cursor:
        """A new walk over every torrent, from the first."""
        cursor = Cursor()
        self._cursors.add(cursor)
        return cursor

    def walked(self, cursor: Cursor) -> bool:
        """Whether ``cursor`` has passed every torrent."""
        return cursor.pos >= len(self.order)

    def walk(self, cursor: Cursor, budget: int) -> list[tuple[bytes, SwarmLike]]:
        """Up to ``budget`` torrents from ``cursor`` on, advancing it."""
        start = cursor.pos
        cursor.pos = start + budget
        swarms = self._swarms
        found: list[tuple[bytes, SwarmLike]] = []
        for info_hash in self.order[start : cursor.pos]:
            swarm = swarms.get(info_hash)
            if swarm is not None:
                found.append((info_hash, swarm))
        return found

    def scrape_step(self, cursor: Cursor, budget: int) -> list[tuple[bytes, SwarmCounts]]:
        """Counts for the next ``budget`` torrents of a walk: a full scrape built in steps
        that each hold the loop briefly."""
        return [(info_hash, swarm.scrape_counts()) for info_hash, swarm in
                self.walk(cursor, budget)]

    def top_step(self, cursor: Cursor, budget: int, count: int,
                 best: list[tuple[int, bytes]]) -> None:
        """Fold the next ``budget`` torrents of a walk into ``best``, a min-heap of the
        ``count`` largest swarms as (peers, info_hash)."""
        for info_hash, swarm in self.walk(cursor, budget):
            size = len(swarm)
            if len(best) < count:
                heapq.heappush(best, (size, info_hash))
            elif size > best[0][0]:
                heapq.heapreplace(best, (size, info_hash))

    def sweep(self, now: int, budget: int) -> SweepProgress:
        """One step of a pass over every swarm: expire its silent peers, and drop it when it
        has been empty for a whole peer timeout (so a finished torrent's completed count
        outlives its last peer's ``stopped`` for a while). A step examines about ``budget``
        peers; a swarm larger than that is worked through over several steps."""
        if self._trash:
            del self._trash[-TRASH_STEP:]
        before = now - self.settings.peer_timeout
        examined = peers_removed = torrents_removed = swarms_examined = 0
        order = self.order
        while self._sweep_pos < len(order) and examined < budget:
            info_hash = order[self._sweep_pos]
            swarm = self._swarms.get(info_hash)
            if swarm is None:  # pragma: no cover - only the sweep drops torrents
                self._dropped.append(self._sweep_pos)
                self._sweep_pos += 1
                continue
            removed, looked, done = self._expire_swarm(
                info_hash, swarm, before, budget - examined
            )
            examined += looked + SWARM_COST
            peers_removed += removed
            if not done:
                break
            self._sweep_pos += 1
            swarms_examined += 1
            if not len(swarm) and swarm.last_seen < before:
                del self._swarms[info_hash]
                self.tally.completed -= swarm.completed
                self._dropped.append(self._sweep_pos - 1)
                torrents_removed += 1
            else:
                self._kept.append(info_hash)
        finished = self._sweep_pos >= len(order)
        if finished:
            dropped = self._dropped
            if dropped:
                for cursor in self._cursors:
                    cursor.pos -= bisect_left(dropped, cursor.pos)
            # The old list goes to the trash, freed a slice a step: freeing a million
            # references at once held the loop for 14 ms (bench/stalls.py).
            self._trash, self.order = self.order, self._kept
            self._kept = []
            self._dropped = []
            self._sweep_pos = 0
        return SweepProgress(finished, swarms_examined, peers_removed, torrents_removed)

    def _expire_swarm(
        self, info_hash: bytes, swarm: Swarm, before: int, allowance: int
    ) -> tuple[int, int, bool]:
        """Expire up to ``allowance`` of a swarm's peers, from the top slots down, resuming
        where the previous step left this swarm. Returns (removed, examined, finished)."""
        start_family, hi = 0, -1
        if self._sweep_partial is not None and self._sweep_partial[0] == info_hash:
            _, start_family, hi = self._sweep_partial
        self._sweep_partial = None
        removed = looked = 0
        for index, fam in enumerate((swarm.v4, swarm.v6)):
            if index < start_family or fam is None:
                continue
            top = len(fam) if index != start_family or hi < 0 else min(hi, len(fam))
            lo = max(0, top - (allowance - looked))
            removed += fam.expire(before, lo, top)
            looked += top - lo
            if lo > 0:
                self._sweep_partial = (info_hash, index, lo)
                return removed, looked, False
        return removed, looked, True

    def totals(self) -> StoreTotals:
        tally = self.tally
        return StoreTotals(len(self._swarms), tally.seeders, tally.leechers, tally.completed)

    def top_swarms(self, count: int) -> list[tuple[bytes, SwarmCounts]]:
        largest = heapq.nlargest(count, self._swarms.items(), key=lambda item: len(item[1]))
        return [(info_hash, swarm.scrape_counts()) for info_hash, swarm in largest]

    def sample_peer_ids(self, limit: int) -> list[bytes]:
        """At most an even share of ``limit`` from each swarm, so one huge swarm does not
        stand for the whole tracker; stops once ``limit`` ids are found."""
        if limit <= 0 or not self._swarms:
            return []
        share = max(1, limit // len(self._swarms))
        out: list[bytes] = []
        for swarm in self._swarms.values():
            out.extend(swarm.peer_ids(min(share, limit - len(out))))
            if len(out) >= limit:
                break
        return out

    # -- snapshots ------------------------------------------------------------------

    def export_step(self, cursor: Cursor, budget: int) -> list[SwarmImage]:
        """Images of the next torrents of a walk, about ``budget`` peers' worth (at least
        one torrent). A snapshot is taken in such steps so that it never holds the loop for
        long; each torrent is captured whole."""
        swarms = self._swarms
        order = self.order
        out: list[SwarmImage] = []
        taken = 0
        while cursor.pos < len(order) and (taken < budget or not out):
            info_hash = order[cursor.pos]
            cursor.pos += 1
            swarm = swarms.get(info_hash)
            if swarm is None:  # pragma: no cover - only the sweep drops torrents
                continue
            out.append(SwarmImage(info_hash, swarm.completed, swarm.last_seen,
                                  _family_image(swarm.v4), _family_image(swarm.v6)))
            taken += len(swarm) + SWARM_COST
        return out

    def restore(self, image: SwarmImage) -> None:
        """Put back a torrent from a snapshot (replacing any torrent of that hash)."""
        old = self._swarms.pop(image.info_hash, None)
        if old is not None:
            seeders, leechers = old.counts()
            self.tally.seeders -= seeders
            self.tally.leechers -= leechers
            self.tally.completed -= old.completed
        else:
            self.order.append(image.info_hash)
        swarm = Swarm(self.tally)
        if image.v4 is not None:
            swarm.v4 = _family_from(image.v4, 6, self.tally)
        if image.v6 is not None:
            swarm.v6 = _family_from(image.v6, 18, self.tally)
        swarm.completed = image.completed
        swarm.last_seen = image.last_seen
        self.tally.completed += image.completed
        self._swarms[image.info_hash] = swarm

    def set_completed(self, info_hash: bytes, completed: int, now: int) -> None:
        """Restore a torrent's completed count (kept across restarts even when the torrent
        had no peers in the snapshot)."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            swarm = self._swarms[info_hash] = Swarm(self.tally)
            swarm.last_seen = now
            self.order.append(info_hash)
        self.tally.completed += completed - swarm.completed
        swarm.completed = completed

