"""Internal consistency of the in-memory swarm structures, checked by the engine tests."""

from __future__ import annotations

from shoal.engine.swarm import INDEX_MIN, FamilyPeers, Swarm
from shoal.storage.memory import MemoryStore


def check_family(fam: FamilyPeers, width: int) -> None:
    """The parallel arrays describe the same dense slots, seeders first; addresses are
    unique (an entry is its address); the indexes (kept only for families past INDEX_MIN)
    map every address to its slot, every id to a slot holding it, and count each IP, and
    the id rings link exactly the entries sharing each id: every entry is found by id."""
    n = len(fam)
    assert fam.width == width
    assert len(fam.ids) == n * 20
    assert len(fam.addrs) == n * width
    assert len(fam.meta) == 4 * n
    assert 0 <= fam.seeders <= n
    assert fam.leechers == n - fam.seeders
    addrs = [fam.addr(slot) for slot in range(n)]
    assert len(set(addrs)) == n
    if n > INDEX_MIN:
        assert fam.by_addr is not None
    if fam.by_addr is not None:
        assert fam.by_id is not None and fam.per_ip is not None
        assert len(fam.by_addr) == n
        for slot, a in enumerate(addrs):
            assert fam.by_addr[a] == slot, (a, slot)
        for pid, slot in fam.by_id.items():
            assert fam.peer_id(slot) == pid
        # The id rings: each links exactly the entries sharing one peer_id, both ways.
        ring = fam.ring
        assert ring is not None and len(ring) == 2 * n
        sharing: dict[bytes, int] = {}
        for slot in range(n):
            sharing[fam.peer_id(slot)] = sharing.get(fam.peer_id(slot), 0) + 1
            after = ring[2 * slot]
            assert ring[2 * after + 1] == slot and fam.peer_id(after) == fam.peer_id(slot)
        assert set(fam.by_id) == set(sharing)
        for pid, slot in fam.by_id.items():
            members, s = 1, ring[2 * slot]
            while s != slot:
                members, s = members + 1, ring[2 * s]
            assert members == sharing[pid], (pid, members, sharing[pid])
        ips: dict[bytes, int] = {}
        for a in addrs:
            ips[a[:-2]] = ips.get(a[:-2], 0) + 1
        assert fam.per_ip == ips
    else:
        assert fam.by_id is None and fam.per_ip is None and fam.ring is None
    for slot, a in enumerate(addrs):
        assert fam.find_addr(a) == slot
        found = fam.find(fam.peer_id(slot))
        assert found >= 0 and fam.peer_id(found) == fam.peer_id(slot)


def check_swarm(swarm: Swarm) -> None:
    for fam, width in ((swarm.v4, 6), (swarm.v6, 18)):
        if fam is not None:
            check_family(fam, width)
    seeders, leechers = swarm.counts()
    assert seeders + leechers == len(swarm)
    assert swarm.completed >= 0


def check_store(store: MemoryStore) -> None:
    """Every swarm is consistent, the running totals equal a recount, and the arrival
    order lists every torrent (the native engine checks the same in C)."""
    if store.engine == "native":
        from shoal.storage.native import NativeMemoryStore

        assert isinstance(store, NativeMemoryStore)
        store.check()
        return
    seeders = leechers = completed = 0
    for swarm in store._swarms.values():
        check_swarm(swarm)
        s, le = swarm.counts()
        seeders += s
        leechers += le
        completed += swarm.completed
    tally = store.tally
    assert (tally.seeders, tally.leechers, tally.completed) == (seeders, leechers, completed)
    assert set(store._swarms) <= set(store.order) | set(store._kept)
