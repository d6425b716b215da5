"""The peer store interface every store implements, and the settings a store enforces.

A store has one call per operation, so a networked store costs one round trip each:
``announce(request, now)``, ``scrape(info_hashes)``, ``sweep(now, budget)``. A call returns
its result directly or, for a store that must wait on the network, an awaitable of it; the
logic layer (:class:`shoal.logic.TrackerLogic`) is the one place that tells them apart, so
the in-memory path stays free of per-request tasks.

The policy (numwant, intervals) is not the store's: the logic layer resolves ``numwant``
before the store sees a request and fills in the intervals afterwards. What a store does
enforce are the limits on what it holds, given by :class:`StoreSettings`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, TypeVar

from shoal.types import AnnounceRequest, AnnounceResult, StoreTotals, SwarmCounts

T = TypeVar("T")
MaybeAwaitable: TypeAlias = T | Awaitable[T]

TRACKER_FULL = "tracker is full: no new torrents accepted"


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Expiry and capacity limits; replaced whole (atomically) on reload.

    ``peer_timeout``: seconds of silence after which a peer is dropped. ``max_torrents``:
    a new torrent past this is refused (known torrents keep working).
    ``max_peers_per_swarm`` and ``max_peers_per_ip``: a new peer past these (in one swarm;
    the latter counting the entries of one IP address in one swarm) is refused.

    ``keep_totals``: hold the uploaded and downloaded totals each peer last reported, so an
    announce's :class:`~shoal.types.AnnounceResult` carries them as ``prev_uploaded`` and
    ``prev_downloaded``. Off (the default), a store holds none of them (12 to 16 bytes a
    peer saved in the compiled table) and reports both as 0; private mode's accounting
    turns it on (the logic layer sets it, see :meth:`shoal.logic.TrackerLogic.configure`).
    The Redis store stores them as 0 when off, and the Python engine too (its slots keep
    the two words either way). Turned off, totals already
    held stay but read as 0, and announces store 0; turned on, a peer's totals are those
    it reported since.
    """

    peer_timeout: int = 2880
    max_torrents: int = 5_000_000
    max_peers_per_swarm: int = 200_000
    max_peers_per_ip: int = 100
    keep_totals: bool = False

    def __post_init__(self) -> None:
        if min(self.peer_timeout, self.max_torrents, self.max_peers_per_swarm,
               self.max_peers_per_ip) <= 0:
            raise ValueError("store limits and the peer timeout must be positive")


@dataclass(frozen=True, slots=True)
class SweepProgress:
    """What one sweep step did; ``finished`` is true when a whole pass over the store ended."""

    finished: bool
    swarms_examined: int
    peers_removed: int
    torrents_removed: int


class PeerStore(Protocol):
    """Where swarms live. Every implementation passes ``tests/storage/store_conformance.py``."""

    settings: StoreSettings

    def configure(self, settings: StoreSettings) -> None:
        """Apply new limits (on reload); peers already held are kept."""
        ...

    def announce(self, request: AnnounceRequest, now: int) -> MaybeAwaitable[AnnounceResult]:
        """Record the announce and answer it with up to ``request.numwant`` peers and the
        outcome (``ClientError`` for a refused request, which changes nothing). The
        intervals of the result are left for the logic layer to fill in."""
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
