"""The HTTP frontend: read a request, call the codec and the store once, write the reply.

The connection's input is parsed by ``shoal.protocol.http1.Http1Connection`` (bytes in,
events out: requests, errors, upgrades), which uses httptools (llhttp) when it is installed
and its own small parser otherwise (the choice is logged at start); this module is the
asyncio side: sockets, deadlines, backpressure and replies. Limits keep one client from
holding the server: request line (414), header bytes and count (431), body size (413), a
deadline for a new connection's first byte, one to send a whole request and an idle
keep-alive deadline (the connection is closed), a cap on open connections and one per
client address (idle keep-alive connections are closed, oldest first, to make room).

A client that pipelines requests without reading the replies is not answered ahead: parsing
stops while the transport's write buffer is over its high-water mark or a few replies are
unwritten, the unparsed input is kept (up to ``_MAX_INBOX``; then the socket is not read)
and parsing resumes as the client reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import ipaddress
import itertools
import logging
import os
import re
import socket
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from shoal.engine.rules import NetworkSet
from shoal.errors import ClientError
from shoal.logic import Later, TrackerLogic, resolved
from shoal.protocol import http as codec
from shoal.protocol.compact import normalize_ip
from shoal.protocol.http1 import (
    FALLBACK_NAME,
    HAVE_HTTPTOOLS,
    MAX_BODY,
    PARSER_NAME,
    Http1Connection,
)
from shoal.protocol.routes import mask, route
from shoal.server.addr import packed_ip
from shoal.server.clock import Clock
from shoal.server.compiled import FAILURES, AttrTable, CompiledAnswer, WatchedSocket
from shoal.server.stats import LATENCY_BUCKETS, Counters
from shoal.storage.memory import MemoryStore
from shoal.types import AnnounceResult

try:
    from shoal import _native_http
except ImportError:  # not built (no compiler or headers): the pure-Python path serves
    _native_http = None  # type: ignore[assignment]

log = logging.getLogger("shoal.http")

NATIVE_AVAILABLE = _native_http is not None
NATIVE_NAME = "native (shoal._native_http: announces and scrapes parsed and answered in C)"
PYTHON_NAME = "python"
access_log = logging.getLogger("shoal.access")

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}
_MAX_BODY = MAX_BODY
_TURN = 4  # requests one connection has answered per turn of the event loop, at most
# The kernel's send buffer of a connection, capped: on loopback it grows to megabytes, which
# let a client that never reads have hundreds of large replies computed before the transport
# ever pushed back (the soak's pipeline attack). Tracker replies are small; 128 KiB holds
# over a hundred compact ones.
_SEND_BUFFER = 131072
_LINGER = 1.0  # seconds a connection answered with an error may drain before it is closed
_INTERNAL_FAILURE = codec.encode_failure("internal error, try again later")
_MAX_PENDING = 4  # replies built but not yet written, per connection: parsing waits beyond
_MAX_INBOX = 65536  # unparsed input kept while parsing waits: the socket is not read beyond
_FEED_SLICE = 16384  # input is parsed this much at a time, so a wait takes effect soon
_WRITE_HIGH = 65536  # transport write buffer high-water mark (pause_writing beyond)
_SPLIT_BODY = 16384  # a body this large is written after its head, not copied onto it
_PRESSURE = 0.9  # share of max_connections from which idle keep-alive connections are closed
_LOG_TARGET = 200  # bytes of a request target that reach the access log
_HEAD_END = b"\r\n\r\n"
_KEEP_ALIVE_END = b"\r\nConnection: keep-alive\r\n\r\n"  # an HTTP/1.0 keep-alive reply's


class UpgradeHandler(Protocol):
    """Where a request to switch protocols goes (the WebSocket frontend)."""

    def upgrade(self, transport: asyncio.Transport, peer_ip: bytes, target: bytes,
                headers: list[tuple[bytes, bytes]], rest: bytes) -> bool:
        """Take over ``transport`` (True), or refuse (False: answered 400 and closed)."""
        ...

# A body: bytes, or the chunks of a large one (a full scrape of millions of torrents is
# never joined into one buffer: that alone held the loop for a quarter of a second).
Body = bytes | tuple[bytes, ...]
# A reply: the whole response, or (head, body) for a large body written without a copy.
Reply = bytes | tuple[bytes, Body]


def body_length(body: Body) -> int:
    return len(body) if isinstance(body, bytes) else sum(map(len, body))


_PLAIN_ENDPOINTS = (b"/announce", b"/scrape")  # others go through routes.route
# A parsed request waiting to be answered: method, target, real-IP header, keep-alive,
# HTTP/1.0, time of its first byte (the fields of shoal.protocol.http1.Request).
_Request = tuple[bytes, bytes, bytes | None, bool, bool, float]

_UNPRINTABLE = re.compile(rb"[^\x20-\x5b\x5d-\x7e]")


def printable(data: bytes, limit: int = _LOG_TARGET) -> str:
    """``data`` safe for a log line: every byte but printable ASCII and the space (the
    backslash too) becomes ``\\xNN``, so a client can neither forge lines nor send terminal
    escapes; cut at ``limit`` bytes (marked with ``...``)."""
    text = _UNPRINTABLE.sub(lambda m: b"\\x%02x" % m[0][0], data[:limit]).decode("ascii")
    return text + "..." if len(data) > limit else text


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """The HTTP frontend's settings (a subset of the config, so this module stays testable)."""

    max_connections: int = 10000
    max_connections_per_ip: int = 256  # 0: no cap; trusted proxies are never capped
    first_byte_timeout: float = 5.0  # a new connection silent this long is closed
    request_timeout: float = 10.0
    keepalive_timeout: float = 30.0
    max_request_line: int = 8192
    max_header_bytes: int = 16384
    max_headers: int = 64
    trusted_proxies: tuple[str, ...] = ()
    real_ip_header: str = "X-Forwarded-For"
    allow_ip_param: bool = False
    max_scrape_hashes: int = 64
    full_scrape: bool = False
    full_scrape_cache: int = 10
    access_log: bool = False
    use_httptools: bool = True


def _response(
    status: int, body: Body, keep_alive: bool, content_type: bytes, extra: bytes = b""
) -> Reply:
    length = len(body) if isinstance(body, bytes) else body_length(body)
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        content_type,
        length,
        extra,
        b"" if keep_alive else b"Connection: close\r\n",
    )
    if not isinstance(body, bytes) or length >= _SPLIT_BODY:
        return head, body  # a full scrape, shared by every request: never copied
    return head + body


_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
_OK_HEAD_CLOSE = _OK_HEAD[:-2] + b"Connection: close\r\n\r\n"


def _status(reply: Reply) -> int:
    head = reply if isinstance(reply, bytes) else reply[0]
    return int(head[9:12])


def _outcome(reply: Reply) -> str:
    """``ok``, or ``failure: <reason>`` for a tracker failure reply (for the access log)."""
    if isinstance(reply, bytes):
        body = reply[reply.find(b"\r\n\r\n") + 4 :]
        if body.startswith(b"d14:failure reason"):
            length, _, rest = body[18:].partition(b":")
            if length.isdigit():
                return "failure: " + printable(rest[: int(length)])
    return "ok"


def _entries(blob: bytes, ends: array[int]) -> Iterator[bytes]:
    """The entries packed into ``blob``, entry ``i`` ending at ``ends[i]``."""
    start = 0
    for end in ends:
        yield blob[start:end]
        start = end


FULL_SCRAPE_STEP = 500
"""Torrents per step of a full scrape build: a few milliseconds of the loop each."""


class FullScrape:
    """A full scrape reply, rebuilt at most every ``ttl`` seconds in a task of its own so
    requests never pay for walking every torrent; waiting requests share one build, and
    every request is sent the same bytes, kept in chunks (never joined into one buffer).

    The build never holds the loop for long, even at millions of torrents: the in-memory
    store is walked a few thousand torrents a step, each step sorted, and the sorted steps
    merged and encoded a few thousand entries a step (bencode wants the hashes in order)."""

    def __init__(self, logic: TrackerLogic, clock: Clock, ttl: int) -> None:
        self._logic = logic
        self._clock = clock
        self.ttl = ttl
        self._body: tuple[bytes, ...] | None = None
        self._built_at = 0
        self._building: asyncio.Task[tuple[bytes, ...]] | None = None

    async def _build(self) -> tuple[bytes, ...]:
        await asyncio.sleep(0)
        store = self._logic.store
        encode = codec.encode_scrape_entry
        # Entries are encoded at once (bytes sort as their hashes do), and each step's are
        # kept sorted and packed into one bytes object with their end offsets: a million
        # small objects alive across the build made the cyclic garbage collector's passes
        # walk them all (80 ms pauses, bench/stalls.py); bytes and arrays hold no
        # references, so it never looks inside them.
        runs: list[tuple[bytes, array[int]]] = []

        def pack(entries: list[bytes]) -> None:
            entries.sort()
            runs.append((b"".join(entries), array("I", itertools.accumulate(map(len, entries)))))

        if isinstance(store, MemoryStore):
            cursor = store.cursor()
            while not store.walked(cursor):
                pack([encode(h, c) for h, c in store.scrape_step(cursor, FULL_SCRAPE_STEP)])
                await asyncio.sleep(0)
        else:
            everything = await resolved(store.full_scrape())
            pack([encode(h, c) for h, c in everything])
        chunks = [codec.SCRAPE_HEAD]
        merged = heapq.merge(*[_entries(blob, ends) for blob, ends in runs])
        key = codec.SCRAPE_KEY_LENGTH
        last = b""
        while batch := list(itertools.islice(merged, FULL_SCRAPE_STEP)):
            # A torrent dropped and added again during the walk can come twice: once only.
            unique = []
            for entry in batch:
                if entry[:key] != last:
                    unique.append(entry)
                    last = entry[:key]
            chunks.append(b"".join(unique))
            await asyncio.sleep(0)
        chunks.append(codec.SCRAPE_TAIL)
        self._body = tuple(chunks)
        self._built_at = self._clock.now
        return self._body

    def get(self) -> tuple[bytes, ...] | asyncio.Task[tuple[bytes, ...]]:
        fresh = self._body is not None and self._clock.now - self._built_at < self.ttl
        if fresh and self._body is not None:
            return self._body
        if self._building is None or self._building.done():
            self._building = asyncio.ensure_future(self._build())
        if self._body is not None:
            return self._body  # serve the previous reply while the new one builds
        return self._building


class HttpFrontend:
    """State shared by every HTTP connection of one tracker."""

    def __init__(
        self, logic: TrackerLogic, clock: Clock, counters: Counters, options: HttpOptions,
        native: bool = False,
    ) -> None:
        self.logic = logic
        self.clock = clock
        self.counters = counters
        self.options = options
        self.connections: set[HttpConnection] = set()
        self.per_ip: dict[bytes, int] = {}  # open connections by packed client address
        # Idle keep-alive connections, oldest idle first (closed first when slots run short).
        self.idle_connections: dict[HttpConnection, None] = {}
        # Deadline buckets: connections filed under the whole second after their deadline,
        # so the reaper looks only at those whose deadline may have passed.
        # second -> the connections whose deadline falls in it (a dict, so that a closed
        # connection leaves at once: a list kept tens of thousands of closed connections
        # alive until their second came, under a stream of short connections)
        self._wheel: dict[int, dict[HttpConnection, None]] = {}
        self._wheel_next = int(time.monotonic())
        # Trusted proxies (an IPv4-mapped IPv6 network counts as the IPv4 one, as in bans).
        self.proxies = NetworkSet(options.trusted_proxies)
        self.real_ip_header = options.real_ip_header.lower().encode()
        self.full_scrape = FullScrape(logic, clock, options.full_scrape_cache)
        self.use_httptools = options.use_httptools and HAVE_HTTPTOOLS
        self.closing = False
        self.upgrades: UpgradeHandler | None = None  # WebSocket, when it is served here
        # The compiled data plane (shoal._native_http), when it is used: requests a
        # connection reads between replies go to it first (see HttpConnection.data_received).
        self.native: Any = None
        self.fast = False  # the compiled answer is attached and may answer now
        self.native_generation = -1  # the logic layer's generation it was built from
        self.native_options: HttpOptions | None = None  # ... and the options
        self.answered_in_c: dict[str, int] = {"announce": 0, "scrape": 0}
        """Announces and scrapes answered entirely in C, so far."""
        self.compiled: CompiledAnswer | None = None
        # Keep-alive connections the compiled data plane keeps between requests (see
        # start_keeping): the loop watching them, and their epoll set.
        self._keeping: asyncio.AbstractEventLoop | None = None
        self._kept_fd = -1
        self._starting: set[asyncio.Task[None]] = set()  # connections being handed over
        if native:
            if _native_http is None:
                raise RuntimeError("the compiled HTTP data plane (shoal._native_http) is not "
                                   "built")
            self.native = _native_http.HttpAnswer(
                options.max_request_line, options.max_header_bytes, options.max_headers,
                self.real_ip_header if self.proxies else None, options.max_scrape_hashes,
                options.allow_ip_param, LATENCY_BUCKETS,
            )
            self.native.set_proxies(self.proxies.v4, self.proxies.v6)
            self.compiled = CompiledAnswer(
                "HTTP", log, self.native, counters, _count_targets(counters, self.answered_in_c),
                _FAILURE_SLOT, self.native.attach, self.native.detach)
            counters.pullers.append(self.collect)

    # the compiled data plane

    def sync_native(self) -> None:
        """Attach the compiled answer when nothing Python-only is in force (see
        :func:`shoal.server.compiled.fast_plan`; the access log too is Python's), with the
        logic layer's policy and rules and these options; detach it otherwise. Run when the
        logic layer's generation or the options changed (a reload, a hook, private mode)."""
        native = self.native
        logic = self.logic
        opts = self.options
        self.native_generation = logic.generation
        if self._keeping is not None and opts is not self.native_options:
            native.keep_start(self.per_ip, *self._keep_limits())
        self.native_options = opts
        native.allow_ip_param = int(opts.allow_ip_param)
        native.max_scrape_hashes = opts.max_scrape_hashes
        banned = logic.access.banned
        assert self.compiled is not None
        self.fast = self.compiled.sync(
            logic, allowed=not opts.access_log,
            prepare=lambda: native.set_banned(banned.v4, banned.v6))

    def start_keeping(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let the compiled data plane keep the keep-alive connections it answers, between
        requests, and watch them on ``loop`` (see ``HttpAnswer.keep_start``): each request
        such a connection sends is then read, answered and written in C, as long as C can
        answer it whole; the first it cannot hands the connection over to Python for good.
        Their caps, idle wait and eviction are this frontend's (see :meth:`admit`)."""
        if self.native is None or self._keeping is not None or self.closing:
            return
        self._kept_fd = self.native.keep_start(self.per_ip, *self._keep_limits())
        loop.add_reader(self._kept_fd, self._kept_ready)
        self._keeping = loop

    def _keep_limits(self) -> tuple[int, int, float, float]:
        opts = self.options
        return (int(opts.max_connections * _PRESSURE), opts.max_connections_per_ip,
                min(opts.first_byte_timeout, opts.request_timeout), opts.keepalive_timeout)

    def stop_keeping(self) -> None:
        """Close the connections kept in C and keep no more (shutdown)."""
        loop = self._keeping
        if loop is None:
            return
        self._keeping = None
        if not loop.is_closed():
            loop.remove_reader(self._kept_fd)
        self.native.keep_stop()
        self.counters.connections_open = self.open_connections()

    def open_connections(self) -> int:
        """Open client connections: Python's and those kept in C."""
        kept: int = self.native.kept if self.native is not None else 0
        return len(self.connections) + kept

    def _kept_ready(self) -> None:
        self.run_native(lambda: self.native.serve(self.clock.now, MAX_ACCEPTS),
                        "answering kept HTTP connections")

    def run_native(self, step: Callable[[], list[tuple[int, bytes, bytes, bool, bool]]],
                   doing: str) -> None:
        """Run a step of the compiled data plane (on an up-to-date compiled answer) and
        carry on, in Python, the connections it hands over."""
        if (self.logic.generation != self.native_generation
                or self.options is not self.native_options):
            self.sync_native()
        try:
            handed = step()
        except Exception:
            log.exception("internal error %s", doing)
            self.counters.internal_errors += 1
            return
        for fd, data, unsent, close, served in handed:
            self.hand_over(fd, data, unsent, close, served)

    def hand_over(self, fd: int, data: bytes, unsent: bytes, close: bool, served: bool) -> None:
        """Carry on, in Python, a connection the compiled data plane began (accepted, or kept
        until now): what it read, what it could not send, whether that ends the connection,
        whether it answered a request."""
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return
        conn = self.protocol()
        conn.handoff = (data, unsent, close, served)
        task = asyncio.get_running_loop().create_task(self._connect(conn, sock))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    @staticmethod
    async def _connect(conn: HttpConnection, sock: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, sock)
        except OSError:
            sock.close()  # gone in the meantime

    def collect(self) -> None:
        """Bring in the compiled data plane's figures and completions (see
        :meth:`CompiledAnswer.collect`) and the count of connections kept in C (a puller of
        the counters: run before they are read, and every second by the tracker)."""
        if self.compiled is None:
            return
        self.compiled.collect()
        self.counters.connections_open = self.open_connections()

    def protocol(self) -> HttpConnection:
        return HttpConnection(self)

    def is_trusted_proxy(self, packed_ip: bytes) -> bool:
        return bool(self.proxies.count) and packed_ip in self.proxies

    def admit(self, conn: HttpConnection) -> str | None:
        """Register a new connection, or say why it is refused (a ``dropped`` cause)."""
        opts = self.options
        if self.closing:
            return "http_connection_limit"
        per_ip = self.per_ip.get(conn.peer_ip, 0)  # (with the connections kept in C)
        if (0 < opts.max_connections_per_ip <= per_ip
                and not self.is_trusted_proxy(conn.peer_ip)):
            return "http_per_ip_limit"
        if self.open_connections() >= opts.max_connections * _PRESSURE:
            # Make room before it runs out: close a connection idle the longest (of those
            # in Python first, else of those kept in C).
            if self.idle_connections:
                oldest = next(iter(self.idle_connections))
                self.counters.dropped["http_idle_evicted"] += 1
                oldest.evict()
            elif self._keeping is not None:
                self.native.evict_oldest()  # (counted by the compiled data plane)
        if self.open_connections() >= opts.max_connections:
            return "http_connection_limit"
        self.connections.add(conn)
        self.per_ip[conn.peer_ip] = per_ip + 1
        self.counters.connections_open = self.open_connections()
        return None

    def forget(self, conn: HttpConnection) -> None:
        """Unregister a connection (once: when it is evicted or lost, whichever is first)."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self.idle_connections.pop(conn, None)
        if conn.slot is not None:
            self._unfile(conn, conn.slot)
            conn.slot = None
        left = self.per_ip[conn.peer_ip] - 1
        if left:
            self.per_ip[conn.peer_ip] = left
        else:
            del self.per_ip[conn.peer_ip]
        self.counters.connections_open = self.open_connections()

    def file(self, conn: HttpConnection) -> None:
        """Make sure the reaper looks at ``conn`` soon after its deadline."""
        slot = max(int(conn.deadline) + 1, self._wheel_next)
        filed = conn.slot
        if filed is not None:
            if filed <= slot:
                return  # it will be looked at sooner, and filed again then
            self._unfile(conn, filed)
        conn.slot = slot
        self._wheel.setdefault(slot, {})[conn] = None

    def _unfile(self, conn: HttpConnection, slot: int) -> None:
        bucket = self._wheel.get(slot)
        if bucket is not None:
            bucket.pop(conn, None)

    def reap(self) -> int:
        """Close connections past their deadline (called about once a second). Only the
        connections filed under the seconds gone by are looked at, not every one; returns
        how many were."""
        now = time.monotonic()
        start, self._wheel_next = self._wheel_next, int(now) + 1
        due = [self._wheel.pop(s) for s in range(start, self._wheel_next) if s in self._wheel]
        looked = 0
        for bucket in due:
            for conn in bucket:
                if conn.slot is None or conn.slot >= self._wheel_next:
                    continue  # filed again under a later second: this entry is stale
                conn.slot = None
                if conn.transport is None:
                    continue
                looked += 1
                if now > conn.deadline:
                    conn.timed_out()
                if conn.transport is not None:
                    self.file(conn)
        return looked

    async def run_reaper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.reap()
            if self._keeping is not None:
                self.native.sweep()

    def close_idle(self) -> None:
        """For shutdown: close every connection that is between requests."""
        self.closing = True
        self.stop_keeping()
        for conn in list(self.connections):
            if conn.idle:
                conn.close()


_FAILURE_SLOT = 6 + len(LATENCY_BUCKETS) + 1 + 2


def _count_targets(counters: Counters, answered_in_c: dict[str, int]) -> list[tuple[Any, Any]]:
    """Where each count slot of ``HttpAnswer.counts`` goes: (table, key), in its order."""
    targets: list[tuple[Any, Any]] = [(counters.bytes_out, "http")]
    targets += [(counters.requests, ("http", family, kind))
                for family in ("ipv4", "ipv6") for kind in ("announce", "scrape")]
    targets.append((AttrTable(counters), "internal_errors"))
    targets += [(counters.latency_counts, index) for index in range(len(LATENCY_BUCKETS) + 1)]
    targets += [(answered_in_c, kind) for kind in ("announce", "scrape")]
    targets += [(counters.failures, reason) for reason in FAILURES]  # from _FAILURE_SLOT
    targets.append((counters.bytes_in, "http"))
    targets.append((AttrTable(counters), "connections_total"))
    targets.append((counters.dropped, "http_accept_error"))
    targets.append((counters.dropped, "http_timeout"))  # kept in C: keep-alive wait over
    targets.append((counters.dropped, "http_first_byte_timeout"))
    targets.append((counters.dropped, "http_idle_evicted"))
    return targets


class HttpConnection(Http1Connection, asyncio.Protocol):
    """One client connection. Pipelined requests are answered in order, a few at a time:
    input beyond those waits, unparsed, until the client reads the replies."""

    # Slotted: one is made per connection and its fields are read on every request.
    __slots__ = (
        "_busy", "_closing", "_deferred", "_inbox", "_inbox_pos", "_method", "_pending",
        "_read_paused", "_real_ip", "_scheduled", "_seen", "_started", "_turn", "_url",
        "_waiting", "_write_paused", "deadline", "family", "frontend", "handoff", "idle",
        "peer_ip", "slot", "transport", "trusted",
    )

    def __init__(self, frontend: HttpFrontend) -> None:
        self.frontend = frontend
        self.transport: asyncio.Transport | None = None
        self.peer_ip = b""
        self.family = "ipv4"
        self.trusted = False  # the socket's address is a trusted proxy
        # From the compiled accept (NativeHttpListener): what it read, the reply bytes it
        # could not send, whether they end the connection, and whether it answered a request.
        self.handoff: tuple[bytes, bytes, bool, bool] | None = None
        self.deadline = 0.0
        self.slot: int | None = None  # the reaper's bucket this connection is filed under
        self.idle = True
        self._seen = False  # a byte has arrived
        self._closing = False  # the last reply is written (or the stream is broken)
        # The request being answered (what _handle reads).
        self._method = b""
        self._url = b""
        self._real_ip: bytes | None = None
        self._started = 0.0
        # [reply or None, keep-alive, HTTP/1.0 keep-alive, target, started, client]
        self._pending: deque[list[Any]] = deque()  # in request order
        self._waiting: set[asyncio.Future[Reply]] = set()
        # Backpressure: requests parsed while replies were backed up, and input not parsed.
        self._deferred: deque[_Request] = deque()
        self._inbox = b""
        self._inbox_pos = 0
        self._write_paused = False
        self._read_paused = False
        self._busy = False  # inside _pump (the parser is not reentrant)
        self._turn = 0  # requests answered in this turn of the loop
        self._scheduled = False  # a later turn is asked for (loop.call_soon)
        opts = frontend.options
        Http1Connection.__init__(
            self, opts.max_request_line, opts.max_header_bytes, opts.max_headers,
            frontend.real_ip_header if frontend.proxies else None, frontend.use_httptools,
        )

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        fe = self.frontend
        counters = fe.counters
        counters.connections_total += 1
        peer = transport.get_extra_info("peername")
        try:
            packed = packed_ip(peer[0])
        except (TypeError, ValueError, IndexError, OSError):
            packed = b"\0\0\0\0"
        self.peer_ip = packed
        self.family = "ipv6" if len(self.peer_ip) == 16 else "ipv4"
        self.trusted = fe.is_trusted_proxy(packed)
        refused = fe.admit(self)
        if refused is not None:
            counters.dropped[refused] += 1
            self.transport = None
            transport.abort()
            return
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        opts = fe.options
        self._set_deadline(min(opts.first_byte_timeout, opts.request_timeout))
        if self.handoff is not None:
            self._take_over(*self.handoff)

    def _take_over(self, data: bytes, unsent: bytes, close: bool, served: bool) -> None:
        """Carry on a connection the compiled accept began: send the rest of its reply (and
        close, if that was the last), or wait for the next request, or parse what it read."""
        self.handoff = None
        transport = self.transport
        assert transport is not None
        if served:
            self._seen = True
            if unsent:
                transport.write(unsent)
            if close:
                self.idle = False
                self._closing = True
                transport.close()
                self._set_deadline(self.frontend.options.keepalive_timeout)
                return
            self.frontend.idle_connections[self] = None
            self._set_deadline(self.frontend.options.keepalive_timeout)
        if data:
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.frontend.forget(self)
        self.transport = None
        self.end_input()  # (frees the parser, which refers back, without the cyclic GC)
        self._deferred.clear()
        self._inbox = b""

    def pause_writing(self) -> None:
        # A client that does not read its replies is not answered further until it does;
        # it has keepalive_timeout to read on.
        self._write_paused = True
        self._set_deadline(self.frontend.options.keepalive_timeout)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is None:
            return
        self._set_deadline(self.frontend.options.keepalive_timeout)
        self._pump()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # bytes after a final reply (e.g. pipelined past Connection: close)
        self.frontend.counters.bytes_in["http"] += len(data)
        if not self._seen:
            self._seen = True
            self._set_deadline(self.frontend.options.request_timeout)
        fe = self.frontend
        native = fe.native
        if native is not None:
            if (fe.logic.generation != fe.native_generation
                    or fe.options is not fe.native_options):
                fe.sync_native()
            # Between requests (nothing pending, kept or half-parsed): the compiled data
            # plane answers every request in data, or declines having done nothing.
            if fe.fast and self.idle and not self._write_paused and not fe.closing:
                reply = native.answer(data, self.peer_ip, self.trusted, fe.clock.now)
                if reply is not None:
                    self._answered(reply, native.close_after)
                    return
        if (not self._inbox and not self._deferred and not self._busy
                and not self._write_paused and len(data) <= _FEED_SLICE
                and len(self._pending) < _MAX_PENDING):
            # The common case, a request or a few arriving while the replies keep up: parse
            # at once. Requests that cannot be answered yet are kept by the parser callbacks.
            self._busy = True
            self._turn = 0
            try:
                self._feed(data)
            finally:
                self._busy = False
            if self._deferred:
                if self._blocked() or self._scheduled:
                    pass  # answered when the replies are read, or on the turn scheduled
                else:
                    self._scheduled = True
                    asyncio.get_running_loop().call_soon(self._pump)
            elif self.transport is not None and not self._closing:
                self._maybe_idle()
            return
        if self._inbox:
            self._inbox = self._inbox[self._inbox_pos :] + data
        else:
            self._inbox = data
        self._inbox_pos = 0
        self._pump()

    def _answered(self, reply: bytes, close: bool) -> None:
        """Write what the compiled data plane answered; then wait for the next request (at
        the back of the idle queue), or close."""
        transport = self.transport
        assert transport is not None
        transport.write(reply)
        fe = self.frontend
        idle = fe.idle_connections
        idle.pop(self, None)
        if close:
            self.idle = False
            self._closing = True
            transport.close()
        else:
            idle[self] = None
        self._set_deadline(fe.options.keepalive_timeout)

    def timed_out(self) -> None:
        counters = self.frontend.counters
        if self._closing:  # an error reply's lingering close has run its course
            self._drop()
            return
        if not self._seen:
            counters.dropped["http_first_byte_timeout"] += 1
            self._drop()
            return
        counters.dropped["http_timeout"] += 1
        if self.idle:
            self._drop()
        else:
            self._fail(408, self.target if self.in_request else b"",
                       self.begun if self.in_request else None)

    def close(self) -> None:
        """Close once the replies written are sent; abort if told to close before (its
        client is not reading them, and would hold the connection open for ever)."""
        transport = self.transport
        if transport is None:
            return
        if transport.is_closing():
            transport.abort()
        else:
            transport.close()

    def _drop(self) -> None:
        """Close on a deadline: at once if replies are still unsent (the client is not
        reading them)."""
        transport = self.transport
        if transport is None:
            return
        if transport.is_closing() or transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def evict(self) -> None:
        """Close an idle keep-alive connection to make room for a new one."""
        self.frontend.forget(self)
        if self.transport is not None:
            if self.transport.get_write_buffer_size():
                self.transport.abort()
            else:
                self.transport.close()

    # reading: parse only while the replies keep up

    def _blocked(self) -> bool:
        return self._write_paused or len(self._pending) >= _MAX_PENDING

    def _pump(self) -> None:
        """Answer the requests parsed earlier, then parse the input kept, while the replies
        keep up and for at most ``_TURN`` requests: the rest waits for a later turn of the
        loop, so a connection with hundreds of pipelined requests never keeps the others
        waiting for long.
        Stop reading the socket while too much input is kept."""
        self._scheduled = False
        if self._busy:
            return
        self._busy = True
        self._turn = 0
        try:
            while (self.transport is not None and not self._blocked()
                   and self._turn < _TURN):
                if self._deferred:
                    self._dispatch(*self._deferred.popleft())
                elif self._inbox and not self._closing:
                    pos = self._inbox_pos
                    data = self._inbox
                    if len(data) - pos > _FEED_SLICE:
                        self._inbox_pos = pos + _FEED_SLICE
                        data = data[pos : pos + _FEED_SLICE]
                    else:
                        self._inbox, self._inbox_pos = b"", 0
                        if pos:
                            data = data[pos:]
                    self._feed(data)
                else:
                    break
        finally:
            self._busy = False
        transport = self.transport
        if transport is None or self._closing:
            return
        if self._turn >= _TURN and not self._blocked() and not self._scheduled and (
                self._deferred or len(self._inbox) > self._inbox_pos):
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)  # the rest on a later turn
        self._maybe_idle()
        kept = len(self._inbox) - self._inbox_pos
        if kept > _MAX_INBOX and not self._read_paused:
            self._read_paused = True
            transport.pause_reading()
        elif kept <= _MAX_INBOX and self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def _feed(self, data: bytes) -> None:
        self.receive(data, time.monotonic())  # (requests come to handle_request meanwhile)
        if self.in_request:
            # A request begun and not complete: its deadline is watched. (Most requests end
            # in the chunk they begin in, and are never filed.)
            if self.idle:
                self.idle = False
                self.frontend.idle_connections.pop(self, None)
            self.deadline = self.begun + self.frontend.options.request_timeout
            self.frontend.file(self)

    # the parsed input's events (shoal.protocol.http1.Http1Connection calls these)

    def handle_request(self, method: bytes, target: bytes, real_ip: bytes | None,
                       keep_alive: bool, legacy: bool, started: float) -> None:
        if self._closing:
            return  # pipelined after a request that ends the connection
        if self.idle:
            self.idle = False
            self.frontend.idle_connections.pop(self, None)
        if not keep_alive:
            self._closing = True
        if (self._deferred or self._turn >= _TURN or self._write_paused
                or len(self._pending) >= _MAX_PENDING):  # (_blocked(), inline: per request)
            # Answered once the replies before it are read.
            self._deferred.append((method, target, real_ip, keep_alive, legacy, started))
        else:
            self._dispatch(method, target, real_ip, keep_alive, legacy, started)

    def handle_error(self, status: int, target: bytes, started: float | None) -> None:
        self._fail(status, target, started)

    def handle_upgrade(self, method: bytes, target: bytes,
                       headers: tuple[tuple[bytes, bytes], ...], rest: bytes,
                       started: float) -> None:
        """A request to switch protocols: handed with the socket to the WebSocket frontend
        when it is served here and the connection is between replies, else refused."""
        handler = self.frontend.upgrades
        transport = self.transport
        if (handler is None or self._closing or self._pending or self._deferred
                or transport is None):
            self._fail(400, target, started)
            return
        self._closing = True
        self.frontend.forget(self)
        self.transport = None
        self._inbox, self._inbox_pos = b"", 0
        if not handler.upgrade(transport, self.peer_ip, target, list(headers), rest):
            self.transport = transport
            self._closing = False
            self._fail(400, target, started)

    def _set_deadline(self, seconds: float) -> None:
        self.deadline = deadline = time.monotonic() + seconds
        slot = self.slot
        if slot is None or slot > deadline + 1:  # filed too late for it (else: as file())
            self.frontend.file(self)

    def _dispatch(self, method: bytes, url: bytes, real_ip: bytes | None, keep_alive: bool,
                  legacy: bool, started: float) -> None:
        if self.frontend.closing and keep_alive:  # shutdown began while it waited
            keep_alive = False
            self._closing = True
            self._deferred.clear()
        self._turn += 1
        self._method, self._url, self._real_ip, self._started = method, url, real_ip, started
        # [reply, keep-alive, HTTP/1.0 keep-alive: the reply must say so explicitly, ...]
        slot: list[Any] = [None, keep_alive, keep_alive and legacy, url, started, None]
        if self.frontend.options.access_log:
            slot[5] = self._client_ip()
        self._pending.append(slot)
        try:
            result = self._handle(keep_alive)
        except Exception:
            log.exception("internal error answering %r", mask(self._url)[:200])
            self.frontend.counters.internal_errors += 1
            result = _response(200, _INTERNAL_FAILURE, keep_alive, b"text/plain")
        if isinstance(result, asyncio.Future):
            # The request deadline holds while the reply is awaited.
            self.deadline = started + self.frontend.options.request_timeout
            self.frontend.file(self)
            self._waiting.add(result)  # the loop keeps only weak references to tasks
            result.add_done_callback(self._waiting.discard)
            result.add_done_callback(lambda fut: self._finish(slot, fut))
        else:
            slot[0] = result
            self._flush()

    # request handling

    def _handle(self, keep_alive: bool) -> Reply | asyncio.Future[Reply]:
        method = self._method
        url = self._url
        path, _, query = url.partition(b"?")
        if path not in _PLAIN_ENDPOINTS:  # /<passkey>/announce, /<passkey>/scrape
            path = route(path)[0] or path
        if method != b"GET":
            return _response(405, b"only GET is supported\n", keep_alive, b"text/plain",
                             b"Allow: GET\r\n")
        fe = self.frontend
        counters = fe.counters
        client_ip = self.peer_ip if self._real_ip is None else self._client_ip()
        if path == b"/announce":
            counters.requests["http", self.family, "announce"] += 1
            try:
                request, compact = codec.parse_announce(
                    query, client_ip, fe.options.allow_ip_param, url
                )
            except ClientError as exc:
                return self._failure(exc, keep_alive)
            found = fe.logic.announce(request, client_ip, fe.clock.now)
            if type(found) is AnnounceResult:  # the in-memory store: the common case
                body = codec.encode_announce(found, compact, client_ip)
                if len(body) < _SPLIT_BODY:
                    # What _response() makes, its head from a template: the common case.
                    return (_OK_HEAD if keep_alive else _OK_HEAD_CLOSE) % len(body) + body
                return self._ok(body, keep_alive)
            return self._respond(
                found, lambda result: codec.encode_announce(result, compact, client_ip),
                keep_alive,
            )
        if path == b"/scrape":
            counters.requests["http", self.family, "scrape"] += 1
            try:
                hashes = codec.parse_scrape(query, fe.options.max_scrape_hashes)
            except ClientError as exc:
                return self._failure(exc, keep_alive)
            if not hashes:
                if not fe.options.full_scrape:
                    return self._failure(
                        ClientError("scrape needs an info_hash (full scrape is off)"), keep_alive
                    )
                cached = fe.full_scrape.get()
                if isinstance(cached, tuple):
                    return self._ok(cached, keep_alive)
                built: Later[tuple[bytes, ...]] = Later(lambda reply: cached.add_done_callback(
                    lambda task: reply(
                        task.result() if not task.cancelled() and task.exception() is None
                        else ClientError("full scrape unavailable, try again later")
                    )
                ))
                return self._respond(built, lambda body: body, keep_alive)
            counts = fe.logic.scrape(hashes, client_ip, url)
            return self._respond(
                counts, lambda found: codec.encode_scrape(hashes, found), keep_alive
            )
        counters.dropped["http_not_found"] += 1
        return _response(404, b"not found: try /announce or /scrape\n", keep_alive, b"text/plain")

    def _client_ip(self) -> bytes:
        """The socket address, or from a trusted proxy the rightmost untrusted address of
        its real-IP header (the leftmost entries are whatever the client claimed)."""
        fe = self.frontend
        if self._real_ip is None or not fe.is_trusted_proxy(self.peer_ip):
            return self.peer_ip
        chosen = self.peer_ip
        for part in reversed(self._real_ip.split(b",")):
            text = part.strip().decode("latin-1")
            if text.startswith("[") and "]" in text:
                text = text[1 : text.index("]")]
            try:
                packed = normalize_ip(ipaddress.ip_address(text).packed)
            except ValueError:
                break
            chosen = packed
            if not fe.is_trusted_proxy(packed):
                break
        return chosen

    def _ok(self, body: Body, keep_alive: bool) -> Reply:
        return _response(200, body, keep_alive, b"text/plain")

    def _failure(self, exc: ClientError, keep_alive: bool) -> Reply:
        counters = self.frontend.counters
        counters.failures[exc.reason] += 1  # counted once as its kind, and here by reason
        return _response(200, codec.encode_failure(exc.reason, exc.retry_in), keep_alive,
                         b"text/plain")

    def _respond(
        self, found: Any, encode: Callable[[Any], Body], keep_alive: bool
    ) -> Reply | asyncio.Future[Reply]:
        """The reply for what the logic layer answered: a result (encoded), a refusal, or a
        :class:`Later`, whose reply comes through the returned future."""
        if not isinstance(found, Later):
            if isinstance(found, ClientError):
                return self._failure(found, keep_alive)
            return self._ok(encode(found), keep_alive)
        later: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def reply(result: Any) -> None:
            if later.done():
                return
            # Shutdown may have begun while waiting: then say this is the last reply.
            ka = keep_alive and not self.frontend.closing
            try:
                if isinstance(result, ClientError):
                    later.set_result(self._failure(result, ka))
                else:
                    later.set_result(self._ok(encode(result), ka))
            except Exception as exc:
                later.set_exception(exc)

        found.then(reply)
        return later

    def _finish(self, slot: list[Any], fut: asyncio.Future[Reply]) -> None:
        if self.frontend.closing:
            slot[1] = False  # the reply was built saying "Connection: close"
        if fut.cancelled() or fut.exception() is not None:
            if not fut.cancelled():
                log.error("internal error answering a request", exc_info=fut.exception())
            self.frontend.counters.internal_errors += 1
            slot[0] = _response(200, _INTERNAL_FAILURE, slot[1], b"text/plain")
        else:
            slot[0] = fut.result()
        self._flush()

    # writing

    def _flush(self) -> None:
        """Write every finished reply at the head of the queue, in request order."""
        pending = self._pending
        transport = self.transport
        fe = self.frontend
        while pending and pending[0][0] is not None:
            reply, keep_alive, legacy, url, started, client = pending.popleft()
            if transport is None:
                continue
            if type(reply) is bytes:  # head and body in one (the common case)
                if legacy:
                    reply = reply.replace(_HEAD_END, _KEEP_ALIVE_END, 1)
                transport.write(reply)
                size = len(reply)
            else:
                head, body = reply
                if legacy:  # only the head is copied, never a large body
                    head = head.replace(_HEAD_END, _KEEP_ALIVE_END, 1)
                transport.write(head)
                if isinstance(body, tuple):
                    transport.writelines(body)
                else:
                    transport.write(body)
                size = len(head) + body_length(body)
            fe.counters.bytes_out["http"] += size
            latency = time.monotonic() - started
            fe.counters.observe_latency(latency)
            if fe.options.access_log:
                self._log_access(client, _status(reply), _outcome(reply), latency, url)
            if not keep_alive:
                pending.clear()
                self._deferred.clear()
                self._inbox, self._inbox_pos = b"", 0
                transport.close()
                self._set_deadline(fe.options.keepalive_timeout)  # to send the reply
                return
        if transport is None:
            return
        if self._deferred or len(self._inbox) > self._inbox_pos:
            self._pump()  # replies drained: parse on (unless already parsing)
        elif not self._busy:
            self._maybe_idle()

    def _maybe_idle(self) -> None:
        """Between requests (nothing pending, parsed or kept): start the keep-alive wait."""
        if (self.idle or self._pending or self.in_request or self._deferred
                or len(self._inbox) > self._inbox_pos):
            return
        fe = self.frontend
        self.idle = True
        fe.idle_connections[self] = None
        self._set_deadline(fe.options.keepalive_timeout)
        if fe.closing:
            self.close()

    def _log_access(
        self, client: bytes | None, status: int, outcome: str, latency: float, url: bytes
    ) -> None:
        address = str(ipaddress.ip_address(client or self.peer_ip))
        latency_ms = round(latency * 1000, 3)
        request = printable(mask(url))  # a passkey is never logged in full
        access_log.info("%s %d %s %.3fms %s", address, status, outcome, latency_ms, request,
                        extra={"client": address, "status": status, "outcome": outcome,
                               "latency_ms": latency_ms, "request": request})

    def _fail(self, status: int, target: bytes = b"", started: float | None = None) -> None:
        """Answer a request that cannot be parsed, then close: the stream is out of step."""
        fe = self.frontend
        counters = fe.counters
        counters.requests["http", self.family, "error"] += 1
        counters.dropped[f"http_{status}"] += 1
        if self.transport is None:
            return
        self._deferred.clear()
        self._inbox, self._inbox_pos = b"", 0
        if self._closing:  # the final reply is already written or due: just end it
            self.transport.close()
            return
        self._closing = True
        reason = _REASONS.get(status, b"Error").decode()
        self._pending.clear()
        reply = _response(status, f"{reason}\n".encode(), False, b"text/plain")
        assert isinstance(reply, bytes)
        self.transport.write(reply)
        if fe.options.access_log:
            now = time.monotonic()
            self._log_access(None, status, "refused", now - (now if started is None else started),
                             target)
        if self.transport.can_write_eof():
            # Lingering close: end our side, then discard what the client is still sending
            # (data_received ignores it) until it closes or the reaper does, a moment later.
            # Closing at once with unread data would reset the connection, and the reset can
            # destroy the error reply before the client reads it.
            self.transport.write_eof()
            self.idle = True  # (for shutdown; not one to evict: it is closing already)
            fe.idle_connections.pop(self, None)
            self._set_deadline(_LINGER)
        else:
            self.transport.close()


MAX_ACCEPTS = 64
"""Connections the compiled accept takes per readable event, at most (then the loop runs
the other callbacks)."""


class NativeHttpListener(WatchedSocket):
    """One listening HTTP socket whose connections the compiled data plane accepts.

    When the socket is readable, ``HttpAnswer.accept`` accepts the waiting connections and
    reads each one's first bytes; a connection whose requests it answers with a closing
    reply (HTTP/1.0, ``Connection: close``) is written and closed in C, never costing a
    Python object; one kept alive, or silent so far, stays in C between requests while the
    caps allow (see :meth:`HttpFrontend.start_keeping`). Every other connection (declined,
    partly sent, over a cap) is handed over with what was read and what is left to send,
    and becomes an ordinary :class:`HttpConnection` (caps, deadlines, the Python parser)
    from then on. It is also the transport the tracker lists for health and closes on stop.
    """

    def __init__(self, frontend: HttpFrontend, sock: socket.socket) -> None:
        super().__init__(sock)
        self.frontend = frontend

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.watch(loop, self._ready)
        self.frontend.start_keeping(loop)

    def _ready(self) -> None:
        fe = self.frontend
        if self._closed:
            return
        fe.run_native(
            lambda: fe.native.accept(self._fd, fe.clock.now, MAX_ACCEPTS, len(fe.connections)),
            "accepting HTTP connections")


def prepare_listener(sock: socket.socket, defer_accept: int = 0) -> None:
    """Cap the kernel's send buffer of every connection ``sock`` will accept (accepted
    sockets inherit it from the listener, so no connection pays a system call for it): a
    client that does not read its replies pins at most this much in the kernel. With
    ``defer_accept`` seconds, the kernel hands over a connection only once its first bytes
    came (or that long passed): most clients send their request at once, so it is read and
    answered on accept; measured, without it nearly every short connection was accepted
    before its request arrived and had to wait for a second wake-up."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
    if defer_accept > 0 and hasattr(socket, "TCP_DEFER_ACCEPT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer_accept)


def parser_name(use_httptools: bool) -> str:
    return PARSER_NAME if use_httptools and HAVE_HTTPTOOLS else FALLBACK_NAME

