"""The compiled HTTP data plane (announces and scrapes parsed and answered in C on the native
store) gives the replies the Python path gives.

Two trackers on real loopback sockets, one on the compiled data plane and native store, one
on the pure-Python path, get the same sequence of requests over keep-alive connections from
several loopback addresses: new peers, re-announces, completions, stops, scrapes (repeated
and unknown hashes), refusals by the access rules and the store's caps, HTTP/1.0, pipelined
requests, ``Connection: close``, a trusted proxy's real-IP header, and a reload that changes
the rules and the policy. Every reply must match byte for byte except what is random by
design: the interval's jitter (checked to lie in the policy's range) and which peers are
picked (the swarms here are smaller than numwant, so every eligible peer is sent, in any
order). Persistence must see the same torrents whose completed count went up, and the
counters the same requests and refusals. Requests the compiled path does not take (errors,
``compact=0``, other paths) must still be answered, by Python.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
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
from shoal.protocol.bencode import decode
from shoal.storage.base import TRACKER_FULL
from shoal.storage.memory import MemoryStore

INTERVAL, JITTER, MIN_INTERVAL = 1800, 180, 300


def torrent(n: int) -> bytes:
    return bytes([0xC0 + n]) * 19 + b"%"  # a byte that must be escaped, and one that may not


def peer(prefix: bytes, n: int) -> bytes:
    return prefix + n.to_bytes(20 - len(prefix), "big")


def make_settings(data_dir: Path, engine: str, **access: Any) -> Settings:
    base = Settings()
    return dataclasses.replace(
        base,
        tracker=dataclasses.replace(base.tracker, engine=engine, interval=INTERVAL,
                                    interval_jitter=JITTER, min_interval=MIN_INTERVAL,
                                    max_peers_per_swarm=4, max_torrents=6, default_numwant=50),
        http=dataclasses.replace(base.http, hosts=["127.0.0.1"], port=0,
                                 trusted_proxies=["127.0.0.9/32"],
                                 real_ip_header="X-Real-IP"),
        udp=dataclasses.replace(base.udp, enabled=False),
        admin=dataclasses.replace(base.admin, enabled=False),
        storage=dataclasses.replace(base.storage, persist=True, data_dir=str(data_dir),
                                    flush_interval=3600.0, snapshot_interval=3600),
        access=dataclasses.replace(base.access, **access),
    )


def announce(info_hash: bytes, peer_id: bytes, port: int, *, left: int = 10,
             event: str = "", numwant: int | None = None, extra: str = "") -> str:
    query = (f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(peer_id)}"
             f"&port={port}&uploaded=5&downloaded=7&left={left}&compact=1&key=1a2b3c4d")
    if event:
        query += f"&event={event}"
    if numwant is not None:
        query += f"&numwant={numwant}"
    return "/announce?" + query + extra


def scrape(hashes: list[bytes]) -> str:
    return "/scrape?" + "&".join(f"info_hash={quote_from_bytes(h)}" for h in hashes)


def request(target: str, version: str = "HTTP/1.1", headers: str = "") -> bytes:
    return f"GET {target} {version}\r\nHost: tracker\r\n{headers}\r\n".encode()


class Client:
    """An HTTP/1.1 client over one blocking keep-alive connection from one loopback
    address."""

    def __init__(self, server: tuple[str, int], source: str) -> None:
        self.sock = socket.create_connection(server, timeout=5.0, source_address=(source, 0))
        self.buffer = b""

    def send(self, *requests: bytes) -> list[bytes]:
        """Send the requests in one write; the responses, in order."""
        self.sock.sendall(b"".join(requests))
        return [self._response() for _ in requests]

    def _response(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            self._read()
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
        self.buffer = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buffer += data

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.sock.close()


def meaning(response: bytes, interval: tuple[int, int] = (INTERVAL, INTERVAL + JITTER)
            ) -> tuple[Any, ...]:
    """A response with what is random by design taken out: the interval (checked to lie
    in its range) and the order of the peers; the head is kept whole (but for the length,
    which the interval's digits may change)."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Content-Length")]
    reply = decode(body)
    assert isinstance(reply, dict)
    if b"interval" in reply:
        assert interval[0] <= reply.pop(b"interval") <= interval[1]  # type: ignore[operator]
        for key in (b"peers", b"peers6"):
            if key in reply:
                raw = reply[key]
                if isinstance(raw, list):  # the dictionary model (compact=0)
                    reply[key] = sorted(sorted(entry.items()) for entry in raw)
                    continue
                assert isinstance(raw, bytes)
                width = 6 if key == b"peers" else 18
                reply[key] = sorted(raw[i:i + width] for i in range(0, len(raw), width))
    return tuple(lines), sorted(reply.items())


@pytest.fixture
def pair(launch_tracker: Callable[..., RunningTracker], tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningTracker, RunningTracker]]:
    pytest.importorskip("shoal._native_http")
    pytest.importorskip("shoal._native_store")
    monkeypatch.delenv("SHOAL_ENGINE", raising=False)  # each tracker names its engine
    access: dict[str, Any] = {"client_deny": ["-XX"]}
    native = launch_tracker(make_settings(tmp_path / "native", "native", **access),
                            MemoryStore(engine="native"), persist=True)
    python = launch_tracker(make_settings(tmp_path / "python", "python", **access),
                            MemoryStore(engine="python"), persist=True)
    assert native.tracker.native_http and not python.tracker.native_http
    yield native, python


def reconfigure(rt: RunningTracker, **changes: Any) -> None:
    logic = rt.tracker.logic
    rt.in_loop(lambda: logic.configure(dataclasses.replace(logic.config, **changes)))


def answered_in_c(rt: RunningTracker) -> dict[str, int]:
    http = rt.tracker.http
    return rt.in_loop(lambda: (http.collect(), dict(http.answered_in_c))[1])


def test_the_compiled_answer_replies_as_the_python_path(
    pair: tuple[RunningTracker, RunningTracker]
) -> None:
    native, python = pair
    sources = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.9"]
    clients = {rt: [Client(rt.listener("http"), s) for s in sources] for rt in pair}
    replies: dict[RunningTracker, list[tuple[Any, ...]]] = {rt: [] for rt in pair}

    def both(step: Callable[[list[Client]], list[bytes]]) -> None:
        for rt in pair:
            replies[rt].extend(meaning(r) for r in step(clients[rt]))

    ok = b"-TR3000-"
    try:
        # New peers, leechers and seeders, from three addresses, on two torrents.
        for n in range(3):
            both(lambda cs, n=n: cs[n].send(request(announce(
                torrent(1), peer(ok, n), 7000 + n, left=0 if n == 0 else 10,
                event="started"))))
        both(lambda cs: cs[0].send(request(announce(torrent(2), peer(ok, 9), 7100,
                                                    event="started"))))
        # Re-announces: numwant 0, 1, more than there are, negative, huge; an unknown
        # event; repeated parameters (the last wins); HTTP/1.0 with and without keep-alive
        # is in test_http_versions_and_pipelining.
        both(lambda cs: cs[1].send(request(announce(torrent(1), peer(ok, 1), 7001)))),
        both(lambda cs: cs[1].send(request(announce(torrent(1), peer(ok, 1), 7001,
                                                    numwant=0))))
        both(lambda cs: cs[2].send(request(announce(torrent(1), peer(ok, 2), 7002,
                                                    numwant=500))))
        both(lambda cs: cs[2].send(request(announce(torrent(1), peer(ok, 2), 7002,
                                                    numwant=-3, event="sideways"))))
        both(lambda cs: cs[2].send(request(announce(torrent(1), peer(ok, 2), 7002,
                                                    numwant=99999999999999))))
        both(lambda cs: cs[2].send(request(announce(torrent(2), peer(ok, 2), 7002,
                                                    extra="&port=7003&left=0"))))
        # A completion, counted once; a stop; a stop for a torrent never seen; a pause.
        both(lambda cs: cs[1].send(request(announce(torrent(1), peer(ok, 1), 7001, left=0,
                                                    event="completed"))))
        both(lambda cs: cs[1].send(request(announce(torrent(1), peer(ok, 1), 7001, left=0,
                                                    event="completed"))))
        both(lambda cs: cs[2].send(request(announce(torrent(1), peer(ok, 2), 7002,
                                                    event="stopped"))))
        both(lambda cs: cs[2].send(request(announce(torrent(5), peer(ok, 2), 7002,
                                                    event="stopped"))))
        both(lambda cs: cs[2].send(request(announce(torrent(2), peer(ok, 2), 7003,
                                                    event="paused"))))
        # The store's caps: per swarm (4), torrents (6).
        for n in range(3, 6):
            both(lambda cs, n=n: cs[0].send(request(announce(torrent(1), peer(ok, n),
                                                             7000 + n))))
        for n in range(20, 24):
            both(lambda cs, n=n: cs[(n + 1) % 3].send(request(announce(
                torrent(2), peer(ok, n), 7000 + n))))
        for n in range(3, 9):
            both(lambda cs, n=n: cs[n % 3].send(request(announce(torrent(n), peer(ok, n),
                                                                 7200 + n))))
        # A denied client; scrapes of known, unknown, repeated and many torrents.
        both(lambda cs: cs[0].send(request(announce(torrent(2), peer(b"-XX0100-", 1), 7300))))
        both(lambda cs: cs[0].send(request(scrape([torrent(2), torrent(1), torrent(30),
                                                   torrent(1)]))))
        both(lambda cs: cs[0].send(request(scrape([torrent(n % 10) for n in range(64)]))))
        # From the trusted proxy: the real-IP header names the client.
        both(lambda cs: cs[3].send(request(
            announce(torrent(1), peer(ok, 40), 7040),
            headers="X-Real-IP: 198.51.100.7, 127.0.0.9\r\n")))
        both(lambda cs: cs[3].send(request(
            announce(torrent(1), peer(ok, 41), 7041),
            headers="x-real-ip: [2001:db8::5]\r\n")))
        both(lambda cs: cs[0].send(request(  # not from the proxy: the header is ignored
            announce(torrent(1), peer(ok, 42), 7042), headers="X-Real-IP: 198.51.100.8\r\n")))
        # A reload: only torrent 2 allowed, clients must be -TR; then a ban; then deny.
        narrow = AccessRules.build(torrents="allow", torrent_list=[torrent(2)],
                                   client_allow=["-TR"])
        for rt in pair:
            reconfigure(rt, access=narrow)
        both(lambda cs: cs[0].send(request(announce(torrent(1), peer(ok, 0), 7000, left=0))))
        both(lambda cs: cs[1].send(request(announce(torrent(2), peer(b"-qB4000-", 1), 7400))))
        both(lambda cs: cs[0].send(request(announce(torrent(2), peer(ok, 9), 7100, left=0,
                                                    event="completed"))))
        both(lambda cs: cs[0].send(request(scrape([torrent(1), torrent(2)]))))
        banned = AccessRules.build(banned_networks=["127.0.0.2/32", "198.51.100.0/24"])
        for rt in pair:
            reconfigure(rt, access=banned)
        both(lambda cs: cs[1].send(request(announce(torrent(2), peer(ok, 1), 7001))))
        both(lambda cs: cs[1].send(request(scrape([torrent(2)]))))
        both(lambda cs: cs[3].send(request(announce(torrent(2), peer(ok, 40), 7040),
                                           headers="X-Real-IP: 198.51.100.7\r\n")))
        both(lambda cs: cs[0].send(request(announce(torrent(2), peer(ok, 0), 7000))))
        deny = AccessRules.build(torrents="deny", torrent_list=[torrent(2)])
        for rt in pair:
            reconfigure(rt, access=deny)
        both(lambda cs: cs[0].send(request(announce(torrent(2), peer(ok, 0), 7000))))
        both(lambda cs: cs[2].send(request(announce(torrent(1), peer(b"-XX0100-", 2), 7002,
                                                    left=0, event="completed"))))
        both(lambda cs: cs[0].send(request(scrape([torrent(1), torrent(2)]))))
    finally:
        for rt in pair:
            for c in clients[rt]:
                c.close()

    assert replies[native] == replies[python]
    bodies = [dict(r[1]) for r in replies[native]]
    refusals = sum(b"failure reason" in b for b in bodies)
    scrapes = 5  # sent (one refused: from a banned address)
    assert refusals >= 8 and sum(b"files" in b for b in bodies) == scrapes - 1
    # Answered in C on the native tracker, with nothing handed to Python.
    assert answered_in_c(native) == {"announce": len(bodies) - scrapes, "scrape": scrapes}
    assert answered_in_c(python) == {"announce": 0, "scrape": 0}
    # The same figures: requests by kind and family, refusals by reason.
    for figure in ("requests", "failures"):
        got = [rt.in_loop(lambda rt=rt, figure=figure: (
            rt.tracker.counters.pull(), dict(getattr(rt.tracker.counters, figure)))[1])
            for rt in pair]
        assert got[0] == got[1], figure
        if figure == "failures":  # every refusal the sequence means to cause (the
            # per-address cap exempts loopback, so it cannot be reached from here)
            assert set(got[0]) == {TORRENT_NOT_ALLOWED, CLIENT_NOT_ALLOWED, SWARM_FULL,
                                   TRACKER_FULL, BANNED}, got[0]
    # Persistence would flush the same completed counts.
    dirty = [rt.in_loop(lambda rt=rt: (rt.tracker.http.collect(),
                                       set(rt.tracker.persistence._dirty))[1])  # type: ignore[union-attr]
             for rt in pair]
    assert dirty[0] == dirty[1] and torrent(1) in dirty[0] and torrent(2) in dirty[0]


def test_http_versions_and_pipelining_and_close_match(
    pair: tuple[RunningTracker, RunningTracker]
) -> None:
    """HTTP/1.0 (closed after the reply unless it asks for keep-alive, which the reply then
    says), several requests in one write (answered in order), ``Connection: close`` (the
    last reply, then the connection is closed), and requests the compiled path declines
    (errors, ``compact=0``, a full scrape, another path, a request cut in two writes)."""
    native, python = pair
    ok = b"-TR3000-"
    seen: dict[RunningTracker, list[tuple[Any, ...]]] = {rt: [] for rt in pair}
    for rt in pair:
        server = rt.listener("http")
        c = Client(server, "127.0.0.1")
        out = c.send(request(announce(torrent(1), peer(ok, 1), 7001), "HTTP/1.0",
                             "Connection: keep-alive\r\n"))
        out += c.send(request(announce(torrent(1), peer(ok, 2), 7002)),
                      request(announce(torrent(1), peer(ok, 3), 7003, left=0)),
                      request(scrape([torrent(1)])))
        out += c.send(request(announce(torrent(1), peer(ok, 4), 7004), "HTTP/1.0"))
        assert c.closed()
        c.close()
        c = Client(server, "127.0.0.2")
        out += c.send(request("/announce?info_hash=short&peer_id=x&port=1"),
                      request(announce(torrent(1), peer(ok, 5), 7005).replace("compact=1",
                                                                              "compact=0")),
                      request("/scrape"), request("/nowhere"))
        sock = c.sock
        half = request(announce(torrent(1), peer(ok, 6), 7006))
        sock.sendall(half[:30])
        out += c.send(half[30:])
        out += c.send(request(announce(torrent(1), peer(ok, 7), 7007),
                              headers="Connection: close\r\n"))
        assert c.closed()
        c.close()
        seen[rt] = [meaning(r) if b"\r\n\r\nd" in r else (r,) for r in out]
    assert seen[native] == seen[python]
    heads = [r[0] for r in seen[native]]
    assert b"Connection: keep-alive" in heads[0]
    assert b"Connection: close" in heads[4] and b"Connection: close" in heads[-1]
    # The first connection's five and the last request were answered in C; the four
    # declined ones and the one cut in two were not.
    assert answered_in_c(native) == {"announce": 5, "scrape": 1}


def test_a_python_hook_private_mode_or_the_access_log_sends_requests_back_to_python(
    pair: tuple[RunningTracker, RunningTracker]
) -> None:
    native, _ = pair
    logic = native.tracker.logic
    http = native.tracker.http
    seen: list[bytes] = []
    client = Client(native.listener("http"), "127.0.0.1")
    try:
        client.send(request(announce(torrent(1), peer(b"-TR3000-", 1), 7001)))
        assert native.in_loop(lambda: http.fast)
        native.in_loop(lambda: logic.add_hook(lambda request, result: seen.append(
            request.peer_id)))
        reply = client.send(request(announce(torrent(1), peer(b"-TR3000-", 2), 7002)))[0]
        assert b"5:peers" in reply
        assert seen == [peer(b"-TR3000-", 2)]  # the hook saw it: Python answered
        assert not native.in_loop(lambda: http.fast)
        assert answered_in_c(native) == {"announce": 1, "scrape": 0}
    finally:
        client.close()


def test_a_reload_of_the_policy_reaches_the_compiled_copies(
    pair: tuple[RunningTracker, RunningTracker]
) -> None:
    """A new policy (interval, min interval, no jitter, numwant) holds in C as in Python."""
    native, python = pair
    replies: dict[RunningTracker, list[tuple[Any, ...]]] = {rt: [] for rt in pair}
    for rt in pair:
        policy = Policy(interval=900, interval_jitter=0, min_interval=60, default_numwant=1,
                        max_numwant=1)
        reconfigure(rt, policy=policy)
        client = Client(rt.listener("http"), "127.0.0.1")
        try:
            for n in range(3):
                reply = client.send(request(announce(torrent(1), peer(b"-TR3000-", n),
                                                     7000 + n)))[0]
                head, fields = meaning(reply, (900, 900))
                # One peer of those there are, picked at random: only how many is compared.
                replies[rt].append((head, [(k, len(v) if k == b"peers" else v)
                                           for k, v in fields]))
        finally:
            client.close()
    assert replies[native] == replies[python]
    assert all(dict(r[1])[b"min interval"] == 60 for r in replies[native])
    assert answered_in_c(native) == {"announce": 3, "scrape": 0}


def test_a_connection_c_answers_whole_never_reaches_python(
    pair: tuple[RunningTracker, RunningTracker]
) -> None:
    """The compiled accept and the connections kept in C: a connection whose first read
    holds a request C answers with a closing reply is written and closed in C; one kept
    alive stays in C between requests (counted as open); neither is ever a Python object
    until C meets a request it does not answer whole, which hands the connection over to
    Python with what it read."""
    native, python = pair
    ok = b"-TR3000-"
    got: dict[RunningTracker, list[Any]] = {rt: [] for rt in pair}
    made: list[object] = []  # Python connection objects the native tracker makes
    http = native.tracker.http
    make = http.protocol
    native.in_loop(lambda: setattr(http, "protocol", lambda: made.append(1) or make()))
    for rt in pair:
        for n in range(5):
            with socket.create_connection(rt.listener("http"), timeout=5.0) as sock:
                sock.sendall(request(announce(torrent(1), peer(ok, n), 7000 + n), "HTTP/1.0"))
                data = b""
                while chunk := sock.recv(65536):  # read until the server closes
                    data += chunk
                got[rt].append(meaning(data))
        kept = Client(rt.listener("http"), "127.0.0.1")
        got[rt].append(meaning(kept.send(request(scrape([torrent(1)])))[0]))
        got[rt].append(meaning(kept.send(request(scrape([torrent(1)])))[0]))
        if rt is native:
            assert made == []
            counters = rt.tracker.counters
            assert rt.in_loop(lambda c=counters: (c.pull(), c.connections_open)[1]) == 1
        # compact=0 is Python's: the connection is handed over, and answered there.
        got[rt].append(meaning(kept.send(request(announce(torrent(1), peer(ok, 1), 7001,
                                                          extra="&compact=0")))[0]))
        got[rt].append(meaning(kept.send(request(scrape([torrent(1)])))[0]))
        kept.close()
    assert got[native] == got[python]
    # (The last scrape too: a Python connection's whole requests still go to C first.)
    assert answered_in_c(native) == {"announce": 5, "scrape": 3}
    for rt in pair:
        counters = rt.tracker.counters
        assert rt.in_loop(lambda c=counters: (c.pull(), c.connections_total)[1]) == 6
    assert len(made) == 1  # the kept-alive one, from its compact=0 announce on
