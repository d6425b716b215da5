"""The logic layer: rules before the store, the policy around it, one place for awaitable
results (bounded), and hooks after it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import pytest
from support.peers import request

from shoal.engine.policy import Policy
from shoal.engine.rules import AccessRules
from shoal.errors import ClientError
from shoal.logic import BUSY, Configuration, Later, TrackerLogic
from shoal.storage.memory import MemoryStore
from shoal.types import AnnounceRequest, AnnounceResult, SwarmCounts

T0 = 1_700_000_000
SOURCE = b"\x0a\0\0\x01"


def answer(logic: TrackerLogic, req: AnnounceRequest) -> AnnounceResult | ClientError:
    found = logic.announce(req, SOURCE, T0)
    assert not isinstance(found, Later), "a direct store answers at once"
    return found


def test_policy_resolves_numwant_and_sets_intervals() -> None:
    logic = TrackerLogic(MemoryStore(), Configuration(Policy(interval=100, interval_jitter=0,
                                                             min_interval=7, max_numwant=3)))
    for n in range(10):
        answer(logic, request(n))
    found = answer(logic, request(99, numwant=50))
    assert isinstance(found, AnnounceResult)
    assert (found.interval, found.min_interval, len(found.peers4) // 6) == (100, 7, 3)


def test_a_refusal_by_a_rule_never_reaches_the_store() -> None:
    store = MemoryStore()
    logic = TrackerLogic(store, Configuration(Policy(), AccessRules.build("allow", [])))
    found = answer(logic, request(1))
    assert isinstance(found, ClientError)
    assert store.swarms == {}


def test_configure_swaps_rules_policy_and_limits_at_once() -> None:
    store = MemoryStore()
    logic = TrackerLogic(store)
    logic.configure(Configuration(Policy(interval=60, interval_jitter=0),
                                  AccessRules.build(client_deny=["-SH"])))
    assert isinstance(answer(logic, request(1)), ClientError)
    assert store.settings.peer_timeout == 90
    logic.configure(Configuration(Policy()))
    assert isinstance(answer(logic, request(1)), AnnounceResult)


def test_hooks_see_every_answered_announce_and_a_failing_hook_is_counted() -> None:
    logic = TrackerLogic(MemoryStore())
    seen: list[tuple[bytes, bool]] = []
    logic.add_hook(lambda req, res: seen.append((req.peer_id, res.new_peer)))

    def broken(req: AnnounceRequest, res: AnnounceResult) -> None:
        raise RuntimeError("a hook's bug")

    logic.add_hook(broken)
    answer(logic, request(1))
    answer(logic, request(1))
    assert [new for _, new in seen] == [True, False]
    assert logic.hook_errors == 2


def test_banned_sources_are_not_admitted() -> None:
    logic = TrackerLogic(MemoryStore(), Configuration(
        Policy(), AccessRules.build(banned_networks=["10.0.0.0/8"])))
    assert not logic.admits(SOURCE)
    assert logic.admits(b"\x7f\0\0\x01")


class LaterStore(MemoryStore):
    """A store on the network: every answer comes later."""

    def announce(self, request: AnnounceRequest, now: int) -> Any:
        result = super().announce(request, now)

        async def later() -> AnnounceResult:
            await asyncio.sleep(0)
            return result

        return later()

    def scrape(self, info_hashes: Sequence[bytes]) -> Any:
        async def later() -> list[SwarmCounts]:
            raise ClientError("scrape refused later")

        return later()


def test_awaitable_answers_are_resolved_with_policy_and_bounded() -> None:
    async def main() -> list[Any]:
        tasks: list[Awaitable[None]] = []

        def spawn(coro: Any) -> None:
            tasks.append(asyncio.ensure_future(coro))

        logic = TrackerLogic(LaterStore(), Configuration(Policy(interval=50, interval_jitter=0)),
                             spawn=spawn, max_pending=2)
        box: list[Any] = []
        for n in range(3):
            later = logic.announce(request(n), SOURCE, T0)
            assert isinstance(later, Later)
            later.then(box.append)
        scraped = logic.scrape([b"x" * 20], SOURCE)
        assert isinstance(scraped, Later)
        scraped.then(box.append)
        assert [str(b) for b in box] == [BUSY, BUSY]  # the third announce, then the scrape
        assert logic.pending == 2
        await asyncio.gather(*tasks)
        assert logic.pending == 0
        return box

    box = asyncio.run(main())
    answered = [b for b in box if isinstance(b, AnnounceResult)]
    assert len(answered) == 2 and all(b.interval == 50 for b in answered)


def test_an_awaitable_answer_without_a_spawn_function_is_a_programming_error() -> None:
    logic = TrackerLogic(LaterStore())
    later = logic.announce(request(1), SOURCE, T0)
    assert isinstance(later, Later)
    with pytest.raises(RuntimeError, match="spawn"):
        later.then(lambda found: None)


def test_private_mode_admits_after_the_rules_and_accounts_after_the_store() -> None:
    from shoal.engine.accounting import PrivateTracker, Torrent, User
    from shoal.types import Event

    store = MemoryStore()
    logic = TrackerLogic(store)
    private = PrivateTracker()
    private.put_user(User(1, "K" * 32))
    logic.enable_private(private)
    refused = answer(logic, request(1))
    assert isinstance(refused, ClientError) and refused.reason.startswith("passkey required")
    assert store.swarms == {}
    private.put_torrent(Torrent(request(1).info_hash))
    first = request(1, event=Event.STARTED)
    first.path = b"/" + b"K" * 32 + b"/announce"
    assert isinstance(answer(logic, first), AnnounceResult)
    again = request(1)
    again.path, again.uploaded = first.path, 700
    assert isinstance(answer(logic, again), AnnounceResult)
    assert private.pending[1, again.info_hash].uploaded == 700


def test_private_mode_makes_the_store_keep_the_reported_totals() -> None:
    """Accounting credits the change since a peer's previous announce, so private mode
    has the store keep every peer's reported totals (a public tracker keeps none unless
    configured to)."""
    from shoal.engine.accounting import PrivateTracker, Torrent, User
    from shoal.storage.base import StoreSettings

    store = MemoryStore()
    logic = TrackerLogic(store)
    assert store.settings.keep_totals is False
    private = PrivateTracker()
    private.put_user(User(1, "K" * 32))
    private.put_torrent(Torrent(request(1).info_hash))
    logic.enable_private(private)
    assert store.settings.keep_totals is True
    path = b"/" + b"K" * 32 + b"/announce"
    for uploaded in (0, 700, 1000):
        req = request(1)
        req.path, req.uploaded = path, uploaded
        result = answer(logic, req)
        assert isinstance(result, AnnounceResult)
    assert result.prev_uploaded == 700
    assert private.pending[1, req.info_hash].uploaded == 1000
    # a reload in private mode keeps them whatever its limits say
    logic.configure(Configuration(Policy(), limits=StoreSettings(keep_totals=False)))
    assert store.settings.keep_totals is True
    logic.enable_private(None)
    assert store.settings.keep_totals is False
    logic.configure(Configuration(Policy(), limits=StoreSettings(keep_totals=True)))
    assert store.settings.keep_totals is True


def test_tracker_peer_totals_has_a_public_store_keep_them_for_the_hooks() -> None:
    from shoal.config import Settings, apply_assignments
    from shoal.server.app import configuration_from

    store = MemoryStore()
    logic = TrackerLogic(store, configuration_from(Settings()))
    assert store.settings.keep_totals is False
    new = apply_assignments(Settings(), ["tracker.peer_totals=true"])
    logic.configure(configuration_from(new))
    seen: list[int] = []
    logic.add_hook(lambda req, result: seen.append(result.prev_uploaded))
    for uploaded in (5, 9):
        req = request(1)
        req.uploaded = uploaded
        assert isinstance(answer(logic, req), AnnounceResult)
    assert seen == [0, 5]


def test_private_mode_scrape_needs_a_passkey_and_hides_unregistered_torrents() -> None:
    from shoal.engine.accounting import PrivateTracker, Torrent, User

    logic = TrackerLogic(MemoryStore())
    private = PrivateTracker()
    private.put_user(User(1, "K" * 32))
    torrent = request(1).info_hash
    private.put_torrent(Torrent(torrent))
    logic.enable_private(private)
    answer(logic, request(1))  # refused: no passkey, so the swarm stays empty
    assert isinstance(logic.scrape([torrent], SOURCE), ClientError)
    counts = logic.scrape([torrent, b"\x09" * 20], SOURCE, b"/" + b"K" * 32 + b"/scrape")
    assert counts == [SwarmCounts(0, 0, 0), SwarmCounts(0, 0, 0)]
