"""What the compiled data planes (UDP and HTTP) are built from: the plan that turns the
logic layer's state into the arguments of a compiled answer (shoal/_native/answer.h), or
says that Python must answer."""

from __future__ import annotations

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
