"""The in-memory store on the compiled engine (``shoal._native_store``, C in
``shoal/_native/``): the same store as :class:`~shoal.storage.memory.MemoryStore`, whose
subclass it is, with the swarms held in compiled memory.

The C table owns the torrents (a hash table keyed by info_hash, and their arrival order), so
compiled code (the UDP data plane) can answer from it without Python; this class only turns
its plain records into Shoal's types. Every rule is the pure-Python engine's
(``shoal/engine/swarm.py``), step for step: after the same requests both hold the same
peers in the same slots (``tests/storage/test_engines_agree.py`` checks it). Peer picks use
the table's own random numbers; only their distribution is the same.

Memory: a peer is a 34-byte record in IPv4 (46 in IPv6: address, peer id, last announce
time and flag, key), plus the reported totals when the store keeps them
(``StoreSettings.keep_totals``) and its family has any: 12 bytes (48 bits each) while all of
the family's fit, else 16, and in families past ``INDEX_MIN``
peers about 16 more of hash indexes (address, peer id, per IP). A torrent is one block of
72 bytes plus its IPv4 records (an IPv6 family is another block).
"""

from __future__ import annotations

import heapq
import os
import random
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from shoal._native_store import Table
from shoal.storage.base import StoreSettings, SweepProgress
from shoal.storage.memory import (
    Cursor,
    FamilyImage,
    FamilyLike,
    MemoryStore,
    SwarmImage,
    SwarmLike,
)
from shoal.types import AnnounceRequest, AnnounceResult, StoreTotals, SwarmCounts

_Image = tuple[int, bytes, bytes, bytes]


def _family_image(found: _Image | None) -> FamilyImage | None:
    return None if found is None else FamilyImage(*found)


def _image_tuple(image: FamilyImage | None) -> _Image | None:
    if image is None:
        return None
    return (image.seeders, image.addrs, image.ids, image.meta)


class NativeFamily:
    """One family of a swarm in the table, read slot by slot (a view: it holds no peers)."""

    __slots__ = ("_hash", "_table", "_v6", "width")

    def __init__(self, table: Table, info_hash: bytes, v6: bool) -> None:
        self._table = table
        self._hash = info_hash
        self._v6 = v6
        self.width = 18 if v6 else 6

    def _shape(self) -> tuple[int, int]:
        found: tuple[int, int] | None = self._table.family(self._hash, self._v6)
        return (0, 0) if found is None else found

    def __len__(self) -> int:
        return self._shape()[0]

    @property
    def seeders(self) -> int:
        return self._shape()[1]

    @property
    def leechers(self) -> int:
        n, seeders = self._shape()
        return n - seeders

    def _peer(self, slot: int) -> tuple[bytes, bytes, int, int, bool, int, int]:
        found: tuple[bytes, bytes, int, int, bool, int, int] = self._table.peer(
            self._hash, self._v6, slot)
        return found

    def addr(self, slot: int) -> bytes:
        return self._peer(slot)[0]

    def peer_id(self, slot: int) -> bytes:
        return self._peer(slot)[1]

    def seen(self, slot: int) -> int:
        return self._peer(slot)[2]

    def key(self, slot: int) -> int:
        return self._peer(slot)[3]

    def counted_completed(self, slot: int) -> bool:
        return self._peer(slot)[4]

    def reported(self, slot: int) -> tuple[int, int]:
        peer = self._peer(slot)
        return peer[5], peer[6]

    def is_seeder(self, slot: int) -> bool:
        return slot < self.seeders


class NativeSwarm:
    """One torrent in the table (a view by info_hash: it reads the table on each use, and a
    torrent the sweep dropped reads as empty)."""

    __slots__ = ("_hash", "_table")

    def __init__(self, table: Table, info_hash: bytes) -> None:
        self._table = table
        self._hash = info_hash

    def _state(self) -> tuple[int, int, int, int, int, int]:
        found: tuple[int, int, int, int, int, int] | None = self._table.swarm(self._hash)
        return (0, 0, 0, 0, 0, 0) if found is None else found

    @property
    def completed(self) -> int:
        return self._state()[2]

    @property
    def last_seen(self) -> int:
        return self._state()[3]

    def counts(self) -> tuple[int, int]:
        state = self._state()
        return state[0], state[1]

    def __len__(self) -> int:
        state = self._state()
        return state[4] + state[5]

    def scrape_counts(self) -> SwarmCounts:
        state = self._state()
        return SwarmCounts(state[0], state[1], state[2])

    def peer_ids(self, limit: int) -> list[bytes]:
        found: list[bytes] = self._table.peer_ids(self._hash, limit)
        return found

    @property
    def v4(self) -> FamilyLike | None:
        return NativeFamily(self._table, self._hash, False) if self._state()[4] else None

    @property
    def v6(self) -> FamilyLike | None:
        return NativeFamily(self._table, self._hash, True) if self._state()[5] else None


class NativeSwarms(Mapping[bytes, SwarmLike]):
    """The torrents of a table by info_hash, in arrival order (read-only)."""

    __slots__ = ("_table",)

    def __init__(self, table: Table) -> None:
        self._table = table

    def __getitem__(self, info_hash: bytes) -> SwarmLike:
        if self._table.swarm(info_hash) is None:
            raise KeyError(info_hash)
        return NativeSwarm(self._table, info_hash)

    def __contains__(self, info_hash: object) -> bool:
        return isinstance(info_hash, bytes) and len(info_hash) == 20 and (
            self._table.swarm(info_hash) is not None)

    def __len__(self) -> int:
        found: int = self._table.torrents()
        return found

    def __iter__(self) -> Iterator[bytes]:
        hashes: list[bytes] = self._table.hashes(0, self._table.order_len())
        return iter(hashes)


class NativeMemoryStore(MemoryStore):
    """Swarms in this process's memory, held by the compiled table."""

    engine = "native"

    def __init__(self, settings: StoreSettings | None = None,
                 rng: random.Random | None = None, engine: str = "native") -> None:
        seed = rng.getrandbits(64) if rng is not None else int.from_bytes(os.urandom(8), "big")
        self.table = Table(seed, os.urandom(16))
        self.settings = settings if settings is not None else StoreSettings()
        self._cursors: weakref.WeakSet[Cursor] = weakref.WeakSet()
        self.configure(self.settings)
        # The table's bound method answers announces itself: no Python frame in between.
        self.__dict__["announce"] = self.table.announce

    @property
    def swarms(self) -> Mapping[bytes, SwarmLike]:
        return NativeSwarms(self.table)

    def native_table(self) -> Any:
        """The C table as a PyCapsule named ``shoal._native_store.table`` (a
        ``shoal_table *``, see ``shoal/_native/store_api.h``) for compiled code; the capsule
        keeps the table alive."""
        return self.table.capsule()

    def memory(self) -> int:
        """Bytes the table has allocated (records, indexes, tables; not malloc's overhead)."""
        found: int = self.table.memory()
        return found

    def configure(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.table.configure(settings.peer_timeout, settings.max_torrents,
                             settings.max_peers_per_swarm, settings.max_peers_per_ip,
                             settings.keep_totals)

    def announce(self, request: AnnounceRequest, now: int) -> AnnounceResult:
        result: AnnounceResult = self.table.announce(request, now)
        return result

    def scrape(self, info_hashes: Sequence[bytes]) -> list[SwarmCounts]:
        found: list[SwarmCounts] = self.table.scrape(info_hashes)
        return found

    def full_scrape(self) -> list[tuple[bytes, SwarmCounts]]:
        found: list[tuple[bytes, SwarmCounts]] = self.table.scrape_range(
            0, self.table.order_len())
        return found

    def walked(self, cursor: Cursor) -> bool:
        done: bool = cursor.pos >= self.table.order_len()
        return done

    def walk(self, cursor: Cursor, budget: int) -> list[tuple[bytes, SwarmLike]]:
        start = cursor.pos
        cursor.pos = start + budget
        table = self.table
        return [(h, NativeSwarm(table, h)) for h in table.hashes(start, cursor.pos)]

    def scrape_step(self, cursor: Cursor, budget: int) -> list[tuple[bytes, SwarmCounts]]:
        start = cursor.pos
        cursor.pos = start + budget
        found: list[tuple[bytes, SwarmCounts]] = self.table.scrape_range(start, cursor.pos)
        return found

    def top_step(self, cursor: Cursor, budget: int, count: int,
                 best: list[tuple[int, bytes]]) -> None:
        start = cursor.pos
        cursor.pos = start + budget
        for size, info_hash in self.table.sizes_range(start, cursor.pos):
            if len(best) < count:
                heapq.heappush(best, (size, info_hash))
            elif size > best[0][0]:
                heapq.heapreplace(best, (size, info_hash))

    def sweep(self, now: int, budget: int) -> SweepProgress:
        finished, swarms, peers, torrents, dropped = self.table.sweep(now, budget)
        if dropped:
            from bisect import bisect_left

            for cursor in self._cursors:
                cursor.pos -= bisect_left(dropped, cursor.pos)
        return SweepProgress(finished, swarms, peers, torrents)

    def totals(self) -> StoreTotals:
        return StoreTotals(*self.table.totals())

    def top_swarms(self, count: int) -> list[tuple[bytes, SwarmCounts]]:
        table = self.table
        largest = heapq.nlargest(count, table.sizes_range(0, table.order_len()),
                                 key=lambda item: item[0])
        hashes = [info_hash for _, info_hash in largest]
        return list(zip(hashes, table.scrape(hashes), strict=True))

    def sample_peer_ids(self, limit: int) -> list[bytes]:
        found: list[bytes] = self.table.sample_peer_ids(limit)
        return found

    def export_step(self, cursor: Cursor, budget: int) -> list[SwarmImage]:
        cursor.pos, found = self.table.export(cursor.pos, budget)
        return [SwarmImage(h, completed, last_seen, _family_image(v4), _family_image(v6))
                for h, completed, last_seen, v4, v6 in found]

    def restore(self, image: SwarmImage) -> None:
        self.table.restore(image.info_hash, image.completed, image.last_seen,
                           _image_tuple(image.v4), _image_tuple(image.v6))

    def set_completed(self, info_hash: bytes, completed: int, now: int) -> None:
        self.table.set_completed(info_hash, completed, now)

    def check(self) -> None:
        """Check every invariant of the table (AssertionError naming the first broken)."""
        self.table.check()
