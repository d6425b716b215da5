"""The HTTP frontend: read a request, call the codec and the store once, write the reply.

Parsing uses httptools (llhttp) when it is installed and falls back to the small parser in
``shoal.protocol.http1``; the choice is logged at start. Limits keep one client from
holding the server: request line (414), header bytes and count (431), body size (413), a
deadline to send a whole request and an idle keep-alive deadline (the connection is
closed), and a cap on open connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from shoal.errors import ClientError
from shoal.logic import TrackerLogic, resolved
from shoal.protocol import http as codec
from shoal.protocol.compact import normalize_ip
from shoal.protocol.http1 import Http1RequestParser, HttpParseError
from shoal.server.addr import packed_ip
from shoal.server.clock import Clock
from shoal.server.stats import Counters

log = logging.getLogger("shoal.http")
access_log = logging.getLogger("shoal.access")

try:
    import httptools

    PARSER_NAME = "httptools"
    _ParserError: tuple[type[Exception], ...] = (httptools.HttpParserError,)
    _Upgrade: type[Exception] = httptools.HttpParserUpgrade
except ImportError:  # pragma: no cover - exercised by the fallback tests directly
    httptools = None  # type: ignore[assignment]
    PARSER_NAME = "shoal.protocol.http1 (pure Python fallback)"
    _ParserError = ()

    class _Upgrade(Exception):  # type: ignore[no-redef]
        pass


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
_MAX_BODY = 65536
_LINGER = 1.0  # seconds a connection answered with an error may drain before it is closed
_INTERNAL_FAILURE = codec.encode_failure("internal error, try again later")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """The HTTP frontend's settings (a subset of the config, so this module stays testable)."""

    max_connections: int = 10000
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
    status: int, body: bytes, keep_alive: bool, content_type: bytes, extra: bytes = b""
) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        content_type,
        len(body),
        extra,
        b"" if keep_alive else b"Connection: close\r\n",
    )
    return head + body


class FullScrape:
    """A full scrape reply, rebuilt at most every ``ttl`` seconds in a task of its own so
    requests never pay for walking every torrent; waiting requests share one build."""

    def __init__(self, logic: TrackerLogic, clock: Clock, ttl: int) -> None:
        self._logic = logic
        self._clock = clock
        self.ttl = ttl
        self._body: bytes | None = None
        self._built_at = 0
        self._building: asyncio.Task[bytes] | None = None

    async def _build(self) -> bytes:
        await asyncio.sleep(0)
        entries = await resolved(self._logic.store.full_scrape())
        self._body = codec.encode_scrape([h for h, _ in entries], [c for _, c in entries])
        self._built_at = self._clock.now
        return self._body

    def get(self) -> bytes | asyncio.Task[bytes]:
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
        self, logic: TrackerLogic, clock: Clock, counters: Counters, options: HttpOptions
    ) -> None:
        self.logic = logic
        self.clock = clock
        self.counters = counters
        self.options = options
        self.connections: set[HttpConnection] = set()
        self.proxies = tuple(ipaddress.ip_network(n, strict=False) for n in options.trusted_proxies)
        self.real_ip_header = options.real_ip_header.lower().encode()
        self.full_scrape = FullScrape(logic, clock, options.full_scrape_cache)
        self.use_httptools = options.use_httptools and httptools is not None
        self.closing = False

    def protocol(self) -> HttpConnection:
        return HttpConnection(self)

    def is_trusted_proxy(self, packed_ip: bytes) -> bool:
        if not self.proxies:
            return False
        ip = ipaddress.ip_address(packed_ip)
        return any(ip in net for net in self.proxies)

    def reap(self) -> None:
        """Close connections past their deadline (called about once a second)."""
        now = time.monotonic()
        for conn in list(self.connections):
            if conn.deadline and now > conn.deadline:
                conn.timed_out()

    async def run_reaper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.reap()

    def close_idle(self) -> None:
        """For shutdown: close every connection that is between requests."""
        self.closing = True
        for conn in list(self.connections):
            if conn.idle:
                conn.close()


class HttpConnection(asyncio.Protocol):
    """One client connection. Pipelined requests are answered in order."""

    def __init__(self, frontend: HttpFrontend) -> None:
        self.frontend = frontend
        self.transport: asyncio.Transport | None = None
        self.peer_ip = b""
        self.family = "ipv4"
        self.deadline = 0.0
        self.idle = True
        self._in_request = False  # a request has begun and is not yet complete
        self._head_done = False  # ... and its headers are complete
        self._head_bytes = 0  # bytes of an unfinished head, counted in whole chunks
        self._messages = 0
        self._closing = False  # the last reply is written (or the stream is broken)
        self._url = b""
        self._headers = 0
        self._header_bytes = 0
        self._body = 0
        self._real_ip: bytes | None = None
        self._started = 0.0
        self._pending: deque[list[Any]] = deque()  # [response or None] in request order
        self._waiting: set[asyncio.Future[bytes]] = set()
        opts = frontend.options
        if frontend.use_httptools:
            self.parser: Any = httptools.HttpRequestParser(self)
        else:
            self.parser = Http1RequestParser(
                self, opts.max_request_line, opts.max_request_line + opts.max_header_bytes,
                _MAX_BODY,
            )

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        fe = self.frontend
        counters = fe.counters
        counters.connections_total += 1
        if len(fe.connections) >= fe.options.max_connections or fe.closing:
            counters.dropped["http_connection_limit"] += 1
            transport.abort()
            return
        fe.connections.add(self)
        counters.connections_open = len(fe.connections)
        peer = transport.get_extra_info("peername")
        try:
            packed = packed_ip(peer[0])
        except (TypeError, ValueError, IndexError, OSError):
            packed = b"\0\0\0\0"
        self.peer_ip = packed
        self.family = "ipv6" if len(self.peer_ip) == 16 else "ipv4"
        self.deadline = time.monotonic() + fe.options.request_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        fe = self.frontend
        fe.connections.discard(self)
        fe.counters.connections_open = len(fe.connections)
        self.transport = None

    def pause_writing(self) -> None:
        # A client that does not read its replies stops being read until it catches up.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # bytes after a final reply (e.g. pipelined past Connection: close)
        self.frontend.counters.bytes_in["http"] += len(data)
        in_head, messages = self._in_request and not self._head_done, self._messages
        try:
            self.parser.feed_data(data)
            if self._in_request and not self._head_done:
                # httptools buffers a header line whole before calling back, so bound the
                # head here: count every chunk that fell entirely inside the same head.
                if in_head and messages == self._messages:
                    self._head_bytes += len(data)
                    opts = self.frontend.options
                    if self._head_bytes > opts.max_request_line + opts.max_header_bytes:
                        raise HttpParseError(431, "request headers too large")
                else:
                    self._head_bytes = 0
        except HttpParseError as exc:
            self._fail(exc.status)
        except _Upgrade:
            self._fail(400)
        except _ParserError as exc:
            # httptools wraps an error raised in a callback (a limit) in its own.
            cause = exc.__context__
            self._fail(cause.status if isinstance(cause, HttpParseError) else 400)

    def timed_out(self) -> None:
        if self._closing:  # an error reply's lingering close has run its course
            self.close()
            return
        self.frontend.counters.dropped["http_timeout"] += 1
        if self.idle:
            self.close()
        else:
            self._fail(408)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # parser callbacks

    def on_message_begin(self) -> None:
        self.idle = False
        self._in_request = True
        self._head_done = False
        self._head_bytes = 0
        self._messages += 1
        self._url = b""
        self._headers = 0
        self._header_bytes = 0
        self._body = 0
        self._real_ip = None
        self._started = time.perf_counter()
        self.deadline = time.monotonic() + self.frontend.options.request_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.frontend.options.max_request_line:
            raise HttpParseError(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        opts = self.frontend.options
        self._headers += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._headers > opts.max_headers or self._header_bytes > opts.max_header_bytes:
            raise HttpParseError(431, "request headers too large")
        fe = self.frontend
        if fe.proxies and name.lower() == fe.real_ip_header:
            self._real_ip = value if self._real_ip is None else self._real_ip + b"," + value

    def on_headers_complete(self) -> None:
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        if self._body > _MAX_BODY:
            raise HttpParseError(413, "request body too large")

    def on_message_complete(self) -> None:
        self._in_request = False
        if self._closing:
            return  # pipelined after a request that ends the connection: not answered
        keep_alive = self.parser.should_keep_alive() and not self.frontend.closing
        if not keep_alive:
            self._closing = True
        # [reply, keep-alive, HTTP/1.0 keep-alive: the reply must say so explicitly]
        slot: list[Any] = [None, keep_alive,
                           keep_alive and self.parser.get_http_version() == "1.0"]
        self._pending.append(slot)
        try:
            result = self._handle(keep_alive)
        except Exception:
            log.exception("internal error answering %r", self._url[:200])
            self.frontend.counters.internal_errors += 1
            result = _response(200, _INTERNAL_FAILURE, keep_alive, b"text/plain")
        if isinstance(result, bytes):
            slot[0] = result
            self._flush()
        else:
            self._waiting.add(result)  # the loop keeps only weak references to tasks
            result.add_done_callback(self._waiting.discard)
            result.add_done_callback(lambda fut: self._finish(slot, fut))

    # request handling

    def _handle(self, keep_alive: bool) -> bytes | asyncio.Future[bytes]:
        method = self.parser.get_method()
        url = self._url
        path, _, query = url.partition(b"?")
        if method != b"GET":
            return _response(405, b"only GET is supported\n", keep_alive, b"text/plain",
                             b"Allow: GET\r\n")
        fe = self.frontend
        counters = fe.counters
        client_ip = self._client_ip()
        if path == b"/announce":
            counters.requests["http", self.family, "announce"] += 1
            try:
                request, compact = codec.parse_announce(
                    query, client_ip, fe.options.allow_ip_param, path
                )
            except ClientError as exc:
                return self._failure(exc, keep_alive)
            now = fe.clock.now
            return self._respond(
                lambda reply: fe.logic.announce(request, client_ip, now, reply),
                lambda found: codec.encode_announce(found, compact, client_ip), keep_alive,
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
                if isinstance(cached, bytes):
                    return self._ok(cached, keep_alive)
                return self._respond(
                    lambda reply: cached.add_done_callback(
                        lambda task: reply(
                            task.result() if not task.cancelled() and task.exception() is None
                            else ClientError("full scrape unavailable, try again later")
                        )
                    ),
                    lambda body: body, keep_alive,
                )
            return self._respond(
                lambda reply: fe.logic.scrape(hashes, client_ip, reply),
                lambda counts: codec.encode_scrape(hashes, counts), keep_alive,
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

    def _ok(self, body: bytes, keep_alive: bool) -> bytes:
        return _response(200, body, keep_alive, b"text/plain")

    def _failure(self, exc: ClientError, keep_alive: bool) -> bytes:
        counters = self.frontend.counters
        counters.failures[exc.reason] += 1  # counted once as its kind, and here by reason
        return _response(200, codec.encode_failure(exc.reason, exc.retry_in), keep_alive,
                         b"text/plain")

    def _respond(
        self,
        start: Callable[[Callable[[Any], None]], None],
        encode: Callable[[Any], bytes],
        keep_alive: bool,
    ) -> bytes | asyncio.Future[bytes]:
        """Ask the logic layer through ``start(reply)``; the reply comes back at once
        (returned as bytes) or later (through the returned future)."""
        now: list[bytes] = []
        later: asyncio.Future[bytes] | None = None

        def reply(found: Any) -> None:
            # Shutdown may have begun while waiting: then say this is the last reply.
            ka = keep_alive and not self.frontend.closing
            try:
                if isinstance(found, ClientError):
                    response = self._failure(found, ka)
                else:
                    response = self._ok(encode(found), ka)
            except Exception as exc:
                if later is None:
                    raise
                if not later.done():
                    later.set_exception(exc)
                return
            if later is None:
                now.append(response)
            elif not later.done():
                later.set_result(response)

        start(reply)
        if now:
            return now[0]
        later = asyncio.get_running_loop().create_future()
        return later

    def _finish(self, slot: list[Any], fut: asyncio.Future[bytes]) -> None:
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

    def _flush(self) -> None:
        """Write every finished reply at the head of the queue, in request order."""
        pending = self._pending
        transport = self.transport
        fe = self.frontend
        while pending and pending[0][0] is not None:
            body, keep_alive, legacy = pending.popleft()
            if transport is None:
                continue
            if legacy and keep_alive:
                body = body.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n", 1)
            transport.write(body)
            fe.counters.bytes_out["http"] += len(body)
            if fe.options.access_log:
                access_log.info("%s %s %d", self.family, self._url[:200].decode("latin-1"),
                                len(body))
            if not keep_alive:
                fe.counters.observe_latency(time.perf_counter() - self._started)
                pending.clear()
                transport.close()
                return
        if not pending and not self._in_request:
            fe.counters.observe_latency(time.perf_counter() - self._started)
            self.idle = True
            self.deadline = time.monotonic() + fe.options.keepalive_timeout
            if fe.closing:
                self.close()

    def _fail(self, status: int) -> None:
        """Answer a request that cannot be parsed, then close: the stream is out of step."""
        counters = self.frontend.counters
        counters.requests["http", self.family, "error"] += 1
        counters.dropped[f"http_{status}"] += 1
        if self.transport is None:
            return
        if self._closing:  # the final reply is already written or due: just end it
            self.transport.close()
            return
        self._closing = True
        reason = _REASONS.get(status, b"Error").decode()
        self._pending.clear()
        self.transport.write(_response(status, f"{reason}\n".encode(), False, b"text/plain"))
        if self.transport.can_write_eof():
            # Lingering close: end our side, then discard what the client is still sending
            # (data_received ignores it) until it closes or the reaper does, a moment later.
            # Closing at once with unread data would reset the connection, and the reset can
            # destroy the error reply before the client reads it.
            self.transport.write_eof()
            self.idle = True
            self.deadline = time.monotonic() + _LINGER
        else:
            self.transport.close()


def parser_name(use_httptools: bool) -> str:
    return PARSER_NAME if use_httptools and httptools is not None else (
        "shoal.protocol.http1 (pure Python fallback)"
    )

