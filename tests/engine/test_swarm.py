"""The swarm's building blocks: dense per-family slots (seeders first), the id index and
the id search, picking, expiry, and the Swarm rules built on them."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.invariants import check_family, check_swarm
from support.peers import addr, addr4, addr6, decode_addr, peer_id, request, split

from shoal.engine.swarm import INDEX_MIN, NO_KEY, FamilyPeers, Swarm
from shoal.types import Event

T0 = 1_000_000


class FixedRandom(random.Random):
    """A generator whose ``random()`` always answers ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def starting_at(start: int, lo: int, hi: int) -> FixedRandom:
    """A generator that makes ``pick(lo, hi, ...)`` begin its run at slot ``start``."""
    return FixedRandom((start - lo + 0.5) / (hi - lo))


def seen_of(n: int) -> int:
    return T0 + n


def key_of(n: int) -> int:
    return 1000 + n


def family(seeders: int, leechers: int, width: int = 6) -> FamilyPeers:
    """Seeders 0..seeders-1 then leechers 100.., inserted in that order, so peer ``k`` of
    each role sits in slot ``k`` of its region; each peer's seen time and key encode it."""
    fam = FamilyPeers(width)
    for n in [*range(seeders), *range(100, 100 + leechers)]:
        fam.insert(peer_id(n), addr(n, width == 18), seen_of(n), key_of(n), n < 100)
    check_family(fam, width)
    return fam


def number(fam: FamilyPeers, slot: int) -> int:
    return decode_addr(fam.addr(slot))[0]


def layout(fam: FamilyPeers) -> list[int]:
    """The peer number in each slot."""
    return [number(fam, slot) for slot in range(len(fam))]


def snapshot(fam: FamilyPeers) -> dict[bytes, tuple[bytes, int, int, bool]]:
    """Every peer's address, seen time, key and role, by peer id."""
    return {
        fam.peer_id(s): (fam.addr(s), fam.seen(s), fam.key(s), fam.is_seeder(s))
        for s in range(len(fam))
    }


def raw(fam: FamilyPeers) -> tuple[bytes, bytes, list[int], int, dict[bytes, int] | None]:
    index = dict(fam.by_addr) if fam.by_addr is not None else None
    return bytes(fam.addrs), bytes(fam.ids), list(fam.meta), fam.seeders, index


def slots_of(fam: FamilyPeers, addrs: bytes) -> list[int]:
    where = {fam.addr(s): s for s in range(len(fam))}
    return [where[e] for e in split(addrs, fam.width)]


def is_cyclic_run(slots: list[int], order: list[int]) -> bool:
    """``slots`` is a run of consecutive entries of ``order`` read as a circle."""
    if not slots:
        return True
    if len(slots) > len(order) or slots[0] not in order:
        return False
    k = order.index(slots[0])
    return slots == [order[(k + j) % len(order)] for j in range(len(slots))]


def check_pick(
    fam: FamilyPeers, lo: int, hi: int, count: int, skip: int, rng: random.Random
) -> list[int]:
    """pick's promises whatever the start: as many distinct peers as asked for or as
    there are in ``lo:hi`` besides ``skip``, as a run round the range stepping over
    ``skip``, with the ids matching the addresses. Returns the slots picked."""
    state = rng.getstate()
    addrs, ids = fam.pick(lo, hi, count, skip, rng, True)
    slots = slots_of(fam, addrs)
    order = [s for s in range(lo, hi) if s != skip]
    assert len(slots) == min(max(count, 0), len(order))
    assert len(set(slots)) == len(slots)
    assert skip not in slots
    assert all(lo <= s < hi for s in slots)
    assert is_cyclic_run(slots, order), (slots, order)
    assert ids == b"".join(fam.peer_id(s) for s in slots)
    rng.setstate(state)
    assert fam.pick(lo, hi, count, skip, rng, False) == (addrs, b"")
    return slots


# -- pick ------------------------------------------------------------------------------


def test_pick_from_an_empty_range_is_empty() -> None:
    assert FamilyPeers(6).pick(0, 0, 5, -1, random.Random(0), True) == (b"", b"")
    fam = family(2, 2)
    assert fam.pick(2, 2, 5, -1, random.Random(0), True) == (b"", b"")
    assert fam.pick(1, 2, 5, 1, random.Random(0), True) == (b"", b"")


@pytest.mark.parametrize("n", range(7))
def test_pick_exhaustively_for_small_ranges(n: int) -> None:
    """Every range, count, skipped slot (inside the range, outside it, none) and start."""
    fam = family(n // 2, n - n // 2)
    for lo in range(n + 1):
        for hi in range(lo, n + 1):
            for skip in range(-1, n):
                order = [s for s in range(lo, hi) if s != skip]
                for count in range(-1, hi - lo + 2):
                    want = min(max(count, 0), len(order))
                    for start in range(lo, hi):
                        slots = check_pick(fam, lo, hi, count, skip, starting_at(start, lo, hi))
                        if 0 < want < len(order):
                            ring = [*range(start, hi), *range(lo, start)]
                            assert slots[0] == next(s for s in ring if s != skip)
                        elif want:
                            assert sorted(slots) == order


@pytest.mark.parametrize("n", range(1, 7))
def test_pick_with_extreme_random_values(n: int) -> None:
    """random() at 0.0 starts at ``lo``, and its largest value at ``hi - 1``."""
    fam = family(0, n)
    for lo in range(n):
        for hi in range(lo + 1, n + 1):
            for skip in range(-1, n):
                for count in range(1, hi - lo - (lo <= skip < hi)):
                    first = check_pick(fam, lo, hi, count, skip, FixedRandom(0.0))[0]
                    assert first == (lo if skip != lo else lo + 1)
                    top = FixedRandom(math.nextafter(1.0, 0.0))
                    first = check_pick(fam, lo, hi, count, skip, top)[0]
                    assert first == (hi - 1 if skip != hi - 1 else lo)


@settings(max_examples=200, deadline=None)
@given(
    width=st.sampled_from([6, 18]),
    n=st.integers(0, 60),
    bounds=st.tuples(st.integers(0, 60), st.integers(0, 60)),
    count=st.integers(-2, 70),
    skip=st.integers(-1, 60),
    seed=st.integers(0, 2**32),
)
def test_pick_returns_a_run_of_distinct_peers(
    width: int, n: int, bounds: tuple[int, int], count: int, skip: int, seed: int
) -> None:
    fam = family(n // 3, n - n // 3, width)
    lo, hi = sorted(min(b, n) for b in bounds)
    check_pick(fam, lo, hi, count, skip if skip < n else -1, random.Random(seed))


def test_pick_reaches_every_peer() -> None:
    fam = family(0, 10)
    rng = random.Random(3)
    seen: set[int] = set()
    for _ in range(200):
        seen.update(check_pick(fam, 0, 10, 2, 4, rng))
    assert seen == set(range(10)) - {4}


# -- pick_for: the seeder/leecher mix --------------------------------------------------


def roles(fam: FamilyPeers, addrs: bytes) -> str:
    return "".join("S" if fam.is_seeder(s) else "L" for s in slots_of(fam, addrs))


def test_leecher_mix_is_in_proportion_to_the_swarm_seeders_first() -> None:
    fam = family(30, 10)
    addrs, _ = fam.pick_for(8, -1, True, random.Random(0), False)
    assert roles(fam, addrs) == "SSSSSSLL"


@pytest.mark.parametrize("width", [6, 18])
def test_leecher_mix_for_every_small_swarm_and_skip(width: int) -> None:
    """Full when it can be, seeders first, the seeder share within rounding of the swarm's
    (the requester left out of both), never the requester, ids matching."""
    for seeders in range(6):
        for leechers in range(6):
            fam = family(seeders, leechers, width)
            total = seeders + leechers
            for skip in range(-1, total):
                n_seed = seeders - (0 <= skip < seeders)
                n_leech = leechers - (skip >= seeders)
                for count in range(0, 13):
                    addrs, ids = fam.pick_for(count, skip, True, random.Random(count), True)
                    slots = slots_of(fam, addrs)
                    got = roles(fam, addrs)
                    assert len(got) == min(count, n_seed + n_leech)
                    assert got == "S" * got.count("S") + "L" * got.count("L")
                    assert len(set(slots)) == len(slots) and skip not in slots
                    assert ids == b"".join(fam.peer_id(s) for s in slots)
                    if n_seed + n_leech > count:
                        share = count * n_seed / (n_seed + n_leech)
                        assert abs(got.count("S") - share) <= 0.5
                    else:
                        assert got.count("S") == n_seed


@pytest.mark.parametrize("skip", [-1, 0, 29, 30, 39])
def test_seeder_is_sent_leechers_only(skip: int) -> None:
    fam = family(30, 10)
    for count in (1, 5, 9, 10, 50):
        addrs, ids = fam.pick_for(count, skip, False, random.Random(count), True)
        slots = slots_of(fam, addrs)
        assert all(s >= 30 for s in slots) and skip not in slots
        assert len(slots) == len(set(slots)) == min(count, 10 - (skip >= 30))
        assert ids == b"".join(fam.peer_id(s) for s in slots)


@pytest.mark.parametrize("seeder", [True, False])
def test_pick_for_skips_the_requester_in_either_region(seeder: bool) -> None:
    fam = family(3, 3)
    own = fam.find(peer_id(1 if seeder else 101))
    assert fam.is_seeder(own) == seeder
    for count in range(1, 7):
        for seed in range(20):
            addrs, _ = fam.pick_for(count, own, True, random.Random(seed), False)
            got = [decode_addr(e)[0] for e in split(addrs, 6)]
            assert (1 if seeder else 101) not in got
            assert len(got) == len(set(got)) == min(count, 5)


# -- insert, remove, set_role, update --------------------------------------------------


def test_family_layout_is_seeders_then_leechers_in_insertion_order() -> None:
    fam = family(3, 3)
    assert layout(fam) == [0, 1, 2, 100, 101, 102]
    assert (fam.seeders, fam.leechers, len(fam)) == (3, 3, 6)
    assert [fam.seen(s) for s in range(6)] == [seen_of(n) for n in layout(fam)]
    assert [fam.key(s) for s in range(6)] == [key_of(n) for n in layout(fam)]


def test_seeder_insert_moves_the_first_leecher_to_the_end() -> None:
    fam = FamilyPeers(6)
    assert fam.insert(peer_id(100), addr4(100), T0, 7, seeder=False) == 0
    assert fam.insert(peer_id(101), addr4(101), T0, 8, seeder=False) == 1
    assert fam.insert(peer_id(1), addr4(1), T0 + 1, 9, seeder=True) == 0
    assert layout(fam) == [1, 101, 100]
    assert [fam.key(s) for s in range(3)] == [9, 8, 7]
    assert fam.insert(peer_id(2), addr4(2), T0, 10, seeder=True) == 1
    assert layout(fam) == [1, 2, 100, 101]
    assert fam.insert(peer_id(102), addr4(102), T0, 11, seeder=False) == 4
    check_family(fam, 6)


@pytest.mark.parametrize("width", [6, 18])
@settings(max_examples=50, deadline=None)
@given(roles_=st.lists(st.booleans(), max_size=40))
def test_insert_returns_the_new_peer_slot_and_keeps_seeders_first(
    width: int, roles_: list[bool]
) -> None:
    fam = FamilyPeers(width)
    for n, seeder in enumerate(roles_):
        before = snapshot(fam)
        slot = fam.insert(peer_id(n), addr(n, width == 18), seen_of(n), key_of(n), seeder)
        assert fam.peer_id(slot) == peer_id(n)
        assert fam.addr(slot) == addr(n, width == 18)
        assert (fam.seen(slot), fam.key(slot), fam.is_seeder(slot)) == (
            seen_of(n),
            key_of(n),
            seeder,
        )
        after = snapshot(fam)
        del after[peer_id(n)]
        assert after == before
        check_family(fam, width)
    assert fam.seeders == sum(roles_)


def test_remove_a_seeder_fills_both_holes() -> None:
    fam = family(3, 3)
    fam.remove(0)
    assert layout(fam) == [2, 1, 102, 100, 101]
    assert fam.seeders == 2
    assert [fam.key(s) for s in range(5)] == [key_of(n) for n in layout(fam)]
    assert [fam.seen(s) for s in range(5)] == [seen_of(n) for n in layout(fam)]
    check_family(fam, 6)


def test_remove_the_last_seeder() -> None:
    fam = family(3, 3)
    fam.remove(2)
    assert layout(fam) == [0, 1, 102, 100, 101]
    assert fam.seeders == 2
    check_family(fam, 6)


def test_remove_a_seeder_when_there_are_no_leechers() -> None:
    fam = family(3, 0)
    fam.remove(0)
    assert layout(fam) == [2, 1]
    assert fam.seeders == 2
    check_family(fam, 6)


def test_remove_a_leecher_moves_the_last_peer_into_the_hole() -> None:
    fam = family(3, 3)
    fam.remove(3)
    assert layout(fam) == [0, 1, 2, 102, 101]
    assert fam.seeders == 3
    assert [fam.key(s) for s in range(5)] == [key_of(n) for n in layout(fam)]
    check_family(fam, 6)


def test_remove_the_last_slot_moves_nobody() -> None:
    fam = family(3, 3)
    fam.remove(5)
    assert layout(fam) == [0, 1, 2, 100, 101]
    fam = family(2, 0)
    fam.remove(1)
    assert layout(fam) == [0] and fam.seeders == 1
    check_family(fam, 6)


@pytest.mark.parametrize(("width", "seeder"), [(6, True), (6, False), (18, True), (18, False)])
def test_remove_the_only_peer_empties_the_family(width: int, seeder: bool) -> None:
    fam = family(int(seeder), int(not seeder), width)
    fam.remove(0)
    check_family(fam, width)
    assert (len(fam), fam.seeders, bytes(fam.addrs + fam.ids), list(fam.meta)) == (0, 0, b"", [])


@pytest.mark.parametrize(("seeders", "leechers"), [(0, 4), (4, 0), (3, 4), (1, 1), (20, 10)])
@pytest.mark.parametrize("width", [6, 18])
def test_remove_any_slot_keeps_every_other_peer_as_it_was(
    seeders: int, leechers: int, width: int
) -> None:
    for slot in range(seeders + leechers):
        fam = family(seeders, leechers, width)
        before = snapshot(fam)
        gone = fam.peer_id(slot)
        fam.remove(slot)
        check_family(fam, width)
        del before[gone]
        assert snapshot(fam) == before
        assert fam.find(gone) == -1
        assert fam.seeders == seeders - (slot < seeders)


@pytest.mark.parametrize(("seeders", "leechers"), [(0, 3), (3, 0), (2, 3), (1, 1), (20, 10)])
@pytest.mark.parametrize("width", [6, 18])
def test_set_role_both_ways(seeders: int, leechers: int, width: int) -> None:
    for slot in range(seeders + leechers):
        for seeder in (True, False):
            fam = family(seeders, leechers, width)
            before = snapshot(fam)
            pid = fam.peer_id(slot)
            was = fam.is_seeder(slot)
            new = fam.set_role(slot, seeder)
            check_family(fam, width)
            assert fam.peer_id(new) == pid and fam.is_seeder(new) == seeder
            assert fam.seeders == seeders + (seeder and not was) - (was and not seeder)
            if seeder == was:
                assert new == slot
            a, s, k, _ = before[pid]
            before[pid] = (a, s, k, seeder)
            assert snapshot(fam) == before


def test_update_changes_time_and_reported_totals_only() -> None:
    fam = family(2, 2, 18)
    fam.update(3, T0 + 50, 7, 8, completed=True)
    assert layout(fam) == [0, 1, 100, 101]
    assert (fam.addr(3), fam.seen(3), fam.key(3), fam.is_seeder(3)) == (
        addr6(101), T0 + 50, key_of(101), False)
    assert fam.reported(3) == (7, 8) and fam.counted_completed(3)
    assert (fam.seen(2), fam.key(2), fam.counted_completed(2)) == (
        seen_of(100), key_of(100), False)
    check_family(fam, 18)


def test_replace_moves_an_entry_keeping_its_role() -> None:
    fam = family(2, 2, 18)
    fam.replace(3, peer_id(101), addr6(101, 1), key_of(101))
    assert layout(fam) == [0, 1, 100, 101]
    assert (fam.addr(3), fam.key(3), fam.is_seeder(3)) == (addr6(101, 1), key_of(101), False)
    assert fam.find_addr(addr6(101)) == -1 and fam.find_addr(addr6(101, 1)) == 3
    check_family(fam, 18)


# -- the index and find ----------------------------------------------------------------


def test_index_is_built_past_index_min_and_dropped_below_half() -> None:
    fam = FamilyPeers(6)
    for n in range(INDEX_MIN):
        fam.insert(peer_id(n), addr4(n), T0, NO_KEY, n % 3 == 0)
        assert fam.by_addr is None
    fam.insert(peer_id(INDEX_MIN), addr4(INDEX_MIN), T0, NO_KEY, True)
    assert fam.by_addr is not None
    check_family(fam, 6)
    while len(fam) > INDEX_MIN // 2:
        fam.remove(len(fam) // 2)
        assert fam.by_addr is not None
        check_family(fam, 6)
    fam.remove(0)
    assert len(fam) == INDEX_MIN // 2 - 1 and fam.by_addr is None
    check_family(fam, 6)
    # Growing back, the index returns only past INDEX_MIN again.
    for n in range(100, 100 + INDEX_MIN - len(fam)):
        fam.insert(peer_id(n), addr4(n), T0, NO_KEY, n % 2 == 0)
        assert fam.by_addr is None
    fam.insert(peer_id(999), addr4(999), T0, NO_KEY, False)
    assert fam.by_addr is not None
    check_family(fam, 6)


@pytest.mark.parametrize("size", [1, INDEX_MIN, INDEX_MIN + 1, 3 * INDEX_MIN])
def test_find_agrees_with_the_index_either_way(size: int) -> None:
    fam = family(size // 3, size - size // 3)
    ids = [fam.peer_id(s) for s in range(len(fam))]
    absent = [peer_id(n) for n in (50, 99, 5000)]
    by_search = [fam.find(pid) for pid in ids + absent]
    if fam.by_addr is None:
        fam._build_index()
    else:
        fam.by_addr = fam.by_id = fam.per_ip = None
    assert [fam.find(pid) for pid in ids + absent] == by_search
    assert by_search == [*range(len(ids)), -1, -1, -1]


def family_of_ids(ids: list[bytes]) -> FamilyPeers:
    fam = FamilyPeers(6)
    for n, pid in enumerate(ids):
        fam.insert(pid, addr4(n), T0, NO_KEY, False)
    return fam


@pytest.mark.parametrize("offset", range(1, 20))
def test_find_skips_a_misaligned_match(offset: int) -> None:
    """An id that also appears across two neighbours, at an offset that is not a slot
    boundary, is found in its own slot; one that appears only so is not found."""
    a, b = bytes(range(65, 85)), bytes(range(85, 105))
    inside = (a + b)[offset : offset + 20]
    assert inside not in (a, b)
    fam = family_of_ids([a, b])
    assert fam.find(inside) == -1
    assert (fam.find(a), fam.find(b)) == (0, 1)
    assert family_of_ids([a, b, a[::-1], inside]).find(inside) == 3
    assert family_of_ids([inside, a, b]).find(inside) == 0
    # Twice misaligned (a2 + b2 holds it at the same offset) before the real one.
    a2, b2 = b"\0" + a[1:], b[:19] + b"\0"
    fam = family_of_ids([a, b, a2, b2])
    assert [i for i in range(80) if fam.ids.startswith(inside, i)] == [offset, 40 + offset]
    assert fam.find(inside) == -1
    assert family_of_ids([a, b, a2, b2, inside]).find(inside) == 4


def test_find_steps_over_overlapping_misaligned_matches() -> None:
    """``(ab)*10`` appears at every odd offset across these ids, never aligned; ``(ba)*10``
    appears at even offsets across the first two before its own slot."""
    ab, ba = b"ab" * 10, b"ba" * 10
    ids = [b"aa" + b"ba" * 9, ba, b"ba" * 9 + b"bb"]
    fam = family_of_ids(ids)
    joined = bytes(fam.ids)
    assert [i for i in range(1, 41) if joined.startswith(ab, i)] == list(range(1, 41, 2))
    assert fam.find(ab) == -1
    assert [fam.find(pid) for pid in ids] == [0, 1, 2]
    assert [i for i in range(21) if joined.startswith(ba, i)] == [*range(2, 21, 2)]
    fam = family_of_ids([*ids, ab])
    assert fam.find(ab) == 3


ALPHABET_IDS = st.text(alphabet="ab", min_size=20, max_size=20).map(str.encode)


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(ALPHABET_IDS, unique=True, max_size=INDEX_MIN), query=ALPHABET_IDS)
def test_find_by_search_is_the_aligned_match(ids: list[bytes], query: bytes) -> None:
    """Ids over two letters, so matches across neighbours are common."""
    fam = family_of_ids(ids)
    assert fam.by_addr is None
    assert fam.find(query) == (ids.index(query) if query in ids else -1)
    for slot, pid in enumerate(ids):
        assert fam.find(pid) == slot


# -- expire ----------------------------------------------------------------------------


@pytest.mark.parametrize(("seeders", "leechers"), [(3, 4), (0, 5), (5, 0), (20, 20), (40, 3)])
@pytest.mark.parametrize("width", [6, 18])
def test_expire_removes_exactly_the_silent_peers(seeders: int, leechers: int, width: int) -> None:
    """Every pattern of silent peers over both regions (for small families), or a few
    patterns (for indexed ones); a peer seen exactly at ``before`` stays."""
    total = seeders + leechers
    masks: list[int] = (
        list(range(1 << total))
        if total <= 8
        else [0, (1 << total) - 1, 0x5555555555555 & ((1 << total) - 1), 1, 1 << (total - 1)]
        + [random.Random(seed).getrandbits(total) for seed in range(10)]
    )
    for mask in masks:
        fam = family(seeders, leechers, width)
        silent = {fam.peer_id(s) for s in range(total) if mask >> s & 1}
        for s in range(total):
            fam.meta[4 * s] = T0 - 1 if mask >> s & 1 else T0
        before = snapshot(fam)
        if silent:
            assert fam.expire(T0) == len(silent)
        else:
            state = raw(fam)
            assert fam.expire(T0) == 0
            assert raw(fam) == state
        check_family(fam, width)
        assert snapshot(fam) == {k: v for k, v in before.items() if k not in silent}


def test_expire_of_an_empty_family_is_nothing() -> None:
    fam = FamilyPeers(6)
    assert fam.expire(T0) == 0
    check_family(fam, 6)


def test_expire_at_checks_one_slot() -> None:
    fam = family(2, 2)
    fam.meta[4 * 1] = T0 - 1
    fam.expire_at(0, T0)
    fam.expire_at(1, T0 - 1)
    assert len(fam) == 4
    fam.expire_at(1, T0)
    assert layout(fam) == [0, 101, 100]
    assert fam.seeders == 1
    check_family(fam, 6)


# -- random operations against a model -------------------------------------------------


def periodic_ids() -> list[bytes]:
    """Forty distinct ids: the ten rotations of four two-letter patterns of period ten.
    Neighbouring rotations share long prefixes, so the concatenation of two ids often
    contains a third at an offset that is not a slot boundary."""
    out = []
    for a_count in (3, 4, 5, 6):
        base = "a" * a_count + "b" * (10 - a_count)
        for r in range(10):
            out.append(((base[r:] + base[:r]) * 2).encode())
    assert len(set(out)) == 40
    return out


ID_SCHEMES = {"numbered": [peer_id(n) for n in range(40)], "periodic": periodic_ids()}


@pytest.mark.parametrize("scheme", sorted(ID_SCHEMES))
@pytest.mark.parametrize("width", [6, 18])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_operations_agree_with_a_model(width: int, scheme: str, data: Any) -> None:
    """Random inserts, removals, role changes and updates, steered above INDEX_MIN and
    back below INDEX_MIN // 2 (and up again) between free stretches."""
    ids = ID_SCHEMES[scheme]
    v6 = width == 18
    fam = FamilyPeers(width)
    model: dict[int, tuple[int, int, int, bool]] = {}  # n -> (variant, seen, key, seeder)
    indexed_states: set[bool] = set()

    def check() -> None:
        check_family(fam, width)
        indexed_states.add(fam.by_addr is not None)
        assert fam.seeders == sum(m[3] for m in model.values())
        found = {}
        for slot in range(len(fam)):
            n = ids.index(fam.peer_id(slot))
            variant, seen, key, seeder = model[n]
            assert fam.addr(slot) == addr(n, v6, variant)
            assert (fam.seen(slot), fam.key(slot), fam.is_seeder(slot)) == (seen, key, seeder)
            found[n] = slot
        assert set(found) == set(model)
        for n in range(40):
            if n not in model:
                assert fam.find(ids[n]) == -1

    def step(n: int, action: str, flag: bool, value: int) -> None:
        if n not in model:
            slot = fam.insert(ids[n], addr(n, v6, value), T0 + value, value, flag)
            assert fam.peer_id(slot) == ids[n] and fam.is_seeder(slot) == flag
            model[n] = (value, T0 + value, value, flag)
            return
        slot = fam.find(ids[n])
        assert slot >= 0
        variant, seen, key, _ = model[n]
        if action == "remove":
            fam.remove(slot)
            del model[n]
        elif action == "role":
            new = fam.set_role(slot, flag)
            assert fam.peer_id(new) == ids[n] and fam.is_seeder(new) == flag
            model[n] = (variant, seen, key, flag)
        else:
            fam.replace(slot, ids[n], addr(n, v6, value), value)
            fam.update(slot, T0 + 10 + value, 0, 0, False)
            model[n] = (value, T0 + 10 + value, value, model[n][3])

    op = st.tuples(
        st.integers(0, 39),
        st.sampled_from(["remove", "role", "update"]),
        st.booleans(),
        st.integers(0, 5),
    )
    for target in (INDEX_MIN + 1 + data.draw(st.integers(0, 10)), INDEX_MIN // 2 - 1, 30, 0):
        for args in data.draw(st.lists(op, max_size=30)):
            step(*args)
            check()
        while len(model) != target:
            if len(model) < target:
                n = data.draw(st.sampled_from(sorted(set(range(40)) - set(model))))
            else:
                n = data.draw(st.sampled_from(sorted(model)))
            step(n, "remove", data.draw(st.booleans()), data.draw(st.integers(0, 5)))
            check()
        assert (fam.by_addr is not None) == (target > INDEX_MIN // 2)
    assert indexed_states == {True, False}


@pytest.mark.parametrize("width", [6, 18])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_entry_is_found_by_id_though_entries_share_ids(width: int, data: Any) -> None:
    """Many addresses over three peer ids, so the entries sharing an id (its ring) are
    many and often neighbours: random inserts, removals, role changes and replacements,
    up past INDEX_MIN and back. Whichever entries leave, ``find`` answers each id that any
    entry still holds with one of them (the index falls back to another of the ring)."""
    v6 = width == 18
    ids = [peer_id(7000 + k) for k in range(3)]
    fam = FamilyPeers(width)
    model: dict[bytes, bytes] = {}  # address -> id
    op = st.tuples(st.integers(0, 59), st.sampled_from(["remove", "role", "replace"]),
                   st.integers(0, 2), st.booleans())
    addrs = [addr(n, v6) for n in range(60)]

    def step(a: bytes, action: str, k: int, flag: bool) -> None:
        slot = fam.find_addr(a)
        if slot < 0:
            fam.insert(ids[k], a, T0, k, flag)
            model[a] = ids[k]
        elif action == "remove":
            fam.remove(slot)
            del model[a]
        elif action == "role":
            fam.set_role(slot, flag)
        else:
            fam.replace(slot, ids[k], a, k)
            model[a] = ids[k]
        check_family(fam, width)
        assert {fam.addr(s): fam.peer_id(s) for s in range(len(fam))} == model
        for pid in ids:
            found = fam.find(pid)
            assert (fam.peer_id(found) if found >= 0 else None) == (
                pid if pid in model.values() else None)

    for target in (INDEX_MIN + 1 + data.draw(st.integers(0, 20)), INDEX_MIN // 2 + 1, 0):
        for n, action, k, flag in data.draw(st.lists(op, max_size=40)):
            step(addrs[n], action, k, flag)
        while len(model) != target:
            grow = len(model) < target
            pool = [a for a in addrs if (a in model) != grow]
            step(data.draw(st.sampled_from(pool)), "remove", data.draw(st.integers(0, 2)),
                 data.draw(st.booleans()))
    assert fam.by_addr is None


# -- Swarm -----------------------------------------------------------------------------


def announce(swarm: Swarm, n: int, now: int, **kwargs: Any) -> tuple[bytes, bytes]:
    kwargs.setdefault("numwant", 50)
    p4, p6, *_ = swarm.announce(request(n, **kwargs), now, 150, random.Random(0))
    check_swarm(swarm)
    return p4, p6


def present(swarm: Swarm, n: int, v6: bool = False) -> bool:
    fam = swarm.v6 if v6 else swarm.v4
    return fam is not None and fam.find(peer_id(n)) >= 0


@pytest.mark.parametrize(
    ("seeders", "leechers", "silent"),
    [
        (1, 1, [100]),
        (1, 3, [100]),
        (3, 1, [0]),
        (3, 3, [100, 2]),
        (2, 5, [0, 100, 104]),
        (10, 30, [0, 5, 100, 120, 129]),
    ],
)
@pytest.mark.parametrize("v6", [False, True])
def test_lazy_expiry_reaches_silent_peers_in_a_steady_swarm(
    seeders: int, leechers: int, silent: list[int], v6: bool
) -> None:
    """Silent peers among live peers that keep announcing go without any sweep, wherever
    their slots are, within a few passes of the cursor."""
    swarm = Swarm()
    everyone = [*range(seeders), *range(100, 100 + leechers)]
    for n in everyone:
        announce(swarm, n, T0 if n in silent else T0 + 100, left=0 if n < 100 else 5, v6=v6)
    live = [n for n in everyone if n not in silent]
    for i in range((len(silent) + 1) * len(everyone)):
        n = live[i % len(live)]
        announce(swarm, n, T0 + 151 + i, left=0 if n < 100 else 5, v6=v6)
    assert not any(present(swarm, n, v6) for n in silent)
    assert all(present(swarm, n, v6) for n in live)
    assert len(swarm) == len(live)


def test_lazy_expiry_works_in_both_families() -> None:
    swarm = Swarm()
    for n in range(6):
        announce(swarm, n, T0, v6=n % 2 == 1, left=n % 3)
    for i in range(10):
        announce(swarm, 50, T0 + 151 + i)
    assert len(swarm) == 1 and present(swarm, 50)


def test_swarm_expire_removes_every_silent_peer() -> None:
    swarm = Swarm()
    for n in range(6):
        announce(swarm, n, T0 if n % 2 else T0 + 10, left=n % 3, v6=n > 3)
    assert swarm.expire(T0 + 1) == 3
    check_swarm(swarm)
    assert len(swarm) == 3
    assert swarm.expire(T0 + 1) == 0


def test_swarm_moves_a_peer_in_place_with_its_key() -> None:
    swarm = Swarm()
    announce(swarm, 2, T0)
    announce(swarm, 1, T0, key=9)
    announce(swarm, 1, T0 + 1, key=9, variant=1)
    fam = swarm.v4
    assert fam is not None and layout(fam) == [2, 1]
    assert (fam.addr(1), fam.seen(1), fam.key(1)) == (addr4(1, 1), T0 + 1, 9)


@pytest.mark.parametrize(
    ("registered", "sent"), [(None, None), (None, 9), (9, None), (9, 8), (9, 8 + (1 << 32))]
)
def test_swarm_without_the_registered_key_a_new_address_is_another_peer(
    registered: int | None, sent: int | None
) -> None:
    """No key registered, none sent, or another key (keys are compared as 32 bits): the
    entry is left exactly as it was; a stop from the new address removes nothing, and an
    announce from it is another peer."""
    swarm = Swarm()
    announce(swarm, 1, T0, key=registered)
    assert swarm.v4 is not None
    state = raw(swarm.v4)
    announce(swarm, 1, T0 + 5, key=sent, variant=1, event=Event.STOPPED)
    assert raw(swarm.v4) == state
    announce(swarm, 1, T0 + 5, key=sent, variant=1, left=0)
    assert swarm.v4.find_addr(addr4(1)) >= 0 and swarm.v4.find_addr(addr4(1, 1)) >= 0
    assert swarm.completed == 0


def test_swarm_entry_address_needs_no_key_and_keeps_the_registered_one() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0, key=9)
    announce(swarm, 1, T0 + 5, key=8, left=0, event=Event.COMPLETED)
    assert swarm.v4 is not None and swarm.v4.key(0) == 9 and swarm.completed == 1
    announce(swarm, 1, T0 + 6, key=4, event=Event.STOPPED)
    assert len(swarm) == 0


def test_swarm_key_is_compared_as_32_bits() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0, key=9 + (1 << 32))
    announce(swarm, 1, T0 + 1, key=9, variant=1)
    assert swarm.v4 is not None and swarm.v4.key(0) == 9


def test_swarm_keyless_entry_never_adopts_a_key() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0)
    fam = swarm.v4
    assert fam is not None and fam.key(0) == NO_KEY
    announce(swarm, 1, T0 + 1, key=5)
    assert fam.key(0) == NO_KEY
    announce(swarm, 1, T0 + 4, key=5, variant=2, left=0)  # not a move: another peer
    assert len(fam) == 2 and fam.find_addr(addr4(1)) >= 0


def test_swarm_role_change_keeps_key_and_address_and_counts_completed() -> None:
    swarm = Swarm()
    announce(swarm, 2, T0)
    announce(swarm, 1, T0, key=9)
    announce(swarm, 1, T0 + 1, key=9, left=0, event=Event.COMPLETED)
    fam = swarm.v4
    assert fam is not None and layout(fam) == [1, 2]
    assert (fam.addr(0), fam.seen(0), fam.key(0)) == (addr4(1), T0 + 1, 9)
    assert swarm.completed == 1
    assert swarm.counts() == (1, 1)


@pytest.mark.parametrize("first_v6", [False, True])
def test_dual_stack_client_completes_once(first_v6: bool) -> None:
    swarm = Swarm()
    announce(swarm, 1, T0, v6=first_v6)
    announce(swarm, 1, T0, v6=not first_v6)
    done = Event.COMPLETED
    announce(swarm, 1, T0 + 1, v6=first_v6, left=0, event=done)
    assert swarm.completed == 1
    announce(swarm, 1, T0 + 1, v6=not first_v6, left=0, event=done)
    assert swarm.completed == 1
    assert swarm.counts() == (2, 0)
    # Another client over both families is another download.
    announce(swarm, 2, T0 + 2, v6=False)
    announce(swarm, 2, T0 + 2, v6=True)
    announce(swarm, 2, T0 + 3, v6=True, left=0, event=done)
    announce(swarm, 2, T0 + 3, v6=False, left=0, event=done)
    assert swarm.completed == 2


def test_dual_stack_client_new_in_its_second_family_completing_counts_once() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0)
    announce(swarm, 1, T0 + 1, left=0, event=Event.COMPLETED)
    announce(swarm, 1, T0 + 1, v6=True, left=0, event=Event.COMPLETED)
    assert swarm.completed == 1


def test_seeder_rechecking_its_files_is_not_a_completion() -> None:
    """left>0 then left=0 without event=completed: nobody downloaded anything."""
    swarm = Swarm()
    announce(swarm, 1, T0, left=0)
    announce(swarm, 1, T0 + 1, left=5)
    announce(swarm, 1, T0 + 2, left=0)
    assert swarm.completed == 0


def test_dual_stack_requester_is_skipped_in_the_other_family() -> None:
    swarm = Swarm()
    for n in range(1, 4):
        announce(swarm, n, T0, v6=True)
    announce(swarm, 1, T0)
    for _ in range(5):
        p4, p6 = announce(swarm, 1, T0 + 1)
        assert p4 == b""
        assert sorted(decode_addr(e)[0] for e in split(p6, 18)) == [2, 3]


def test_stopped_for_a_family_never_seen_creates_nothing() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0)
    assert announce(swarm, 1, T0, v6=True, event=Event.STOPPED) == (b"", b"")
    assert swarm.v6 is None


def test_peer_ids_lists_ipv4_first_up_to_the_limit() -> None:
    swarm = Swarm()
    announce(swarm, 1, T0, v6=True)
    announce(swarm, 2, T0)
    announce(swarm, 3, T0, left=0)
    assert swarm.peer_ids(10) == [peer_id(3), peer_id(2), peer_id(1)]
    assert swarm.peer_ids(2) == [peer_id(3), peer_id(2)]
    assert swarm.peer_ids(0) == []
