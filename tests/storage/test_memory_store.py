"""The in-memory store: the conformance suite, plus what only this store promises."""

from __future__ import annotations

import pytest
from support.engines import require_engine
from support.invariants import check_store
from support.peers import TORRENT, request

from shoal.engine.swarm import INDEX_MIN
from shoal.storage.base import PeerStore, StoreSettings
from shoal.storage.memory import SWARM_COST, MemoryStore
from shoal.types import ROLE_LEECHER, ROLE_NONE, Event

from .store_conformance import T0, TIMEOUT, StoreConformance


class TestMemoryStore(StoreConformance):
    """The pure-Python engine."""

    engine = "python"

    def make_store(self) -> PeerStore:
        store = MemoryStore(engine=self.engine)
        assert store.engine == self.engine
        return store

    def check_invariants(self, store: PeerStore) -> None:
        assert isinstance(store, MemoryStore)
        check_store(store)


class TestNativeMemoryStore(TestMemoryStore):
    """The compiled engine, through the same suite."""

    engine = "native"

    @pytest.fixture(autouse=True)
    def _built(self) -> None:
        require_engine("native")


def expiring_store(engine: str) -> MemoryStore:
    return MemoryStore(StoreSettings(peer_timeout=TIMEOUT), engine=engine)


def order_of(store: MemoryStore) -> list[bytes]:
    """The store's torrents in arrival order (the sweep's and the walks' order)."""
    if store.engine == "native":
        from shoal.storage.native import NativeMemoryStore

        assert isinstance(store, NativeMemoryStore)
        return store.table.hashes(0, store.table.order_len())
    return list(store.order)


def test_default_settings_are_used_without_any(engine: str) -> None:
    assert MemoryStore(engine=engine).settings == StoreSettings()


def test_lazy_expiry_reaches_every_peer_within_a_pass_of_announces(engine: str) -> None:
    """Each announce checks a couple of peers at a rolling cursor over seeders and
    leechers together, so a swarm of N silent peers is clean after about N/2 announces."""
    store = expiring_store(engine)
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


def test_lazy_expiry_checks_both_families(engine: str) -> None:
    store = expiring_store(engine)
    for n in range(1, 5):
        store.announce(request(n, v6=True, numwant=1), T0)
    for i in range(10):
        store.announce(request(99), T0 + TIMEOUT + 1 + i)
    assert store.swarms[TORRENT].counts() == (0, 1)


def test_sweep_examines_about_budget_peers_per_step(engine: str) -> None:
    store = expiring_store(engine)
    for t in range(10):
        hash_ = bytes([t]) * 20
        for n in range(5):
            store.announce(request(n, torrent=hash_, numwant=1), T0)
    step = store.sweep(T0 + 1, budget=2 * (5 + SWARM_COST))
    # Each swarm costs its 5 peers and SWARM_COST for the visit itself.
    assert not step.finished and step.swarms_examined == 2
    assert sum(1 for _ in store.swarms) == 10


def test_sweep_works_through_a_big_swarm_in_budget_sized_steps(engine: str) -> None:
    """A swarm larger than the budget is expired over several steps, none examining much
    more than the budget, and the pass still removes every silent peer and only those."""
    store = expiring_store(engine)
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


def test_sweep_removes_an_emptied_swarm_object(engine: str) -> None:
    store = expiring_store(engine)
    store.announce(request(1), T0)
    store.announce(request(1, event=Event.STOPPED), T0)
    assert TORRENT in store.swarms
    store.sweep(T0 + TIMEOUT + 1, budget=100)
    assert TORRENT not in store.swarms


def test_stopped_for_an_unknown_torrent_creates_no_swarm(engine: str) -> None:
    store = MemoryStore(engine=engine)
    store.announce(request(1, event=Event.STOPPED), T0)
    assert store.swarms == {}


def test_a_walk_meets_every_torrent_once_though_a_sweep_pass_drops_some_midway(engine: str) -> None:
    """A cursor stays valid when a sweep pass rebuilds the torrent order: the walk goes on
    where it was, over the torrents that are left."""
    store = expiring_store(engine)
    hashes = [bytes([n]) * 20 for n in range(30)]
    for n, hash_ in enumerate(hashes):
        store.announce(request(1, torrent=hash_, event=Event.STARTED), T0)
        if n % 3 == 0:  # every third torrent empties, and a sweep will drop it
            store.announce(request(1, torrent=hash_, event=Event.STOPPED), T0)
    for hash_ in hashes:
        if hash_[0] % 3:
            store.announce(request(1, torrent=hash_), T0 + TIMEOUT)  # keep the others alive
    cursor = store.cursor()
    met = [h for h, _ in store.scrape_step(cursor, 14)]
    while not store.sweep(T0 + TIMEOUT + 1, budget=1000).finished:
        pass
    while not store.walked(cursor):
        met += [h for h, _ in store.scrape_step(cursor, 4)]
    survivors = [h for h in hashes if h[0] % 3]
    assert set(survivors) <= set(met)
    assert [h for h in met if h[0] % 3] == survivors  # each once, in order
    assert order_of(store) == survivors
    check_store(store)


def test_top_step_keeps_the_largest_swarms(engine: str) -> None:
    store = MemoryStore(engine=engine)
    for t in range(20):
        for n in range(t % 7):
            store.announce(request(n, torrent=bytes([t]) * 20, numwant=0), T0)
    best: list[tuple[int, bytes]] = []
    cursor = store.cursor()
    while not store.walked(cursor):
        store.top_step(cursor, 3, 4, best)
    assert sorted(size for size, _ in best) == [5, 5, 6, 6]
    assert sorted(best)[-1][0] == max(len(s) for s in store.swarms.values())


@pytest.mark.parametrize("crowd", [3, INDEX_MIN + 6], ids=["searched", "indexed"])
@pytest.mark.parametrize("leaving", ["later", "earlier"])
def test_an_entry_sharing_its_peer_id_is_still_found_by_id_when_the_other_leaves(
    engine: str, crowd: int, leaving: str
) -> None:
    """Two entries may carry one peer_id (the second, from another address without the
    first's key, is another peer). When either leaves, the one left is still found by its
    id, so its key still moves it to a new address: in a family past INDEX_MIN, which looks
    ids up in an index, as in a small one, which searches them."""
    store = MemoryStore(engine=engine)
    for n in range(crowd):
        store.announce(request(n), T0)
    store.announce(request(500, key=1), T0)  # the earlier entry, at variant 0
    store.announce(request(500, variant=1, key=2), T0)  # the later one: another peer
    assert store.scrape([TORRENT])[0].incomplete == crowd + 2
    gone, kept = (1, 0) if leaving == "later" else (0, 1)
    stop = store.announce(request(500, variant=gone, event=Event.STOPPED), T0 + 1)
    assert stop.role_before == ROLE_LEECHER
    # The entry left proves its key from a third address: it moves there, not joins again.
    moved = store.announce(request(500, variant=2, key=1 + kept), T0 + 2)
    assert moved.role_before == ROLE_LEECHER
    assert moved.incomplete == crowd + 1
    assert store.announce(request(500, variant=kept, event=Event.STOPPED), T0 + 3
                          ).role_before == ROLE_NONE  # moved away: nothing left there
    check_store(store)


@pytest.mark.parametrize(("keep", "uploaded", "most"), [
    (False, 5, 46), (True, 5, 58), (True, 2**50, 62),
], ids=["no totals", "48-bit totals", "64-bit totals"])
def test_the_compiled_table_holds_a_ten_peer_torrent_in_few_bytes_a_peer(
    keep: bool, uploaded: int, most: int
) -> None:
    """Issue 11's layout, in the bytes the table allocates (malloc's own overhead aside): a
    34-byte record a peer and one 72-byte block a torrent (header and IPv4 records), so
    ten peers a torrent stay under 50 bytes a peer; kept totals add 12 bytes a peer while
    they fit in 48 bits, 16 once one does not."""
    require_engine("native")
    from shoal.storage.native import NativeMemoryStore

    store = MemoryStore(StoreSettings(keep_totals=keep), engine="native")
    assert isinstance(store, NativeMemoryStore)
    empty = store.memory()
    for t in range(2000):
        torrent = t.to_bytes(4, "big") * 5
        for n in range(10):
            req = request(t * 10 + n, torrent=torrent)
            req.uploaded = uploaded
            store.announce(req, T0)
    assert store.totals().leechers == 20_000
    per_peer = (store.memory() - empty) / 20_000
    assert most - 4 < per_peer <= most
    store.check()
