"""What the compiled data planes (UDP and HTTP) are built from: the plan that turns the
logic layer's state into the arguments of a compiled answer (shoal/_native/answer.h), or
says that Python must answer, and the Python side that both data planes share
(:class:`CompiledAnswer`)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from shoal.engine.rules import (
    BANNED,
    CLIENT_NOT_ALLOWED,
    TORRENT_NOT_ALLOWED,
    BannedNetworks,
    ClientPrefixes,
    TorrentList,
)
from shoal.logic import TrackerLogic
from shoal.server.persist import Persistence
from shoal.server.stats import Counters

FAILURES = (BANNED, TORRENT_NOT_ALLOWED, CLIENT_NOT_ALLOWED, "swarm is full",
            "too many peers from your address in this swarm",
            "tracker is full: no new torrents accepted")
"""Placeholders for the refusal count slots until an attach names them."""


def fast_plan(logic: TrackerLogic) -> tuple[dict[str, Any], Persistence | None] | None:
    """The arguments of a compiled answer's attach (``Engine.attach_store`` of the UDP
    data plane, ``HttpAnswer.attach`` of the HTTP one) for the logic layer's state now, and
    the persistence whose hook it stands in for; None when a request needs Python.

    The compiled answer applies the store's C API to the native in-memory store's table.
    It is used when the store is that one, private mode is off, the only hook is
    persistence's (whose effect it reproduces) and every announce rule is one it has a
    compiled copy of."""
    store = logic.store
    native_table = getattr(store, "native_table", None)
    if getattr(store, "engine", None) != "native" or native_table is None:
        return None
    if logic.private is not None:
        return None
    persistence: Persistence | None = None
    for hook in logic.hooks:
        owner = getattr(hook, "__self__", None)
        if not (isinstance(owner, Persistence)
                and getattr(hook, "__func__", None) is Persistence.on_announce
                and (persistence is None or persistence is owner)):
            return None  # a Python hook: it must see every announce
        persistence = owner
    access = logic.access
    torrents: TorrentList | None = None
    clients: ClientPrefixes | None = None
    for rule in logic.rules:
        owner = getattr(rule, "__self__", None)
        func = getattr(rule, "__func__", None)
        if isinstance(owner, BannedNetworks) and func is BannedNetworks.check:
            if owner.networks is not access.banned:
                return None  # the engine's compiled networks are access.banned
        elif isinstance(owner, TorrentList) and func is TorrentList.check:
            torrents = owner
        elif isinstance(owner, ClientPrefixes) and func is ClientPrefixes.check:
            clients = owner
        else:
            return None  # a rule with no compiled copy
    if torrents is not access.torrents:
        return None  # scrapes hide torrents by access.torrents: must be the same list
    policy = logic.policy
    args: dict[str, Any] = {
        "table": native_table(),
        "interval": policy.interval,
        "jitter": policy.interval_jitter,
        "default_numwant": policy.default_numwant,
        "max_numwant": policy.max_numwant,
        "torrents": 0 if torrents is None else 1 if torrents.allow else 2,
        "hashes": b"" if torrents is None else b"".join(
            h for h in torrents.hashes if len(h) == 20),
        "client_allow": () if clients is None else clients.allow,
        "client_deny": () if clients is None else clients.deny,
        "reasons": (BANNED, TORRENT_NOT_ALLOWED, CLIENT_NOT_ALLOWED),
        "record_completed": persistence is not None,
        "seed": policy.rng.getrandbits(64),
        "min_interval": policy.min_interval,
    }
    return args, persistence


class WatchedSocket(asyncio.BaseTransport):
    """A socket the compiled data plane reads from when the event loop says it is readable
    (the UDP endpoint's, the HTTP listener's): the transport the tracker lists for health
    and closes on stop."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__({"socket": sock, "sockname": sock.getsockname()})
        sock.setblocking(False)
        self.sock = sock
        self._fd = sock.fileno()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def watch(self, loop: asyncio.AbstractEventLoop, readable: Callable[[], None]) -> None:
        """Call ``readable`` on ``loop`` whenever the socket is readable."""
        self._loop = loop
        loop.add_reader(self._fd, readable)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self.sock.close()


class AttrTable:
    """An object's attributes seen as a table, for the count slots that go to attributes
    (``counters.internal_errors``) rather than to a table's keys."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __getitem__(self, key: str) -> Any:
        return getattr(self.obj, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self.obj, key, value)


class CompiledAnswer:
    """The Python side of one compiled answer (the UDP data plane's ``Engine``, the HTTP
    one's ``HttpAnswer``): attaches it to the logic layer's state (:func:`fast_plan`) or
    detaches it so that Python answers, hands the completions it records to persistence,
    and adds its figures to the counters.

    ``targets`` says where each of ``native.counts()``'s slots goes, as (table, key); the
    refusal texts an attach returns fill the slots from ``failure_slot`` on. ``name`` and
    ``log`` are the data plane's, for the log lines that say which path answers."""

    def __init__(
        self, name: str, log: logging.Logger, native: Any, counters: Counters,
        targets: list[tuple[Any, Any]], failure_slot: int,
        attach: Callable[..., tuple[str, ...]], detach: Callable[[], bytes],
    ) -> None:
        self.name = name
        self.log = log
        self.native = native
        self.counters = counters
        self.targets = targets
        self.failure_slot = failure_slot
        self._attach = attach
        self._detach = detach
        self.persistence: Persistence | None = None  # whose completions it records

    def sync(self, logic: TrackerLogic, allowed: bool = True,
             prepare: Callable[[], None] | None = None) -> bool:
        """Attach the compiled answer to the logic layer's state now (after ``prepare``),
        unless something Python-only is in force or ``allowed`` is false: then detach it.
        Whether it is attached."""
        native = self.native
        try:
            plan = fast_plan(logic) if allowed else None
            if plan is None:
                if native.attached:
                    self._hand_completed(self._detach())
                    self.log.info("%s: announces and scrapes answered in Python", self.name)
                self.persistence = None
                return False
            args, persistence = plan
            if self.persistence is not None and persistence is not self.persistence:
                self._hand_completed(native.take_completed())
            self.persistence = persistence
            if prepare is not None:
                prepare()
            was = native.attached
            reasons = self._attach(**args)
        except Exception:
            # Only a broken build gets here (the store's C API of another version, say):
            # Python answers, as it would without the extension.
            self.log.exception(
                "%s: cannot answer in C; announces and scrapes answered in Python", self.name)
            if native.attached:
                self._hand_completed(self._detach())
            self.persistence = None
            return False
        for offset, reason in enumerate(reasons):
            self.targets[self.failure_slot + offset] = (self.counters.failures, reason)
        if not was:
            self.log.info("%s: announces and scrapes answered in C on the native store",
                          self.name)
        return True

    def _hand_completed(self, hashes: bytes) -> None:
        persistence = self.persistence
        if hashes and persistence is not None:
            persistence.mark_completed(hashes[i:i + 20] for i in range(0, len(hashes), 20))

    def collect(self) -> None:
        """Add the compiled answer's figures since the last call to the counters, and hand
        the completions it recorded to persistence (a puller of the counters)."""
        native = self.native
        if self.persistence is not None:
            self._hand_completed(native.take_completed())
        pairs, latency_sum = native.counts()
        targets = self.targets
        for slot, count in pairs:
            table, key = targets[slot]
            table[key] += count
        self.counters.latency_sum += latency_sum
