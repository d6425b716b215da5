"""The peer store interface, and the in-memory store every other store is measured against.

A store has one call per operation, so a networked store costs one round trip each:
``announce(request, now)``, ``scrape(info_hashes)``, ``sweep(now, budget)``. A call returns
its result directly or, for a store that must wait on the network, an awaitable of it; the
frontends take the direct result without scheduling anything, which keeps the in-memory
path free of per-request tasks.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, TypeVar

from shoal.engine.policy import Policy
from shoal.engine.swarm import Swarm
from shoal.types import (
    ZERO_COUNTS,
    AnnounceRequest,
    AnnounceResult,
    Event,
    StoreTotals,
    SwarmCounts,
)

T = TypeVar("T")
MaybeAwaitable: TypeAlias = T | Awaitable[T]


@dataclass(frozen=True, slots=True)
class SweepProgress:
    """What one sweep step did; ``finished`` is true when a whole pass over the store ended."""

    finished: bool
    swarms_examined: int
    peers_removed: int
    torrents_removed: int


class PeerStore(Protocol):
    """Where swarms live. Every implementation passes ``tests/engine/store_conformance.py``."""

    policy: Policy

    def announce(
        self, request: AnnounceRequest, now: int
    ) -> MaybeAwaitable[AnnounceResult]:
        """Record the announce and answer it (``ClientError`` for a refused request)."""
        ...

    def scrape(self, info_hashes: Sequence[bytes]) -> MaybeAwaitable[list[SwarmCounts]]:
        """Counts for each hash, in order; an unknown torrent counts zeros."""
        ...

    def full_scrape(self) -> MaybeAwaitable[list[tuple[bytes, SwarmCounts]]]:
        """Counts for every torrent the store knows."""
        ...

    def sweep(self, now: int, budget: int) -> MaybeAwaitable[SweepProgress]:
        """Expire silent peers and drop empty torrents, examining about ``budget`` peers."""
        ...

    def totals(self) -> MaybeAwaitable[StoreTotals]:
        """Whole-store figures."""
        ...

    def top_swarms(self, count: int) -> MaybeAwaitable[list[tuple[bytes, SwarmCounts]]]:
        """The ``count`` largest swarms by peers, largest first (for stats, not announces)."""
        ...

    def sample_peer_ids(self, limit: int) -> MaybeAwaitable[list[bytes]]:
        """Up to ``limit`` peer ids spread over the swarms, for a picture of the client mix."""
        ...


class MemoryStore:
    """Swarms in this process's memory: the default store, needing no setup."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy if policy is not None else Policy()
        self.swarms: dict[bytes, Swarm] = {}
        self._sweep_queue: list[bytes] = []
        self._sweep_pos = 0
        # (info_hash, family index, next top slot) of a swarm a sweep step left half done
        self._sweep_partial: tuple[bytes, int, int] | None = None

    def announce(self, request: AnnounceRequest, now: int) -> AnnounceResult:
        policy = self.policy
        swarm = self.swarms.get(request.info_hash)
        if swarm is None:
            if request.event == Event.STOPPED:  # a stop for a torrent we never saw leaves no trace
                return AnnounceResult(0, 0, 0, policy.next_interval(), policy.min_interval)
            swarm = self.swarms[request.info_hash] = Swarm()
        peers4, peers6, ids4, ids6 = swarm.announce(
            request, now, policy.numwant(request.numwant), policy.peer_timeout, policy.rng
        )
        seeders, leechers = swarm.counts()
        # Positional: the order of AnnounceResult's fields (a little cheaper on this path).
        return AnnounceResult(
            seeders, leechers, swarm.completed, policy.next_interval(), policy.min_interval,
            peers4, peers6, ids4, ids6,
        )  # fmt: skip

    def scrape(self, info_hashes: Sequence[bytes]) -> list[SwarmCounts]:
        out = []
        swarms = self.swarms
        for info_hash in info_hashes:
            swarm = swarms.get(info_hash)
            if swarm is None:
                out.append(ZERO_COUNTS)
            else:
                out.append(swarm.scrape_counts())
        return out

    def full_scrape(self) -> list[tuple[bytes, SwarmCounts]]:
        return [(info_hash, swarm.scrape_counts()) for info_hash, swarm in self.swarms.items()]

    def sweep(self, now: int, budget: int) -> SweepProgress:
        """One step of a pass over every swarm: expire its silent peers, and drop it when it
        has been empty for a whole peer timeout (so a finished torrent's completed count
        outlives its last peer's ``stopped`` for a while). A step examines about ``budget``
        peers; a swarm larger than that is worked through over several steps."""
        if self._sweep_pos >= len(self._sweep_queue):
            self._sweep_queue = list(self.swarms)
            self._sweep_pos = 0
            self._sweep_partial = None
        before = now - self.policy.peer_timeout
        examined = peers_removed = torrents_removed = swarms_examined = 0
        queue = self._sweep_queue
        while self._sweep_pos < len(queue) and examined < budget:
            info_hash = queue[self._sweep_pos]
            swarm = self.swarms.get(info_hash)
            if swarm is None:
                self._sweep_pos += 1
                continue
            removed, looked, done = self._expire_swarm(
                info_hash, swarm, before, budget - examined
            )
            examined += looked + 1
            peers_removed += removed
            if not done:
                break
            self._sweep_pos += 1
            swarms_examined += 1
            if not len(swarm) and swarm.last_seen < before:
                del self.swarms[info_hash]
                torrents_removed += 1
        finished = self._sweep_pos >= len(queue)
        if finished:
            self._sweep_queue = []
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
        seeders = leechers = completed = 0
        for swarm in self.swarms.values():
            s, le = swarm.counts()
            seeders += s
            leechers += le
            completed += swarm.completed
        return StoreTotals(len(self.swarms), seeders, leechers, completed)

    def top_swarms(self, count: int) -> list[tuple[bytes, SwarmCounts]]:
        largest = heapq.nlargest(count, self.swarms.items(), key=lambda item: len(item[1]))
        return [(info_hash, swarm.scrape_counts()) for info_hash, swarm in largest]

    def sample_peer_ids(self, limit: int) -> list[bytes]:
        """At most an even share of ``limit`` from each swarm, so one huge swarm does not
        stand for the whole tracker; costs O(torrents + limit)."""
        if limit <= 0 or not self.swarms:
            return []
        share = max(1, limit // len(self.swarms))
        out: list[bytes] = []
        for swarm in self.swarms.values():
            out.extend(swarm.peer_ids(min(share, limit - len(out))))
            if len(out) >= limit:
                break
        return out
