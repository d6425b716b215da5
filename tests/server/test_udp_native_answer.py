"""The compiled UDP answer (announces and scrapes answered in C on the native store) gives
the replies the Python path gives.

Two trackers on real loopback sockets, one on the compiled data plane and native store, one
on the pure-Python path, get the same sequence of datagrams: new peers, re-announces,
completions, stops, scrapes, refusals by the access rules and the store's caps, and a reload
that changes the rules. Every reply must match except what is random by design: the
interval's jitter (checked to lie in the policy's range) and which peers are picked (the
swarms here are smaller than numwant, so every eligible peer is sent, in any order).
Persistence must see the same torrents whose completed count went up, and the counters the
same requests and refusals.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.native import native_udp
from support.running import RunningTracker

from shoal.config import Settings
from shoal.engine.policy import Policy
from shoal.engine.rules import (
    BANNED,
    CLIENT_NOT_ALLOWED,
    TORRENT_NOT_ALLOWED,
    AccessRules,
)
from shoal.engine.swarm import SWARM_FULL
from shoal.server.udp import NativeUdpEndpoint, UdpOptions
from shoal.storage.base import TRACKER_FULL
from shoal.storage.memory import MemoryStore

PROTOCOL_ID = 0x41727101980
INTERVAL, JITTER = 1800, 180
_HEADER = struct.Struct(">QII")
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")


def answered_in_c(rt: RunningTracker, endpoint: NativeUdpEndpoint) -> dict[str, int]:
    """What the compiled answer answered so far (its figures pulled in first)."""
    return rt.in_loop(lambda: (rt.tracker.counters.pull(), dict(endpoint.answered_in_c))[1])


def torrent(n: int) -> bytes:
    return bytes([0xC0 + n]) * 20


def peer(prefix: bytes, n: int) -> bytes:
    return prefix + n.to_bytes(20 - len(prefix), "big")


def make_settings(data_dir: Path, engine: str, **access: Any) -> Settings:
    base = Settings()
    return dataclasses.replace(
        base,
        tracker=dataclasses.replace(base.tracker, engine=engine, interval=INTERVAL,
                                    interval_jitter=JITTER, max_peers_per_swarm=4,
                                    max_torrents=6, default_numwant=50),
        http=dataclasses.replace(base.http, enabled=False),
        udp=dataclasses.replace(base.udp, hosts=["127.0.0.1"], port=0),
        admin=dataclasses.replace(base.admin, enabled=False),
        storage=dataclasses.replace(base.storage, persist=True, data_dir=str(data_dir),
                                    flush_interval=3600.0, snapshot_interval=3600),
        access=dataclasses.replace(base.access, **access),
    )


class Client:
    """A BEP 15 client over a blocking socket, from one loopback address."""

    def __init__(self, server: tuple[str, int], source: str) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(5.0)
        self.tid = 0
        self.conn = 0

    def ask(self, data: bytes) -> bytes:
        self.sock.sendto(data, self.server)
        reply, _ = self.sock.recvfrom(4096)
        assert struct.unpack_from(">I", reply, 4)[0] == self.tid
        return reply

    def connect(self) -> None:
        self.tid += 1
        reply = self.ask(_HEADER.pack(PROTOCOL_ID, 0, self.tid))
        self.conn = struct.unpack_from(">Q", reply, 8)[0]

    def announce(self, info_hash: bytes, peer_id: bytes, port: int, *, left: int = 10,
                 event: int = 0, numwant: int = -1, ip: int = 0) -> bytes:
        self.tid += 1
        return self.ask(_ANNOUNCE.pack(self.conn, 1, self.tid, info_hash, peer_id, 5, left, 7,
                                       event, ip, 0, numwant, port))

    def scrape(self, hashes: list[bytes]) -> bytes:
        self.tid += 1
        return self.ask(_HEADER.pack(self.conn, 2, self.tid) + b"".join(hashes))

    def close(self) -> None:
        self.sock.close()


def meaning(reply: bytes) -> tuple[Any, ...]:
    """A reply with what is random by design taken out: the interval (checked to lie in
    the jitter range) and the order of the peers."""
    action = struct.unpack_from(">I", reply)[0]
    if action == 1:
        interval, leechers, seeders = struct.unpack_from(">III", reply, 8)
        assert INTERVAL <= interval <= INTERVAL + JITTER
        peers = sorted(reply[i:i + 6] for i in range(20, len(reply), 6))
        return ("announce", leechers, seeders, tuple(peers))
    if action == 2:
        return ("scrape", reply[8:])
    return ("error", reply[8:].decode())


@pytest.fixture
def pair(launch_tracker: Callable[..., RunningTracker], tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningTracker, RunningTracker]]:
    native_udp()
    pytest.importorskip("shoal._native_store")
    monkeypatch.delenv("SHOAL_ENGINE", raising=False)  # each tracker names its engine
    access: dict[str, Any] = {"client_deny": ["-XX"]}
    native = launch_tracker(make_settings(tmp_path / "native", "native", **access),
                            MemoryStore(engine="native"), persist=True)
    python = launch_tracker(make_settings(tmp_path / "python", "python", **access),
                            MemoryStore(engine="python"), persist=True)
    assert native.tracker.native_udp and not python.tracker.native_udp
    yield native, python


def reconfigure(rt: RunningTracker, access: AccessRules) -> None:
    logic = rt.tracker.logic
    rt.in_loop(lambda: logic.configure(dataclasses.replace(logic.config, access=access)))


def test_the_compiled_answer_replies_as_the_python_path(
    pair: tuple[RunningTracker, RunningTracker]
) -> None:
    native, python = pair
    sources = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    clients = {rt: [Client(rt.listener("udp"), s) for s in sources] for rt in pair}
    replies: dict[RunningTracker, list[tuple[Any, ...]]] = {rt: [] for rt in pair}

    def both(step: Callable[[list[Client]], bytes]) -> None:
        for rt in pair:
            replies[rt].append(meaning(step(clients[rt])))

    try:
        for rt in pair:
            for c in clients[rt]:
                c.connect()
        ok = b"-TR3000-"
        # New peers, leechers and seeders, from three addresses, on two torrents.
        for n in range(3):
            both(lambda cs, n=n: cs[n].announce(torrent(1), peer(ok, n), 7000 + n,
                                                left=0 if n == 0 else 10, event=2))
        both(lambda cs: cs[0].announce(torrent(2), peer(ok, 9), 7100, event=2))
        # Re-announces, numwant 0, 1 and more than there are.
        both(lambda cs: cs[1].announce(torrent(1), peer(ok, 1), 7001))
        both(lambda cs: cs[1].announce(torrent(1), peer(ok, 1), 7001, numwant=0))
        both(lambda cs: cs[2].announce(torrent(1), peer(ok, 2), 7002, numwant=500))
        # A completion, counted once; a stop; a stop for a torrent never seen.
        both(lambda cs: cs[1].announce(torrent(1), peer(ok, 1), 7001, left=0, event=1))
        both(lambda cs: cs[1].announce(torrent(1), peer(ok, 1), 7001, left=0, event=1))
        both(lambda cs: cs[2].announce(torrent(1), peer(ok, 2), 7002, event=3))
        both(lambda cs: cs[2].announce(torrent(5), peer(ok, 2), 7002, event=3))
        # The store's caps: per swarm (4), torrents (6).
        for n in range(3, 6):
            both(lambda cs, n=n: cs[0].announce(torrent(1), peer(ok, n), 7000 + n))
        for n in range(20, 24):
            both(lambda cs, n=n: cs[(n + 1) % 3].announce(torrent(2), peer(ok, n), 7000 + n))
        for n in range(3, 9):
            both(lambda cs, n=n: cs[n % 3].announce(torrent(n), peer(ok, n), 7200 + n))
        # A denied client; scrapes of known, unknown and many torrents.
        both(lambda cs: cs[0].announce(torrent(2), peer(b"-XX0100-", 1), 7300))
        both(lambda cs: cs[0].scrape([torrent(1), torrent(2), torrent(30)]))
        both(lambda cs: cs[0].scrape([torrent(n % 10) for n in range(74)]))
        # A reload: only torrent 2 allowed, clients must be -TR; then open again.
        narrow = AccessRules.build(torrents="allow", torrent_list=[torrent(2)],
                                   client_allow=["-TR"])
        for rt in pair:
            reconfigure(rt, narrow)
        both(lambda cs: cs[0].announce(torrent(1), peer(ok, 0), 7000, left=0))
        both(lambda cs: cs[1].announce(torrent(2), peer(b"-qB4000-", 1), 7400))
        both(lambda cs: cs[0].announce(torrent(2), peer(ok, 9), 7100, left=0, event=1))
        both(lambda cs: cs[0].scrape([torrent(1), torrent(2)]))
        deny = AccessRules.build(torrents="deny", torrent_list=[torrent(2)])
        for rt in pair:
            reconfigure(rt, deny)
        both(lambda cs: cs[0].announce(torrent(2), peer(ok, 0), 7000))
        both(lambda cs: cs[2].announce(torrent(1), peer(b"-XX0100-", 2), 7002, left=0,
                                       event=1))
        both(lambda cs: cs[0].scrape([torrent(1), torrent(2)]))
    finally:
        for rt in pair:
            for c in clients[rt]:
                c.close()

    assert replies[native] == replies[python]
    kinds = [r[0] for r in replies[native]]
    assert kinds.count("error") >= 5 and kinds.count("scrape") == 4
    # Answered in C on the native tracker, with nothing handed to Python.
    endpoint = native.tracker.udp_endpoints[0]
    assert isinstance(endpoint, NativeUdpEndpoint) and endpoint.fast
    answered = answered_in_c(native, endpoint)
    assert answered == {"announce": kinds.count("announce") + kinds.count("error"),
                        "scrape": 4}
    # The same figures: requests by kind and family, refusals by reason.
    for figure in ("requests", "failures"):
        got = [rt.in_loop(lambda rt=rt, figure=figure: (rt.tracker.counters.pull(), dict(
            getattr(rt.tracker.counters, figure)))[1]) for rt in pair]
        assert got[0] == got[1], figure
        if figure == "failures":  # every refusal the sequence means to cause (the
            # per-address cap exempts loopback, so it cannot be reached from here)
            assert set(got[0]) == {TORRENT_NOT_ALLOWED, CLIENT_NOT_ALLOWED, SWARM_FULL,
                                   TRACKER_FULL}, got[0]
    # Persistence would flush the same completed counts.
    dirty = [rt.in_loop(lambda rt=rt: set(rt.tracker.persistence._dirty))  # type: ignore[union-attr]
             for rt in pair]
    assert dirty[0] == dirty[1] and torrent(1) in dirty[0] and torrent(2) in dirty[0]


def test_a_python_hook_or_private_mode_sends_requests_back_to_python(
    pair: tuple[RunningTracker, RunningTracker]
) -> None:
    native, _ = pair
    logic = native.tracker.logic
    endpoint = native.tracker.udp_endpoints[0]
    assert isinstance(endpoint, NativeUdpEndpoint)
    seen: list[bytes] = []
    client = Client(native.listener("udp"), "127.0.0.1")
    try:
        client.connect()
        client.announce(torrent(1), peer(b"-TR3000-", 1), 7001)
        assert native.in_loop(lambda: endpoint.fast)
        native.in_loop(lambda: logic.add_hook(lambda request, result: seen.append(
            request.peer_id)))
        reply = client.announce(torrent(1), peer(b"-TR3000-", 2), 7002)
        assert meaning(reply)[0] == "announce"
        assert seen == [peer(b"-TR3000-", 2)]  # the hook saw it: Python answered
        assert not native.in_loop(lambda: endpoint.fast)
        assert answered_in_c(native, endpoint) == {"announce": 1, "scrape": 0}
    finally:
        client.close()


def test_a_reload_of_the_policy_and_a_banned_peer_address_hold_in_c(
    pair: tuple[RunningTracker, RunningTracker]
) -> None:
    """A new policy (interval, no jitter, numwant) reaches the compiled copies; with the IP
    field allowed, an announce for a banned address is refused with the Python path's text
    on both paths, while its source is not banned."""
    native, python = pair
    replies: dict[RunningTracker, list[tuple[Any, ...]]] = {rt: [] for rt in pair}
    for rt in pair:
        logic = rt.tracker.logic
        policy = Policy(interval=900, interval_jitter=0, default_numwant=1, max_numwant=1)
        rt.in_loop(lambda logic=logic, policy=policy: logic.configure(dataclasses.replace(
            logic.config, policy=policy,
            access=AccessRules.build(banned_networks=["10.0.0.0/8"]))))
        for endpoint in rt.tracker.udp_endpoints:
            endpoint.options = UdpOptions(allow_ip_param=True)
        client = Client(rt.listener("udp"), "127.0.0.1")
        try:
            client.connect()
            for n in range(3):
                reply = client.announce(torrent(1), peer(b"-TR3000-", n), 7000 + n)
                assert struct.unpack_from(">I", reply, 8)[0] == 900
                replies[rt].append((len(reply) - 20) // 6)
            banned = client.announce(torrent(1), peer(b"-TR3000-", 9), 7009, ip=0x0A010203)
            replies[rt].append(meaning(banned))
        finally:
            client.close()
    assert replies[native] == replies[python] == [0, 1, 1, ("error", BANNED)]
    endpoint = native.tracker.udp_endpoints[0]
    assert isinstance(endpoint, NativeUdpEndpoint)
    native.in_loop(native.tracker.counters.pull)
    assert native.in_loop(lambda: (endpoint.fast, dict(endpoint.answered_in_c))) == (
        True, {"announce": 4, "scrape": 0})
    assert native.tracker.counters.failures[BANNED] == 1
