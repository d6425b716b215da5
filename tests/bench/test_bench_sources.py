"""The benchmark's peers come from many loopback source addresses, as a public tracker's do:
each peer always from the same address and port, every socket bound to its peer's address
(the tracker hands the peers back at those addresses), and a share of UDP operations
preceded by a fresh connect, exactly as marked. Never a speed check."""

from __future__ import annotations

import asyncio
import socket
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pytest  # noqa: E402

from bench.bencode import bdecode  # noqa: E402
from bench.http_load import HttpLoad, encode_http_ops  # noqa: E402
from bench.stats import LoadStats  # noqa: E402
from bench.targets import RunningTarget, http_get, start_target  # noqa: E402
from bench.udp_load import UdpLoad, encode_udp_ops  # noqa: E402
from bench.workload import (  # noqa: E402
    Announce,
    Scrape,
    Workload,
    WorkloadConfig,
    address_for,
    source_addresses,
)

SMALL = WorkloadConfig(torrents=30, peers=600, mix_length=3_000, seed=5, addresses=8)


@pytest.fixture(scope="module")
def workload() -> Workload:
    return Workload.build(SMALL)


@pytest.fixture
def shoal(workload: Workload) -> Iterator[RunningTarget]:
    target = start_target("shoal", workload.info_hashes)
    try:
        yield target
    finally:
        target.stop()


def test_source_addresses_are_loopback_and_distinct_and_never_127_0_0_1() -> None:
    addresses = source_addresses(256)
    assert addresses[:2] == ["127.0.1.1", "127.0.1.2"]
    assert addresses[249:251] == ["127.0.1.250", "127.0.2.1"]
    assert len(set(addresses)) == 256 and "127.0.0.1" not in addresses
    with pytest.raises(ValueError):
        address_for(-1)
    with pytest.raises(ValueError):
        WorkloadConfig(addresses=0)


def test_a_peer_always_comes_from_one_address_and_port_that_no_other_peer_has(
    workload: Workload,
) -> None:
    where: dict[bytes, tuple[int, int]] = {}
    for op in [*workload.fill, *workload.mix]:
        if isinstance(op, Announce):
            assert where.setdefault(op.peer_id, (op.source, op.port)) == (op.source, op.port)
    assert len(set(where.values())) == len(where) == SMALL.peers
    assert {source for source, _ in where.values()} == set(range(SMALL.addresses))
    scrape_sources = {op.source for op in workload.mix if isinstance(op, Scrape)}
    assert len(scrape_sources) > 1 and max(scrape_sources) < SMALL.addresses


def test_about_a_tenth_of_pairs_seed_and_connect_marks_follow_the_fraction(
    workload: Workload,
) -> None:
    assert 0.06 < sum(a.left == 0 for a in workload.fill) / len(workload.fill) < 0.14
    assert not any(a.connect for a in workload.fill)
    marked = sum(op.connect for op in workload.mix) / len(workload.mix)
    assert 0.03 < marked < 0.07
    every = Workload.build(WorkloadConfig(**{**_fields(SMALL), "connect_fraction": 1.0}))
    assert all(op.connect for op in every.mix)
    # The marks come from a generator of their own: the requests themselves do not change.
    unmarked = [_without_mark(op) for op in every.mix]
    assert unmarked == [_without_mark(op) for op in workload.mix]


def _fields(config: WorkloadConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def _without_mark(op: Announce | Scrape) -> tuple[object, ...]:
    if isinstance(op, Scrape):
        return (op.info_hashes, op.source)
    return (op.info_hash, op.peer_id, op.port, op.left, op.event, op.source)


def test_encoded_requests_keep_their_source_and_connect_mark(workload: Workload) -> None:
    udp = encode_udp_ops(workload.mix)
    assert udp.sources == [op.source for op in workload.mix]
    assert list(udp.connects) == [int(op.connect) for op in workload.mix]
    http = encode_http_ops(workload.mix, close=False)
    assert http.sources == udp.sources


async def _run_once(load: UdpLoad | HttpLoad, ops: Any, count: int) -> LoadStats:
    """The first ``count`` of ``ops`` once (at most 60 s), then the load's sockets closed."""
    try:
        return await load.run(ops, count=count, limit=60, spin=False)
    finally:
        load.close()


def _peers_of(port: int, info_hash: bytes) -> set[tuple[str, int]]:
    """The peers Shoal hands a leecher on 127.0.0.1 asking for 50 of ``info_hash``'s."""
    query = urllib.parse.urlencode({
        "info_hash": info_hash, "peer_id": b"-SB0001-sourcesprobe", "port": 1, "uploaded": 0,
        "downloaded": 0, "left": 1, "compact": 1, "numwant": 50,
    })
    status, body = http_get(port, "/announce?" + query)
    assert status == 200, body
    reply = bdecode(body)
    assert isinstance(reply, dict), reply
    peers = reply[b"peers"]
    assert isinstance(peers, bytes)
    return {
        (socket.inet_ntoa(peers[i : i + 4]), int.from_bytes(peers[i + 4 : i + 6], "big"))
        for i in range(0, len(peers), 6)
    }


def _expected(workload: Workload) -> tuple[bytes, set[tuple[str, int]]]:
    """A torrent of 10 to 50 peers after the fill, and where its peers announced from."""
    sizes = workload.swarm_sizes()
    torrent = max((n, t) for t, n in enumerate(sizes) if 10 <= n <= 50)[1]
    info_hash = workload.info_hashes[torrent]
    return info_hash, {
        (address_for(a.source), a.port) for a in workload.fill if a.info_hash == info_hash
    }


def test_udp_fill_reaches_the_tracker_from_each_peers_own_address(
    workload: Workload, shoal: RunningTarget
) -> None:
    assert shoal.udp
    load = UdpLoad("127.0.0.1", shoal.port, sources=source_addresses(SMALL.addresses))
    ops = encode_udp_ops(workload.fill)
    stats = asyncio.run(_run_once(load, ops, len(ops)))
    assert stats.errors == 0 and stats.responses == len(ops), stats.summary()
    assert 1 <= stats.connects <= SMALL.addresses  # one per socket, ids reused after
    info_hash, expected = _expected(workload)
    assert _peers_of(shoal.port, info_hash) == expected


def test_http_fill_reaches_the_tracker_from_each_peers_own_address(
    workload: Workload, shoal: RunningTarget
) -> None:
    load = HttpLoad("127.0.0.1", shoal.port, "keepalive", connections=8,
                    sources=source_addresses(SMALL.addresses))
    ops = encode_http_ops(workload.fill, close=False)
    stats = asyncio.run(_run_once(load, ops, len(ops)))
    assert stats.errors == 0 and stats.responses == len(ops), stats.summary()
    info_hash, expected = _expected(workload)
    assert _peers_of(shoal.port, info_hash) == expected


def test_every_marked_udp_request_waits_for_a_connect_of_its_own(
    workload: Workload, shoal: RunningTarget
) -> None:
    every = Workload.build(WorkloadConfig(**{**_fields(SMALL), "connect_fraction": 1.0}))
    load = UdpLoad("127.0.0.1", shoal.port, sources=source_addresses(SMALL.addresses),
                   window=1)
    n = 300
    stats = asyncio.run(_run_once(load, encode_udp_ops(every.mix), n))
    assert stats.errors == 0 and stats.responses == n, stats.summary()
    assert stats.connects == n  # one request in flight: each marked one connected first
    assert stats.connect_share() == 0.5


def test_a_load_refuses_sources_that_are_not_loopback() -> None:
    with pytest.raises(ValueError):
        UdpLoad("127.0.0.1", 1, sources=["10.0.0.1"])
    with pytest.raises(ValueError):
        HttpLoad("127.0.0.1", 1, "close", sources=["::1"])
