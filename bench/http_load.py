"""HTTP tracker load generator on asyncio (protocol callbacks, no streams).

Two modes:

* ``keepalive``: ``connections`` persistent HTTP/1.1 connections, each sending its next
  request as soon as the previous reply is complete. A server that closes connections
  anyway (opentracker closes after every reply, without saying so) is handled the way
  a client would: the request that found the connection closed is sent again on a new
  one (counted in ``retries``), and once the generator has seen the server close idle
  connections a few times it stops reusing them, so it does not pay for a failed send
  per request.
* ``close``: every request carries ``Connection: close`` and goes on a new connection;
  ``connections`` requests are in flight at once. Latency then includes the TCP
  handshake, as a real client's would.

Every connection is bound to a source address (``sources``: loopback addresses, see
:func:`bench.workload.address_for`) before it connects, and a request goes on a connection
from its operation's source address (``HttpOps.sources``), so a peer always announces from
the same address and the tracker sees as many client IPs as there are sources. Idle
keep-alive connections are pooled per source address.

Requests are pre-encoded bytes (see :func:`encode_http_ops`). Every reply is checked:
status 200, a Content-Length (or the body up to the close), a body that is valid bencode,
a dictionary without ``failure reason``, and holding ``interval`` and ``peers`` (announce)
or ``files`` (scrape). A connection refused, reset or stalled with a request outstanding
counts as an error or a timeout.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from bench.bencode import bdecode
from bench.driver import LoadDriver
from bench.stats import LoadStats
from bench.udp_load import check_sources
from bench.workload import HTTP_EVENT_NAMES, Announce, Op

MODES = ("keepalive", "close")
_KIND_ANNOUNCE = 1
_KIND_SCRAPE = 2
_IDLE_CLOSES_BEFORE_GIVING_UP_REUSE = 3


@dataclass(frozen=True, slots=True)
class HttpOps:
    """Pre-encoded request bytes, what kind of reply each expects and the index of the
    source address each goes out from (empty: all from the first)."""

    requests: list[bytes]
    kinds: list[int]
    sources: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.requests)


def _q(value: bytes) -> str:
    return urllib.parse.quote_from_bytes(value, safe="")


def encode_http_ops(
    ops: Sequence[Op],
    *,
    close: bool,
    host: str = "127.0.0.1",
    passkey_of: Callable[[Op], str] | None = None,
) -> HttpOps:
    """Encode workload operations as complete HTTP/1.1 GET requests; with ``passkey_of``
    (a private tracker) to ``/<passkey>/announce`` and ``/<passkey>/scrape``."""
    tail = f" HTTP/1.1\r\nHost: {host}\r\nUser-Agent: shoal-bench\r\n"
    tail += "Connection: close\r\n\r\n" if close else "\r\n"
    requests: list[bytes] = []
    kinds: list[int] = []
    sources: list[int] = []
    for op in ops:
        sources.append(op.source)
        prefix = "" if passkey_of is None else "/" + passkey_of(op)
        if isinstance(op, Announce):
            event = HTTP_EVENT_NAMES[op.event]
            line = (
                f"GET {prefix}/announce?info_hash={_q(op.info_hash)}&peer_id={_q(op.peer_id)}"
                f"&port={op.port}&uploaded={op.uploaded}&downloaded={op.downloaded}"
                f"&left={op.left}&compact=1&numwant={op.numwant}&key={op.key:08x}"
            )
            if event:
                line += f"&event={event}"
            kinds.append(_KIND_ANNOUNCE)
        else:
            line = f"GET {prefix}/scrape?" + "&".join(f"info_hash={_q(h)}" for h in op.info_hashes)
            kinds.append(_KIND_SCRAPE)
        requests.append((line + tail).encode("ascii"))
    return HttpOps(requests, kinds, sources)


def check_reply(kind: int, status: int, body: bytes) -> str | None:
    """None when a reply is a proper success for a request of ``kind``; else why not."""
    if status != 200:
        return f"HTTP status {status}"
    try:
        reply = bdecode(body)
    except ValueError as exc:
        return f"bad bencode ({exc})"
    if not isinstance(reply, dict):
        return "reply is not a dictionary"
    if b"failure reason" in reply:
        failure = reply[b"failure reason"]
        text = failure.decode("utf-8", "replace") if isinstance(failure, bytes) else "?"
        return "failure reason: " + text[:80]
    if kind == _KIND_ANNOUNCE:
        if not isinstance(reply.get(b"interval"), int):
            return "announce reply without interval"
        peers = reply.get(b"peers")
        if not isinstance(peers, bytes) or len(peers) % 6:
            return "announce reply without compact peers"
    elif not isinstance(reply.get(b"files"), dict):
        return "scrape reply without files"
    return None


class _HttpConnection(asyncio.Protocol):
    """One TCP connection; at most one request in flight."""

    __slots__ = (
        "buf",
        "closed",
        "eof",
        "index",
        "load",
        "served",
        "source",
        "started_ns",
        "transport",
    )

    def __init__(self, load: HttpLoad, started_ns: int, index: int, source: int) -> None:
        self.load = load
        self.source = source
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.index = index
        self.started_ns = started_ns
        self.served = 0
        self.eof = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.index >= 0:
            self.transport.write(self.load.ops.requests[self.index])

    def send(self, index: int, started_ns: int) -> None:
        assert self.transport is not None
        self.index = index
        self.started_ns = started_ns
        self.transport.write(self.load.ops.requests[index])

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.index < 0:
            self.load.stats.error("bytes received with no request outstanding")
            buf.clear()
            return
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(buf[:head_end]).lower()
        pos = head.find(b"\r\ncontent-length:")
        if pos < 0:
            return  # body runs to the close: wait for EOF
        line_end = head.find(b"\r\n", pos + 2)
        length = int(head[pos + 17 : line_end if line_end >= 0 else len(head)])
        end = head_end + 4 + length
        if len(buf) < end:
            return
        body = bytes(buf[head_end + 4 : end])
        del buf[:end]
        self._complete(head, body)

    def _complete(self, head: bytes, body: bytes) -> None:
        load = self.load
        index = self.index
        self.index = -1
        self.served += 1
        try:
            status = int(head[9:12])
        except ValueError:
            status = -1
        load.on_reply(self, index, status, body, head)

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.index >= 0 and self.buf:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end >= 0 and b"\r\ncontent-length:" not in self.buf[:head_end].lower():
                head = bytes(self.buf[:head_end]).lower()
                body = bytes(self.buf[head_end + 4 :])
                self.buf.clear()
                self._complete(head, body)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.load.on_lost(self, exc)


class HttpLoad(LoadDriver[HttpOps]):
    """HTTP load at ``host:port`` in ``mode`` (``keepalive`` or ``close``)."""

    def __init__(
        self,
        host: str,
        port: int,
        mode: str,
        *,
        connections: int = 64,
        timeout: float = 5.0,
        sources: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        self.sources = check_sources(host, sources)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        super().__init__(HttpOps([], []), timeout)
        self.host = host
        self.port = port
        self.mode = mode
        self.connections = connections
        self.reuse = mode == "keepalive"
        self._idle_closes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy: set[_HttpConnection] = set()  # request outstanding or connecting
        # Open, reusable, nothing outstanding: by source address.
        self._idle: list[list[_HttpConnection]] = [[] for _ in self.sources]
        self._connecting = 0

    # -- request supply -------------------------------------------------------------------

    def in_flight(self) -> int:
        return len(self._busy) + self._connecting

    # -- sending --------------------------------------------------------------------------

    def _issue(self, index: int, started_ns: int) -> None:
        """Send request ``index`` on an idle connection from its source, or on a new one."""
        sources = self.ops.sources
        idle = self._idle[sources[index] if sources else 0]
        if self.reuse and idle:
            conn = idle.pop()
            if not conn.closed:
                self._busy.add(conn)
                conn.send(index, started_ns)
                return
        self._open(index, started_ns)

    def _open(self, index: int, started_ns: int) -> None:
        loop = self._loop
        assert loop is not None
        sources = self.ops.sources
        source = sources[index] if sources else 0
        conn = _HttpConnection(self, started_ns, index, source)
        self._busy.add(conn)
        self._connecting += 1
        task = loop.create_task(loop.create_connection(
            lambda: conn, self.host, self.port, local_addr=(self.sources[source], 0)))

        def connected(t: asyncio.Task[tuple[asyncio.BaseTransport, asyncio.BaseProtocol]]) -> None:
            self._connecting -= 1
            exc = t.exception() if not t.cancelled() else None
            if t.cancelled() or exc is not None:
                self._busy.discard(conn)
                self.stats.error(f"connect failed: {type(exc).__name__}")
                self.requeue(index)
                if self.closed_loop:
                    # Do not spin on a refusing server.
                    loop.call_later(0.05, self._refill)

        task.add_done_callback(connected)

    def _refill(self) -> None:
        """Closed loop: keep ``connections`` requests in flight."""
        while self.in_flight() < self.connections:
            index = self.next_op()
            if index < 0:
                return
            self._issue(index, time.perf_counter_ns())

    # -- replies --------------------------------------------------------------------------

    def on_reply(
        self, conn: _HttpConnection, index: int, status: int, body: bytes, head: bytes
    ) -> None:
        stats = self.stats
        kind = self.ops.kinds[index]
        problem = check_reply(kind, status, body)
        if problem is None:
            stats.responses += 1
            if kind == _KIND_ANNOUNCE:
                stats.announces += 1
            else:
                stats.scrapes += 1
            if self.record:
                stats.latencies_ns.append(time.perf_counter_ns() - conn.started_ns)
        else:
            stats.error(problem)
        self._busy.discard(conn)
        server_closes = conn.eof or b"\r\nconnection: close" in head
        if self.reuse and not server_closes:
            self._idle[conn.source].append(conn)
        elif not conn.eof and not self.reuse and self.mode == "close":
            # Connection: close was asked for: let the server close it; close it ourselves
            # if it has not after the timeout.
            loop = self._loop
            assert loop is not None
            loop.call_later(self.timeout, self._abort_if_open, conn)
        if self.closed_loop:
            self._refill()

    def _abort_if_open(self, conn: _HttpConnection) -> None:
        if not conn.closed and conn.transport is not None:
            conn.transport.abort()

    def on_lost(self, conn: _HttpConnection, exc: Exception | None) -> None:
        idle = self._idle[conn.source]
        if conn in idle:
            idle.remove(conn)
            if self.reuse:
                self._idle_closes += 1
                if self._idle_closes >= _IDLE_CLOSES_BEFORE_GIVING_UP_REUSE:
                    self.reuse = False
            return
        if conn.index >= 0:
            self._busy.discard(conn)
            index = conn.index
            conn.index = -1
            if conn.served and not conn.buf:
                # A reused connection closed under our request: send it again elsewhere.
                self.stats.retries += 1
                self._idle_closes += 1
                if self._idle_closes >= _IDLE_CLOSES_BEFORE_GIVING_UP_REUSE:
                    self.reuse = False
                self._open(index, conn.started_ns)
                return
            cause = type(exc).__name__ if exc else "EOF"
            self.stats.error(f"connection lost with a request outstanding ({cause})")
            self.requeue(index)
        if self.closed_loop:
            self._refill()

    # -- the run loop's hooks (see bench.driver) -------------------------------------------

    async def run(self, ops: HttpOps, **kwargs: Any) -> LoadStats:
        """:meth:`LoadDriver.run`, once ``ops`` name no source this load has no address for."""
        if ops.sources and max(ops.sources) >= len(self.sources):
            raise ValueError(
                f"operations from source {max(ops.sources)}, but only "
                f"{len(self.sources)} source addresses"
            )
        return await super().run(ops, **kwargs)

    async def _prepare(self) -> None:
        self._loop = asyncio.get_running_loop()

    def _start(self) -> None:
        if self.closed_loop:
            self._refill()

    def _expire(self, now_ns: int, timeout_ns: int) -> None:
        for conn in [c for c in self._busy if c.transport is not None]:
            if conn.index >= 0 and now_ns - conn.started_ns > timeout_ns:
                self.stats.timeouts += 1
                self._busy.discard(conn)
                index = conn.index
                conn.index = -1
                self.requeue(index)
                assert conn.transport is not None
                conn.transport.abort()
        if self.closed_loop:
            self._refill()

    def _send_due(self, due: int) -> int:
        sent = 0
        now_ns = time.perf_counter_ns()
        while sent < due and self.in_flight() < self.connections:
            index = self.next_op()
            if index < 0:
                break
            self._issue(index, now_ns)
            sent += 1
        return sent

    def _abandon(self) -> None:
        for conn in list(self._busy):
            conn.index = -1
            if conn.transport is not None:
                conn.transport.abort()
        self._busy.clear()

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle:
            for conn in idle:
                if conn.transport is not None:
                    conn.transport.close()
            idle.clear()
