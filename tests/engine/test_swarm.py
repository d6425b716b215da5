"""The swarm's building blocks: dense peer lists, their index, picking, and expiry."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.engine.swarm import NO_KEY, FamilyPeers, PeerList, Swarm, _pick
from shoal.errors import ClientError
from shoal.types import Event

from .invariants import check_family, check_peer_list, check_swarm
from .peers import addr4, addr6, peer_id, peer_number, request, split

T0 = 1_000_000


class FixedStart(random.Random):
    """A generator whose ``randrange`` always answers ``start``: pick's run begins there."""

    def __init__(self, start: int) -> None:
        super().__init__(0)
        self.start = start

    def randrange(self, *args: object, **kwargs: object) -> int:
        return self.start


def peer_list(n: int, width: int = 6) -> PeerList:
    lst = PeerList(width)
    for i in range(n):
        lst.append(peer_id(i), addr4(i) if width == 6 else addr6(i), T0 + i, 100 + i)
    return lst


def _slot_of(lst: PeerList, entry: bytes) -> int:
    slots = [s for s in range(len(lst)) if lst.addr(s) == entry]
    assert len(slots) == 1
    return slots[0]


def is_cyclic_run(slots: list[int], order: list[int]) -> bool:
    """``slots`` is a run of consecutive entries of ``order`` read as a circle."""
    if not slots:
        return True
    if len(slots) > len(order) or slots[0] not in order:
        return False
    k = order.index(slots[0])
    return slots == [order[(k + j) % len(order)] for j in range(len(slots))]


# -- PeerList ----------------------------------------------------------------------


def test_append_fills_dense_slots() -> None:
    lst = peer_list(3)
    check_peer_list(lst, 6)
    assert [lst.addr(s) for s in range(3)] == [addr4(0), addr4(1), addr4(2)]
    assert list(lst.seen) == [T0, T0 + 1, T0 + 2]
    assert list(lst.keys) == [100, 101, 102]


def test_remove_moves_the_last_peer_into_the_hole() -> None:
    lst = peer_list(5)
    moved = lst.remove(1)
    assert moved == peer_id(4)
    check_peer_list(lst, 6)
    assert lst.ids == [peer_id(0), peer_id(4), peer_id(2), peer_id(3)]
    assert [lst.addr(s) for s in range(4)] == [addr4(0), addr4(4), addr4(2), addr4(3)]
    assert list(lst.seen) == [T0, T0 + 4, T0 + 2, T0 + 3]
    assert list(lst.keys) == [100, 104, 102, 103]


def test_remove_of_the_last_slot_moves_nobody() -> None:
    lst = peer_list(3)
    assert lst.remove(2) is None
    check_peer_list(lst, 6)
    assert lst.ids == [peer_id(0), peer_id(1)]


def test_remove_of_the_only_peer_empties_the_list() -> None:
    lst = peer_list(1)
    assert lst.remove(0) is None
    check_peer_list(lst, 6)
    assert len(lst) == 0 and lst.addrs == b""


def test_remove_works_for_ipv6_width() -> None:
    lst = peer_list(3, width=18)
    assert lst.remove(0) == peer_id(2)
    check_peer_list(lst, 18)
    assert [lst.addr(s) for s in range(2)] == [addr6(2), addr6(1)]


def test_pick_from_an_empty_list_is_empty() -> None:
    assert PeerList(6).pick(5, -1, random.Random(0), True) == (b"", [])


@pytest.mark.parametrize("n", range(8))
def test_pick_exhaustively_for_small_lists(n: int) -> None:
    """Every count, skipped slot and starting slot: the reply is a contiguous run (round
    the end of the list, stepping over the skipped slot) of distinct peers, as many as
    asked for or as there are, never the skipped one, with matching ids."""
    lst = peer_list(n)
    for skip in range(-1, n):
        order = [s for s in range(n) if s != skip]
        for count in range(-1, n + 2):
            want = min(max(count, 0), len(order))
            for start in range(max(n, 1)):
                addrs, ids = lst.pick(count, skip, FixedStart(start), True)
                slots = [_slot_of(lst, e) for e in split(addrs, 6)]
                assert len(slots) == want
                assert len(set(slots)) == len(slots)
                assert skip not in slots
                assert ids == [lst.ids[s] for s in slots]
                assert is_cyclic_run(slots, order)
                if 0 < want < len(order):
                    first = next(s for s in [*range(start, n), *range(start)] if s != skip)
                    assert slots[0] == first
                _, no_ids = lst.pick(count, skip, FixedStart(start), False)
                assert no_ids == []


@settings(max_examples=300)
@given(
    n=st.integers(0, 60),
    count=st.integers(-2, 70),
    skip_choice=st.integers(-1, 60),
    seed=st.integers(0, 2**32),
)
def test_pick_returns_contiguous_distinct_entries(
    n: int, count: int, skip_choice: int, seed: int
) -> None:
    lst = peer_list(n)
    skip = skip_choice if skip_choice < n else -1
    order = [s for s in range(n) if s != skip]
    addrs, ids = lst.pick(count, skip, random.Random(seed), True)
    slots = [_slot_of(lst, e) for e in split(addrs, 6)]
    assert len(slots) == len(set(slots)) == min(max(count, 0), len(order))
    assert skip not in slots
    assert is_cyclic_run(slots, order)
    assert ids == [lst.ids[s] for s in slots]


def test_pick_reaches_every_peer() -> None:
    lst = peer_list(10)
    rng = random.Random(3)
    seen: set[int] = set()
    for _ in range(200):
        addrs, _ = lst.pick(2, 4, rng, False)
        seen.update(_slot_of(lst, e) for e in split(addrs, 6))
    assert seen == set(range(10)) - {4}


# -- FamilyPeers ---------------------------------------------------------------------


def test_index_codes_hold_slot_and_role() -> None:
    fam = FamilyPeers(6)
    assert fam.insert(peer_id(1), addr4(1), T0, NO_KEY, seeder=False) == 0
    assert fam.insert(peer_id(2), addr4(2), T0, NO_KEY, seeder=True) == 1
    assert fam.insert(peer_id(3), addr4(3), T0, NO_KEY, seeder=False) == 2
    assert fam.insert(peer_id(4), addr4(4), T0, NO_KEY, seeder=True) == 3
    check_family(fam, 6)


def test_family_remove_reindexes_the_moved_peer() -> None:
    fam = FamilyPeers(6)
    for i in range(4):
        fam.insert(peer_id(i), addr4(i), T0, NO_KEY, seeder=False)
    fam.remove(fam.index[peer_id(0)])
    assert peer_id(0) not in fam.index
    assert fam.index[peer_id(3)] == 0
    check_family(fam, 6)


def test_family_expire_only_checks_the_given_slots() -> None:
    fam = FamilyPeers(6)
    for i in range(6):
        fam.insert(peer_id(i), addr4(i), T0, NO_KEY, seeder=False)
    assert fam.expire(T0 + 1, fam.leechers, 0, 1, 3) == 2
    check_family(fam, 6)
    assert len(fam) == 4
    assert fam.expire(T0 + 1, fam.leechers, 0, 0, 100) == 4
    assert len(fam) == 0


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 15), st.booleans(), st.booleans()), max_size=80))
def test_family_index_stays_consistent(ops: list[tuple[int, bool, bool]]) -> None:
    """Random inserts, removals and role changes against a dict."""
    fam = FamilyPeers(6)
    model: dict[int, bool] = {}
    for n, seeder, remove in ops:
        code = fam.index.get(peer_id(n))
        assert (code is not None) == (n in model)
        if code is not None:
            assert bool(code & 1) == model[n]
            fam.remove(code)
            del model[n]
        if not remove:
            fam.insert(peer_id(n), addr4(n), T0, n, seeder)
            model[n] = seeder
        check_family(fam, 6)
        for pid, code in fam.index.items():
            lst = fam.seeders if code & 1 else fam.leechers
            assert lst.addr(code >> 1) == addr4(peer_number(pid))
            assert lst.keys[code >> 1] == peer_number(pid)
    assert sorted(peer_number(p) for p in fam.index) == sorted(model)


# -- _pick: the seeder/leecher mix ---------------------------------------------------


def family(seeders: int, leechers: int) -> FamilyPeers:
    fam = FamilyPeers(6)
    for i in range(seeders):
        fam.insert(peer_id(i), addr4(i), T0, NO_KEY, seeder=True)
    for i in range(100, 100 + leechers):
        fam.insert(peer_id(i), addr4(i), T0, NO_KEY, seeder=False)
    return fam


def roles(addrs: bytes) -> list[str]:
    return ["S" if peer < 100 else "L" for peer in (_num(e) for e in split(addrs, 6))]


def _num(entry: bytes) -> int:
    return int.from_bytes(entry[1:4], "big")


def test_leecher_mix_is_in_proportion_to_the_swarm_seeders_first() -> None:
    fam = family(30, 10)
    addrs, _ = _pick(fam, 8, -1, True, random.Random(0), False)
    assert roles(addrs) == ["S"] * 6 + ["L"] * 2


def test_leecher_mix_is_full_and_proportional_for_every_small_swarm() -> None:
    for seeders in range(6):
        for leechers in range(6):
            fam = family(seeders, leechers)
            for count in range(1, 13):
                addrs, _ = _pick(fam, count, -1, True, random.Random(count), False)
                got = roles(addrs)
                assert len(got) == min(count, seeders + leechers)
                assert got == sorted(got, key=lambda r: r != "S")
                if seeders + leechers > count:
                    share = count * seeders / (seeders + leechers)
                    assert abs(got.count("S") - share) <= 1


def test_seeder_pick_takes_leechers_only() -> None:
    fam = family(30, 10)
    addrs, _ = _pick(fam, 50, -1, False, random.Random(0), False)
    assert roles(addrs) == ["L"] * 10


@pytest.mark.parametrize("seeder", [True, False])
def test_pick_skips_the_requester_in_either_role(seeder: bool) -> None:
    fam = family(3, 3)
    own = fam.index[peer_id(1 if seeder else 101)]
    for count in range(1, 7):
        for seed in range(20):
            addrs, ids = _pick(fam, count, own, True, random.Random(seed), True)
            got = [_num(e) for e in split(addrs, 6)]
            assert (1 if seeder else 101) not in got
            assert len(got) == len(set(got)) == min(count, 5)
            assert [peer_number(i) for i in ids] == got


# -- Swarm -------------------------------------------------------------------------


def announce(swarm: Swarm, n: int, now: int, **kwargs: Any) -> tuple[bytes, bytes]:
    p4, p6, _, _ = swarm.announce(request(n, **kwargs), now, 50, 150, random.Random(0))
    check_swarm(swarm)
    return p4, p6


def test_swarm_moves_a_peer_in_place() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0, key=9)
    announce(swarm, 1, T0 + 1, key=9, variant=1)
    assert swarm.v4 is not None
    code = swarm.v4.index[peer_id(1)]
    assert swarm.v4.leechers.addr(code >> 1) == addr4(1, 1)
    assert swarm.v4.leechers.seen[code >> 1] == T0 + 1


def test_swarm_refusal_leaves_the_peer_untouched() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0, key=9)
    with pytest.raises(ClientError):
        announce(swarm, 1, T0 + 5, key=8, variant=1, left=0)
    assert swarm.v4 is not None
    lst = swarm.v4.leechers
    assert (lst.addr(0), lst.seen[0], lst.keys[0]) == (addr4(1), T0, 9)
    check_swarm(swarm)


def test_swarm_role_change_keeps_key_and_address() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0, key=9)
    announce(swarm, 1, T0 + 1, left=0, event=Event.COMPLETED)
    assert swarm.v4 is not None
    code = swarm.v4.index[peer_id(1)]
    assert code & 1
    lst = swarm.v4.seeders
    assert (lst.addr(code >> 1), lst.seen[code >> 1], lst.keys[code >> 1]) == (
        addr4(1),
        T0 + 1,
        9,
    )
    assert swarm.completed == 1


def test_swarm_expire_removes_every_silent_peer() -> None:
    swarm = Swarm()
    for n in range(6):
        announce(swarm, n, T0 if n % 2 else T0 + 10, left=n % 3, v6=n > 3)
    assert swarm.expire(T0 + 1) == 3
    check_swarm(swarm)
    assert len(swarm) == 3


@pytest.mark.parametrize(("seeders", "leechers"), [(1, 1), (1, 3), (3, 1), (3, 3), (2, 5)])
def test_lazy_expiry_reaches_a_silent_peer_in_a_steady_swarm(seeders: int, leechers: int) -> None:
    """A silent leecher among live peers that keep announcing goes without any sweep.
    (The cursor used to check a run clipped at the seeder/leecher boundary, so in some
    steady swarms the first leecher was never checked.)"""
    swarm = Swarm()
    live = [(n, 0) for n in range(seeders)] + [(n, 100) for n in range(101, 100 + leechers)]
    announce(swarm, 100, T0)  # the silent one, in leecher slot 0
    for n, left in live:
        announce(swarm, n, T0 + 100, left=left)
    for i in range(4 * (seeders + leechers)):
        n, left = live[i % len(live)]
        announce(swarm, n, T0 + 151 + i, left=left)
    assert swarm.v4 is not None and peer_id(100) not in swarm.v4.index
    assert len(swarm) == len(live)


def test_stopped_for_a_family_never_seen_creates_nothing() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0)
    assert announce(swarm, 1, T0, v6=True, event=Event.STOPPED) == (b"", b"")
    assert swarm.v6 is None
