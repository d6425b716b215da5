"""A peer store in Redis (or a Redis Cluster), so several Shoal nodes share their swarms.

Each operation costs one round trip: an announce is one server-side script call
(:data:`~shoal.storage.redis_scripts.ANNOUNCE`, by EVALSHA, loaded again on NOSCRIPT) that
applies the identity rules of :mod:`shoal.engine.swarm`, counts a completion once, picks the
peers with HRANDFIELD (never reading a whole swarm) and returns the counts, the peers and
the outcome, packed in one string; a scrape of many torrents is one script call (one
pipeline on a Cluster). Only the announce that creates a torrent costs a second call, to
list it in the registry the sweep and full scrape walk. To a single Redis over plain TCP,
announces and scrapes go over :mod:`shoal.storage.redis_pipe` (redis-py's per-command cost
was the tracker's floor); everything else, and TLS and Clusters, through redis-py.

Keys carry the info_hash as a hash tag, so one torrent lives on one Cluster slot and the
store spreads over a Cluster with no change. Expiry needs no scan: each announce removes a
few silent peers of its swarm (a sorted set by last announce), and the sweep claims the
next torrents of the registry through a shared cursor, so nodes sweeping at once take
different torrents.

Whole-store totals are counters in Redis that each node moves by the changes its
announces and sweeps made (sent with every sweep step and before every read of them), so
they cover every node. A node killed between two sends loses its unsent changes: the
totals are then off by those (the per-torrent counts are exact).

Every call is bounded by ``timeout`` seconds: when Redis is unreachable or slow the
request is refused with :data:`UNAVAILABLE` and BEP 31's ``retry in``, :attr:`available`
turns false (for ``/health``), and the next call that gets through turns it back.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import hashlib
import heapq
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from shoal.engine.swarm import ADDRESS_FULL, SWARM_FULL
from shoal.errors import ClientError
from shoal.storage.base import TRACKER_FULL, StoreSettings, SweepProgress
from shoal.storage.redis_pipe import ReplyError, RespPipe, command
from shoal.storage.redis_scripts import ANNOUNCE, CLAIM, COUNTS, REGISTER, SWEEP
from shoal.storage.redis_urls import describe_url, redis_urls
from shoal.types import ZERO_COUNTS, AnnounceRequest, AnnounceResult, StoreTotals, SwarmCounts

log = logging.getLogger("shoal.storage.redis")

T = TypeVar("T")
UNAVAILABLE = "tracker temporarily unavailable"
RETRY_IN = 1  # minutes (BEP 31)
SWARM_COST = 10  # a torrent visited costs as much as ten peers in a sweep budget
SWEEP_PEERS_MIN = 1000  # silent peers one sweep step may remove from one torrent, at least
LAZY_EXPIRY = 2  # silent peers each announce removes from its swarm, at most
WALK_STEP = 500  # torrents read per round trip by the full scrape and the stats
TOP_WALK_LIMIT = 50_000  # past this many torrents, the largest swarms are found in a sample
BATCH_MAX = 256  # announces in one pipeline, at most
CLUSTER_FANOUT = 32  # script calls in flight at once per sweep step on a Cluster
_U64 = (1 << 64) - 1
_SCRIPTS = {"announce": ANNOUNCE, "sweep": SWEEP, "register": REGISTER, "claim": CLAIM,
            "counts": COUNTS}
_REFUSALS = {1: (TRACKER_FULL, 30), 2: (SWARM_FULL, 5), 3: (ADDRESS_FULL, 5)}
ANNOUNCE_ARGS = struct.Struct(">IIIBHIIB")
"""now, now - peer timeout, key, flags (seeder 1, mixed families 2, peer ids 4, tracker full
8, event << 4), numwant, max peers per swarm, max peers per IP, lazy expiry."""
_U32 = 0xFFFFFFFF
ANNOUNCE_REPLY = struct.Struct(">BIIIBBBiiBIIII")
"""The head of the announce script's reply: status, seeders, leechers, completed count, role
before, role after, completed now, change in seeders, change in leechers, new torrent, and
the lengths of the peers4, peers6, ids4 and ids6 that follow it (then "uploaded
downloaded" as the peer last reported them)."""
COUNTS_REPLY = struct.Struct(">BIII")
"""One torrent in the counts script's reply: present, seeders, leechers, completed count."""

Client = Redis | RedisCluster


class RedisStore:
    """Swarms in Redis, shared by every node configured with the same URL and namespace."""

    name = "redis"

    def __init__(
        self,
        url: str | Sequence[str],
        settings: StoreSettings | None = None,
        *,
        namespace: str = "shoal",
        timeout: float = 0.25,
        max_connections: int = 64,
    ) -> None:
        self.urls = redis_urls(url)
        self.settings = settings if settings is not None else StoreSettings()
        self.namespace = namespace
        self.timeout = timeout
        self.slow_timeout = max(2.0, 8 * timeout)  # a sweep step or a walk's round trip
        self.max_connections = max_connections
        self.cluster = len(self.urls) > 1
        self.available = True
        self.last_error = ""
        self.failures = 0
        self._client: Client | None = None
        self._connecting = asyncio.Lock()
        self._sha = {name: hashlib.sha1(text.encode()).hexdigest()
                     for name, text in _SCRIPTS.items()}
        g = f"{namespace}:{{{namespace}:store}}:"
        self._registry, self._seq, self._cursor = g + "torrents", g + "seq", g + "sweep"
        self._totals_key, self._secret_key = g + "totals", g + "udp-secret"
        self._prefix = namespace + ":{"
        self._prefix_bytes = self._prefix.encode()
        # The hot path's own connection (announce and scrape to a single Redis over plain
        # TCP; see shoal.storage.redis_pipe); None until opened, and for a Cluster or TLS.
        self._pipe: RespPipe | None = None
        self._opening = asyncio.Lock()
        self._direct = self._pipe_address()
        # EVALSHA <announce sha> 1, in RESP: the start of every announce command.
        self._announce_head = (b"*9\r\n$7\r\nEVALSHA\r\n$40\r\n"
                               + self._sha["announce"].encode() + b"\r\n$1\r\n1\r\n")
        self._torrents = 0  # torrents listed, as last read (for max_torrents)
        # Announces waiting for this loop turn's pipeline, and the pipelines in flight.
        self._batch: list[tuple[tuple[str], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._batches: set[asyncio.Future[None]] = set()
        self._unlisted: set[bytes] = set()  # created torrents whose listing failed
        # Changes to the totals made here and not yet added to Redis's counters.
        self._seeders = self._leechers = self._completed = 0

    def describe(self) -> str:
        kind = "Redis Cluster" if self.cluster else "Redis"
        return f"{kind} at {', '.join(describe_url(u) for u in self.urls)}"

    def configure(self, settings: StoreSettings) -> None:
        self.settings = settings

    # -- connection and calls ---------------------------------------------------------

    def _options(self, url: str) -> dict[str, Any]:
        parts = urlsplit(url)
        return {
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "ssl": parts.scheme == "rediss",
        }

    def _cluster_client(self) -> RedisCluster:
        nodes = [ClusterNode(urlsplit(u).hostname or "", urlsplit(u).port or 6379)
                 for u in self.urls]
        return RedisCluster(startup_nodes=nodes, max_connections=self.max_connections,
                            **self._options(self.urls[0]))

    async def _connect(self) -> Client:
        async with self._connecting:
            if self._client is not None:
                return self._client
            if self.cluster:
                client: Client = self._cluster_client()
            else:
                url = self.urls[0]
                pool = BlockingConnectionPool.from_url(  # the URL gives TLS and credentials
                    url, max_connections=self.max_connections, timeout=self.timeout,
                    socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                    retry=Retry(NoBackoff(), 1))
                plain = Redis(connection_pool=pool)
                try:
                    info = await plain.info("cluster")
                except BaseException:
                    await plain.aclose()
                    raise
                if info.get("cluster_enabled"):  # one seed node of a Cluster
                    await plain.aclose()
                    self.cluster = True
                    client = self._cluster_client()
                else:
                    client = plain
            self._client = client
            return client

    async def _call(self, work: Callable[[Client], Awaitable[T]], slow: bool = False) -> T:
        """Run ``work`` within the timeout; a Redis failure becomes :data:`UNAVAILABLE`."""
        try:
            async with asyncio.timeout(self.slow_timeout if slow else self.timeout):
                client = self._client if self._client is not None else await self._connect()
                result = await work(client)
        except (RedisError, ReplyError, OSError, TimeoutError) as exc:
            self._unavailable(exc)
        if not self.available:
            self._reachable()
        return result

    def _unavailable(self, exc: BaseException) -> NoReturn:
        self.failures += 1
        if self.available or not self.last_error:
            log.error("storage: %s unreachable: %s", self.describe(),
                      str(exc) or type(exc).__name__)
        self.available = False
        self.last_error = str(exc) or type(exc).__name__
        raise ClientError(UNAVAILABLE, RETRY_IN) from None

    def _reachable(self) -> None:
        log.warning("storage: %s reachable again", self.describe())
        self.available = True

    def _pipe_address(self) -> tuple[str, int, str | None, str | None, int] | None:
        """Where the hot-path connection goes (host, port, user, password, db), or None
        when redis-py serves everything (TLS, a URL with options, several seed nodes)."""
        if len(self.urls) > 1:
            return None
        parts = urlsplit(self.urls[0])
        path = parts.path.strip("/")
        if parts.scheme != "redis" or parts.query or not (path or "0").isdigit():
            return None
        return (parts.hostname or "localhost", parts.port or 6379,
                unquote(parts.username) if parts.username else None,
                unquote(parts.password) if parts.password else None, int(path or "0"))

    async def _hot_pipe(self, client: Client) -> RespPipe | None:
        """The hot path's connection, opened if need be (called within :meth:`_call`)."""
        address = None if isinstance(client, RedisCluster) else self._direct
        if address is None:
            return None
        async with self._opening:
            if self._pipe is None or self._pipe.closed:
                host, port, username, password, db = address
                self._pipe = await RespPipe.open(host, port, self.timeout, username=username,
                                                 password=password, db=db)
            return self._pipe

    async def _hot(self, pipe: RespPipe, name: str, data: bytes) -> Any:
        """Send script command ``data`` (an EVALSHA of script ``name``) on the hot path,
        loading the script once if Redis does not know it (a new or restarted Redis)."""
        try:
            return await pipe.send(data)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await pipe.send(command(b"SCRIPT", b"LOAD", _SCRIPTS[name].encode()))
        return await pipe.send(data)

    async def _hot_call(self, name: str, data: bytes) -> Any:
        """Script command ``data`` on the hot path when it is open (its own timer bounds
        the wait, so no timeout scope per call), else through :meth:`_call`, which opens
        it (or goes through redis-py for a Cluster or TLS: ``None`` then)."""
        pipe = self._pipe
        if pipe is None or pipe.closed:
            pipe = await self._call(self._hot_pipe)
            if pipe is None:
                return None
        try:
            result = await self._hot(pipe, name, data)
        except (ReplyError, OSError, TimeoutError) as exc:
            self._unavailable(exc)
        if not self.available:
            self._reachable()
        return result

    async def _script(self, client: Client, name: str, keys: Sequence[str],
                      args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self._sha[name], len(keys), *keys, *args)
        except NoScriptError:  # a new or restarted Redis: load it, once
            await client.script_load(_SCRIPTS[name])
            return await client.evalsha(self._sha[name], len(keys), *keys, *args)

    async def _load_scripts(self, client: Client) -> None:
        for text in _SCRIPTS.values():
            await client.script_load(text)

    async def _pipelined_scripts(self, client: Client, name: str,
                                 calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Many script calls in one pipeline (retried once after loading the scripts). A
        Cluster client pipelines no scripts: there they go as concurrent calls, a few
        dozen at a time (each node's connections are bounded)."""
        if isinstance(client, RedisCluster):
            out: list[Any] = []
            for start in range(0, len(calls), CLUSTER_FANOUT):
                out += await asyncio.gather(*[
                    self._script(client, name, keys, args)
                    for keys, args in calls[start : start + CLUSTER_FANOUT]])
            return out
        for attempt in (0, 1):
            pipe = client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(self._sha[name], len(keys), *keys, *args)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt:
                    raise
                await self._load_scripts(client)
        raise AssertionError("unreachable")  # pragma: no cover

    def _key(self, info_hash: bytes, name: str = "t") -> str:
        """A torrent's key ``name`` (see :mod:`shoal.storage.redis_scripts`)."""
        return f"{self._prefix}{info_hash.hex()}}}:{name}"

    async def check(self) -> bool:
        """Ping Redis (for the health monitor); true when it answered in time."""
        try:
            await self._call(lambda c: c.ping())
        except ClientError:
            return False
        return True

    async def close(self) -> None:
        """Send this node's last changes to the totals (if Redis answers) and disconnect."""
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._client is not None:
            with contextlib.suppress(ClientError):
                await self._call(self._flush)
            client, self._client = self._client, None
            await client.aclose()

    # -- announce and scrape ------------------------------------------------------------

    def announce(self, request: AnnounceRequest, now: int) -> Awaitable[AnnounceResult]:
        return self._announce(request, now)

    async def _announce(self, request: AnnounceRequest, now: int) -> AnnounceResult:
        s = self.settings
        flags = ((request.left == 0) | request.mixed_families << 1
                 | request.want_peer_ids << 2 | (self._torrents >= s.max_torrents) << 3
                 | int(request.event) << 4)
        numbers = ANNOUNCE_ARGS.pack(
            now & _U32, max(0, now - s.peer_timeout) & _U32,
            0 if request.key is None else request.key & _U32, flags,
            min(max(0, request.numwant), 0xFFFF), min(s.max_peers_per_swarm, _U32),
            min(s.max_peers_per_ip, _U32), LAZY_EXPIRY,
        )  # fmt: skip
        key = b"%s%s}:t" % (self._prefix_bytes, binascii.hexlify(request.info_hash))
        if s.keep_totals:
            up, down = b"%d" % (request.uploaded & _U64), b"%d" % (request.downloaded & _U64)
        else:  # not kept: stored as 0 (shorter records), and read back as 0 below
            up = down = b"0"
        addr, pid = request.addr, request.peer_id
        r: Any = None
        if self._direct is not None and not self.cluster:
            r = await self._hot_call("announce", b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n"
                                     b"$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                self._announce_head, len(key), key, len(numbers), numbers, len(addr), addr,
                len(pid), pid, len(up), up, len(down), down))  # fmt: skip
        if r is None:  # a Cluster, or TLS: through redis-py
            keys, args = (key.decode(),), (numbers, addr, pid, up, down)
            r = await self._call(lambda c: self._announce_call(c, keys, args))
        (status, seeders, leechers, done, role_before, role_after, completed, change_s,
         change_l, new_torrent, n4, n6, m4, m6) = ANNOUNCE_REPLY.unpack_from(r)
        self._seeders += change_s
        self._leechers += change_l
        self._completed += completed
        if new_torrent:
            await self._list_torrent(request.info_hash)
        if status:
            raise ClientError(*_REFUSALS[status])
        a = ANNOUNCE_REPLY.size
        b = a + n4
        c = b + n6
        d = c + m4
        e = d + m6
        prev_up, _, prev_down = r[e:].partition(b" ") if s.keep_totals else (
            b"0", b"", b"0")
        return AnnounceResult(
            seeders, leechers, done, 0, 0, r[a:b], r[b:c], r[c:d], r[d:e], role_before,
            role_after, bool(completed), int(prev_up), int(prev_down),
        )  # fmt: skip

    def _announce_call(self, client: Client, keys: tuple[str], args: tuple[Any, ...]
                       ) -> Awaitable[Any]:
        """The announce script's reply. To one Redis, the announces made within one turn
        of the event loop go together in one pipeline (one write, one connection), which
        costs the tracker far less than a round trip each; a Cluster client pipelines no
        scripts, so there each goes alone."""
        if isinstance(client, RedisCluster):
            return self._script(client, "announce", keys, args)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((keys, args, future))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._send_batch, client)
        return future

    def _send_batch(self, client: Redis) -> None:
        batch, self._batch = self._batch, []
        for start in range(0, len(batch), BATCH_MAX):
            task = asyncio.ensure_future(self._run_batch(client, batch[start:start + BATCH_MAX]))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _run_batch(self, client: Redis,
                         batch: list[tuple[tuple[str], tuple[Any, ...], asyncio.Future[Any]]]
                         ) -> None:
        sha = self._sha["announce"]
        try:
            async with asyncio.timeout(self.timeout):
                for attempt in (0, 1):
                    pipe = client.pipeline(transaction=False)
                    for keys, args, _ in batch:
                        pipe.evalsha(sha, 1, *keys, *args)
                    results = await pipe.execute(raise_on_error=False)
                    if attempt or not any(isinstance(r, NoScriptError) for r in results):
                        break
                    await client.script_load(ANNOUNCE)  # a new or restarted Redis
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else ConnectionError("cancelled")
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up (timeout)
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _list_torrent(self, info_hash: bytes) -> None:
        """Put a new torrent in the registry; when that fails, the next sweep step does."""
        try:
            self._torrents = await self._call(lambda c: self._script(
                c, "register", [self._registry, self._seq], [info_hash]))
        except ClientError:
            if len(self._unlisted) < 100_000:
                self._unlisted.add(info_hash)

    def scrape(self, info_hashes: Sequence[bytes]) -> Awaitable[list[SwarmCounts]]:
        return self._scrape(list(info_hashes))

    async def _scrape(self, info_hashes: list[bytes]) -> list[SwarmCounts]:
        if not info_hashes:
            return []
        unique = list(dict.fromkeys(info_hashes))
        counts = None
        if self._direct is not None and not self.cluster:
            keys = [b"%s%s}:t" % (self._prefix_bytes, binascii.hexlify(h)) for h in unique]
            packed = await self._hot_call("counts", command(
                b"EVALSHA", self._sha["counts"].encode(), b"%d" % len(keys), *keys))
            if packed is not None:
                counts = [SwarmCounts(seeders, leechers, done) if present else None
                          for present, seeders, leechers, done
                          in COUNTS_REPLY.iter_unpack(packed)]
        if counts is None:  # a Cluster, or TLS: through redis-py
            counts = await self._call(lambda c: self._counts(c, unique))
        found = dict(zip(unique, counts, strict=True))
        return [found[h] or ZERO_COUNTS for h in info_hashes]

    async def _counts(self, client: Client, hashes: list[bytes]) -> list[SwarmCounts | None]:
        """Each torrent's counts (``None`` for a torrent Redis does not hold), one pipeline."""
        pipe = client.pipeline(transaction=False)
        key = self._key
        for info_hash in hashes:
            pipe.hget(key(info_hash), "done")
            pipe.hlen(key(info_hash, "s4"))
            pipe.hlen(key(info_hash, "s6"))
            pipe.hlen(key(info_hash, "l4"))
            pipe.hlen(key(info_hash, "l6"))
        r = await pipe.execute()
        out: list[SwarmCounts | None] = []
        for i in range(0, len(r), 5):
            done, a, b, c, d = r[i : i + 5]
            out.append(None if done is None else SwarmCounts(a + b, c + d, int(done)))
        return out

    # -- whole-store work ---------------------------------------------------------------

    async def _flush(self, client: Client) -> None:
        """Add the changes to the totals made here to Redis's counters."""
        changes = self._seeders, self._leechers, self._completed
        if not any(changes):
            return
        self._seeders = self._leechers = self._completed = 0
        pipe = client.pipeline(transaction=False)
        for name, change in zip(("seeders", "leechers", "completed"), changes, strict=True):
            if change:
                pipe.hincrby(self._totals_key, name, change)
        try:
            await pipe.execute()
        except BaseException:
            self._seeders += changes[0]
            self._leechers += changes[1]
            self._completed += changes[2]
            raise

    def totals(self) -> Awaitable[StoreTotals]:
        return self._call(self._read_totals, slow=True)

    async def _read_totals(self, client: Client) -> StoreTotals:
        await self._flush(client)
        pipe = client.pipeline(transaction=False)
        pipe.hmget(self._totals_key, ["seeders", "leechers", "completed"])
        pipe.zcard(self._registry)
        (seeders, leechers, completed), torrents = await pipe.execute()
        self._torrents = torrents
        return StoreTotals(torrents, int(seeders or 0), int(leechers or 0), int(completed or 0))

    def sweep(self, now: int, budget: int) -> Awaitable[SweepProgress]:
        return self._call(lambda c: self._sweep(c, now, budget), slow=True)

    async def _sweep(self, client: Client, now: int, budget: int) -> SweepProgress:
        """One step: claim the next torrents of the shared pass, expire their silent
        peers, and drop those left empty and untouched for a whole peer timeout."""
        await self._flush(client)
        for info_hash in list(self._unlisted):
            await self._script(client, "register", [self._registry, self._seq], [info_hash])
            self._unlisted.discard(info_hash)
        claimed = await self._script(client, "claim", [self._registry, self._cursor],
                                     [max(1, budget // SWARM_COST)])
        finished, hashes = claimed[0] == 1, claimed[1:]
        if not hashes:
            return SweepProgress(finished, 0, 0, 0)
        before = now - self.settings.peer_timeout
        limit = max(budget, SWEEP_PEERS_MIN)
        results = await self._pipelined_scripts(
            client, "sweep", [([self._key(h)], [before, limit]) for h in hashes])
        removed = examined = 0
        dropped: list[bytes] = []
        for info_hash, (seeders, leechers, gone, done) in zip(hashes, results, strict=True):
            self._seeders -= seeders
            self._leechers -= leechers
            removed += seeders + leechers
            if gone == 1:
                self._completed -= done
                dropped.append(info_hash)
                examined += 1
            elif gone == 2:
                dropped.append(info_hash)  # dropped by another node; unlist it
            else:
                examined += 1
        if dropped:
            pipe = client.pipeline(transaction=False)
            pipe.zrem(self._registry, *dropped)
            for info_hash in dropped:
                pipe.exists(self._key(info_hash))
            result = await pipe.execute()
            # An announce may have created the torrent again between its drop and the
            # unlisting: list it again.
            for info_hash, exists in zip(dropped, result[1:], strict=True):
                if exists:
                    await self._script(client, "register", [self._registry, self._seq],
                                       [info_hash])
        await self._flush(client)
        return SweepProgress(finished, examined, removed,
                             sum(1 for r in results if r[2] == 1))

    async def _walk(self, step: int = WALK_STEP) -> list[bytes]:
        """Every listed torrent, read ``step`` at a time (each read within the timeout)."""
        out: list[bytes] = []
        pos = "-inf"
        while True:
            found = await self._call(partial(self._listed_after, pos, step), slow=True)
            out += [h for h, _ in found]
            if len(found) < step:
                return out
            pos = repr(found[-1][1])

    async def _listed_after(self, pos: str, step: int, client: Client) -> Any:
        return await client.zrangebyscore(self._registry, f"({pos}", "+inf", start=0,
                                          num=step, withscores=True)

    async def _counts_of(self, hashes: list[bytes]) -> list[tuple[bytes, SwarmCounts]]:
        """The counts of the torrents of ``hashes`` Redis holds, ``WALK_STEP`` a round trip."""
        out: list[tuple[bytes, SwarmCounts]] = []
        for start in range(0, len(hashes), WALK_STEP):
            chunk = hashes[start : start + WALK_STEP]
            counts = await self._call(partial(self._counts_in, chunk), slow=True)
            out += [(h, n) for h, n in zip(chunk, counts, strict=True) if n is not None]
        return out

    async def _counts_in(self, hashes: list[bytes], client: Client
                         ) -> list[SwarmCounts | None]:
        return await self._counts(client, hashes)

    def full_scrape(self) -> Awaitable[list[tuple[bytes, SwarmCounts]]]:
        return self._full_scrape()

    async def _full_scrape(self) -> list[tuple[bytes, SwarmCounts]]:
        return await self._counts_of(await self._walk())

    def top_swarms(self, count: int) -> Awaitable[list[tuple[bytes, SwarmCounts]]]:
        return self._top_swarms(count)

    async def _top_swarms(self, count: int) -> list[tuple[bytes, SwarmCounts]]:
        """The largest swarms: of every torrent up to TOP_WALK_LIMIT, past it of a random
        sample that large (the figures are for the dashboard, not for clients)."""
        listed: int = await self._call(lambda c: c.zcard(self._registry))
        if listed > TOP_WALK_LIMIT:
            sample: Any = await self._call(
                lambda c: c.zrandmember(self._registry, TOP_WALK_LIMIT), slow=True)
            hashes = list(sample or [])
        else:
            hashes = await self._walk()
        best = heapq.nlargest(count, await self._counts_of(hashes),
                              key=lambda item: item[1].complete + item[1].incomplete)
        return best

    def sample_peer_ids(self, limit: int) -> Awaitable[list[bytes]]:
        return self._call(lambda c: self._sample_peer_ids(c, limit), slow=True)

    async def _sample_peer_ids(self, client: Client, limit: int) -> list[bytes]:
        """Peer ids of random peers from up to 100 random torrents, an even share each."""
        picked: Any = await client.zrandmember(self._registry, min(100, max(1, limit)))
        hashes: list[bytes] = list(picked or [])
        if not hashes:
            return []
        share = max(1, limit // len(hashes))
        pipe = client.pipeline(transaction=False)
        for info_hash in hashes:
            for name in ("s4", "l4", "s6", "l6"):
                pipe.hrandfield(self._key(info_hash, name), share, withvalues=True)
        ids: list[bytes] = []
        flat: Any
        for flat in await pipe.execute():
            ids += [flat[i][:20] for i in range(1, len(flat or []), 2)]
        return ids[:limit]

    # -- shared state ---------------------------------------------------------------------

    async def udp_secret(self) -> bytes:
        """The connection-id secret every node on this store shares (made by the first)."""
        async def shared(client: Client) -> bytes:
            await client.set(self._secret_key, os.urandom(32).hex(), nx=True)
            value: Any = await client.get(self._secret_key)
            return bytes.fromhex(bytes(value).decode())
        return await self._call(shared, slow=True)

    async def clear(self) -> None:
        """Delete every key of this store's namespace (for tests and ``redis-cli``-less
        resets); walks the keys with SCAN, never KEYS."""
        async def wipe(client: Client) -> None:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{self.namespace}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    await self._delete(client, batch)
                    batch = []
            if batch:
                await self._delete(client, batch)
        await self._call(wipe, slow=True)
        self._seeders = self._leechers = self._completed = self._torrents = 0
        self._unlisted.clear()

    @staticmethod
    async def _delete(client: Client, keys: list[bytes]) -> None:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        await pipe.execute()
