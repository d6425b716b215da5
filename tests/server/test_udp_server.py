"""The UDP frontend over real sockets on 127.0.0.1 and ::1 (BEP 15 with BEP 41 options).

Each tracker runs in-process on an event loop in a thread of its own; the tests talk to it
with plain blocking sockets. Every receive is bounded (``REPLY_TIMEOUT``); where no reply is
expected, the test either waits briefly (``SILENCE``) or sends a connect right behind the
datagram under test and reads up to its answer (``Client.sync``), which relies on loopback
keeping datagrams of one socket pair in order. Replies are decoded here with ``struct``
straight from the BEP 15 tables rather than with the codec under test, so a field-order
mistake shared by encoder and decoder would still show.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import socket
import struct
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from support.net import has_ipv6_loopback
from support.running import RunningTracker as BaseTracker

from shoal.config import Settings, UdpSettings
from shoal.errors import ClientError
from shoal.protocol import bencode
from shoal.server.app import Tracker
from shoal.server.clock import Clock
from shoal.server.udp import NativeUdpEndpoint
from shoal.storage.memory import MemoryStore
from shoal.types import AnnounceRequest, AnnounceResult, Event

# Every test here runs on both UDP paths: the pure-Python endpoint and the compiled one.
pytestmark = pytest.mark.usefixtures("udp_engine")

REPLY_TIMEOUT = 2.0
SILENCE = 0.3
PROTOCOL_ID = 0x41727101980

_HEADER = struct.Struct(">QII")
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_ANNOUNCE_REPLY = struct.Struct(">IIIII")
_CONNECT_REPLY = struct.Struct(">IIQ")

HAS_IPV6 = has_ipv6_loopback(socket.SOCK_DGRAM)
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback (::1) here")
FAMILIES = ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)]
WIDTH = {"127.0.0.1": 6, "::1": 18}


def info_hash(n: int) -> bytes:
    return n.to_bytes(4, "big") * 5


def peer_id(n: int) -> bytes:
    return b"-SH0001-" + n.to_bytes(12, "big")


# The tracker, in a thread.


def make_settings(
    *,
    udp_hosts: Sequence[str] | None = None,
    http: bool = False,
    secret: str = "",
    ttl: int = 300,
    allow_ip_param: bool = False,
    default_numwant: int = 50,
    max_numwant: int = 1000,
    max_peers_per_swarm: int = 200_000,
) -> Settings:
    if udp_hosts is None:
        udp_hosts = ["127.0.0.1", "::1"] if HAS_IPV6 else ["127.0.0.1"]
    base = Settings()
    return dataclasses.replace(
        base,
        tracker=dataclasses.replace(
            base.tracker,
            interval_jitter=0,
            allow_ip_param=allow_ip_param,
            default_numwant=default_numwant,
            max_numwant=max_numwant,
            max_peers_per_swarm=max_peers_per_swarm,
        ),
        http=dataclasses.replace(base.http, enabled=http, hosts=["127.0.0.1"], port=0),
        udp=UdpSettings(hosts=list(udp_hosts), port=0, secret=secret, connection_id_ttl=ttl),
        admin=dataclasses.replace(base.admin, enabled=False),
        storage=dataclasses.replace(base.storage, persist=False),
    )


class RunningTracker(BaseTracker):
    """The shared harness, with the UDP addresses and counters these tests look at."""

    def udp(self, host: str) -> tuple[str, int]:
        return self.listener("udp", host)

    def http_port(self) -> int:
        return self.listener("http")[1]

    def dropped(self) -> int:
        """Datagrams refused or dropped (ICMP errors for earlier replies left out)."""
        counters = self.tracker.counters
        dropped = counters.dropped  # (the compiled data plane's, pulled in first)
        return self.in_loop(lambda: (counters.pull(), sum(dropped.values())
                                     - dropped.get("udp_icmp_error", 0))[1])

    def requests(self, kind: str | None = None) -> int:
        def count() -> int:
            self.tracker.counters.pull()  # (what the compiled data plane counted)
            items = self.tracker.counters.requests.items()
            return sum(n for key, n in items if key[0] == "udp" and kind in (None, key[2]))

        return self.in_loop(count)


@pytest.fixture
def start_tracker(
    launch_tracker: Callable[..., RunningTracker],
) -> Callable[..., RunningTracker]:
    def start(settings: Settings | None = None, store: MemoryStore | None = None) -> RunningTracker:
        return launch_tracker(settings or make_settings(), store, RunningTracker)

    return start


@pytest.fixture
def tracker(start_tracker: Callable[..., RunningTracker]) -> RunningTracker:
    return start_tracker()


@pytest.fixture
def clients() -> Iterator[Callable[[tuple[str, int]], Client]]:
    made: list[Client] = []

    def make(server: tuple[str, int]) -> Client:
        client = Client(server)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# A BEP 15 client over a blocking socket.


@dataclasses.dataclass
class Announced:
    """An announce reply, decoded from the BEP 15 table: interval, leechers, seeders."""

    transaction_id: int
    interval: int
    leechers: int
    seeders: int
    peers: list[tuple[str, int]]
    size: int


def decode_peers(data: bytes, width: int) -> list[tuple[str, int]]:
    assert len(data) % width == 0, f"{len(data)} bytes of peers is not a multiple of {width}"
    family = socket.AF_INET if width == 6 else socket.AF_INET6
    out = []
    for i in range(0, len(data), width):
        ip = socket.inet_ntop(family, data[i : i + width - 2])
        out.append((ip, int.from_bytes(data[i + width - 2 : i + width], "big")))
    return out


def error_of(data: bytes) -> tuple[int, str]:
    action, tid = struct.unpack_from(">II", data)
    assert action == 3, f"expected an error reply, got action {action}"
    return tid, data[8:].decode()


class Client:
    """One UDP socket on the loopback address of the tracker's family."""

    def __init__(self, server: tuple[str, int]) -> None:
        host = server[0]
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.width = 18 if ":" in host else 6
        self.server = server
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self._tids = itertools.count(random.randrange(1 << 31))

    def close(self) -> None:
        self.sock.close()

    def tid(self) -> int:
        return next(self._tids) & 0xFFFFFFFF

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def recv(self, timeout: float = REPLY_TIMEOUT) -> bytes:
        self.sock.settimeout(timeout)
        data, addr = self.sock.recvfrom(65536)
        assert (addr[0], addr[1]) == self.server
        return data

    def expect_silence(self, timeout: float = SILENCE) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        pytest.fail(f"unexpected reply of {len(data)} bytes: {data[:40].hex()}")

    def connect(self) -> int:
        tid = self.tid()
        self.send(_HEADER.pack(PROTOCOL_ID, 0, tid))
        data = self.recv()
        assert len(data) == 16
        action, got, conn_id = _CONNECT_REPLY.unpack(data)
        assert (action, got) == (0, tid)
        return int(conn_id)

    def sync(self) -> list[bytes]:
        """Send a connect and read up to its reply; return what arrived before it.

        Proves the server still answers, and collects any reply to earlier datagrams.
        """
        tid = self.tid()
        self.send(_HEADER.pack(PROTOCOL_ID, 0, tid))
        before: list[bytes] = []
        for _ in range(100):
            data = self.recv()
            if len(data) == 16 and _CONNECT_REPLY.unpack(data)[:2] == (0, tid):
                return before
            before.append(data)
        pytest.fail("the server never answered the connect")

    def announce_packet(
        self,
        conn_id: int,
        torrent: bytes,
        peer: bytes,
        port: int,
        *,
        left: int = 100,
        event: Event = Event.NONE,
        num_want: int = -1,
        key: int = 0,
        ip: int = 0,
        uploaded: int = 0,
        downloaded: int = 0,
        tid: int | None = None,
    ) -> bytes:
        return _ANNOUNCE.pack(
            conn_id, 1, self.tid() if tid is None else tid, torrent, peer,
            downloaded, left, uploaded, int(event), ip, key, num_want, port,
        )

    def announce_raw(self, packet: bytes) -> bytes:
        self.send(packet)
        return self.recv()

    def announce(
        self, conn_id: int, torrent: bytes, peer: bytes, port: int, **kw: Any
    ) -> Announced:
        packet = self.announce_packet(conn_id, torrent, peer, port, **kw)
        data = self.announce_raw(packet)
        return self.decode_announce(data, packet)

    def decode_announce(self, data: bytes, packet: bytes) -> Announced:
        action, tid, interval, leechers, seeders = _ANNOUNCE_REPLY.unpack_from(data)
        if action == 3:
            pytest.fail(f"error reply: {data[8:].decode(errors='replace')}")
        assert action == 1
        assert tid == _HEADER.unpack_from(packet)[2]
        peers = decode_peers(data[20:], self.width)
        return Announced(tid, interval, leechers, seeders, peers, len(data))

    def scrape(self, conn_id: int, hashes: Sequence[bytes]) -> list[tuple[int, int, int]]:
        """Per hash (seeders, completed, leechers), BEP 15's order."""
        tid = self.tid()
        self.send(_HEADER.pack(conn_id, 2, tid) + b"".join(hashes))
        data = self.recv()
        action, got = struct.unpack_from(">II", data)
        if action == 3:
            pytest.fail(f"error reply: {data[8:].decode(errors='replace')}")
        assert (action, got) == (2, tid)
        assert len(data) == 8 + 12 * len(hashes)
        return [struct.unpack_from(">III", data, 8 + 12 * i) for i in range(len(hashes))]


# Which path serves.


def test_the_chosen_udp_path_serves(tracker: RunningTracker, udp_engine: str) -> None:
    assert tracker.tracker.native_udp == (udp_engine == "native")


@pytest.mark.parametrize("host", FAMILIES)
def test_a_burst_of_datagrams_is_answered_one_reply_each_in_batches(
    tracker: RunningTracker, clients: Callable[..., Client], host: str
) -> None:
    """More datagrams than one batch, sent before any is read: each gets its own reply
    (connects, bad ids and announces mixed), none is lost or answered twice."""
    client = clients(tracker.udp(host))
    conn = client.connect()
    sent: dict[int, int] = {}
    for n in range(150):
        tid = 10_000 + n
        kind = n % 3
        if kind == 0:
            client.send(_HEADER.pack(PROTOCOL_ID, 0, tid))
        elif kind == 1:
            client.send(_HEADER.pack(conn ^ 1, 2, tid) + info_hash(n))  # bad id: error reply
        else:
            client.send(_ANNOUNCE.pack(conn, 1, tid, info_hash(n), peer_id(n), 0, 10, 0, 2, 0,
                                       0, -1, 7000 + n))
        sent[tid] = kind
    got: dict[int, int] = {}
    for _ in range(150):
        data = client.recv()
        action, tid = struct.unpack_from(">II", data)
        assert tid not in got
        got[tid] = action
    assert got == {tid: {0: 0, 1: 3, 2: 1}[kind] for tid, kind in sent.items()}


# Connect, announce, peers.


@pytest.mark.parametrize("host", FAMILIES)
def test_connect_announce_peers(
    tracker: RunningTracker, clients: Callable[..., Client], host: str, udp_engine: str
) -> None:
    client = clients(tracker.udp(host))
    conn = client.connect()
    torrent = info_hash(1)
    first = client.announce(conn, torrent, peer_id(1), 6001, left=0, event=Event.STARTED)
    assert first.interval == 1800
    assert (first.seeders, first.leechers, first.peers) == (1, 0, [])
    second = client.announce(conn, torrent, peer_id(2), 6002, left=500, event=Event.STARTED)
    assert second.peers == [(host, 6001)]
    assert (second.seeders, second.leechers) == (1, 1)
    # The seeder sees the leecher.
    again = client.announce(conn, torrent, peer_id(1), 6001, left=0)
    assert again.peers == [(host, 6002)]
    assert tracker.requests("connect") >= 1 and tracker.requests("announce") == 3
    if udp_engine == "native":  # answered in C, on the native store
        answered = tracker.in_loop(lambda: sum(
            e.answered_in_c["announce"] for e in tracker.tracker.udp_endpoints
            if isinstance(e, NativeUdpEndpoint)))
        assert answered == 3


def test_counts_come_in_bep15_order(
    tracker: RunningTracker, clients: Callable[..., Client]
) -> None:
    """interval, leechers, seeders: 3 seeders and 1 leecher, then a second leecher asks."""
    client = clients(tracker.udp("127.0.0.1"))
    conn = client.connect()
    torrent = info_hash(2)
    for n in range(3):
        client.announce(conn, torrent, peer_id(n), 7000 + n, left=0)
    client.announce(conn, torrent, peer_id(10), 7010, left=5)
    packet = client.announce_packet(conn, torrent, peer_id(11), 7011, left=5)
    data = client.announce_raw(packet)
    action, tid, interval, leechers, seeders = struct.unpack_from(">IIIII", data)
    assert (action, tid, interval) == (1, _HEADER.unpack_from(packet)[2], 1800)
    assert (leechers, seeders) == (2, 3)
    assert len(data) == 20 + 4 * 6


@needs_ipv6
def test_families_never_mix(tracker: RunningTracker, clients: Callable[..., Client]) -> None:
    v4 = clients(tracker.udp("127.0.0.1"))
    v6 = clients(tracker.udp("::1"))
    c4, c6 = v4.connect(), v6.connect()
    torrent = info_hash(3)
    for n in range(3):
        v4.announce(c4, torrent, peer_id(n), 10001 + n, left=0)
        v6.announce(c6, torrent, peer_id(100 + n), 20001 + n, left=0)
    seen4 = v4.announce(c4, torrent, peer_id(50), 10050, left=1, num_want=100)
    seen6 = v6.announce(c6, torrent, peer_id(150), 20050, left=1, num_want=100)
    # Counts cover the whole swarm; peers are of the requester's family only.
    assert (seen4.seeders, seen4.leechers) == (6, 1)
    assert (seen6.seeders, seen6.leechers) == (6, 2)
    assert sorted(seen4.peers) == [("127.0.0.1", 10001 + n) for n in range(3)]
    assert sorted(seen6.peers) == [("::1", 20001 + n) for n in range(3)]
    assert seen4.size == 20 + 3 * 6 and seen6.size == 20 + 3 * 18


# num_want and the datagram budget.


@pytest.mark.parametrize(
    ("host", "swarm", "cap"),
    [("127.0.0.1", 250, 196), pytest.param("::1", 100, 65, marks=needs_ipv6)],
)
def test_num_want_default_and_datagram_cap(
    tracker: RunningTracker, clients: Callable[..., Client], host: str, swarm: int, cap: int
) -> None:
    client = clients(tracker.udp(host))
    conn = client.connect()
    torrent = info_hash(4)
    for n in range(swarm):
        client.announce(conn, torrent, peer_id(n), 20000 + n, left=0)
    asker = peer_id(9999)
    for asked, expected in [(-1, 50), (-5, 50), (0, 0), (7, 7), (1000, cap), (0x7FFFFFFF, cap)]:
        got = client.announce(conn, torrent, asker, 30000, left=1, num_want=asked)
        assert len(got.peers) == expected, asked
        assert len(set(got.peers)) == expected
        assert got.size == 20 + expected * WIDTH[host] <= 1200
    assert cap == (1200 - 20) // WIDTH[host]


def test_num_want_capped_by_max_numwant(
    start_tracker: Callable[..., RunningTracker], clients: Callable[..., Client]
) -> None:
    tracker = start_tracker(make_settings(default_numwant=5, max_numwant=30))
    client = clients(tracker.udp("127.0.0.1"))
    conn = client.connect()
    torrent = info_hash(5)
    for n in range(60):
        client.announce(conn, torrent, peer_id(n), 20000 + n, left=0)
    assert len(client.announce(conn, torrent, peer_id(99), 1, num_want=-1).peers) == 5
    assert len(client.announce(conn, torrent, peer_id(99), 1, num_want=500).peers) == 30


# Scrape.


@pytest.mark.parametrize("host", FAMILIES)
def test_scrape_several_hashes(
    tracker: RunningTracker, clients: Callable[..., Client], host: str
) -> None:
    client = clients(tracker.udp(host))
    conn = client.connect()
    a, b, unknown = info_hash(10), info_hash(11), info_hash(12)
    client.announce(conn, a, peer_id(1), 1001, left=0)
    client.announce(conn, a, peer_id(2), 1002, left=0)
    client.announce(conn, a, peer_id(3), 1003, left=9)
    client.announce(conn, a, peer_id(3), 1003, left=0, event=Event.COMPLETED)
    client.announce(conn, a, peer_id(4), 1004, left=9)
    for n in range(3):
        client.announce(conn, b, peer_id(10 + n), 1010 + n, left=7)
    # seeders, completed, leechers, in the order asked; an unknown torrent is zeros.
    assert client.scrape(conn, [a, unknown, b, a]) == [(3, 1, 1), (0, 0, 0), (0, 0, 3), (3, 1, 1)]


def test_scrape_74_hashes_and_no_more(
    tracker: RunningTracker, clients: Callable[..., Client]
) -> None:
    client = clients(tracker.udp("127.0.0.1"))
    conn = client.connect()
    client.announce(conn, info_hash(73), peer_id(1), 1001, left=0)
    hashes = [info_hash(n) for n in range(74)]
    counts = client.scrape(conn, hashes)
    assert counts[73] == (1, 0, 0) and counts[:73] == [(0, 0, 0)] * 73
    too_many = _HEADER.pack(conn, 2, 77) + b"".join(info_hash(n) for n in range(75))
    client.send(too_many)
    replies = client.sync()
    assert len(replies) <= 1
    for reply in replies:
        assert len(reply) <= len(too_many)
        assert error_of(reply)[0] == 77


# One engine for HTTP and UDP.


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_announce(
    port: int,
    torrent: bytes,
    peer: bytes,
    peer_port: int,
    *,
    left: int = 100,
    event: str = "",
    key: str = "",
    numwant: int = 50,
) -> dict[bytes, Any]:
    query = {
        "info_hash": torrent,
        "peer_id": peer,
        "port": str(peer_port),
        "uploaded": "0",
        "downloaded": "0",
        "left": str(left),
        "compact": "1",
        "numwant": str(numwant),
    }
    if event:
        query["event"] = event
    if key:
        query["key"] = key
    url = f"http://127.0.0.1:{port}/announce?" + urllib.parse.urlencode(query)
    with _NO_PROXY.open(url, timeout=REPLY_TIMEOUT) as response:
        body = response.read()
    decoded = bencode.decode(body)
    assert isinstance(decoded, dict)
    return decoded


def test_http_and_udp_share_one_engine(
    start_tracker: Callable[..., RunningTracker], clients: Callable[..., Client]
) -> None:
    tracker = start_tracker(make_settings(http=True))
    port = tracker.http_port()
    client = clients(tracker.udp("127.0.0.1"))
    conn = client.connect()
    torrent = info_hash(20)
    reply = http_announce(port, torrent, peer_id(1), 5001, left=0, event="started")
    assert reply[b"peers"] == b""
    # An HTTP peer is handed to a UDP announcer...
    got = client.announce(conn, torrent, peer_id(2), 5002, left=10, event=Event.STARTED)
    assert got.peers == [("127.0.0.1", 5001)]
    assert (got.seeders, got.leechers) == (1, 1)
    # ...and a UDP peer to an HTTP announcer.
    reply = http_announce(port, torrent, peer_id(3), 5003, left=10)
    peers = decode_peers(reply[b"peers"], 6)
    assert sorted(peers) == [("127.0.0.1", 5001), ("127.0.0.1", 5002)]
    assert (reply[b"complete"], reply[b"incomplete"]) == (1, 2)
    assert client.scrape(conn, [torrent]) == [(1, 0, 2)]


class UdpSide:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.conn = client.connect()

    def announce(
        self, torrent: bytes, peer: bytes, port: int, left: int, event: Event, key: int
    ) -> tuple[str, int, int, list[int]] | tuple[str]:
        packet = self.client.announce_packet(
            self.conn, torrent, peer, port, left=left, event=event, key=key
        )
        data = self.client.announce_raw(packet)
        if struct.unpack_from(">I", data)[0] == 3:
            return ("refused",)
        got = self.client.decode_announce(data, packet)
        return ("ok", got.seeders, got.leechers, sorted(p for _, p in got.peers))


class HttpSide:
    def __init__(self, port: int) -> None:
        self.port = port

    def announce(
        self, torrent: bytes, peer: bytes, port: int, left: int, event: Event, key: int
    ) -> tuple[str, int, int, list[int]] | tuple[str]:
        names = {Event.NONE: "", Event.STARTED: "started", Event.COMPLETED: "completed",
                 Event.STOPPED: "stopped"}
        reply = http_announce(
            self.port, torrent, peer, port, left=left, event=names[event], key=f"{key:08x}"
        )
        if b"failure reason" in reply:
            return ("refused",)
        peers = decode_peers(reply[b"peers"], 6)
        return ("ok", reply[b"complete"], reply[b"incomplete"], sorted(p for _, p in peers))


def test_key_and_events_behave_as_over_http(
    start_tracker: Callable[..., RunningTracker], clients: Callable[..., Client]
) -> None:
    """The same announce sequence over UDP and over HTTP, on two torrents of one engine."""
    tracker = start_tracker(make_settings(http=True))
    scraper = clients(tracker.udp("127.0.0.1"))
    sides: dict[str, UdpSide | HttpSide] = {
        "udp": UdpSide(clients(tracker.udp("127.0.0.1"))),
        "http": HttpSide(tracker.http_port()),
    }
    a, b, c = peer_id(1), peer_id(2), peer_id(3)
    steps = [
        (a, 4001, 100, Event.STARTED, 0xA),
        (a, 4001, 0, Event.COMPLETED, 0xA),
        (a, 4001, 0, Event.COMPLETED, 0xA),  # a repeated completed counts once
        (a, 4001, 0, Event.NONE, 0xA),
        (b, 4002, 100, Event.STARTED, 0xB),
        (b, 4012, 100, Event.NONE, 0xC),  # another address, another key: another peer
        (b, 4012, 100, Event.STOPPED, 0xC),  # which stops from its own address
        (b, 4013, 100, Event.NONE, 0xB),  # the registered key: the peer moves
        (a, 4001, 0, Event.STOPPED, 0xA),  # stopped removes
        (c, 4003, 100, Event.STARTED, 0xD),
    ]
    observed: dict[str, list[Any]] = {}
    scraped = {}
    for name, side in sides.items():
        torrent = info_hash(30 if name == "udp" else 31)
        observed[name] = [side.announce(torrent, *step) for step in steps]
        scraped[name] = scraper.scrape(scraper.connect(), [torrent])
    assert observed["udp"] == [
        ("ok", 0, 1, []),
        ("ok", 1, 0, []),
        ("ok", 1, 0, []),
        ("ok", 1, 0, []),
        ("ok", 1, 1, [4001]),
        ("ok", 1, 2, [4001, 4002]),
        ("ok", 1, 1, []),
        ("ok", 1, 1, [4001]),
        ("ok", 0, 1, []),
        ("ok", 0, 2, [4013]),  # a is gone, b is at its new port
    ]
    assert observed["udp"] == observed["http"]
    assert scraped["udp"] == scraped["http"] == [(0, 1, 2)]


# Connection ids.


@pytest.mark.parametrize("host", FAMILIES)
def test_wrong_connection_id_gets_nothing_larger_than_the_request(
    tracker: RunningTracker, clients: Callable[..., Client], host: str
) -> None:
    client = clients(tracker.udp(host))
    other = clients(tracker.udp(host))
    conn = client.connect()
    others = other.connect()
    dropped = tracker.dropped()
    packets = [
        client.announce_packet(conn ^ 1, info_hash(40), peer_id(1), 1001),
        client.announce_packet(others, info_hash(40), peer_id(1), 1001),  # another socket's id
        client.announce_packet(PROTOCOL_ID, info_hash(40), peer_id(1), 1001),
        _HEADER.pack(conn ^ (1 << 40), 2, 5) + info_hash(40),
    ]
    for packet in packets:
        client.send(packet)
        replies = client.sync()
        assert len(replies) <= 1
        for reply in replies:
            assert len(reply) <= len(packet)
            tid, _ = error_of(reply)
            assert tid == _HEADER.unpack_from(packet)[2]
    assert tracker.dropped() == dropped + len(packets)
    # Nothing of it reached the engine.
    assert client.scrape(conn, [info_hash(40)]) == [(0, 0, 0)]
    client.expect_silence()


class FrozenClockRun:
    """Stands in for ``Clock.run`` so that only the test moves ``tracker.clock.now``."""

    @staticmethod
    async def run(self: Clock, period: float = 1.0) -> None:
        await asyncio.Event().wait()


@pytest.mark.parametrize("ttl", [120, 600])
def test_connection_id_expiry_window(
    start_tracker: Callable[..., RunningTracker],
    clients: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
    ttl: int,
) -> None:
    monkeypatch.setattr(Clock, "run", FrozenClockRun.run)
    tracker = start_tracker(make_settings(ttl=ttl))
    clock = tracker.tracker.clock
    start = 1_700_000_000
    clock.now = start
    client = clients(tracker.udp("127.0.0.1"))
    conn = client.connect()

    def accepted(now: int) -> bool:
        clock.now = now
        packet = client.announce_packet(conn, info_hash(50), peer_id(1), 1001)
        client.send(packet)
        replies = client.sync()
        if replies and struct.unpack_from(">I", replies[0])[0] == 1:
            return True
        for reply in replies:
            assert len(reply) <= len(packet)
            error_of(reply)
        return False

    assert accepted(start)
    assert accepted(start + ttl // 2)
    assert accepted(start + ttl - 1)
    assert not accepted(start + ttl)
    assert not accepted(start + ttl + 3600)
    assert accepted(start - 5)  # a little clock skew between processes is tolerated
    assert not accepted(start - 60)
    # A fresh connect at the later time works again.
    clock.now = start + ttl
    conn = client.connect()
    assert accepted(start + ttl)


def test_trackers_sharing_a_secret_accept_each_others_ids(
    start_tracker: Callable[..., RunningTracker], clients: Callable[..., Client]
) -> None:
    secret = "5e" * 32
    first = start_tracker(make_settings(udp_hosts=["127.0.0.1"], secret=secret))
    second = start_tracker(make_settings(udp_hosts=["127.0.0.1"], secret=secret))
    stranger = start_tracker(make_settings(udp_hosts=["127.0.0.1"], secret="77" * 32))
    client = clients(first.udp("127.0.0.1"))
    conn = client.connect()
    client.server = second.udp("127.0.0.1")
    got = client.announce(conn, info_hash(60), peer_id(1), 1001, left=0)
    assert got.seeders == 1
    assert client.scrape(conn, [info_hash(60)]) == [(1, 0, 0)]
    client.server = stranger.udp("127.0.0.1")
    packet = client.announce_packet(conn, info_hash(60), peer_id(1), 1001)
    client.send(packet)
    for reply in client.sync():
        assert len(reply) <= len(packet)
        error_of(reply)
    assert client.scrape(client.connect(), [info_hash(60)]) == [(0, 0, 0)]


# Malformed datagrams.


def announce_bytes(conn: int, tid: int, *, port: int = 1001) -> bytes:
    return _ANNOUNCE.pack(
        conn, 1, tid, info_hash(70), peer_id(70), 0, 5, 0, 0, 0, 0, -1, port
    )


# name -> (datagram from (connection id, transaction id), whether an error reply may come)
MALFORMED: dict[str, tuple[Callable[[int, int], bytes], bool]] = {
    "empty": (lambda c, t: b"", False),
    "one byte": (lambda c, t: b"\x00", False),
    "short header": (lambda c, t: _HEADER.pack(PROTOCOL_ID, 0, t)[:15], False),
    "wrong magic": (lambda c, t: _HEADER.pack(PROTOCOL_ID + 1, 0, t), False),
    "zero magic": (lambda c, t: _HEADER.pack(0, 0, t), False),
    "unknown action": (lambda c, t: _HEADER.pack(c, 7, t) + b"\x00" * 80, False),
    "error action from a client": (lambda c, t: _HEADER.pack(c, 3, t) + b"x" * 40, False),
    "huge action": (lambda c, t: _HEADER.pack(c, 0xFFFFFFFF, t), False),
    "header-only announce": (lambda c, t: _HEADER.pack(c, 1, t), False),
    "short announce": (lambda c, t: announce_bytes(c, t)[:60], True),
    "announce one byte short": (lambda c, t: announce_bytes(c, t)[:97], True),
    # The id is checked first: a bad one gets "connection id expired" where that fits.
    "short announce, bad id": (lambda c, t: announce_bytes(c ^ 1, t)[:60], True),
    "announce port 0": (lambda c, t: announce_bytes(c, t, port=0), True),
    "truncated option length": (lambda c, t: announce_bytes(c, t) + b"\x02", True),
    "truncated option data": (lambda c, t: announce_bytes(c, t) + b"\x02\x32abc", True),
    "truncated unknown option": (lambda c, t: announce_bytes(c, t) + b"\x01\x09\x05ab", True),
    "truncated options, bad id": (lambda c, t: announce_bytes(c ^ 1, t) + b"\x02\x32", True),
    "empty scrape": (lambda c, t: _HEADER.pack(c, 2, t), False),
    "scrape not a multiple of 20": (lambda c, t: _HEADER.pack(c, 2, t) + b"h" * 25, True),
    "scrape of 19 bytes": (lambda c, t: _HEADER.pack(c, 2, t) + b"h" * 19, True),
    # Longer than any valid request: dropped unread.
    "scrape of 75 hashes": (lambda c, t: _HEADER.pack(c, 2, t) + b"h" * 20 * 75, False),
    "scrape of 3000 hashes": (lambda c, t: _HEADER.pack(c, 2, t) + b"h" * 20 * 3000, False),
    "announce with 64 KB of no-op options": (
        lambda c, t: announce_bytes(c, t) + b"\x01" * 60000, False),
    "announce with 64 KB of no-op options, bad id": (
        lambda c, t: announce_bytes(c ^ 1, t) + b"\x01" * 60000, False),
    "bad scrape, bad id": (lambda c, t: _HEADER.pack(c ^ 1, 2, t) + b"h" * 25, True),
    "oversize garbage": (lambda c, t: bytes(random.Random(1).randbytes(60000)), False),
}


@pytest.fixture(scope="module")
def shared_tracker(
    udp_engine: str, loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> Iterator[RunningTracker]:
    running = RunningTracker(make_settings(), None, loop_factory)
    yield running
    running.stop()
    assert running.tracker.counters.internal_errors == 0


@pytest.mark.parametrize("host", FAMILIES)
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_datagrams(
    shared_tracker: RunningTracker, clients: Callable[..., Client], host: str, case: str
) -> None:
    build, may_reply = MALFORMED[case]
    client = clients(shared_tracker.udp(host))
    conn = client.connect()
    tid = client.tid()
    packet = build(conn, tid)
    dropped, errors = shared_tracker.dropped(), shared_tracker.requests("error")
    client.send(packet)
    replies = client.sync()  # the server still answers a valid connect
    assert len(replies) <= (1 if may_reply else 0), [r.hex() for r in replies]
    for reply in replies:
        assert len(reply) <= len(packet)
        assert error_of(reply)[0] == tid
    if may_reply:
        assert len(replies) == 1, "a malformed request with a valid id gets a short error"
    assert shared_tracker.dropped() == dropped + 1
    assert shared_tracker.requests("error") == errors + 1
    assert shared_tracker.tracker.counters.internal_errors == 0


@pytest.mark.parametrize("host", FAMILIES)
def test_random_garbage_never_crashes_or_amplifies(
    shared_tracker: RunningTracker, clients: Callable[..., Client], host: str
) -> None:
    rng = random.Random(15)
    client = clients(shared_tracker.udp(host))
    conn = client.connect()
    for round_ in range(300):
        size = rng.choice([rng.randrange(0, 20), rng.randrange(20, 120), rng.randrange(120, 2000)])
        packet = rng.randbytes(size)
        if round_ % 2 and size >= 16:
            # Behind a valid id, so the parser gets past the connection-id check.
            action = rng.choice([0, 1, 2, 3, rng.randrange(1 << 32)])
            packet = _HEADER.pack(conn, action, rng.randrange(1 << 32)) + packet[16:]
        client.send(packet)
        for reply in client.sync():
            assert len(reply) <= len(packet), (packet.hex(), reply.hex())
    client.expect_silence()
    assert shared_tracker.tracker.counters.internal_errors == 0


# BEP 41 URL data and the IP field.


class RecordingStore(MemoryStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[AnnounceRequest] = []

    def announce(self, request: AnnounceRequest, now: int) -> AnnounceResult:
        self.seen.append(request)
        return super().announce(request, now)


@pytest.mark.parametrize("host", FAMILIES)
def test_bep41_url_data_reaches_the_engine_as_path(
    start_tracker: Callable[..., RunningTracker], clients: Callable[..., Client], host: str
) -> None:
    settings = make_settings()
    store = RecordingStore()
    tracker = start_tracker(settings, store)
    client = clients(tracker.udp(host))
    conn = client.connect()
    base = client.announce_packet(conn, info_hash(80), peer_id(1), 1001)
    long_part = b"/" + b"k" * 299
    options = [
        b"",
        b"\x02\x0c/abc/announce" + b"\x00",  # 12 bytes of URL data, then end
        b"\x01\x02\x05/abc/\x01\x09\x03xyz\x02\x08announce",  # nop, data, unknown, data
        b"\x02\x05/pass\x00\x02\x05/nope",  # after end, nothing counts
        b"\x02\xff" + long_part[:255] + b"\x02\x2d" + long_part[255:],  # chunks concatenate
    ]
    expected = [b"", b"/abc/announc", b"/abc/announce", b"/pass", long_part]
    for option in options:
        data = client.announce_raw(base + option)
        assert struct.unpack_from(">I", data)[0] == 1, data
    paths = tracker.in_loop(lambda: [r.path for r in store.seen])
    assert paths == expected


@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.parametrize("host", FAMILIES)
def test_ip_field(
    start_tracker: Callable[..., RunningTracker],
    clients: Callable[..., Client],
    host: str,
    allow: bool,
) -> None:
    tracker = start_tracker(make_settings(allow_ip_param=allow))
    client = clients(tracker.udp(host))
    conn = client.connect()
    torrent = info_hash(90)
    claimed = int.from_bytes(socket.inet_aton("10.1.2.3"), "big")
    client.announce(conn, torrent, peer_id(1), 1001, left=0, ip=claimed)
    client.announce(conn, torrent, peer_id(2), 1002, left=0, ip=0)
    got = client.announce(conn, torrent, peer_id(3), 1003, left=5)
    honoured = allow and host == "127.0.0.1"  # an IPv6 reply cannot carry an IPv4 address
    first = ("10.1.2.3", 1001) if honoured else (host, 1001)
    assert sorted(got.peers) == sorted([first, (host, 1002)])


# Stores that answer later, dual-stack sockets, zoned addresses.


class AwaitingStore(MemoryStore):
    """Answers every announce and scrape through an awaitable, as a networked store does."""

    def announce(self, request: AnnounceRequest, now: int) -> Any:
        async def later() -> AnnounceResult:
            await asyncio.sleep(0)
            return MemoryStore.announce(self, request, now)

        return later()

    def scrape(self, info_hashes: Sequence[bytes]) -> Any:
        async def later() -> Any:
            await asyncio.sleep(0)
            return MemoryStore.scrape(self, info_hashes)

        return later()


def test_a_store_that_answers_later(
    start_tracker: Callable[..., RunningTracker], clients: Callable[..., Client]
) -> None:
    # A full swarm refuses the fifth peer (the fourth without IPv6 loopback).
    settings = make_settings(max_peers_per_swarm=4 if HAS_IPV6 else 2)
    tracker = start_tracker(settings, AwaitingStore())
    v4 = clients(tracker.udp("127.0.0.1"))
    c4 = v4.connect()
    torrent = info_hash(100)
    v4.announce(c4, torrent, peer_id(1), 1001, left=0, key=1)
    if HAS_IPV6:
        v6 = clients(tracker.udp("::1"))
        c6 = v6.connect()
        v6.announce(c6, torrent, peer_id(2), 1002, left=0)
        got6 = v6.announce(c6, torrent, peer_id(3), 1003, left=5)
        assert got6.peers == [("::1", 1002)]
    got = v4.announce(c4, torrent, peer_id(4), 1004, left=5)
    assert got.peers == [("127.0.0.1", 1001)]
    assert v4.scrape(c4, [torrent, info_hash(101)]) == [
        (2 if HAS_IPV6 else 1, 0, 2 if HAS_IPV6 else 1), (0, 0, 0)
    ]
    # A refusal raised while awaiting is an error reply too.
    packet = v4.announce_packet(c4, torrent, peer_id(5), 1005, left=0)
    tid, message = error_of(v4.announce_raw(packet))
    assert tid == _HEADER.unpack_from(packet)[2] and "swarm is full" in message


def test_dual_stack_socket_answers_ipv4_clients_as_ipv4(
    tracker: RunningTracker, clients: Callable[..., Client]
) -> None:
    """An IPv4 client reaching an IPv6 socket (``::ffff:127.0.0.1``) gets 6-byte peers, is
    stored as an IPv4 peer and is counted as IPv4."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::ffff:127.0.0.1", 0))
    except OSError as exc:
        sock.close()
        pytest.skip(f"no dual-stack loopback socket here: {exc}")
    sock.setblocking(False)
    port = sock.getsockname()[1]

    async def open_endpoint() -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        if tracker.tracker.native_udp:  # the path under test serves the dual-stack socket
            native = tracker.tracker.native_udp_endpoint(sock)
            native.start(loop)
            return native
        transport, _ = await loop.create_datagram_endpoint(tracker.tracker.udp_endpoint, sock=sock)
        return transport

    transport = tracker.run(open_endpoint())
    try:
        dual = clients(("127.0.0.1", port))
        plain = clients(tracker.udp("127.0.0.1"))
        cd, cp = dual.connect(), plain.connect()
        torrent = info_hash(110)
        plain.announce(cp, torrent, peer_id(1), 1001, left=0)
        got = dual.announce(cd, torrent, peer_id(2), 1002, left=5)
        assert got.peers == [("127.0.0.1", 1001)] and got.size == 26
        seen = plain.announce(cp, torrent, peer_id(1), 1001, left=0)
        assert seen.peers == [("127.0.0.1", 1002)]
        counters = tracker.tracker.counters
        counted = tracker.in_loop(lambda: (counters.pull(), dict(counters.requests))[1])
        assert counted.get(("udp", "ipv6", "announce"), 0) == 0
    finally:
        tracker.in_loop(transport.close)


class FakeTransport:
    def __init__(self, family: int) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sent: list[tuple[bytes, Any]] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def test_link_local_client_with_a_zone() -> None:
    """Python reports a link-local sender as ``fe80::...%zone``; the zone is no part of the
    peer's address (no socket here: only loopback is used on the wire in these tests)."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    tracker = Tracker(make_settings())
    endpoint = tracker.udp_endpoint()
    transport = FakeTransport(socket.AF_INET6)
    try:
        endpoint.connection_made(transport)  # type: ignore[arg-type]
        addr = ("fe80::1%lo", 6881, 0, 1)
        endpoint.datagram_received(_HEADER.pack(PROTOCOL_ID, 0, 5), addr)
        (reply, to), = transport.sent
        assert to == addr
        conn = _CONNECT_REPLY.unpack(reply)[2]
        packet = _ANNOUNCE.pack(
            conn, 1, 6, info_hash(120), peer_id(1), 0, 0, 0, 0, 0, 0, -1, 6881
        )
        endpoint.datagram_received(packet, addr)
        assert struct.unpack_from(">I", transport.sent[-1][0])[0] == 1
        found = tracker.store.announce(
            AnnounceRequest(info_hash(120), peer_id(2), bytes(16) + b"\x00\x01", 0, 0, 1,
                            numwant=50), 0
        )
        assert decode_peers(found.peers6, 18) == [("fe80::1", 6881)]  # type: ignore[union-attr]
        assert tracker.counters.internal_errors == 0
    finally:
        transport.sock.close()


class GreedyStore(MemoryStore):
    """Returns more peers of both families than any datagram can hold."""

    def announce(self, request: AnnounceRequest, now: int) -> AnnounceResult:
        found = super().announce(request, now)
        v4 = b"".join(bytes([10, 0, n >> 8, n & 255]) + b"\x1a\xe1" for n in range(300))
        v6 = b"".join(bytes(14) + n.to_bytes(2, "big") + b"\x1a\xe1" for n in range(300))
        return dataclasses.replace(found, peers4=v4, peers6=v6)


@pytest.mark.parametrize(
    ("host", "cap"), [("127.0.0.1", 196), pytest.param("::1", 65, marks=needs_ipv6)]
)
def test_reply_fits_a_datagram_whatever_the_store_returns(
    start_tracker: Callable[..., RunningTracker],
    clients: Callable[..., Client],
    host: str,
    cap: int,
) -> None:
    settings = make_settings()
    tracker = start_tracker(settings, GreedyStore())
    client = clients(tracker.udp(host))
    got = client.announce(client.connect(), info_hash(130), peer_id(1), 1001, num_want=1000)
    assert len(got.peers) == cap and got.size <= 1200
    expected_ip = "10.0." if host == "127.0.0.1" else "::"
    assert all(ip.startswith(expected_ip) for ip, _ in got.peers)


class RefusingStore(MemoryStore):
    def scrape(self, info_hashes: Sequence[bytes]) -> Any:
        raise ClientError("scrape refused")


def test_a_refused_scrape_is_an_error_reply(
    start_tracker: Callable[..., RunningTracker], clients: Callable[..., Client]
) -> None:
    settings = make_settings()
    tracker = start_tracker(settings, RefusingStore())
    client = clients(tracker.udp("127.0.0.1"))
    client.send(_HEADER.pack(client.connect(), 2, 42) + info_hash(140))
    assert error_of(client.recv()) == (42, "scrape refused")


# Choosing the path.


def test_native_engine_without_the_extension_refuses_to_start_with_the_reason() -> None:
    from shoal.config import ConfigError
    from shoal.server.app import _use_native

    with pytest.raises(ConfigError, match=r"shoal\._native_udp is not built"):
        _use_native("native", False, "shoal._native_udp")
    assert _use_native("auto", False, "shoal._native_udp") is False
    assert _use_native("auto", True, "shoal._native_udp") is True
    assert _use_native("python", True, "shoal._native_udp") is False
