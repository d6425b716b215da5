"""The in-memory store: the conformance suite, plus what only this store promises."""

from __future__ import annotations

from support.invariants import check_store
from support.peers import TORRENT, request

from shoal.storage.base import PeerStore, StoreSettings
from shoal.storage.memory import MemoryStore
from shoal.types import Event

from .store_conformance import T0, TIMEOUT, StoreConformance


class TestMemoryStore(StoreConformance):
    def make_store(self) -> PeerStore:
        return MemoryStore()

    def check_invariants(self, store: PeerStore) -> None:
        assert isinstance(store, MemoryStore)
        check_store(store)


def expiring_store() -> MemoryStore:
    return MemoryStore(StoreSettings(peer_timeout=TIMEOUT))


def test_default_settings_are_used_without_any() -> None:
    assert MemoryStore().settings == StoreSettings()


def test_lazy_expiry_reaches_every_peer_within_a_pass_of_announces() -> None:
    """Each announce checks a couple of peers at a rolling cursor over seeders and
    leechers together, so a swarm of N silent peers is clean after about N/2 announces."""
    store = expiring_store()
    for n in range(1, 8):
        store.announce(request(n, left=0, numwant=1), T0)
    for n in range(11, 24):
        store.announce(request(n, numwant=1), T0)
    store.announce(request(99), T0 + TIMEOUT + 1)
    for i in range(20):
        store.announce(request(99), T0 + TIMEOUT + 2 + i)
    swarm = store.swarms[TORRENT]
    assert swarm.counts() == (0, 1)
    check_store(store)


def test_lazy_expiry_checks_both_families() -> None:
    store = expiring_store()
    for n in range(1, 5):
        store.announce(request(n, v6=True, numwant=1), T0)
    for i in range(10):
        store.announce(request(99), T0 + TIMEOUT + 1 + i)
    assert store.swarms[TORRENT].counts() == (0, 1)


def test_sweep_examines_about_budget_peers_per_step() -> None:
    store = expiring_store()
    for t in range(10):
        hash_ = bytes([t]) * 20
        for n in range(5):
            store.announce(request(n, torrent=hash_, numwant=1), T0)
    step = store.sweep(T0 + 1, budget=12)
    assert not step.finished and step.swarms_examined == 2  # 6 "peers" each (5 + the swarm)
    assert sum(1 for _ in store.swarms) == 10


def test_sweep_works_through_a_big_swarm_in_budget_sized_steps() -> None:
    """A swarm larger than the budget is expired over several steps, none examining much
    more than the budget, and the pass still removes every silent peer and only those."""
    store = expiring_store()
    for n in range(300):  # 300 silent peers, in both families and both roles
        store.announce(request(n, v6=n % 3 == 0, left=0 if n % 4 == 0 else 100, numwant=1), T0)
    for n in range(300, 340):  # 40 that keep announcing (no one is silent for long yet)
        store.announce(request(n, v6=n % 2 == 0, numwant=1), T0 + TIMEOUT)
    assert store.swarms[TORRENT].counts() == (75, 265)
    later = T0 + TIMEOUT + 1
    steps = []
    while True:
        step = store.sweep(later, budget=25)
        steps.append(step)
        check_store(store)
        if step.finished:
            break
    assert len(steps) >= 340 // 26
    assert sum(s.peers_removed for s in steps) == 300
    assert store.swarms[TORRENT].counts() == (0, 40)


def test_sweep_removes_an_emptied_swarm_object() -> None:
    store = expiring_store()
    store.announce(request(1), T0)
    store.announce(request(1, event=Event.STOPPED), T0)
    assert TORRENT in store.swarms
    store.sweep(T0 + TIMEOUT + 1, budget=100)
    assert TORRENT not in store.swarms


def test_stopped_for_an_unknown_torrent_creates_no_swarm() -> None:
    store = MemoryStore()
    store.announce(request(1, event=Event.STOPPED), T0)
    assert store.swarms == {}
