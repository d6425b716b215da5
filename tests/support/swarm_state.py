"""Helpers for the persistence tests: a store holding varied swarms, and every peer's fields
read out of a store so two stores can be compared entry by entry."""

from __future__ import annotations

import hashlib
from typing import Any

from shoal.engine.swarm import INDEX_MIN, FamilyPeers
from shoal.storage.base import StoreSettings
from shoal.storage.memory import MemoryStore, SwarmImage
from shoal.types import AnnounceRequest, Event

T0 = 1_700_000_000
PORT = 6881


def info_hash(name: str) -> bytes:
    return hashlib.sha1(name.encode()).digest()


def peer_id(n: int) -> bytes:
    return f"-SH0100-{n:012d}".encode()


def addr(n: int, v6: bool = False) -> bytes:
    port = (PORT + n % 7).to_bytes(2, "big")
    if v6:
        return bytes.fromhex("20010db8") + bytes(8) + n.to_bytes(4, "big") + port
    return bytes([10]) + n.to_bytes(3, "big") + port


def request(torrent: bytes, n: int, *, v6: bool = False, left: int = 100,
            event: Event = Event.NONE, key: int | None = None, uploaded: int = 0,
            downloaded: int = 0, numwant: int = 0) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=torrent, peer_id=peer_id(n), addr=addr(n, v6), uploaded=uploaded,
        downloaded=downloaded, left=left, event=event, numwant=numwant, key=key,
    )


SMALL = info_hash("small v4 swarm")
LARGE = info_hash("large dual-stack swarm")
V6_ONLY = info_hash("v6-only swarm")
NO_PEERS = info_hash("completed, no peers left")


def populated_store(engine: str = "python") -> MemoryStore:
    """Four torrents: a small IPv4 swarm; a dual-stack swarm whose families are both past
    ``INDEX_MIN`` (so a restore must rebuild their index); an IPv6-only swarm; and a torrent
    with a completed count but no peers. Peers have keys (some), seeders and leechers,
    completions, and uploaded/downloaded totals (kept, as in private mode); announce times
    differ."""
    store = MemoryStore(StoreSettings(keep_totals=True), engine=engine)
    now = T0
    for n in range(5):
        store.announce(request(SMALL, n, left=0 if n < 2 else 100, key=0xABC0 + n,
                               uploaded=n * 1000, downloaded=n * 7), now + n)
    store.announce(request(SMALL, 0, left=0, event=Event.COMPLETED, key=0xABC0,
                           uploaded=2**40, downloaded=2**33), now + 10)
    for n in range(100, 100 + 2 * INDEX_MIN + 3):
        store.announce(request(LARGE, n, left=0 if n % 3 == 0 else 5, uploaded=n,
                               key=None if n % 2 else n), now + 20 + n % 11)
        if n % 4 == 0:
            store.announce(request(LARGE, n, v6=True, left=0, event=Event.COMPLETED,
                                   downloaded=n * 3), now + 30)
    for n in range(300, 300 + INDEX_MIN + 2):
        store.announce(request(LARGE, n, v6=True, left=n % 2), now + 31)
    for n in range(500, 503):
        store.announce(request(V6_ONLY, n, v6=True, left=n % 2, event=Event.STARTED), now + 40)
    store.announce(request(NO_PEERS, 900, left=0, event=Event.COMPLETED), now + 50)
    store.announce(request(NO_PEERS, 900, left=0, event=Event.STOPPED), now + 51)
    return store


def images_of(store: MemoryStore, budget: int = 10) -> list[SwarmImage]:
    """The whole store as images, exported in steps."""
    out: list[SwarmImage] = []
    cursor = store.cursor()
    while not store.walked(cursor):
        out.extend(store.export_step(cursor, budget))
    return out


def family_entries(fam: FamilyPeers | None) -> list[tuple[Any, ...]]:
    """Every slot's fields, in slot order."""
    if fam is None:
        return []
    return [
        (fam.addr(slot), fam.peer_id(slot), fam.seen(slot), fam.key(slot),
         fam.counted_completed(slot), fam.reported(slot), fam.is_seeder(slot))
        for slot in range(len(fam))
    ]


def store_state(store: MemoryStore) -> dict[bytes, tuple[Any, ...]]:
    """Per torrent: completed, last seen, counts and every peer entry of each family."""
    return {
        info_hash: (swarm.completed, swarm.last_seen, swarm.scrape_counts(),
                    family_entries(swarm.v4), family_entries(swarm.v6))
        for info_hash, swarm in store.swarms.items()
    }


def check_index(fam: FamilyPeers) -> None:
    """A family past INDEX_MIN has its index, and the index finds every slot."""
    n = len(fam)
    if n > INDEX_MIN:
        assert fam.by_addr is not None and fam.by_id is not None and fam.per_ip is not None
    for slot in range(n):
        assert fam.find_addr(fam.addr(slot)) == slot
        assert fam.find(fam.peer_id(slot)) == slot
