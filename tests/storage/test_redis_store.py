"""The Redis store: the conformance suite against a real redis-server and a real
three-node Redis Cluster, plus what only this store promises."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.peers import TORRENT, request
from support.redis_server import RedisCluster, RedisServer

from shoal.errors import ClientError
from shoal.storage.base import PeerStore, StoreSettings
from shoal.storage.redis import UNAVAILABLE, RedisStore

from .store_conformance import T0, StoreConformance


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


def new_store(url: str | list[str], **options: float) -> RedisStore:
    """A store in a namespace of its own, so tests sharing a server never meet."""
    options.setdefault("timeout", 5.0)  # the machine is shared: no call times out by chance
    return RedisStore(url, namespace=f"test-{uuid.uuid4().hex[:12]}", **options)


async def _drop(store: RedisStore) -> None:
    try:
        await store.clear()
    finally:
        await store.close()


class TestRedisStore(StoreConformance):
    big_swarm_size = 2000  # each announce is a round trip through the suite's polling

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.url: str | list[str] = redis_server.url

    def make_store(self) -> PeerStore:
        return new_store(self.url)

    def close_store(self, store: PeerStore) -> object:
        assert isinstance(store, RedisStore)
        return _drop(store)


class TestRedisClusterStore(TestRedisStore):
    """The same suite on a Redis Cluster: every torrent's keys on one slot, found by the
    client from the seed nodes."""

    @pytest.fixture(autouse=True)
    def _server(self, redis_cluster: RedisCluster) -> None:  # type: ignore[override]
        self.url = redis_cluster.urls


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_one_seed_node_of_a_cluster_is_enough(redis_cluster: RedisCluster) -> None:
    async def main() -> None:
        store = new_store(redis_cluster.urls[1])
        try:
            await store.announce(request(1), T0)
            assert await store.scrape([TORRENT]) == [(0, 1, 0)]
            assert store.cluster
        finally:
            await _drop(store)
    run(main())


def test_nodes_sharing_a_namespace_share_swarms_and_totals(redis_server: RedisServer) -> None:
    async def main() -> None:
        a = new_store(redis_server.url)
        b = RedisStore(redis_server.url, namespace=a.namespace)
        try:
            await a.announce(request(1), T0)
            reply = await b.announce(request(2, left=0, numwant=5), T0)
            assert reply.peers4 and (reply.complete, reply.incomplete) == (1, 1)
            # A node sends its changes to the totals with each sweep step and read of them.
            assert tuple(await b.totals()) == (1, 1, 0, 0)
            assert tuple(await a.totals()) == (1, 1, 1, 0)
            assert tuple(await b.totals()) == (1, 1, 1, 0)
        finally:
            await b.close()
            await _drop(a)
    run(main())


def test_nodes_share_one_udp_secret(redis_server: RedisServer) -> None:
    async def main() -> None:
        a = new_store(redis_server.url)
        b = RedisStore(redis_server.url, namespace=a.namespace)
        try:
            secret = await a.udp_secret()
            assert len(secret) == 32 and await b.udp_secret() == secret
        finally:
            await b.close()
            await _drop(a)
    run(main())


def test_nodes_sweeping_at_once_take_different_torrents(redis_server: RedisServer) -> None:
    async def main() -> None:
        a = new_store(redis_server.url, timeout=2.0)
        b = RedisStore(redis_server.url, namespace=a.namespace, timeout=2.0)
        try:
            for n in range(40):
                await a.announce(request(1, torrent=bytes([n]) * 20), T0)
            examined = []
            for _ in range(20):  # 3 torrents a step: 14 steps in all, the last one short
                steps = await asyncio.gather(a.sweep(T0, 30), b.sweep(T0, 30))
                examined += [s.swarms_examined for s in steps]
                if any(s.finished for s in steps):
                    break
            assert sorted(examined) == [1] + [3] * 13  # each torrent once, by one node
        finally:
            await b.close()
            await _drop(a)
    run(main())


def test_sweep_of_a_swarm_removes_its_silent_peers_without_reading_the_live_ones(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        store = new_store(redis_server.url, timeout=2.0)
        store.configure(StoreSettings(peer_timeout=100))
        try:
            for n in range(50):
                await store.announce(request(n, numwant=0), T0 + (n % 2) * 100)
            step = await store.sweep(T0 + 150, 1_000_000)
            assert (step.peers_removed, step.torrents_removed) == (25, 0)
            assert await store.scrape([TORRENT]) == [(0, 25, 0)]
        finally:
            await _drop(store)
    run(main())


def test_unreachable_redis_refuses_with_a_retry_and_recovers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    store = new_store(server.url)

    async def announce() -> ClientError | None:
        try:
            await store.announce(request(1), T0)
        except ClientError as exc:
            return exc
        return None

    async def main() -> None:
        try:
            assert await announce() is None and store.available
            server.stop()
            refused = await announce()
            assert refused is not None and refused.reason == UNAVAILABLE
            assert refused.retry_in is not None
            assert not store.available and not await store.check()
            server.start()
            assert await store.check() and store.available
            assert await announce() is None
        finally:
            await store.close()
            server.stop()
    run(main())


def test_full_scrape_and_top_swarms_walk_every_torrent_in_steps(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        store = new_store(redis_server.url)
        try:
            hashes = [n.to_bytes(20, "big") for n in range(1, 1201)]  # past two walk steps
            await asyncio.gather(*[store.announce(request(1, torrent=h, numwant=0), T0)
                                   for h in hashes])
            await asyncio.gather(*[store.announce(request(n, torrent=hashes[n], numwant=0), T0)
                                   for n in range(2, 5)])
            listed = dict(await store.full_scrape())
            assert set(listed) == set(hashes) and listed[hashes[3]] == (0, 2, 0)
            top = await store.top_swarms(3)
            assert sorted(h for h, _ in top) == hashes[2:5]
        finally:
            await _drop(store)
    run(main())
