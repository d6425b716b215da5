"""The behaviour every peer store must show: one suite, run against each store.

A store's test module subclasses :class:`StoreConformance` as ``Test<Something>`` and
implements :meth:`StoreConformance.make_store` (and, where it holds resources,
:meth:`StoreConformance.close_store`); pytest then runs every test below against it. Store
calls may return their result or an awaitable of it (``MaybeAwaitable``): the suite resolves
both on one event loop per test, so a networked store keeps one connection for a test.

Every test passes ``now`` explicitly; nothing sleeps and nothing is timed. Randomness is
only ever checked for its properties (distinct peers, never the requester, counts), so a
store may pick peers however it likes.

Choices this suite pins where the protocol leaves one open:
- ``completed`` counts each real leecher-to-seeder transition of a peer the store knows
  (``left`` going from non-zero to zero), whether or not the announce says
  ``event=completed``; a peer that is new, already seeding, or still has bytes left adds
  nothing. A seeder that turns leecher and finishes again counts again.
- A ``stopped`` announce gets no peers, and for an unknown peer or torrent changes nothing
  (it creates no torrent).
- A peer is alive until ``peer_timeout`` seconds after its last announce, inclusive.
- A torrent left without peers stays (with its completed count) until a sweep finds it
  untouched for a whole peer timeout.
- A paused peer (BEP 21) is counted by what it has left, and is sent leechers only.
- A client announcing over IPv4 and IPv6 with one peer id is two peers, and is never sent
  its own address of the other family.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from support.peers import (
    OTHER_TORRENT,
    TORRENT,
    UNKNOWN_TORRENT,
    addr4,
    addr6,
    all_peers,
    decode_addr,
    info_hash,
    peer_id,
    peer_number,
    peers4,
    peers6,
    request,
    split,
)

from shoal.engine.policy import Policy
from shoal.errors import ClientError
from shoal.logic import Configuration, Later, TrackerLogic
from shoal.storage.base import MaybeAwaitable, PeerStore, StoreSettings, SweepProgress
from shoal.types import (
    ROLE_LEECHER,
    ROLE_NONE,
    ROLE_SEEDER,
    ZERO_COUNTS,
    AnnounceRequest,
    AnnounceResult,
    Event,
    StoreTotals,
    SwarmCounts,
)

T = TypeVar("T")
T0 = 1_700_000_000  # a plausible clock reading; every test counts from here
TIMEOUT = 150  # the peer timeout of the expiry tests' policy


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class Tracker:
    """A store behind the logic layer (as every frontend sees it), through synchronous
    calls, with the helpers the tests share."""

    def __init__(self, store: PeerStore, logic: TrackerLogic, loop: asyncio.AbstractEventLoop,
                 resolve: Callable[[Any], Any]) -> None:
        self.store = store
        self.logic = logic
        self.loop = loop
        self.resolve = resolve

    @property
    def policy(self) -> Policy:
        return self.logic.policy

    def _call(self, found: Any) -> Any:
        if isinstance(found, Later):  # a networked store answers in a task on this loop
            box: list[Any] = []
            found.then(box.append)
            while not box:
                self.loop.run_until_complete(asyncio.sleep(0.001))
            found = box[0]
        if isinstance(found, ClientError):
            raise found
        return found

    def announce(self, req: AnnounceRequest, now: int) -> AnnounceResult:
        result: AnnounceResult = self._call(self.logic.announce(req, req.addr[:-2], now))
        return result

    def scrape(self, hashes: Sequence[bytes]) -> list[SwarmCounts]:
        result: list[SwarmCounts] = self._call(self.logic.scrape(hashes, b"\x7f\0\0\1"))
        return [SwarmCounts(*c) for c in result]

    def counts(self, torrent: bytes = TORRENT) -> SwarmCounts:
        return self.scrape([torrent])[0]

    def full_scrape(self) -> dict[bytes, SwarmCounts]:
        pairs: list[tuple[bytes, SwarmCounts]] = self.resolve(self.store.full_scrape())
        found = {h: SwarmCounts(*c) for h, c in pairs}
        assert len(found) == len(pairs), "full scrape lists a torrent twice"
        return found

    def sweep(self, now: int, budget: int) -> SweepProgress:
        progress: SweepProgress = self.resolve(self.store.sweep(now, budget))
        return progress

    def sweep_pass(self, now: int, budget: int = 1_000_000) -> list[SweepProgress]:
        """Sweep steps until a pass finishes; a pass that never ends fails the test."""
        steps = []
        for _ in range(10_000):
            steps.append(self.sweep(now, budget))
            if steps[-1].finished:
                return steps
        raise AssertionError("sweep never reported a finished pass")

    def totals(self) -> StoreTotals:
        totals: StoreTotals = self.resolve(self.store.totals())
        return StoreTotals(*totals)

    def join(self, peers: Iterable[int], now: int, **kwargs: Any) -> None:
        """Announce each peer once (asking for one peer, to keep set-up cheap)."""
        kwargs.setdefault("numwant", 1)
        for n in peers:
            self.announce(request(n, **kwargs), now)


class StoreConformance:
    """The conformance suite; subclass it as ``Test...`` and implement ``make_store``."""

    #: Peers in the swarm of the O(numwant) test; a slow store may lower it.
    big_swarm_size: ClassVar[int] = 100_000

    def make_store(self) -> PeerStore:
        """A new, empty store (the suite configures its limits through the logic layer)."""
        raise NotImplementedError

    def close_store(self, store: PeerStore) -> MaybeAwaitable[None]:
        """Release a store made by :meth:`make_store` (drop its data, close connections)."""
        return None

    def check_invariants(self, store: PeerStore) -> None:
        """A store's own internal consistency checks, run after every step of the model
        tests; none by default."""

    # -- harness ----------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _harness(self) -> Iterator[None]:
        self._loop = asyncio.new_event_loop()
        self._opened: list[PeerStore] = []
        try:
            yield
        finally:
            try:
                for store in self._opened:
                    self.resolve(self.close_store(store))
            finally:
                self._loop.close()

    def resolve(self, value: MaybeAwaitable[T]) -> T:
        """The value itself, or what the awaitable gives, run on this test's loop."""
        if inspect.isawaitable(value):
            return cast(T, self._loop.run_until_complete(_await(value)))
        return value

    def open(self, **policy: Any) -> Tracker:
        """A new store with a policy built from ``policy`` (seeded randomness)."""
        policy.setdefault("rng", random.Random(20240611))
        limits = {k: policy.pop(k) for k in ("max_torrents", "max_peers_per_swarm",
                                             "max_peers_per_ip", "keep_totals") if k in policy}
        store = self.make_store()
        self._opened.append(store)
        made = Policy(**policy)
        config = Configuration(made, limits=StoreSettings(made.peer_timeout, **limits))
        logic = TrackerLogic(store, config, spawn=self._loop.create_task)
        return Tracker(store, logic, self._loop, self.resolve)

    def open_expiring(self, **limits: Any) -> Tracker:
        """A store whose peers expire ``TIMEOUT`` seconds after their last announce."""
        return self.open(interval=100, min_interval=10, interval_jitter=0, peer_timeout=TIMEOUT,
                         **limits)

    # -- identity: an entry is its address; a peer_id is never a credential ------------

    def test_peer_is_counted_once_however_often_it_announces(self) -> None:
        t = self.open()
        for i in range(5):
            t.announce(request(1), T0 + i)
        assert t.counts() == (0, 1, 0)

    def test_new_peer_id_at_an_address_replaces_the_entry(self) -> None:
        """A client restarted at the same ip:port is one peer, never one endpoint twice."""
        t = self.open()
        t.announce(request(1, key=7), T0)
        t.announce(dataclasses.replace(request(2), addr=addr4(1)), T0 + 1)
        assert t.counts() == (0, 1, 0)
        reply = t.announce(request(3, ids=True), T0 + 2)
        assert reply.peer_ids4 == peer_id(2)

    def test_stop_with_another_peer_id_leaves_the_entry(self) -> None:
        t = self.open()
        t.announce(request(1), T0)
        t.announce(dataclasses.replace(request(2, event=Event.STOPPED), addr=addr4(1)), T0 + 1)
        assert t.counts() == (0, 1, 0)

    def test_peer_reannouncing_from_its_address_needs_no_key_when_it_registered_none(
        self,
    ) -> None:
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, key=9), T0 + 1)
        t.announce(request(1, event=Event.STOPPED), T0 + 2)
        assert t.counts() == (0, 0, 0)

    def test_entry_address_needs_no_key_and_keeps_the_registered_one(self) -> None:
        """aria2 and uTorrent change their key between announces: from its own address a
        peer is served whatever key it sends, and only the key it registered moves it."""
        t = self.open()
        t.announce(request(1, key=7), T0)
        t.announce(request(1, key=8, left=0, event=Event.COMPLETED), T0 + 1)
        assert t.counts() == (1, 0, 1)
        t.announce(request(1, variant=1, key=8, left=0), T0 + 2)  # not a move: a new peer
        assert t.counts() == (2, 0, 1)
        t.announce(request(1, key=9, event=Event.STOPPED), T0 + 3)
        assert t.counts() == (1, 0, 1)

    def test_peer_id_from_another_address_is_another_peer(self) -> None:
        """A squatter announcing a client's public peer_id first locks nobody out."""
        t = self.open()
        t.announce(request(1, variant=1), T0)  # the squatter, elsewhere
        t.announce(request(1, key=7), T0 + 1)  # the real client
        assert t.counts() == (0, 2, 0)

    def test_peer_id_from_another_address_cannot_stop_the_entry(self) -> None:
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, variant=1, event=Event.STOPPED), T0 + 1)
        t.announce(request(1, variant=1, key=3, event=Event.STOPPED), T0 + 1)
        assert t.counts() == (0, 1, 0)

    # -- BEP 7 key rule: the registered key moves an entry ----------------------------

    def test_address_change_with_the_registered_key_moves_the_peer(self) -> None:
        t = self.open()
        t.announce(request(1, key=7), T0)
        t.announce(request(1, variant=1, key=7), T0 + 1)
        assert t.counts() == (0, 1, 0)
        reply = t.announce(request(2), T0 + 2)
        assert [decode_addr(e) for e in split(reply.peers4, 6)] == [(1, 1)]

    def test_address_change_with_another_key_is_a_new_peer(self) -> None:
        t = self.open()
        t.announce(request(1, key=7), T0)
        t.announce(request(1, variant=1, key=8), T0 + 1)
        reply = t.announce(request(2), T0 + 2)
        assert sorted(decode_addr(e) for e in split(reply.peers4, 6)) == [(1, 0), (1, 1)]

    def test_keyless_entry_cannot_be_moved_by_a_key(self) -> None:
        """A key sent later is not adopted: nobody sharing a keyless peer's address can
        attach a key to its entry and then move it away."""
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, key=7), T0 + 1)
        t.announce(request(1, variant=1, key=7), T0 + 2)
        reply = t.announce(request(2), T0 + 3)
        assert sorted(decode_addr(e) for e in split(reply.peers4, 6)) == [(1, 0), (1, 1)]

    def test_refused_announce_changes_nothing(self) -> None:
        t = self.open_expiring(max_peers_per_swarm=2)
        t.announce(request(1, key=7), T0)
        t.announce(request(2, left=0), T0)
        before = t.counts()
        attempts = [
            request(3, left=0, event=Event.COMPLETED),
            request(3, event=Event.STARTED),
            request(1, variant=1, key=8, left=0, event=Event.PAUSED),
        ]
        for attempt in attempts:
            with pytest.raises(ClientError):
                t.announce(attempt, T0 + 100)
        assert t.counts() == before == (1, 1, 0)
        reply = t.announce(request(2, left=0), T0 + 100)
        assert [decode_addr(e) for e in split(reply.peers4, 6)] == [(1, 0)]
        # Not refreshed by the refused announces: it expires a timeout after T0.
        t.sweep_pass(T0 + TIMEOUT + 1)
        assert t.counts() == (1, 0, 0)

    def test_registered_key_is_not_replaced_by_a_later_key(self) -> None:
        t = self.open()
        t.announce(request(1, key=5), T0)
        t.announce(request(1, key=6), T0 + 1)
        t.announce(request(1, variant=1, key=6), T0 + 2)  # another peer
        assert t.counts() == (0, 2, 0)
        t.announce(request(1, variant=2, key=5), T0 + 3)  # the registered key moves it
        reply = t.announce(request(2), T0 + 4)
        assert sorted(decode_addr(e) for e in split(reply.peers4, 6)) == [(1, 1), (1, 2)]

    def test_registered_key_survives_a_leecher_becoming_a_seeder(self) -> None:
        t = self.open()
        t.announce(request(1, key=5), T0)
        t.announce(request(1, left=0, key=5, event=Event.COMPLETED), T0 + 1)
        t.announce(request(1, variant=1, left=0, key=5), T0 + 4)
        assert t.counts() == (1, 0, 1)

    def test_moved_peer_can_stop_from_its_new_address(self) -> None:
        t = self.open()
        t.announce(request(1, key=5), T0)
        t.announce(request(1, variant=1, key=5), T0 + 1)
        t.announce(request(1, variant=1, key=5, event=Event.STOPPED), T0 + 2)
        assert t.counts() == (0, 0, 0)

    def test_moving_peer_can_stop_with_its_key_from_a_new_address(self) -> None:
        t = self.open()
        t.announce(request(1, key=5), T0)
        t.announce(request(1, variant=1, key=5, event=Event.STOPPED), T0 + 1)
        assert t.counts() == (0, 0, 0)

    def test_key_rule_holds_for_ipv6_peers(self) -> None:
        t = self.open()
        t.announce(request(1, v6=True, key=5), T0)
        t.announce(request(1, v6=True, key=6), T0 + 1)
        t.announce(request(1, v6=True, variant=1, key=5), T0 + 2)
        reply = t.announce(request(2, v6=True), T0 + 3)
        assert [decode_addr(e) for e in split(reply.peers6, 18)] == [(1, 1)]

    # -- the outcome -------------------------------------------------------------------

    def test_outcome_of_a_new_peer(self) -> None:
        t = self.open()
        r = t.announce(request(1, event=Event.STARTED), T0)
        assert (r.new_peer, r.role_before, r.role_after, r.stopped) == (
            True, ROLE_NONE, ROLE_LEECHER, False)
        assert (r.prev_uploaded, r.prev_downloaded, r.completed) == (0, 0, False)

    def test_outcome_carries_the_previously_reported_totals(self) -> None:
        t = self.open(keep_totals=True)
        t.announce(dataclasses.replace(request(1), uploaded=10, downloaded=20), T0)
        r = t.announce(dataclasses.replace(request(1), uploaded=15, downloaded=70), T0 + 1)
        assert (r.new_peer, r.prev_uploaded, r.prev_downloaded) == (False, 10, 20)
        r = t.announce(dataclasses.replace(request(1), uploaded=16, downloaded=71), T0 + 2)
        assert (r.prev_uploaded, r.prev_downloaded) == (15, 70)

    def test_kept_totals_are_exact_up_to_64_bits(self) -> None:
        """Totals past 48 bits (the compiled table's narrow records) are held exactly, and
        a family holding them still holds the smaller ones of its other peers."""
        t = self.open(keep_totals=True)
        for v6 in (False, True):
            values = [((n + 1) * 1000, n) for n in range(30)]  # past INDEX_MIN: indexed
            values[3] = (2**48 - 1, 2**47)
            for n, (up, down) in enumerate(values):
                t.announce(dataclasses.replace(request(n, v6=v6), uploaded=up, downloaded=down),
                           T0)
            values[2] = (2**64 - 1, 2**48)
            t.announce(dataclasses.replace(request(2, v6=v6), uploaded=values[2][0],
                                           downloaded=values[2][1]), T0 + 1)
            for n, (up, down) in enumerate(values):
                r = t.announce(dataclasses.replace(request(n, v6=v6), uploaded=5), T0 + 2)
                assert (r.prev_uploaded, r.prev_downloaded) == (up, down), n
                r = t.announce(request(n, v6=v6), T0 + 3)
                assert (r.prev_uploaded, r.prev_downloaded) == (5, 0), n

    def test_totals_not_kept_are_reported_as_zero(self) -> None:
        """keep_totals off (the default): the store holds no reported totals."""
        t = self.open()
        t.announce(dataclasses.replace(request(1), uploaded=10, downloaded=20), T0)
        r = t.announce(dataclasses.replace(request(1), uploaded=15, downloaded=70), T0 + 1)
        assert (r.new_peer, r.prev_uploaded, r.prev_downloaded) == (False, 0, 0)
        r = t.announce(dataclasses.replace(request(1, event=Event.STOPPED), uploaded=16), T0 + 2)
        assert (r.stopped, r.prev_uploaded, r.prev_downloaded) == (True, 0, 0)

    def test_totals_are_kept_from_when_keeping_is_turned_on(self) -> None:
        """Turned on, a peer's previous totals are those it reported since; turned off,
        the totals held read as 0 (and announces store 0)."""
        t = self.open()
        t.announce(dataclasses.replace(request(1), uploaded=10, downloaded=20), T0)
        t.announce(dataclasses.replace(request(2), uploaded=30, downloaded=40), T0)
        t.store.configure(dataclasses.replace(t.store.settings, keep_totals=True))
        r = t.announce(dataclasses.replace(request(1), uploaded=11, downloaded=21), T0 + 1)
        assert (r.prev_uploaded, r.prev_downloaded) == (0, 0)
        r = t.announce(dataclasses.replace(request(1), uploaded=12, downloaded=22), T0 + 2)
        assert (r.prev_uploaded, r.prev_downloaded) == (11, 21)
        t.store.configure(dataclasses.replace(t.store.settings, keep_totals=False))
        r = t.announce(dataclasses.replace(request(1), uploaded=13, downloaded=23), T0 + 3)
        assert (r.prev_uploaded, r.prev_downloaded) == (0, 0)
        t.store.configure(dataclasses.replace(t.store.settings, keep_totals=True))
        r = t.announce(dataclasses.replace(request(1), uploaded=14, downloaded=24), T0 + 4)
        assert (r.prev_uploaded, r.prev_downloaded) == (0, 0)

    def test_outcome_of_a_completion(self) -> None:
        t = self.open()
        t.announce(request(1), T0)
        r = t.announce(request(1, left=0, event=Event.COMPLETED), T0 + 1)
        assert (r.role_before, r.role_after, r.completed) == (ROLE_LEECHER, ROLE_SEEDER, True)

    def test_outcome_of_a_stop(self) -> None:
        t = self.open(keep_totals=True)
        t.announce(dataclasses.replace(request(1, left=0), uploaded=5), T0)
        r = t.announce(request(1, left=0, event=Event.STOPPED), T0 + 1)
        assert (r.stopped, r.role_before, r.role_after, r.prev_uploaded) == (
            True, ROLE_SEEDER, ROLE_NONE, 5)

    def test_outcome_of_a_refused_stop_is_nothing(self) -> None:
        t = self.open()
        r = t.announce(request(1, event=Event.STOPPED), T0)
        assert (r.stopped, r.new_peer, r.role_before, r.role_after) == (
            False, False, ROLE_NONE, ROLE_NONE)

    # -- limits ------------------------------------------------------------------------

    def test_full_swarm_refuses_new_peers_but_serves_its_own(self) -> None:
        t = self.open(max_peers_per_swarm=3)
        for n in range(3):
            t.announce(request(n), T0)
        with pytest.raises(ClientError, match="swarm is full"):
            t.announce(request(9), T0)
        assert len(all_peers(t.announce(request(1), T0 + 1))) == 2
        assert t.counts() == (0, 3, 0)

    def test_one_address_holds_at_most_max_peers_per_ip_in_a_swarm(self) -> None:
        t = self.open(max_peers_per_ip=2)
        for variant in range(2):
            t.announce(request(1, variant=variant), T0)
        with pytest.raises(ClientError, match="too many peers from your address"):
            t.announce(dataclasses.replace(request(2, variant=5), addr=addr4(1, 5)), T0)
        t.announce(request(3), T0)  # another address is served
        assert t.counts() == (0, 3, 0)

    def test_full_tracker_refuses_new_torrents_but_serves_known_ones(self) -> None:
        t = self.open(max_torrents=1)
        t.announce(request(1), T0)
        with pytest.raises(ClientError, match="tracker is full"):
            t.announce(request(1, torrent=OTHER_TORRENT), T0)
        assert t.counts(OTHER_TORRENT) == (0, 0, 0)
        t.announce(request(2), T0)
        assert t.counts() == (0, 2, 0)

    # -- who is sent whom --------------------------------------------------------------

    def test_seeder_is_sent_leechers_only(self) -> None:
        t = self.open()
        t.join(range(1, 6), T0, left=0)
        t.join(range(11, 16), T0)
        for requester in (1, 99):  # an existing seeder and a new one
            reply = t.announce(request(requester, left=0, numwant=50), T0 + 1)
            assert sorted(all_peers(reply)) == list(range(11, 16))

    def test_seeder_among_seeders_is_sent_nobody(self) -> None:
        t = self.open()
        t.join(range(1, 6), T0, left=0)
        reply = t.announce(request(1, left=0), T0 + 1)
        assert reply.peers4 == reply.peers6 == b""

    def test_leecher_is_sent_everyone_else_seeders_first(self) -> None:
        t = self.open()
        t.join(range(1, 6), T0, left=0)
        t.join(range(11, 16), T0)
        for requester in (11, 99):
            got = all_peers(t.announce(request(requester, numwant=50), T0 + 1))
            others = [n for n in range(11, 16) if n != requester]
            assert sorted(got[:5]) == [1, 2, 3, 4, 5]
            assert sorted(got[5:]) == others

    def test_leecher_is_sent_a_mix_seeders_first(self) -> None:
        t = self.open()
        seeders, leechers = set(range(1, 21)), set(range(101, 121))
        t.join(seeders, T0, left=0)
        t.join(leechers, T0)
        for trial in range(50):
            got = all_peers(t.announce(request(101 + trial % 20, numwant=10), T0 + 1))
            assert len(got) == 10
            roles = ["seeder" if n in seeders else "leecher" for n in got]
            assert "seeder" in roles and "leecher" in roles
            assert roles == sorted(roles, key=lambda r: r != "seeder")

    def test_requester_is_never_sent_itself_in_tiny_swarms(self) -> None:
        t = self.open()
        torrents = 0
        for seeders in range(4):
            for leechers in range(4):
                torrents += 1
                torrent = info_hash(f"tiny {seeders} {leechers}")
                t.join(range(seeders), T0, left=0, torrent=torrent)
                t.join(range(100, 100 + leechers), T0, torrent=torrent)
                members = [*range(seeders), *range(100, 100 + leechers)]
                for trial in range(40):
                    n = members[trial % len(members)] if members and trial % 3 else 999
                    left = 0 if n < 100 else 100
                    numwant = 1 + trial % 4
                    req = request(n, torrent=torrent, left=left, numwant=numwant)
                    got = all_peers(t.announce(req, T0 + 1))
                    assert n not in got
                    assert len(got) == len(set(got)) <= numwant
        assert t.totals().torrents == torrents

    def test_requester_is_never_sent_itself_in_a_big_swarm(self) -> None:
        t = self.open()
        t.join(range(300), T0, left=0)
        t.join(range(1000, 1300), T0)
        rng = random.Random(7)
        for _ in range(300):
            n = rng.choice([rng.randrange(300), rng.randrange(1000, 1300)])
            numwant = rng.randint(1, 200)
            left = 0 if n < 1000 else 100
            got = all_peers(t.announce(request(n, left=left, numwant=numwant), T0 + 1))
            assert n not in got
            assert len(got) == len(set(got)) == numwant
            if left == 0:
                assert all(m >= 1000 for m in got)

    def test_reply_is_distinct_and_never_more_than_asked(self) -> None:
        t = self.open()
        for size in (1, 2, 3, 5, 8, 13):
            torrent = info_hash(f"size {size}")
            t.join(range(size), T0, torrent=torrent, left=0)
            t.join(range(100, 100 + size), T0, torrent=torrent)
            for numwant in range(1, 2 * size + 3):
                got = all_peers(t.announce(request(100, torrent=torrent, numwant=numwant), T0))
                assert len(got) == len(set(got)) == min(numwant, 2 * size - 1)

    def test_numwant_defaults_to_50(self) -> None:
        t = self.open()
        t.join(range(300), T0)
        for asked in (-1, -7):
            assert len(all_peers(t.announce(request(999, numwant=asked), T0))) == 50

    def test_numwant_zero_is_sent_no_peers(self) -> None:
        """BEP 3: numwant "is permitted to be zero" (clients send it with stopped)."""
        t = self.open()
        t.join(range(10), T0)
        reply = t.announce(request(999, numwant=0), T0)
        assert all_peers(reply) == [] and reply.incomplete == 11

    def test_numwant_is_capped_at_200(self) -> None:
        t = self.open()
        t.join(range(300), T0)
        for asked, given in ((500, 200), (201, 200), (200, 200), (199, 199), (1, 1)):
            assert len(all_peers(t.announce(request(999, numwant=asked), T0))) == given

    def test_numwant_limits_come_from_the_policy(self) -> None:
        t = self.open(default_numwant=7, max_numwant=20)
        t.join(range(50), T0)
        assert len(all_peers(t.announce(request(999), T0))) == 7
        assert len(all_peers(t.announce(request(999, numwant=30), T0))) == 20

    def test_big_swarm_answers_numwant_peers(self) -> None:
        """Selection costs O(numwant): a huge swarm answers as a small one does (the
        benchmark measures the time; this test only checks the answer)."""
        size = self.big_swarm_size
        t = self.open()
        t.join(range(size), T0)
        assert t.counts() == (0, size, 0)
        for requester, asked, given in ((size + 1, 200, 200), (5, -1, 50), (7, 200, 200)):
            got = all_peers(t.announce(request(requester, numwant=asked), T0))
            assert len(got) == len(set(got)) == given
            assert requester not in got
            assert all(0 <= n <= size + 1 for n in got)  # size + 1 joined by asking
        t.announce(request(size + 2, left=0), T0)
        got = all_peers(t.announce(request(size + 2, left=0, numwant=200), T0))
        # Leechers only: the swarm's, and the first requester, which joined as one.
        assert len(set(got)) == 200 and all(0 <= n <= size + 1 for n in got)

    # -- events --------------------------------------------------------------------

    def test_started_adds_the_peer(self) -> None:
        t = self.open()
        t.announce(request(1, event=Event.STARTED), T0)
        t.announce(request(2, left=0, event=Event.STARTED), T0)
        assert t.counts() == (1, 1, 0)

    def test_announce_without_event_adds_a_new_peer(self) -> None:
        """An unknown event reaches the store as ``Event.NONE``: an ordinary announce."""
        t = self.open()
        t.announce(request(1, event=Event.NONE), T0)
        t.announce(request(1, event=Event.NONE), T0 + 1)
        assert t.counts() == (0, 1, 0)

    def test_stopped_removes_the_peer(self) -> None:
        t = self.open()
        t.join([1, 2, 3], T0)
        t.announce(request(2, event=Event.STOPPED), T0 + 1)
        assert t.counts() == (0, 2, 0)
        got = all_peers(t.announce(request(9, numwant=50), T0 + 2))
        assert sorted(got) == [1, 3]

    def test_stopping_seeder_is_removed(self) -> None:
        t = self.open()
        t.join([1, 2], T0, left=0)
        t.announce(request(1, left=0, event=Event.STOPPED), T0 + 1)
        assert t.counts() == (1, 0, 0)

    def test_stopped_peer_is_sent_no_peers(self) -> None:
        t = self.open()
        t.join([1, 2, 3], T0)
        reply = t.announce(request(2, event=Event.STOPPED), T0 + 1)
        assert reply.peers4 == reply.peers6 == reply.peer_ids4 == b""
        assert (reply.complete, reply.incomplete) == (0, 2)

    def test_stopped_for_an_unknown_peer_is_harmless(self) -> None:
        t = self.open()
        t.join([1, 2], T0)
        for _ in range(2):
            reply = t.announce(request(9, event=Event.STOPPED), T0 + 1)
            assert reply.peers4 == reply.peers6 == b""
            assert t.counts() == (0, 2, 0)
        t.announce(request(9, v6=True, event=Event.STOPPED), T0 + 1)
        assert t.counts() == (0, 2, 0)
        assert sorted(all_peers(t.announce(request(3), T0 + 2))) == [1, 2]

    def test_stopped_twice_is_harmless(self) -> None:
        t = self.open()
        t.join([1, 2], T0)
        t.announce(request(1, event=Event.STOPPED), T0 + 1)
        t.announce(request(1, event=Event.STOPPED), T0 + 2)
        assert t.counts() == (0, 1, 0)

    def test_stopped_for_an_unknown_torrent_leaves_no_trace(self) -> None:
        t = self.open()
        reply = t.announce(request(1, event=Event.STOPPED), T0)
        assert (reply.complete, reply.incomplete, reply.downloaded) == (0, 0, 0)
        assert t.full_scrape() == {}
        assert t.totals() == (0, 0, 0, 0)

    def test_paused_leecher_is_sent_leechers_only(self) -> None:
        t = self.open()
        t.join(range(1, 6), T0, left=0)
        t.join(range(11, 16), T0)
        for requester in (11, 99):
            reply = t.announce(request(requester, event=Event.PAUSED, numwant=50), T0 + 1)
            assert sorted(all_peers(reply)) == [n for n in range(11, 16) if n != requester]

    def test_paused_peer_is_counted_by_what_it_has_left(self) -> None:
        t = self.open()
        t.announce(request(1, event=Event.PAUSED), T0)
        t.announce(request(2, left=0, event=Event.PAUSED), T0)
        assert t.counts() == (1, 1, 0)

    # -- completed: event=completed, once per peer entry ------------------------------

    def test_leecher_finishing_counts_one_completed(self) -> None:
        t = self.open()
        t.announce(request(1, event=Event.STARTED), T0)
        reply = t.announce(request(1, left=0, event=Event.COMPLETED), T0 + 1)
        assert (reply.complete, reply.incomplete, reply.downloaded) == (1, 0, 1)
        assert t.counts() == (1, 0, 1)

    def test_completed_is_counted_once_per_peer_entry(self) -> None:
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, left=0, event=Event.COMPLETED), T0 + 1)
        t.announce(request(1, left=0, event=Event.COMPLETED), T0 + 2)
        t.announce(request(1, left=10), T0 + 3)
        t.announce(request(1, left=0, event=Event.COMPLETED), T0 + 4)
        assert t.counts() == (1, 0, 1)

    def test_completed_from_a_client_whose_entry_expired_is_counted(self) -> None:
        """rTorrent stretches a short interval and may be expired before it says
        completed: the download still happened."""
        t = self.open_expiring()
        t.announce(request(1), T0)
        t.sweep_pass(T0 + TIMEOUT + 1)
        assert t.counts() == (0, 0, 0)
        t.announce(request(1, left=0, event=Event.COMPLETED), T0 + TIMEOUT + 2)
        assert t.counts() == (1, 0, 1)

    def test_finishing_without_the_completed_event_is_not_counted(self) -> None:
        """A seeder re-checking its files goes from left>0 to left=0 without the event:
        nobody downloaded anything."""
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, left=0), T0 + 1)
        assert t.counts() == (1, 0, 0)

    def test_completed_event_with_bytes_left_is_not_counted(self) -> None:
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, left=5, event=Event.COMPLETED), T0 + 1)
        assert t.counts() == (0, 1, 0)

    def test_leecher_stopping_with_nothing_left_is_not_counted(self) -> None:
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, left=0, event=Event.STOPPED), T0 + 1)
        assert t.counts() == (0, 0, 0)

    def test_completed_counts_are_per_torrent(self) -> None:
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, torrent=OTHER_TORRENT), T0)
        t.announce(request(1, left=0, event=Event.COMPLETED), T0 + 1)
        assert t.scrape([TORRENT, OTHER_TORRENT]) == [(1, 0, 1), (0, 1, 0)]

    def test_completed_counts_a_dual_stack_client_once(self) -> None:
        """Over IPv4 and IPv6 a client is two peers, but it finished one download: the
        second family's completed event does not count again."""
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, v6=True), T0)
        t.announce(request(1, left=0, event=Event.COMPLETED), T0 + 1)
        t.announce(request(1, v6=True, left=0, event=Event.COMPLETED), T0 + 1)
        assert t.counts() == (2, 0, 1)

    # -- address families ------------------------------------------------------------

    def test_families_are_kept_apart_without_mixed_families(self) -> None:
        t = self.open()
        t.join([1, 2, 3], T0)
        t.join([11, 12, 13], T0, v6=True)
        v4 = t.announce(request(9, mixed=False), T0)
        assert sorted(peers4(v4)) == [1, 2, 3] and v4.peers6 == b""
        v6 = t.announce(request(9, v6=True, mixed=False), T0)
        assert sorted(peers6(v6)) == [11, 12, 13] and v6.peers4 == b""

    def test_never_mixes_even_when_own_family_is_empty(self) -> None:
        t = self.open()
        t.join([11, 12, 13], T0, v6=True)
        reply = t.announce(request(9, mixed=False), T0)
        assert reply.peers4 == reply.peers6 == b""

    def test_mixed_families_fill_the_remainder_from_the_other_family(self) -> None:
        t = self.open()
        t.join([1, 2, 3], T0)
        t.join(range(11, 21), T0, v6=True)
        reply = t.announce(request(9, numwant=8), T0)
        assert sorted(peers4(reply)) == [1, 2, 3]
        assert len(set(peers6(reply))) == 5
        assert set(peers6(reply)) <= set(range(11, 21))

    def test_mixed_families_for_an_ipv6_requester(self) -> None:
        t = self.open()
        t.join([1, 2, 3], T0)
        t.join([11, 12], T0, v6=True)
        reply = t.announce(request(9, v6=True, numwant=50), T0)
        assert sorted(peers6(reply)) == [11, 12]
        assert sorted(peers4(reply)) == [1, 2, 3]

    def test_mixed_families_take_the_own_family_first(self) -> None:
        t = self.open()
        t.join(range(1, 11), T0)
        t.join(range(11, 21), T0, v6=True)
        reply = t.announce(request(99, numwant=5), T0)
        assert len(set(peers4(reply))) == 5 and reply.peers6 == b""

    def test_seeder_gets_leechers_of_the_other_family(self) -> None:
        t = self.open()
        t.join([1], T0, left=0)
        t.join([11], T0, v6=True, left=0)
        t.join([12], T0, v6=True)
        reply = t.announce(request(1, left=0), T0 + 1)
        assert all_peers(reply) == [12]

    def test_same_peer_id_over_ipv4_and_ipv6_is_two_peers(self) -> None:
        t = self.open()
        t.announce(request(1), T0)
        t.announce(request(1, v6=True), T0)
        assert t.counts() == (0, 2, 0)
        t.announce(request(1, event=Event.STOPPED), T0 + 1)
        assert t.counts() == (0, 1, 0)
        reply = t.announce(request(2), T0 + 2)
        assert reply.peers4 == b"" and peers6(reply) == [1]

    def test_dual_stack_peer_is_never_sent_its_other_address(self) -> None:
        t = self.open()
        t.join([1, 2], T0)
        t.join([1, 2], T0, v6=True)
        for v6 in (False, True):
            for numwant in (1, 2, 3, 50):
                for _ in range(10):
                    reply = t.announce(request(1, v6=v6, numwant=numwant), T0 + 1)
                    assert 1 not in all_peers(reply)
                    assert len(all_peers(reply)) == min(numwant, 2)

    def test_peers_are_returned_in_their_own_family_field(self) -> None:
        t = self.open()
        t.join([1], T0)
        t.join([2], T0, v6=True)
        reply = t.announce(request(9), T0)
        assert reply.peers4 == addr4(1) and reply.peers6 == addr6(2)

    # -- peer ids --------------------------------------------------------------------

    def test_peer_ids_match_the_addresses_in_order(self) -> None:
        t = self.open()
        t.join(range(1, 30), T0, left=0)
        t.join(range(100, 130), T0)
        t.join(range(200, 230), T0, v6=True)
        t.join(range(300, 310), T0, v6=True, left=0)
        for numwant, v6 in ((7, False), (50, False), (100, False), (120, True), (3, True)):
            reply = t.announce(request(100, v6=v6, numwant=numwant, ids=True), T0 + 1)
            for peers, ids, width in (
                (reply.peers4, reply.peer_ids4, 6),
                (reply.peers6, reply.peer_ids6, 18),
            ):
                entries, pids = split(peers, width), split(ids, 20)
                assert len(entries) == len(pids)
                for entry, pid in zip(entries, pids, strict=True):
                    assert decode_addr(entry)[0] == peer_number(pid)
            assert len(all_peers(reply)) == min(numwant, 98)

    def test_peer_ids_follow_a_moved_peer(self) -> None:
        t = self.open()
        t.announce(request(1, key=3), T0)
        t.announce(request(1, variant=1, key=3), T0 + 1)
        reply = t.announce(request(2, ids=True), T0 + 2)
        assert reply.peers4 == addr4(1, 1) and reply.peer_ids4 == peer_id(1)

    def test_peer_ids_are_empty_unless_asked(self) -> None:
        t = self.open()
        t.join([1], T0)
        t.join([2], T0, v6=True)
        reply = t.announce(request(9), T0)
        assert reply.peer_ids4 == reply.peer_ids6 == b""
        assert reply.peers4 and reply.peers6

    # -- counts ----------------------------------------------------------------------

    def test_counts_follow_every_change(self) -> None:
        t = self.open()
        steps: list[tuple[AnnounceRequest, tuple[int, int, int]]] = [
            (request(1, event=Event.STARTED), (0, 1, 0)),
            (request(2, left=0, event=Event.STARTED), (1, 1, 0)),
            (request(3, v6=True, event=Event.STARTED), (1, 2, 0)),
            (request(1, left=0, event=Event.COMPLETED), (2, 1, 1)),
            (request(2, left=0, event=Event.STOPPED), (1, 1, 1)),
            (request(3, v6=True, left=0), (2, 0, 1)),
            (request(4, v6=True, left=0, event=Event.PAUSED), (3, 0, 1)),
            (request(1, left=50), (2, 1, 1)),
            (request(3, v6=True, event=Event.STOPPED), (1, 1, 1)),
            (request(9, event=Event.STOPPED), (1, 1, 1)),
        ]
        for i, (req, expected) in enumerate(steps):
            reply = t.announce(req, T0 + i)
            assert (reply.complete, reply.incomplete, reply.downloaded) == expected, i
            assert t.counts() == expected, i

    # -- scrape ----------------------------------------------------------------------

    def test_scrape_reports_each_torrent_in_order(self) -> None:
        t = self.open()
        t.join([1, 2], T0, left=0)
        t.join([3], T0)
        t.join([1, 2, 3], T0, torrent=OTHER_TORRENT)
        assert t.scrape([TORRENT, OTHER_TORRENT]) == [(2, 1, 0), (0, 3, 0)]
        assert t.scrape([OTHER_TORRENT, TORRENT]) == [(0, 3, 0), (2, 1, 0)]

    def test_scrape_of_an_unknown_torrent_is_zeros(self) -> None:
        t = self.open()
        t.join([1], T0)
        assert t.scrape([UNKNOWN_TORRENT, TORRENT, OTHER_TORRENT]) == [
            ZERO_COUNTS,
            (0, 1, 0),
            ZERO_COUNTS,
        ]

    def test_scrape_of_a_repeated_hash_repeats_its_counts(self) -> None:
        t = self.open()
        t.join([1], T0, left=0)
        hashes = [TORRENT, UNKNOWN_TORRENT, TORRENT, TORRENT]
        assert t.scrape(hashes) == [(1, 0, 0), ZERO_COUNTS, (1, 0, 0), (1, 0, 0)]

    def test_scrape_of_no_hashes_is_empty(self) -> None:
        t = self.open()
        t.join([1], T0)
        assert t.scrape([]) == []

    def test_scrape_does_not_create_torrents(self) -> None:
        t = self.open()
        t.scrape([UNKNOWN_TORRENT])
        assert t.full_scrape() == {} and t.totals().torrents == 0

    def test_full_scrape_lists_every_torrent(self) -> None:
        t = self.open()
        t.join([1, 2], T0, left=0)
        t.join([3], T0, v6=True)
        t.join([1], T0, torrent=OTHER_TORRENT)
        t.announce(request(1, torrent=OTHER_TORRENT, left=0, event=Event.COMPLETED), T0 + 1)
        assert t.full_scrape() == {TORRENT: (2, 1, 0), OTHER_TORRENT: (1, 0, 1)}

    def test_full_scrape_of_an_empty_store_is_empty(self) -> None:
        assert self.open().full_scrape() == {}

    # -- expiry ----------------------------------------------------------------------

    def test_silent_peer_lives_until_its_timeout_has_passed(self) -> None:
        t = self.open_expiring()
        t.join([1], T0)
        t.join([2], T0, left=0)
        t.sweep_pass(T0 + TIMEOUT)
        assert t.counts() == (1, 1, 0)
        steps = t.sweep_pass(T0 + TIMEOUT + 1)
        assert t.counts() == (0, 0, 0)
        assert sum(s.peers_removed for s in steps) == 2

    def test_default_timeout_is_one_and_a_half_intervals_plus_jitter(self) -> None:
        t = self.open(interval=1000, interval_jitter=100)
        t.join([1], T0)
        t.sweep_pass(T0 + 1600)
        assert t.counts() == (0, 1, 0)
        t.sweep_pass(T0 + 1601)
        assert t.counts() == (0, 0, 0)

    def test_announcing_keeps_a_peer_alive(self) -> None:
        t = self.open_expiring()
        for i in range(5):
            t.announce(request(1), T0 + i * 100)
            t.sweep_pass(T0 + i * 100 + TIMEOUT)
        assert t.counts() == (0, 1, 0)

    def test_sweep_keeps_live_peers_and_removes_silent_ones(self) -> None:
        t = self.open_expiring()
        t.join([1, 2, 3], T0)
        t.join([4, 5], T0 + 100, left=0)
        t.join([6], T0 + 100, v6=True)
        t.join([7], T0 + 100, torrent=OTHER_TORRENT)
        t.sweep_pass(T0 + TIMEOUT + 1)
        assert t.scrape([TORRENT, OTHER_TORRENT]) == [(2, 1, 0), (0, 1, 0)]
        got = all_peers(t.announce(request(9, numwant=50), T0 + TIMEOUT + 1))
        assert sorted(got) == [4, 5, 6]

    def test_expired_peer_that_returns_is_a_new_peer(self) -> None:
        t = self.open_expiring()
        t.announce(request(1, key=5), T0)
        t.sweep_pass(T0 + TIMEOUT + 1)
        t.announce(request(1, variant=1, key=6), T0 + TIMEOUT + 2)
        t.announce(request(1, variant=1, key=6, left=0, event=Event.COMPLETED), T0 + TIMEOUT + 3)
        assert t.counts() == (1, 0, 1)

    def test_sweep_works_in_steps_under_a_small_budget(self) -> None:
        t = self.open_expiring()
        for i in range(20):
            t.join([1, 2, 3], T0, torrent=info_hash(f"sweep {i}"))
        steps = t.sweep_pass(T0 + TIMEOUT + 1, budget=1)
        assert len(steps) > 1
        assert [s.finished for s in steps] == [False] * (len(steps) - 1) + [True]
        assert sum(s.peers_removed for s in steps) == 60
        assert sum(s.torrents_removed for s in steps) == 20
        assert t.totals() == (0, 0, 0, 0)
        assert t.full_scrape() == {}

    def test_sweep_step_reports_what_it_did(self) -> None:
        t = self.open_expiring()
        t.join([1, 2], T0)
        t.join([3], T0 + 100, torrent=OTHER_TORRENT)
        (step,) = t.sweep_pass(T0 + TIMEOUT + 1)
        assert step == SweepProgress(
            finished=True, swarms_examined=2, peers_removed=2, torrents_removed=1
        )

    def test_sweep_of_an_empty_store_finishes_at_once(self) -> None:
        t = self.open_expiring()
        assert t.sweep(T0, 10) == SweepProgress(True, 0, 0, 0)

    def test_sweep_passes_repeat(self) -> None:
        t = self.open_expiring()
        t.join([1], T0)
        t.join([2], T0, torrent=OTHER_TORRENT)
        t.sweep_pass(T0 + 10, budget=1)
        t.announce(request(1, event=Event.STOPPED), T0 + 20)
        t.sweep_pass(T0 + 30, budget=1)
        assert t.totals().torrents == 2
        t.sweep_pass(T0 + 20 + TIMEOUT + 1, budget=1)
        assert t.totals() == (0, 0, 0, 0)

    def test_silent_peers_expire_lazily_as_the_swarm_is_announced_to(self) -> None:
        t = self.open_expiring()
        t.join(range(1, 6), T0, left=0)
        t.join(range(11, 16), T0)
        t.join(range(21, 24), T0, v6=True)
        now = T0 + TIMEOUT + 1
        for i in range(200):
            reply = t.announce(request(99), now + i)
            if (reply.complete, reply.incomplete) == (0, 1):
                break
        else:
            raise AssertionError("announces never expired the silent peers")
        assert t.counts() == (0, 1, 0)

    def test_empty_torrent_keeps_its_completed_count_for_a_timeout(self) -> None:
        t = self.open_expiring()
        t.announce(request(1), T0)
        t.announce(request(1, left=0, event=Event.COMPLETED), T0 + 1)
        t.announce(request(1, left=0, event=Event.STOPPED), T0 + 10)
        t.sweep_pass(T0 + 10 + TIMEOUT)
        assert t.counts() == (0, 0, 1)
        assert t.full_scrape() == {TORRENT: (0, 0, 1)}
        assert t.totals() == (1, 0, 0, 1)
        steps = t.sweep_pass(T0 + 10 + TIMEOUT + 1)
        assert sum(s.torrents_removed for s in steps) == 1
        assert t.counts() == ZERO_COUNTS
        assert t.full_scrape() == {}

    def test_peer_joining_an_emptied_torrent_sees_its_completed_count(self) -> None:
        t = self.open_expiring()
        t.announce(request(1), T0)
        t.announce(request(1, left=0, event=Event.COMPLETED), T0 + 1)
        t.announce(request(1, left=0, event=Event.STOPPED), T0 + 2)
        t.sweep_pass(T0 + 50)
        reply = t.announce(request(2), T0 + 100)
        assert (reply.complete, reply.incomplete, reply.downloaded) == (0, 1, 1)

    def test_torrent_whose_peers_all_expired_is_removed(self) -> None:
        t = self.open_expiring()
        t.join([1, 2], T0)
        steps = t.sweep_pass(T0 + TIMEOUT + 1)
        assert sum(s.torrents_removed for s in steps) == 1
        assert t.full_scrape() == {}

    def test_only_the_sweep_removes_torrents(self) -> None:
        t = self.open_expiring()
        t.announce(request(1), T0)
        t.announce(request(1, event=Event.STOPPED), T0 + 1)
        for i in range(10):
            t.announce(request(2, torrent=OTHER_TORRENT), T0 + TIMEOUT * (i + 1))
        assert TORRENT in t.full_scrape()
        t.sweep_pass(T0 + TIMEOUT * 10)
        assert set(t.full_scrape()) == {OTHER_TORRENT}

    # -- totals ----------------------------------------------------------------------

    def test_totals_sum_over_every_torrent(self) -> None:
        t = self.open()
        assert t.totals() == (0, 0, 0, 0)
        t.join([1, 2], T0, left=0)
        t.join([3], T0, v6=True)
        t.join([4, 5, 6], T0, torrent=OTHER_TORRENT)
        t.announce(request(4, torrent=OTHER_TORRENT, left=0, event=Event.COMPLETED), T0 + 1)
        assert t.totals() == StoreTotals(torrents=2, seeders=3, leechers=3, completed=1)

    # -- intervals -------------------------------------------------------------------

    def test_interval_has_jitter_within_bounds(self) -> None:
        t = self.open(interval=1800, interval_jitter=180)
        seen = {t.announce(request(i % 5), T0).interval for i in range(300)}
        assert min(seen) >= 1800 and max(seen) <= 1980
        assert len(seen) > 1

    def test_interval_without_jitter_is_exact(self) -> None:
        t = self.open(interval=900, interval_jitter=0)
        assert {t.announce(request(i % 5), T0).interval for i in range(50)} == {900}

    def test_min_interval_is_reported(self) -> None:
        t = self.open(min_interval=123)
        assert t.announce(request(1), T0).min_interval == 123
        assert t.announce(request(1, event=Event.STOPPED), T0).min_interval == 123

    # -- a model -------------------------------------------------------------------

    def test_random_announces_agree_with_a_model(self) -> None:
        """Random announces, time steps and sweeps against a dict: counts always match,
        no peer is lost or duplicated, and every reply obeys the selection rules."""
        suite = self

        class Model(StoreModel):
            def __init__(self) -> None:
                super().__init__(suite)

        run_state_machine_as_test(
            Model,
            settings=settings(
                max_examples=150,
                stateful_step_count=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )


# -- the model -----------------------------------------------------------------------

MODEL_TORRENTS = (TORRENT, OTHER_TORRENT)
MODEL_PEERS = 5


@dataclasses.dataclass
class ModelPeer:
    seeder: bool
    key: int | None
    seen: int
    completed: bool = False  # this entry's completion has been seen


@dataclasses.dataclass
class ModelTorrent:
    completed: int = 0
    completed_maybe: int = 0  # completions the store may or may not count (see announce)
    touched: int = 0  # last announce the store accepted (stopped for a known peer included)
    asked: int = 0  # last announce of any kind, refused or for an unknown peer


ModelKey = tuple[bytes, bool, int, int]  # torrent, is IPv6, peer number, address variant


class StoreModel(RuleBasedStateMachine):
    """The store against a dict of peer entries keyed by their address: (torrent, is IPv6,
    peer number, variant). Peer ``n`` announces with one peer_id from two addresses, so the
    identity rules (an entry is its address; only its key moves it) are exercised.

    A peer silent for longer than the timeout may or may not still be in the store (lazy
    expiry is the store's business), so until a sweep it is "stale": counted as a maybe,
    and never made to announce again. After a complete sweep the store must match exactly.
    """

    def __init__(self, suite: StoreConformance) -> None:
        super().__init__()
        self.suite = suite
        self.tracker = suite.open_expiring()
        self.now = T0
        self.peers: dict[ModelKey, ModelPeer] = {}
        self.torrents: dict[bytes, ModelTorrent] = {}

    def teardown(self) -> None:
        store = self.tracker.store
        self.suite._opened.remove(store)
        self.suite.resolve(self.suite.close_store(store))

    def stale(self, p: ModelPeer) -> bool:
        return p.seen < self.now - TIMEOUT

    def members(self, torrent: bytes, v6: bool) -> dict[tuple[int, int], ModelPeer]:
        return {(n, var): p for (h, f, n, var), p in self.peers.items() if h == torrent and f == v6}

    def count_range(self, torrent: bytes) -> tuple[tuple[int, int], tuple[int, int]]:
        """((least seeders, most seeders), (least leechers, most leechers))."""
        lo, hi = [0, 0], [0, 0]
        for (h, _, _, _), p in self.peers.items():
            if h == torrent:
                role = 0 if p.seeder else 1
                hi[role] += 1
                if not self.stale(p):
                    lo[role] += 1
        return (lo[0], hi[0]), (lo[1], hi[1])

    def check_counts(self, torrent: bytes, complete: int, incomplete: int, downloaded: int) -> None:
        (s_lo, s_hi), (l_lo, l_hi) = self.count_range(torrent)
        assert s_lo <= complete <= s_hi, (complete, s_lo, s_hi)
        assert l_lo <= incomplete <= l_hi, (incomplete, l_lo, l_hi)
        model = self.torrents.get(torrent)
        least = model.completed if model else 0
        most = least + (model.completed_maybe if model else 0)
        assert least <= downloaded <= most, (downloaded, least, most)

    @rule(
        torrent=st.sampled_from(MODEL_TORRENTS),
        n=st.integers(0, MODEL_PEERS - 1),
        v6=st.booleans(),
        variant=st.integers(0, 1),
        key=st.sampled_from([None, 1, 2]),
        seeder=st.booleans(),
        event=st.sampled_from(list(Event)),
        numwant=st.sampled_from([-1, 0, 1, 2, 3, 7]),
        mixed=st.booleans(),
        ids=st.booleans(),
    )
    def announce(
        self,
        torrent: bytes,
        n: int,
        v6: bool,
        variant: int,
        key: int | None,
        seeder: bool,
        event: Event,
        numwant: int,
        mixed: bool,
        ids: bool,
    ) -> None:
        here: ModelKey = (torrent, v6, n, variant)
        elsewhere: ModelKey = (torrent, v6, n, 1 - variant)
        p = self.peers.get(here)
        moving = None if p is not None or key is None else self.peers.get(elsewhere)
        if moving is not None and moving.key != key:
            moving = None
        if (p is not None and self.stale(p)) or (moving is not None and self.stale(moving)):
            return  # it may or may not be in the store any more
        req = request(
            n, torrent=torrent, left=0 if seeder else 100, event=event, v6=v6,
            variant=variant, key=key, numwant=numwant, mixed=mixed, ids=ids,
        )  # fmt: skip
        model_torrent = self.torrents.get(torrent)
        if model_torrent is not None:
            model_torrent.asked = self.now
        reply = self.tracker.announce(req, self.now)

        entry = p if p is not None else moving
        if event == Event.STOPPED:
            if entry is not None:
                self.peers.pop(here if p is not None else elsewhere)
                assert model_torrent is not None
                model_torrent.touched = self.now
        else:
            if model_torrent is None:
                model_torrent = self.torrents[torrent] = ModelTorrent()
            model_torrent.touched = model_torrent.asked = self.now
            if entry is None:
                entry = ModelPeer(seeder, key, self.now)
            elif moving is not None:
                del self.peers[elsewhere]
            self.peers[here] = entry
            entry.seen, entry.seeder = self.now, seeder
            if event == Event.COMPLETED and seeder and not entry.completed:
                # Once per entry; not again when the same client's other family counted,
                # unless that entry has expired (removed or not yet, it counts for nothing).
                # With entries at two addresses there, the store looks at one of them.
                others = [q for (h, f, m, _), q in self.peers.items()
                          if h == torrent and f != v6 and m == n]
                counted = [q.completed and not self.stale(q) for q in others]
                if not any(counted):
                    model_torrent.completed += 1
                elif not all(counted):
                    model_torrent.completed_maybe += 1
            if event == Event.COMPLETED and seeder:
                entry.completed = True

        self.check_counts(torrent, reply.complete, reply.incomplete, reply.downloaded)
        if event == Event.STOPPED or reply.role_after == ROLE_NONE:
            assert reply.peers4 == reply.peers6 == reply.peer_ids4 == reply.peer_ids6 == b""
            return
        assert reply.min_interval == 10 and reply.interval == 100
        self.check_reply(req, reply, n, variant, v6, torrent)

    def check_reply(
        self, req: AnnounceRequest, reply: AnnounceResult, n: int, variant: int, v6: bool,
        torrent: bytes,
    ) -> None:
        wants_leechers_only = req.left == 0 or req.event == Event.PAUSED
        want = self.tracker.policy.numwant(req.numwant)
        total = 0
        least = 0
        for family_v6, peers, pids, width in (
            (False, reply.peers4, reply.peer_ids4, 6),
            (True, reply.peers6, reply.peer_ids6, 18),
        ):
            members = self.members(torrent, family_v6)
            entries = split(peers, width)
            if family_v6 != v6 and not req.mixed_families:
                assert entries == []
                continue
            least += sum(
                1
                for (m, var), p in members.items()
                if m != n and not self.stale(p) and not (wants_leechers_only and p.seeder)
            )
            numbers = []
            roles = []
            for entry in entries:
                m, var = decode_addr(entry)
                assert family_v6 != v6 or (m, var) != (n, variant), "requester was sent itself"
                assert (m, var) in members, f"peer {m} at {var} is not in the swarm"
                numbers.append((m, var))
                roles.append(members[m, var].seeder)
            assert len(numbers) == len(set(numbers)), "a peer was sent twice"
            assert roles == sorted(roles, reverse=True), "a leecher came before a seeder"
            if wants_leechers_only:
                assert not any(roles), "a seeder or paused peer was sent a seeder"
            if req.want_peer_ids:
                assert [peer_number(pid) for pid in split(pids, 20)] == [m for m, _ in numbers]
            else:
                assert pids == b""
            total += len(numbers)
        assert min(want, least) <= total <= want

    @rule(seconds=st.integers(1, 120))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @rule(budget=st.integers(1, 6))
    def sweep(self, budget: int) -> None:
        self.tracker.sweep_pass(self.now, budget)
        before = self.now - TIMEOUT
        self.peers = {k: p for k, p in self.peers.items() if p.seen >= before}
        listed = self.tracker.full_scrape()
        for torrent, model in list(self.torrents.items()):
            if any(h == torrent for h, _, _, _ in self.peers):
                assert torrent in listed, "torrent with live peers removed"
            elif model.asked < before:
                assert torrent not in listed, "torrent empty for a timeout kept"
            elif model.touched >= before:
                assert torrent in listed, "torrent removed before a timeout"
            if torrent not in listed:
                del self.torrents[torrent]
        assert set(listed) == set(self.torrents)
        for torrent in MODEL_TORRENTS:
            (s, s_hi), (le, l_hi) = self.count_range(torrent)
            assert (s, le) == (s_hi, l_hi)
            counts = self.tracker.counts(torrent)
            assert (counts.complete, counts.incomplete) == (s, le)
            self.check_counts(torrent, s, le, counts.downloaded)
            if torrent in self.torrents:
                assert listed[torrent] == counts
        totals = self.tracker.totals()
        assert totals.torrents == len(self.torrents)
        least = sum(m.completed for m in self.torrents.values())
        assert least <= totals.completed <= least + sum(
            m.completed_maybe for m in self.torrents.values())
        assert totals.seeders == sum(p.seeder for p in self.peers.values())
        assert totals.leechers == sum(not p.seeder for p in self.peers.values())

    @invariant()
    def counts_are_within_the_model(self) -> None:
        for torrent, counts in zip(
            MODEL_TORRENTS, self.tracker.scrape(MODEL_TORRENTS), strict=True
        ):
            self.check_counts(torrent, *counts)

    @invariant()
    def store_is_consistent(self) -> None:
        self.suite.check_invariants(self.tracker.store)
