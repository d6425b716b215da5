"""Internal consistency of the in-memory swarm structures, checked by the engine tests."""

from __future__ import annotations

from shoal.engine.store import MemoryStore
from shoal.engine.swarm import INDEX_MIN, FamilyPeers, Swarm


def check_family(fam: FamilyPeers, width: int) -> None:
    """The parallel arrays describe the same dense slots, seeders first; the index (kept
    only for families past INDEX_MIN) maps every id to its slot; ids are unique."""
    n = len(fam)
    assert fam.width == width
    assert len(fam.ids) == n * 20
    assert len(fam.addrs) == n * width
    assert len(fam.meta) == 2 * n
    assert 0 <= fam.seeders <= n
    assert fam.leechers == n - fam.seeders
    ids = [fam.peer_id(slot) for slot in range(n)]
    assert len(set(ids)) == n
    if n > INDEX_MIN:
        assert fam.index is not None
    if fam.index is not None:
        assert len(fam.index) == n
        for slot, pid in enumerate(ids):
            assert fam.index[pid] == slot, (pid, slot)
    for slot, pid in enumerate(ids):
        assert fam.find(pid) == slot


def check_swarm(swarm: Swarm) -> None:
    for fam, width in ((swarm.v4, 6), (swarm.v6, 18)):
        if fam is not None:
            check_family(fam, width)
    seeders, leechers = swarm.counts()
    assert seeders + leechers == len(swarm)
    assert swarm.completed >= 0


def check_store(store: MemoryStore) -> None:
    for swarm in store.swarms.values():
        check_swarm(swarm)
