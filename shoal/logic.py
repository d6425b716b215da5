"""The logic layer: the one object every frontend (HTTP, UDP, later WebSocket) calls.

``announce`` runs the access rules, resolves ``numwant`` by the policy, asks the store,
fills in the intervals, runs the post-announce hooks and returns the result (or the
:class:`ClientError` that refused it). It is the only place where a store's awaitable
result is resolved: a direct result is returned at once, with no task and no callback (the
in-memory hot path); an awaitable one comes back as a :class:`Later`, run by the ``spawn``
function the server gives (which keeps the task referenced), with at most ``max_pending``
in flight, past which requests are refused with a transient failure instead of piling up.

Rules, policy and store limits are swapped whole by :meth:`TrackerLogic.configure`, so a
request sees the old configuration or the new one, never a mix. In private mode
(:meth:`TrackerLogic.enable_private`) a :class:`PrivateTracker` admits each announce after
the access rules (passkey, user, registered torrent, peer limit) and accounts it with the
store's outcome before the hooks run; scrapes then need a passkey too. It sits above the storage
layer (it calls a store) and below the servers; it imports no asyncio, sockets or clock.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shoal.engine.accounting import PrivateTracker, Ticket
from shoal.engine.policy import Policy
from shoal.engine.rules import BANNED, OPEN, RETRY_LATER, AccessRules, Rule
from shoal.errors import ClientError
from shoal.storage.base import MaybeAwaitable, PeerStore, StoreSettings
from shoal.types import AnnounceRequest, AnnounceResult, SwarmCounts

log = logging.getLogger("shoal.logic")

T = TypeVar("T")
BUSY = "tracker busy, try again shortly"
INTERNAL = "internal error, try again later"

Hook = Callable[[AnnounceRequest, AnnounceResult], None]
Spawn = Callable[[Coroutine[Any, Any, None]], object]


class Later(Generic[T]):
    """An answer that a networked store gives later. The frontend hands :meth:`then` the
    function that sends it; that function is called once, with the result or the
    :class:`ClientError` that refused the request."""

    __slots__ = ("_start",)

    def __init__(self, start: Callable[[Callable[[T | ClientError], None]], None]) -> None:
        self._start = start

    def then(self, reply: Callable[[T | ClientError], None]) -> None:
        self._start(reply)


@dataclass(frozen=True, slots=True)
class Configuration:
    """What reload can change: the policy, the access rules and the store's limits."""

    policy: Policy
    access: AccessRules = OPEN
    limits: StoreSettings | None = None


class TrackerLogic:
    """Rules -> policy -> store -> outcome -> hooks, for every frontend."""

    def __init__(
        self,
        store: PeerStore,
        config: Configuration | None = None,
        *,
        spawn: Spawn | None = None,
        max_pending: int = 10_000,
    ) -> None:
        self.store = store
        self.spawn = spawn
        self.max_pending = max_pending
        self.pending = 0
        self.hooks: tuple[Hook, ...] = ()
        self.hook_errors = 0
        # Bumped whenever what an announce goes through changes (configuration, private
        # mode, hooks): the compiled data planes rebuild their copies when it moves.
        self.generation = 0
        self.private: PrivateTracker | None = None
        self.internal_errors = 0
        self.config = config if config is not None else Configuration(Policy())
        self._policy = self.config.policy
        self._rules: tuple[Rule, ...] = ()
        self._banned = self.config.access.banned
        self.configure(self.config)

    def configure(self, config: Configuration) -> None:
        """Apply a new configuration; everything a request reads is replaced at once."""
        limits = config.limits
        if limits is None:
            limits = StoreSettings(peer_timeout=config.policy.peer_timeout)
        self.store.configure(self._store_settings(limits))
        self.config = config
        self._policy, self._rules, self._banned = (
            config.policy, config.access.announce_rules(), config.access.banned)
        self.generation += 1

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def access(self) -> AccessRules:
        return self.config.access

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The announce rules in force, in the order they run (swapped whole on reload)."""
        return self._rules

    def _store_settings(self, limits: StoreSettings) -> StoreSettings:
        """``limits`` as the store gets them: private mode's accounting needs each peer's
        previously reported totals, so it makes the store keep them."""
        if self.private is not None and not limits.keep_totals:
            return dataclasses.replace(limits, keep_totals=True)
        return limits

    def enable_private(self, private: PrivateTracker | None) -> None:
        """Private mode: ``private`` admits and accounts every announce (None: public)."""
        self.private = private
        limits = self.config.limits
        if limits is None:
            limits = StoreSettings(peer_timeout=self.config.policy.peer_timeout)
        self.store.configure(self._store_settings(limits))
        self.generation += 1

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook(request, result)`` after every announce the store answered."""
        self.hooks = (*self.hooks, hook)
        self.generation += 1

    def admits(self, source: bytes) -> bool:
        """Whether a datagram from ``source`` (packed IP) may be answered at all: a banned
        UDP source gets no reply, not even a connection id."""
        banned = self._banned
        return not banned.count or source not in banned

    # -- announce -------------------------------------------------------------------

    def announce(
        self, request: AnnounceRequest, source: bytes, now: int
    ) -> AnnounceResult | ClientError | Later[AnnounceResult]:
        """The answer to ``request`` from the client at packed IP ``source``: the result,
        the refusal, or (from a networked store) a :class:`Later` that delivers either."""
        policy = self._policy
        private = self.private
        ticket: Ticket | None = None
        try:
            for rule in self._rules:
                rule(request, source)
            if private is not None:
                ticket = private.admit(request, now)
            request.numwant = policy.numwant(request.numwant)
            found = self.store.announce(request, now)
        except ClientError as exc:
            return exc
        if isinstance(found, AnnounceResult):
            return self._finish(request, found, policy, ticket, now)
        return Later(lambda reply: self._later(
            found, reply, lambda result: self._finish(request, result, policy, ticket, now)))

    def _finish(self, request: AnnounceRequest, found: AnnounceResult,
                policy: Policy, ticket: Ticket | None = None, now: int = 0) -> AnnounceResult:
        """The intervals of ``policy`` (the one the request began under), the accounting
        of private mode, and the hooks."""
        found.interval = policy.next_interval()
        found.min_interval = policy.min_interval
        if ticket is not None and self.private is not None:
            try:
                self.private.settle(ticket, request, found, now)
            except Exception:
                self.hook_errors += 1
                log.exception("private mode: accounting an announce failed")
        if self.hooks:
            self._run_hooks(request, found)
        return found

    def _run_hooks(self, request: AnnounceRequest, result: AnnounceResult) -> None:
        for hook in self.hooks:
            try:
                hook(request, result)
            except Exception:
                self.hook_errors += 1
                log.exception("post-announce hook %r failed", hook)

    # -- scrape ---------------------------------------------------------------------

    def scrape(
        self, info_hashes: Sequence[bytes], source: bytes, target: bytes = b""
    ) -> list[SwarmCounts] | ClientError | Later[list[SwarmCounts]]:
        """Counts for ``info_hashes`` (in order). A banned address is refused; under a
        torrent allow or deny list, a torrent that may not be served counts zeros, as an
        unknown one does. In private mode ``target`` (the request path) must carry a valid
        passkey, an unregistered torrent counts zeros and a hybrid torrent's second hash
        counts its swarm."""
        if not self.admits(source):
            return ClientError(BANNED, RETRY_LATER)
        if self.private is not None:
            return self._private_scrape(self.private, info_hashes, target)
        return self._scrape_store(info_hashes)

    def _scrape_store(
        self, info_hashes: Sequence[bytes]
    ) -> list[SwarmCounts] | ClientError | Later[list[SwarmCounts]]:
        access = self.config.access
        try:
            found = self.store.scrape(info_hashes)
        except ClientError as exc:
            return exc
        listed = access.torrents
        if isinstance(found, list):
            return found if listed is None else self._hide(info_hashes, found)
        return Later(lambda reply: self._later(
            found, reply,
            lambda counts: counts if listed is None else self._hide(info_hashes, counts)))

    def _private_scrape(
        self, private: PrivateTracker, info_hashes: Sequence[bytes], target: bytes
    ) -> list[SwarmCounts] | ClientError | Later[list[SwarmCounts]]:
        try:
            mapped = private.scrape_hashes(info_hashes, target)
        except ClientError as exc:
            return exc
        known = [h for h in mapped if h is not None]
        if not known:
            return [SwarmCounts(0, 0, 0)] * len(mapped)
        found = self._scrape_store(known)  # access lists apply too

        def spread(counts: list[SwarmCounts]) -> list[SwarmCounts]:
            each = iter(counts)
            return [SwarmCounts(0, 0, 0) if h is None else next(each) for h in mapped]

        if isinstance(found, list):
            return spread(found)
        if isinstance(found, ClientError):
            return found
        return Later(lambda reply: found.then(
            lambda got: reply(got if isinstance(got, ClientError) else spread(got))))

    def _hide(self, info_hashes: Sequence[bytes], counts: list[SwarmCounts]) -> list[SwarmCounts]:
        listed = self.config.access.torrents
        assert listed is not None
        return [c if listed.permits(h) else SwarmCounts(0, 0, 0)
                for h, c in zip(info_hashes, counts, strict=True)]

    # -- the one place awaitables are resolved --------------------------------------

    def _later(self, awaitable: Awaitable[T], reply: Callable[[Any], None],
               then: Callable[[T], Any]) -> None:
        if self.spawn is None or self.pending >= self.max_pending:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()  # a coroutine never awaited would warn
            if self.spawn is None:
                raise RuntimeError("the store answered later but no spawn function was given")
            reply(ClientError(BUSY))
            return
        self.pending += 1

        async def wait() -> None:
            try:
                value = await awaitable
                outcome: Any = then(value)
            except ClientError as exc:
                outcome = exc
            except Exception:
                self.internal_errors += 1
                log.exception("internal error in a store call")
                outcome = ClientError(INTERNAL)
            finally:
                self.pending -= 1
            reply(outcome)

        self.spawn(wait())


async def resolved(value: MaybeAwaitable[T]) -> T:
    """``value`` itself, or what it gives when it is awaitable: for the servers' own
    whole-store reads (stats, sweep, full scrape), which run in tasks anyway."""
    if inspect.isawaitable(value):
        result: T = await value
        return result
    return value
