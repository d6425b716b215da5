"""The records that flow between the frontends and the swarm engine.

Addresses travel in their compact wire form: 4-byte IPv4 or 16-byte IPv6 address followed
by the 2-byte port, all in network order (BEP 23, BEP 7). A peer is therefore stored and
answered as the very bytes a client reads, and its address family is its length.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

INFO_HASH_LENGTH = 20
PEER_ID_LENGTH = 20
COMPACT_V4_LENGTH = 6
COMPACT_V6_LENGTH = 18


class Event(IntEnum):
    """Announce events; the numbers are BEP 15's, ``PAUSED`` is BEP 21's (HTTP only)."""

    NONE = 0
    COMPLETED = 1
    STARTED = 2
    STOPPED = 3
    PAUSED = 4


# AnnounceRequest and AnnounceResult are made once per announce: they are slotted but not
# frozen, since a frozen dataclass costs about three times as much to build (measured: 1.8 us
# against 0.6 us on CPython 3.11). Treat them as immutable all the same.


@dataclass(slots=True)
class AnnounceRequest:
    """One announce, already validated by a frontend codec.

    ``addr`` is the peer's compact address (6 bytes for IPv4, 18 for IPv6) as the tracker
    decided it (socket address, trusted proxy header, or an allowed ``ip`` parameter).
    ``numwant`` is what the client asked for, negative meaning "the default" and zero "no
    peers"; the logic layer replaces it with what the policy allows before the store sees it.
    ``key`` is BEP 7's key reduced to 32 bits (``None`` when the client sent none).
    ``mixed_families`` lets the reply carry peers of the other address family too (HTTP
    can, in ``peers6``; a UDP reply must not mix). ``want_peer_ids`` asks for the peer ids of
    the returned peers (HTTP ``compact=0`` without ``no_peer_id``). ``path`` is the request
    target (HTTP path and query, or BEP 41 URL data), for private mode's passkeys.
    """

    info_hash: bytes
    peer_id: bytes
    addr: bytes
    uploaded: int
    downloaded: int
    left: int
    event: Event = Event.NONE
    numwant: int = -1
    key: int | None = None
    mixed_families: bool = True
    want_peer_ids: bool = False
    path: bytes = b""


class SwarmCounts(NamedTuple):
    """A swarm's figures as scrape reports them."""

    complete: int
    incomplete: int
    downloaded: int


ZERO_COUNTS = SwarmCounts(0, 0, 0)


ROLE_NONE = 0
"""Not in the swarm (before: a new peer; after: it stopped, or was never added)."""
ROLE_LEECHER = 1
ROLE_SEEDER = 2


@dataclass(slots=True)
class AnnounceResult:
    """The store's answer to an announce: the swarm's counts, the peers picked, and the
    outcome (what the announce did to the requester's entry).

    ``peers4`` holds 6-byte and ``peers6`` 18-byte compact entries; ``peer_ids4`` and
    ``peer_ids6`` hold the matching 20-byte peer ids, concatenated in the same order, when
    the request asked for them (empty otherwise). ``interval`` and ``min_interval`` are in
    seconds, set by the logic layer's policy.

    The outcome: ``role_before`` and ``role_after`` are ``ROLE_NONE``, ``ROLE_LEECHER`` or
    ``ROLE_SEEDER``; ``completed`` is true when this announce counted a completed download;
    ``prev_uploaded`` and ``prev_downloaded`` are the totals the peer reported on its
    previous announce (zero for a new peer), so accounting can take deltas. Only a store
    that keeps them (``StoreSettings.keep_totals``: private mode, or
    ``tracker.peer_totals``) reports them; otherwise both are zero.
    """

    complete: int
    incomplete: int
    downloaded: int
    interval: int = 0
    min_interval: int = 0
    peers4: bytes = b""
    peers6: bytes = b""
    peer_ids4: bytes = b""
    peer_ids6: bytes = b""
    role_before: int = ROLE_NONE
    role_after: int = ROLE_NONE
    completed: bool = False
    prev_uploaded: int = 0
    prev_downloaded: int = 0

    @property
    def new_peer(self) -> bool:
        """The announce added a peer the swarm did not have."""
        return self.role_before == ROLE_NONE and self.role_after != ROLE_NONE

    @property
    def stopped(self) -> bool:
        """The announce removed the requester's entry (``event=stopped``)."""
        return self.role_before != ROLE_NONE and self.role_after == ROLE_NONE


class StoreTotals(NamedTuple):
    """Whole-store figures for stats and metrics."""

    torrents: int
    seeders: int
    leechers: int
    completed: int
