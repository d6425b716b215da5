"""The HTTP frontend over real sockets on 127.0.0.1 and ::1.

Each tracker runs in-process (``shoal.server.app.Tracker``) on an event loop in a thread of
its own, the way ``shoal serve`` runs it minus the signal handlers; tests talk to it with
plain blocking sockets (and asyncio streams for the many-clients test). Every read is
bounded by ``WAIT`` seconds, so a hang fails instead of stalling the suite; nothing asserts
on how fast anything is. Timeouts under test are set small (half a second) and the reaper
runs once a second, so a "closed after the timeout" check waits at most a few seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from support.net import has_ipv6_loopback
from support.running import RunningTracker as BaseTracker

from shoal.config import Settings
from shoal.protocol import bencode
from shoal.protocol.http import encode_scrape
from shoal.storage.memory import MemoryStore
from shoal.types import AnnounceRequest, AnnounceResult, SwarmCounts

WAIT = 5.0  # upper bound on any single wait for the server

HAS_IPV6 = has_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="this machine has no IPv6 loopback (::1)")
HOSTS = ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)]
PACKED = {"127.0.0.1": b"\x7f\0\0\x01", "::1": ipaddress.IPv6Address("::1").packed}
PARSERS = ["auto", "python"]  # httptools (when installed) and the pure-Python fallback


def info_hash(n: int) -> bytes:
    return b"\xa5" + n.to_bytes(19, "big")


def peer_id(n: int) -> bytes:
    return b"-SH0001-" + n.to_bytes(12, "big")


def announce_path(ih: bytes, pid: bytes, port: int, left: int = 100, **extra: Any) -> str:
    params = {
        "info_hash": quote_from_bytes(ih, safe=""),
        "peer_id": quote_from_bytes(pid, safe=""),
        "port": port,
        "uploaded": 0,
        "downloaded": 0,
        "left": left,
    }
    params.update(extra)
    return "/announce?" + "&".join(f"{k}={v}" for k, v in params.items())


def scrape_path(*hashes: bytes) -> str:
    return "/scrape?" + "&".join("info_hash=" + quote_from_bytes(h, safe="") for h in hashes)


def get(path: str, version: str = "HTTP/1.1", headers: str = "") -> bytes:
    return f"GET {path} {version}\r\nHost: tracker\r\n{headers}\r\n".encode()


# The tracker, in a thread.


def make_settings(
    parser: str = "auto", hosts: list[str] | None = None, **changes: Any
) -> Settings:
    """Loopback-only settings, UDP and admin off; ``changes`` are ``section_key=value``."""
    if hosts is None:
        hosts = ["127.0.0.1", "::1"] if HAS_IPV6 else ["127.0.0.1"]
    base = Settings()
    sections: dict[str, dict[str, Any]] = {
        "http": {"hosts": hosts, "port": 0, "parser": parser},
        "udp": {"enabled": False},
        "admin": {"enabled": False},
        "tracker": {"interval_jitter": 0},
    }
    for name, value in changes.items():
        section, _, key = name.partition("_")
        sections.setdefault(section, {})[key] = value
    return dataclasses.replace(
        base,
        **{name: dataclasses.replace(getattr(base, name), **values)
           for name, values in sections.items()},
    )


class RunningTracker(BaseTracker):
    """The shared harness, with a :class:`Client` for its HTTP port."""

    def connect(self, host: str = "127.0.0.1") -> Client:
        return Client(host, self.port())


@pytest.fixture
def start(launch_tracker: Callable[..., RunningTracker]) -> Callable[..., RunningTracker]:
    def run(settings: Settings | None = None, store: MemoryStore | None = None) -> RunningTracker:
        return launch_tracker(settings or make_settings(), store, RunningTracker, grace=WAIT)

    return run


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


# A blocking HTTP/1.1 client that reads exactly one response at a time.


class Closed(Exception):
    """The server closed the connection."""


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def bdecode(self) -> dict[bytes, Any]:
        value = bencode.decode(self.body)
        assert isinstance(value, dict)
        return value


class Client:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError as exc:
            raise Closed from exc
        if not chunk:
            raise Closed
        self.buf += chunk

    def response(self) -> Response:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.split(b"\r\n")
        version, status, _ = status_line.split(b" ", 2)
        assert version == b"HTTP/1.1"
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers[b"content-length"])
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return Response(int(status), headers, body)

    def request(self, path: str, **kw: Any) -> Response:
        self.send(get(path, **kw))
        return self.response()

    def closed(self) -> bool:
        """True once the server closes (within ``WAIT``); unread replies are skipped."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                self._fill()
            except Closed:
                return True
            except TimeoutError:
                return False
        return False

    def readable(self, timeout: float) -> bool:
        return bool(select.select([self.sock], [], [], timeout)[0])


def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until it holds; fail after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def announce(rt: RunningTracker, host: str, n: int, ih: bytes, **extra: Any) -> dict[bytes, Any]:
    with rt.connect(host) as c:
        reply = c.request(announce_path(ih, peer_id(n), 10000 + n, **extra))
    assert reply.status == 200
    return reply.bdecode()


# Announce


@pytest.mark.parametrize("host", HOSTS)
def test_announce_returns_the_other_peers_of_the_same_family(
    start: Callable[..., RunningTracker], host: str, parser: str
) -> None:
    rt = start(make_settings(parser))
    ih = info_hash(1)
    first = announce(rt, host, 1, ih)
    assert first[b"peers"] == b""
    assert b"peers6" not in first
    second = announce(rt, host, 2, ih)
    entry = PACKED[host] + (10001).to_bytes(2, "big")
    if host == "::1":
        assert second[b"peers6"] == entry
        assert second[b"peers"] == b""  # always present, even empty
    else:
        assert second[b"peers"] == entry
        assert b"peers6" not in second
    assert second[b"complete"] == 0
    assert second[b"incomplete"] == 2
    assert second[b"interval"] == 1800
    assert second[b"min interval"] == 300


@needs_ipv6
def test_announce_mixes_families_peers_for_ipv4_and_peers6_for_ipv6(
    start: Callable[..., RunningTracker],
) -> None:
    rt = start()
    ih = info_hash(2)
    announce(rt, "::1", 1, ih)
    from_v4 = announce(rt, "127.0.0.1", 2, ih)
    assert from_v4[b"peers6"] == PACKED["::1"] + (10001).to_bytes(2, "big")
    assert from_v4[b"peers"] == b""
    from_v6 = announce(rt, "::1", 3, ih)
    assert from_v6[b"peers"] == PACKED["127.0.0.1"] + (10002).to_bytes(2, "big")
    assert from_v6[b"peers6"] == PACKED["::1"] + (10001).to_bytes(2, "big")


@pytest.mark.parametrize("host", HOSTS)
def test_external_ip_is_the_requesters_packed_address(
    start: Callable[..., RunningTracker], host: str
) -> None:
    rt = start()
    assert announce(rt, host, 1, info_hash(3))[b"external ip"] == PACKED[host]


@pytest.mark.parametrize("host", HOSTS)
def test_compact_0_gives_dictionary_peers_with_and_without_peer_id(
    start: Callable[..., RunningTracker], host: str
) -> None:
    rt = start()
    ih = info_hash(4)
    announce(rt, host, 1, ih)
    with_ids = announce(rt, host, 2, ih, compact=0)
    assert with_ids[b"peers"] == [{b"ip": host.encode(), b"peer id": peer_id(1), b"port": 10001}]
    assert b"peers6" not in with_ids
    without = announce(rt, host, 3, ih, compact=0, no_peer_id=1)
    assert sorted(p[b"port"] for p in without[b"peers"]) == [10001, 10002]
    assert all(set(p) == {b"ip", b"port"} for p in without[b"peers"])


def test_a_seeder_is_sent_leechers_only(start: Callable[..., RunningTracker]) -> None:
    rt = start()
    ih = info_hash(5)
    announce(rt, "127.0.0.1", 1, ih, left=0)
    announce(rt, "127.0.0.1", 2, ih, left=5)
    reply = announce(rt, "127.0.0.1", 3, ih, left=0)
    assert reply[b"peers"] == PACKED["127.0.0.1"] + (10002).to_bytes(2, "big")
    assert (reply[b"complete"], reply[b"incomplete"]) == (2, 1)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/announce", b"missing info_hash"),
        ("/announce?info_hash=abc", b"info_hash must be 20 bytes"),
        (announce_path(info_hash(6), peer_id(1), 0), b"port must be 1 to 65535"),
        (announce_path(info_hash(6), peer_id(1), 1).replace("&left=100", ""), b"missing left"),
        ("/announce?info_hash=%zz", b"malformed percent-escape in info_hash"),
    ],
)
def test_refused_announces_are_failure_reasons_with_http_200(
    start: Callable[..., RunningTracker], path: str, reason: bytes
) -> None:
    rt = start()
    with rt.connect() as c:
        reply = c.request(path)
        assert reply.status == 200
        assert reply.bdecode() == {b"failure reason": reason}
        assert c.request("/scrape?info_hash=x").status == 200  # still usable


def test_unknown_path_is_404(start: Callable[..., RunningTracker], parser: str) -> None:
    rt = start(make_settings(parser))
    with rt.connect() as c:
        assert c.request("/").status == 404
        assert c.request("/announce/x").status == 404
        assert c.request("/announce?info_hash=x").status == 200  # the connection lives on


def test_post_is_405_with_allow_header(start: Callable[..., RunningTracker], parser: str) -> None:
    rt = start(make_settings(parser))
    with rt.connect() as c:
        c.send(b"POST /announce HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd")
        reply = c.response()
        assert reply.status == 405
        assert reply.headers[b"allow"] == b"GET"
        assert c.request("/").status == 404  # the body was skipped, the stream is in step


def test_replies_are_text_plain_with_content_length(start: Callable[..., RunningTracker]) -> None:
    rt = start()
    with rt.connect() as c:
        reply = c.request(announce_path(info_hash(7), peer_id(1), 1))
        assert reply.headers[b"content-type"] == b"text/plain"
        assert int(reply.headers[b"content-length"]) == len(reply.body)
        assert b"connection" not in reply.headers


# Scrape


def test_scrape_counts_and_unknown_hashes_as_zeros(start: Callable[..., RunningTracker]) -> None:
    rt = start()
    ih, unknown = info_hash(10), info_hash(11)
    announce(rt, "127.0.0.1", 1, ih, left=0)
    announce(rt, "127.0.0.1", 2, ih)
    announce(rt, "127.0.0.1", 3, ih)
    with rt.connect() as c:
        reply = c.request(scrape_path(ih, unknown, ih))
    assert reply.bdecode() == {
        b"files": {
            ih: {b"complete": 1, b"incomplete": 2, b"downloaded": 0},
            unknown: {b"complete": 0, b"incomplete": 0, b"downloaded": 0},
        }
    }


def test_scrape_hash_cap_is_a_failure(start: Callable[..., RunningTracker]) -> None:
    rt = start(make_settings(tracker_max_scrape_hashes=2))
    with rt.connect() as c:
        assert b"files" in c.request(scrape_path(info_hash(1), info_hash(2))).bdecode()
        reply = c.request(scrape_path(info_hash(1), info_hash(2), info_hash(3))).bdecode()
    assert reply[b"failure reason"] == b"too many info_hash values (at most 2)"


def test_full_scrape_is_off_by_default(start: Callable[..., RunningTracker]) -> None:
    rt = start()
    announce(rt, "127.0.0.1", 1, info_hash(12))
    with rt.connect() as c:
        reply = c.request("/scrape")
    assert reply.status == 200
    assert b"full scrape is off" in reply.bdecode()[b"failure reason"]


def test_full_scrape_when_on_lists_every_torrent_and_is_cached(
    start: Callable[..., RunningTracker],
) -> None:
    rt = start(make_settings(tracker_full_scrape=True, tracker_full_scrape_cache=3600))
    a, b = info_hash(13), info_hash(14)
    announce(rt, "127.0.0.1", 1, a)
    with rt.connect() as c:
        first = c.request("/scrape").bdecode()
        assert first == {b"files": {a: {b"complete": 0, b"incomplete": 1, b"downloaded": 0}}}
        announce(rt, "127.0.0.1", 2, b)
        assert c.request("/scrape").bdecode() == first  # the cached reply


def test_full_scrape_built_in_steps_is_sorted_complete_and_valid_bencode(
    start: Callable[..., RunningTracker],
) -> None:
    """More torrents than one build step: every torrent once, hashes in bencode order."""
    from shoal.server.http import FULL_SCRAPE_STEP

    store = MemoryStore()
    count = FULL_SCRAPE_STEP * 2 + 17
    hashes = [hashlib.sha1(b"%d" % n).digest() for n in range(count)]
    for n, hash_ in enumerate(hashes):
        store.announce(AnnounceRequest(hash_, peer_id(1), b"\x0a\0\0\1\x1a\xe1", 0, 0,
                                       n % 2, numwant=0), 1)
    rt = start(make_settings(tracker_full_scrape=True), store)
    with rt.connect() as c:
        reply = c.request("/scrape")
    files = reply.bdecode()[b"files"]
    assert list(files) == sorted(hashes)
    assert sum(f[b"complete"] for f in files.values()) == (count + 1) // 2
    assert reply.body == encode_scrape(hashes, [SwarmCounts(int(n % 2 == 0), n % 2, 0)
                                                for n in range(count)])


# Connections: keep-alive, pipelining, close


def test_keep_alive_serves_several_requests_on_one_connection(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser))
    with rt.connect() as c:
        for n in range(5):
            reply = c.request(announce_path(info_hash(20), peer_id(n), 1000 + n))
            assert reply.bdecode()[b"incomplete"] == n + 1
    counters = rt.tracker.counters
    assert rt.in_loop(lambda: (counters.pull(), counters.connections_total)[1]) == 1


@pytest.mark.parametrize("host", HOSTS)
def test_pipelined_requests_are_answered_in_order(
    start: Callable[..., RunningTracker], parser: str, host: str
) -> None:
    rt = start(make_settings(parser))
    paths = [announce_path(info_hash(21), peer_id(n), 2000 + n) for n in range(10)]
    paths[3] = "/nowhere"
    paths[6] = scrape_path(info_hash(21))
    with rt.connect(host) as c:
        c.send(b"".join(get(p) for p in paths))
        replies = [c.response() for _ in paths]
    assert replies[3].status == 404
    assert replies[6].bdecode()[b"files"][info_hash(21)][b"incomplete"] == 5
    announces = [r.bdecode() for i, r in enumerate(replies) if i not in (3, 6)]
    assert [r[b"incomplete"] for r in announces] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_connection_close_is_honoured_and_later_pipelined_requests_ignored(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser))
    with rt.connect() as c:
        c.send(get("/", headers="Connection: close\r\n") + get("/announce?x"))
        reply = c.response()
        assert reply.status == 404
        assert reply.headers[b"connection"] == b"close"
        assert c.closed()
        assert c.buf == b""  # the request behind the close was not answered


@pytest.mark.parametrize("host", HOSTS)
def test_http_1_0_closes_after_the_reply(
    start: Callable[..., RunningTracker], parser: str, host: str
) -> None:
    rt = start(make_settings(parser))
    with rt.connect(host) as c:
        reply = c.request(announce_path(info_hash(22), peer_id(1), 1), version="HTTP/1.0")
        assert reply.bdecode()[b"incomplete"] == 1
        assert reply.headers[b"connection"] == b"close"
        assert c.closed()


def test_http_1_0_with_keep_alive_stays_open(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser))
    with rt.connect() as c:
        for _ in range(3):
            reply = c.request("/", version="HTTP/1.0", headers="Connection: keep-alive\r\n")
            assert reply.status == 404
            # An HTTP/1.0 client keeps the connection only when the reply says so.
            assert reply.headers[b"connection"] == b"keep-alive"


# Limits (how each is decided is pinned without sockets in
# tests/protocol/test_http1_connection.py; here: the error reply, then the close)


def test_oversize_request_line_is_414_and_closed(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser, http_max_request_line=1024))
    with rt.connect() as c:
        c.send(get("/announce?" + "a" * 2000))
        reply = c.response()
        assert reply.status == 414
        assert reply.headers[b"connection"] == b"close"
        assert c.closed()


def test_an_error_reply_survives_a_client_still_sending(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    """The server stops its side after an error reply and drains what the client still
    sends, rather than closing with unread data (which resets the connection and can
    destroy the reply before the client reads it)."""
    rt = start(make_settings(parser, http_max_request_line=1024))
    with rt.connect() as c:
        c.send(b"GET /announce?" + b"a" * 4000)  # 414 is decided on the first chunk
        for _ in range(64):  # ... while the client goes on writing its request
            c.send(b"a" * 16384)
        reply = c.response()
        assert reply.status == 414
        assert reply.headers[b"connection"] == b"close"
        assert c.closed()


def test_too_many_headers_is_431_and_closed(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser, http_max_headers=10))
    with rt.connect() as c:
        assert c.request("/", headers="".join(f"X-{i}: y\r\n" for i in range(8))).status == 404
        c.send(get("/", headers="".join(f"X-{i}: y\r\n" for i in range(20))))
        reply = c.response()
        assert reply.status == 431
        assert c.closed()


def test_a_slow_client_is_answered_408_and_closed_after_request_timeout(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser, http_request_timeout=0.5))
    with rt.connect() as c:
        c.send(b"GET /announce?info_hash=")  # half a request, then nothing
        assert c.response().status == 408
        assert c.closed()
    assert rt.in_loop(lambda: rt.tracker.counters.dropped["http_timeout"]) == 1


def test_a_connection_that_sends_nothing_is_closed_after_request_timeout(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser, http_request_timeout=0.5))
    with rt.connect() as c:
        assert c.closed()
        assert c.buf == b""


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser, http_keepalive_timeout=0.5))
    with rt.connect() as c:
        assert c.request("/").status == 404
        assert c.closed()
        assert c.buf == b""  # closed silently, without a 408


def test_connections_beyond_the_cap_are_closed(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser, http_max_connections=3))
    held = [rt.connect() for _ in range(3)]
    try:
        for c in held:  # each one in the middle of a request: none can be closed for room
            c.send(b"GET / HTTP/1.1\r\n")
        wait_until(lambda: rt.in_loop(
            lambda: sum(not conn.idle for conn in rt.tracker.http.connections)) == 3)
        with rt.connect() as extra:
            assert extra.closed()
        held.pop().close()
        wait_until(lambda: rt.in_loop(lambda: len(rt.tracker.http.connections)) == 2)
        with rt.connect() as again:
            assert again.request("/").status == 404
        for c in held:
            c.send(b"\r\n")
            assert c.response().status == 404
    finally:
        for c in held:
            c.close()
    assert rt.in_loop(lambda: rt.tracker.counters.dropped["http_connection_limit"]) == 1
    assert rt.in_loop(lambda: rt.tracker.counters.dropped["http_idle_evicted"]) == 0


def test_many_clients_at_once(start: Callable[..., RunningTracker]) -> None:
    clients = 200
    rt = start()
    port = rt.port()
    ih = info_hash(30)

    async def one(n: int, host: str) -> dict[bytes, Any]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(get(announce_path(ih, peer_id(n), 3000 + n), version="HTTP/1.0"))
            await writer.drain()
            data = await reader.read()  # HTTP/1.0: the server closes after the reply
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        value = bencode.decode(body)
        assert isinstance(value, dict)
        return value

    async def everyone() -> list[dict[bytes, Any]]:
        hosts = ["127.0.0.1", "::1"] if HAS_IPV6 else ["127.0.0.1"]
        jobs = [one(n, hosts[n % len(hosts)]) for n in range(clients)]
        return await asyncio.wait_for(asyncio.gather(*jobs), WAIT * 4)

    replies = asyncio.run(everyone())
    assert len(replies) == clients
    assert all(b"failure reason" not in r for r in replies)
    assert max(r[b"incomplete"] for r in replies) == clients
    with rt.connect() as c:
        counts = c.request(scrape_path(ih)).bdecode()[b"files"][ih]
    assert counts[b"incomplete"] == clients
    counters = rt.tracker.counters
    assert rt.in_loop(lambda: (counters.pull(), counters.connections_total)[1]) == clients + 1


# Client address behind a reverse proxy


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("198.51.100.1, 203.0.113.9", "203.0.113.9"),  # the leftmost is what the client said
        ("203.0.113.9, 127.0.0.2, 127.0.0.3", "203.0.113.9"),  # skip trusted proxies
        ("203.0.113.9, [2001:db8::7]", "2001:db8::7"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("127.0.0.5", "127.0.0.5"),  # only proxies: the leftmost of them
        ("203.0.113.9, garbage", "127.0.0.1"),  # unreadable: stop, keep the socket address
    ],
)
def test_trusted_proxy_header_gives_the_rightmost_untrusted_address(
    start: Callable[..., RunningTracker], forwarded: str, expected: str
) -> None:
    rt = start(make_settings(http_trusted_proxies=["127.0.0.0/8"]))
    ih = info_hash(40)
    with rt.connect("127.0.0.1") as c:
        reply = c.request(announce_path(ih, peer_id(1), 6881),
                          headers=f"X-Forwarded-For: {forwarded}\r\n").bdecode()
    assert reply[b"external ip"] == ipaddress.ip_address(expected).packed
    seen = announce(rt, "127.0.0.1", 2, ih)
    peers = seen.get(b"peers6", b"") if ":" in expected and "ffff" not in expected \
        else seen[b"peers"]
    assert peers == ipaddress.ip_address(expected).packed + (6881).to_bytes(2, "big")


def test_repeated_real_ip_headers_are_read_as_one_list(
    start: Callable[..., RunningTracker],
) -> None:
    rt = start(make_settings(http_trusted_proxies=["127.0.0.1/32"]))
    with rt.connect() as c:
        reply = c.request(
            announce_path(info_hash(41), peer_id(1), 6881),
            headers="X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.9\r\n",
        )
    assert reply.bdecode()[b"external ip"] == ipaddress.ip_address("203.0.113.9").packed


def test_a_custom_real_ip_header(start: Callable[..., RunningTracker]) -> None:
    rt = start(make_settings(http_trusted_proxies=["127.0.0.1"], http_real_ip_header="X-Real-IP"))
    with rt.connect() as c:
        reply = c.request(
            announce_path(info_hash(42), peer_id(1), 6881),
            headers="X-Forwarded-For: 198.51.100.1\r\nX-Real-IP: 203.0.113.9\r\n",
        )
    assert reply.bdecode()[b"external ip"] == ipaddress.ip_address("203.0.113.9").packed


@pytest.mark.parametrize("host", HOSTS)
def test_real_ip_header_is_ignored_from_untrusted_sockets(
    start: Callable[..., RunningTracker], host: str
) -> None:
    trusted = ["10.0.0.0/8"] if host == "127.0.0.1" else ["127.0.0.0/8"]
    rt = start(make_settings(http_trusted_proxies=trusted))
    with rt.connect(host) as c:
        reply = c.request(announce_path(info_hash(43), peer_id(1), 6881),
                          headers="X-Forwarded-For: 203.0.113.9\r\n")
    assert reply.bdecode()[b"external ip"] == PACKED[host]


def test_real_ip_header_is_ignored_without_trusted_proxies(
    start: Callable[..., RunningTracker],
) -> None:
    rt = start()
    with rt.connect() as c:
        reply = c.request(announce_path(info_hash(44), peer_id(1), 6881),
                          headers="X-Forwarded-For: 203.0.113.9\r\n")
    assert reply.bdecode()[b"external ip"] == PACKED["127.0.0.1"]


def test_ip_parameter_is_ignored_unless_allowed(start: Callable[..., RunningTracker]) -> None:
    rt = start()
    reply = announce(rt, "127.0.0.1", 1, info_hash(45), ip="203.0.113.9")
    assert reply[b"external ip"] == PACKED["127.0.0.1"]
    seen = announce(rt, "127.0.0.1", 2, info_hash(45))
    assert seen[b"peers"] == PACKED["127.0.0.1"] + (10001).to_bytes(2, "big")


def test_ip_parameter_is_honoured_when_allowed(start: Callable[..., RunningTracker]) -> None:
    rt = start(make_settings(tracker_allow_ip_param=True))
    announce(rt, "127.0.0.1", 1, info_hash(46), ip="203.0.113.9")
    seen = announce(rt, "127.0.0.1", 2, info_hash(46))
    assert seen[b"peers"] == ipaddress.ip_address("203.0.113.9").packed + (10001).to_bytes(2, "big")


# Stores that answer later, and shutdown


class GatedStore(MemoryStore):
    """Announces for ``SLOW`` wait until :attr:`release` is set (a store on the network)."""

    SLOW = info_hash(99)

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def announce(  # type: ignore[override]
        self, request: AnnounceRequest, now: int
    ) -> AnnounceResult | Awaitable[AnnounceResult]:
        if request.info_hash != self.SLOW:
            return super().announce(request, now)

        async def later() -> AnnounceResult:
            self.entered.set()
            deadline = time.monotonic() + WAIT * 2
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return MemoryStore.announce(self, request, now)

        return later()


def test_a_reply_that_comes_later_keeps_its_place_in_the_pipeline(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    settings = make_settings(parser)
    store = GatedStore(settings)
    rt = start(settings, store)
    with rt.connect() as c:
        c.send(get(announce_path(GatedStore.SLOW, peer_id(1), 1)) + get("/nowhere")
               + get(scrape_path(GatedStore.SLOW)))
        assert store.entered.wait(WAIT)
        store.release.set()
        first, second, third = c.response(), c.response(), c.response()
    assert first.bdecode()[b"incomplete"] == 1
    assert second.status == 404
    assert b"files" in third.bdecode()


def test_shutdown_closes_idle_connections_and_lets_requests_in_flight_finish(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    settings = make_settings(parser)
    store = GatedStore(settings)
    rt = start(settings, store)
    port = rt.port()
    idle, busy, half = rt.connect(), rt.connect(), rt.connect()
    try:
        assert idle.request("/").status == 404
        busy.send(get(announce_path(GatedStore.SLOW, peer_id(1), 1)))
        assert store.entered.wait(WAIT)
        half.send(b"GET /scrape?info_hash=x HTTP/1.1\r\n")  # a request begun, not finished
        wait_until(lambda: rt.in_loop(
            lambda: sum(not conn.idle for conn in rt.tracker.http.connections)) == 2)
        rt.request_stop()
        assert idle.closed()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        half.send(b"\r\n")
        reply = half.response()
        assert reply.status == 200
        assert reply.headers[b"connection"] == b"close"
        assert half.closed()
        store.release.set()
        reply = busy.response()
        assert reply.bdecode()[b"incomplete"] == 1
        assert reply.headers[b"connection"] == b"close"
        assert busy.closed()
        rt.join()
    finally:
        for c in (idle, busy, half):
            c.close()
