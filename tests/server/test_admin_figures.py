"""The figures behind /stats and the dashboard, without sockets: the store's top swarms and
peer id sample, the client mix, the request history and latency quantiles."""

from __future__ import annotations

from shoal.server.admin import latency_quantile
from shoal.server.dashboard import RequestHistory, client_mix
from shoal.server.stats import LATENCY_BUCKETS, Counters
from shoal.storage.memory import MemoryStore
from shoal.types import AnnounceRequest, SwarmCounts


def announce(store: MemoryStore, info_hash: bytes, n: int, prefix: bytes = b"-TR2940-",
             seeders: int = 0) -> None:
    for i in range(n):
        peer_id = prefix + i.to_bytes(12, "big")
        addr = bytes([10, 0, i // 256, i % 256]) + (6881).to_bytes(2, "big")
        left = 0 if i < seeders else 100
        store.announce(AnnounceRequest(info_hash, peer_id, addr, 0, 0, left), now=1000)


def test_top_swarms_are_the_largest_first_with_their_counts() -> None:
    store = MemoryStore()
    announce(store, b"a" * 20, 2)
    announce(store, b"b" * 20, 5, seeders=2)
    announce(store, b"c" * 20, 3)
    top = store.top_swarms(2)
    assert top == [(b"b" * 20, SwarmCounts(2, 3, 0)), (b"c" * 20, SwarmCounts(0, 3, 0))]


def test_peer_id_sample_is_bounded_and_spread_over_swarms() -> None:
    store = MemoryStore()
    announce(store, b"a" * 20, 50, prefix=b"-qB4520-")
    announce(store, b"b" * 20, 50, prefix=b"-TR2940-")
    sample = store.sample_peer_ids(10)
    assert len(sample) == 10
    assert sum(p.startswith(b"-qB") for p in sample) == 5
    assert store.sample_peer_ids(0) == []
    assert len(store.sample_peer_ids(1000)) == 100
    assert MemoryStore().sample_peer_ids(10) == []


def test_client_mix_groups_versions_under_each_client_most_common_first() -> None:
    ids = [b"-TR2940-" + b"x" * 12] * 3 + [b"-TR3000-" + b"x" * 12] + [b"-qB4520-" + b"y" * 12]
    ids += [b"garbage-id-here-0000"]
    mix = client_mix(ids)
    assert [(c["client"], c["peers"]) for c in mix] == [
        ("Transmission", 4), ("qBittorrent", 1), ("unknown", 1),
    ]
    assert mix[0]["versions"] == [
        {"version": "2.94", "peers": 3}, {"version": "3.00", "peers": 1},
    ]


def test_request_history_keeps_the_last_samples_and_adds_the_present() -> None:
    counters = Counters()
    history = RequestHistory(counters, period=10, size=3)
    for t in range(5):
        counters.requests["http", "ipv4", "announce"] += 10
        counters.requests["udp", "ipv6", "connect"] += 1
        history.sample(now=1000 + 10 * t)
    series = history.series(now=1045)
    assert series["columns"] == ["time", "http", "udp"]
    assert series["points"] == [[1020, 30, 3], [1030, 40, 4], [1040, 50, 5], [1045, 50, 5]]


def test_latency_quantile_is_the_upper_bound_of_its_bucket() -> None:
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    assert latency_quantile(counts, 0.5) is None
    counts[0] = 90  # <= 0.1 ms
    counts[3] = 10  # <= 1 ms
    assert latency_quantile(counts, 0.5) == LATENCY_BUCKETS[0]
    assert latency_quantile(counts, 0.99) == LATENCY_BUCKETS[3]
    counts[-1] = 1000  # past the last bucket
    assert latency_quantile(counts, 0.99) is None
