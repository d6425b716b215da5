"""Internal consistency of the in-memory swarm structures, checked by the engine tests."""

from __future__ import annotations

from shoal.engine.store import MemoryStore
from shoal.engine.swarm import FamilyPeers, PeerList, Swarm


def check_peer_list(lst: PeerList, width: int) -> None:
    """The parallel arrays of a :class:`PeerList` describe the same slots."""
    n = len(lst.ids)
    assert lst.width == width
    assert len(lst) == n
    assert len(lst.addrs) == n * width
    assert len(lst.seen) == n
    assert len(lst.keys) == n


def check_family(fam: FamilyPeers, width: int) -> None:
    """Every index entry points at a slot holding its id, and every slot is indexed."""
    check_peer_list(fam.seeders, width)
    check_peer_list(fam.leechers, width)
    assert len(fam.index) == len(fam.seeders) + len(fam.leechers) == len(fam)
    for role, lst in ((1, fam.seeders), (0, fam.leechers)):
        for slot, pid in enumerate(lst.ids):
            assert fam.index.get(pid) == slot * 2 + role, (pid, slot, role)
    for pid, code in fam.index.items():
        lst = fam.seeders if code & 1 else fam.leechers
        assert lst.ids[code >> 1] == pid


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
