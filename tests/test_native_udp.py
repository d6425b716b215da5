"""The compiled UDP data plane's building blocks against their Python references: BLAKE2b
against hashlib, connection ids against shoal.protocol.connid (each accepts what the other
issues, with the same validity window), banned networks against NetworkSet. The datagram
decisions are compared in tests/fuzz/test_fuzz_udp_native.py, the served socket in
tests/server/test_udp_server.py (which runs on both paths)."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.native import native_udp

from shoal.engine.rules import NetworkSet
from shoal.protocol.connid import ConnectionIds
from shoal.server.stats import LATENCY_BUCKETS
from shoal.types import AnnounceRequest, Event

addresses = st.one_of(st.binary(min_size=6, max_size=6), st.binary(min_size=18, max_size=18))
nows = st.integers(70_000, 2**40)


def engine_for(ids: ConnectionIds) -> Any:
    return native_udp().Engine(-1, ids.key, ids.ttl, ids.skew, False, AnnounceRequest,
                               tuple(Event(n) for n in range(5)), LATENCY_BUCKETS)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 64), st.binary(max_size=64),
       st.binary(max_size=16), st.binary(max_size=16))
def test_blake2b_matches_hashlib(data: bytes, size: int, key: bytes, salt: bytes,
                                 person: bytes) -> None:
    got = native_udp().blake2b(data, digest_size=size, key=key, salt=salt, person=person)
    assert got == hashlib.blake2b(data, digest_size=size, key=key, salt=salt,
                                  person=person).digest()


@pytest.mark.parametrize("length", [0, 1, 127, 128, 129, 255, 256, 257, 1000])
def test_blake2b_block_boundaries_match_hashlib(length: int) -> None:
    data = bytes(i % 251 for i in range(length))
    for key in (b"", b"k" * 64):
        assert native_udp().blake2b(data, key=key) == hashlib.blake2b(data, key=key).digest()


def test_blake2b_refuses_bad_sizes() -> None:
    native = native_udp()
    for kwargs in ({"digest_size": 0}, {"digest_size": 65}, {"key": b"k" * 65},
                   {"person": b"p" * 17}, {"salt": b"s" * 17}):
        with pytest.raises(ValueError):
            native.blake2b(b"", **kwargs)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=100), st.integers(1, 600), st.integers(0, 30), addresses,
       nows, st.integers(-40, 700))
def test_ids_issued_by_either_side_are_accepted_by_both(
    secret: bytes, ttl: int, skew: int, addr: bytes, issued: int, age: int
) -> None:
    ids = ConnectionIds(secret, ttl=ttl, skew=skew)
    engine = engine_for(ids)
    from_c, from_python = engine.issue(addr, issued), ids.issue(addr, issued)
    assert from_c == from_python
    now = issued + age
    assert engine.window(from_c, addr, now) == ids.window(from_python, addr, now)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1), addresses, nows)
def test_made_up_ids_are_judged_alike(conn_id: int, addr: bytes, now: int) -> None:
    ids = ConnectionIds(b"secret", ttl=120, skew=5)
    assert engine_for(ids).window(conn_id, addr, now) == ids.window(conn_id, addr, now)


def test_another_address_or_secret_is_refused() -> None:
    ids = ConnectionIds(b"secret")
    engine = engine_for(ids)
    conn_id = ids.issue(b"\x7f\0\0\1\x1a\xe1", 10**6)
    assert engine.window(conn_id, b"\x7f\0\0\1\x1a\xe1", 10**6) is not None
    assert engine.window(conn_id, b"\x7f\0\0\2\x1a\xe1", 10**6) is None
    assert engine_for(ConnectionIds(b"other")).window(conn_id, b"\x7f\0\0\1\x1a\xe1",
                                                      10**6) is None


networks = st.one_of(
    st.builds(lambda ip, n: f"{ipaddress.IPv4Address(ip)}/{n}", st.integers(0, 2**32 - 1),
              st.integers(0, 32)),
    st.builds(lambda ip, n: f"{ipaddress.IPv6Address(ip)}/{n}", st.integers(0, 2**128 - 1),
              st.integers(0, 128)),
    st.builds(lambda ip, n: f"::ffff:{ipaddress.IPv4Address(ip)}/{n}",
              st.integers(0, 2**32 - 1), st.integers(96, 128)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(networks, max_size=8), st.lists(st.binary(min_size=4, max_size=4)
                                               | st.binary(min_size=16, max_size=16),
                                               max_size=8))
def test_banned_networks_compile_to_the_same_membership(nets: list[str],
                                                        ips: list[bytes]) -> None:
    banned = NetworkSet(nets)
    engine = engine_for(ConnectionIds(b"secret"))
    engine.set_banned(banned.v4, banned.v6)
    # the networks' own addresses are members: test them too
    probes = ips + [ipaddress.ip_network(n, strict=False).network_address.packed for n in nets]
    for ip in probes:
        assert engine.admits(ip) == (ip not in banned)


def test_an_empty_ban_list_admits_everyone() -> None:
    engine = engine_for(ConnectionIds(b"secret"))
    engine.set_banned((), ())
    assert engine.admits(b"\x7f\0\0\1") and engine.admits(bytes(16))


def test_bad_ban_tables_are_refused() -> None:
    engine = engine_for(ConnectionIds(b"secret"))
    with pytest.raises(ValueError):
        engine.set_banned([(33, [1])], ())
    with pytest.raises(TypeError):
        engine.set_banned([(1, ["x"])], ())


# drain() on a real loopback socket, without an event loop.

CONNECT_REQUEST = struct.pack(">QII", 0x41727101980, 0, 5)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client.bind(("127.0.0.1", 0))
    client.settimeout(2.0)
    yield server, client
    server.close()
    client.close()


def _source(sock: socket.socket) -> bytes:
    host, port = sock.getsockname()
    return socket.inet_aton(host) + port.to_bytes(2, "big")


def _announce(conn_id: int, tid: int) -> bytes:
    return struct.pack(">QII20s20sQQQIIIiH", conn_id, 1, tid, b"h" * 20, b"p" * 20, 0, 1, 0,
                       2, 0, 0, -1, 6881)


def _drain_engine(server: socket.socket) -> Any:
    ids = ConnectionIds(b"secret")
    return native_udp().Engine(server.fileno(), ids.key, ids.ttl, ids.skew, False,
                               AnnounceRequest, tuple(Event(n) for n in range(5)),
                               LATENCY_BUCKETS), ids


def test_drain_answers_a_batch_and_hands_python_only_the_valid_requests(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    engine, ids = _drain_engine(server)
    conn = ids.issue(_source(client), 1000)
    for packet in (CONNECT_REQUEST, _announce(conn, 6), _announce(conn ^ 1, 7), b"junk"):
        client.sendto(packet, server.getsockname())
    seen: list[Any] = []

    def handler(items: list[Any]) -> list[bytes | None]:
        seen.extend(items)
        return [b"from python"] * len(items)

    assert engine.drain(1000, handler, 4) == 4
    (action, tid, payload, ip, sockaddr), = seen
    assert (action, tid, ip) == (1, 6, b"\x7f\0\0\1") and isinstance(payload, AnnounceRequest)
    assert payload.addr == _source(client)[:4] + b"\x1a\xe1" and len(sockaddr) == 16
    replies = [client.recv(2048) for _ in range(3)]  # the junk gets no reply
    assert replies[0][:8] == struct.pack(">II", 0, 5)
    assert replies[1] == b"from python"
    assert replies[2] == struct.pack(">II", 3, 7) + b"connection id expired"
    pairs, latency_sum = engine.counts()
    counted = dict(pairs)
    assert (counted[2], counted.get(3), counted[4], counted[5]) == (1, None, 1, 2)
    latency_slots = 14 + len(native_udp().MESSAGES)
    assert sum(n for slot, n in pairs if slot >= latency_slots) == 3  # one per reply sent
    assert latency_sum > 0
    # A reply that comes later goes to the address the item carried.
    engine.sendto(b"later", sockaddr)
    assert client.recv(2048) == b"later"


def test_a_failing_handler_still_lets_the_c_replies_out_and_raises(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    engine, ids = _drain_engine(server)
    client.sendto(CONNECT_REQUEST, server.getsockname())
    client.sendto(_announce(ids.issue(_source(client), 1000), 6), server.getsockname())

    def broken(items: list[Any]) -> list[bytes | None]:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        engine.drain(1000, broken, 4)
    assert client.recv(2048)[:8] == struct.pack(">II", 0, 5)


def test_a_handler_must_answer_each_request_with_bytes_or_none(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    engine, ids = _drain_engine(server)
    conn = ids.issue(_source(client), 1000)
    for bad, error in ((lambda items: [], ValueError), (lambda items: ["text"], TypeError),
                       (lambda items: engine.drain(1000, print, 1), RuntimeError)):
        client.sendto(_announce(conn, 6), server.getsockname())
        with pytest.raises(error):
            engine.drain(1000, bad, 4)


def test_drain_on_an_empty_socket_reads_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    server, _ = pair
    engine, _ = _drain_engine(server)
    assert engine.drain(1000, lambda items: [], 4) == 0
