"""The HTTP/1.x connection as events (h11-style, no IO): bytes in, events out.

:class:`Http1Connection` turns the bytes of one connection into :class:`Request`,
:class:`HttpError` (the status to answer before closing) and :class:`Upgrade` events, under
the request limits; the server writes the replies and keeps the time. It parses with
httptools (llhttp) when it is installed, else with :class:`Http1RequestParser` below.

A small HTTP/1.x request parser: the fallback where httptools cannot be installed.

It offers the subset of httptools' ``HttpRequestParser`` interface the server uses (the same
callbacks: ``on_message_begin``, ``on_url``, ``on_header``, ``on_headers_complete``,
``on_message_complete``), so the server is written once. Tracker requests are small GETs,
so it handles request lines, headers and ``Content-Length`` bodies; chunked request bodies
are refused. Limits raise :class:`HttpParseError` with the status to answer. As in
httptools, ``on_message_begin`` comes with a request's first byte (so a server can time a
request that arrives slowly) and empty lines before a request line are skipped.

It refuses what llhttp refuses, and as early: a request line that cannot become HTTP (a TLS
ClientHello, an HTTP/2 preface, a method that is not one upper-case token, a control byte,
space or non-ASCII byte in the target) fails as soon as the offending byte arrives, not when
the head is complete or its deadline passes; header names must be tokens, header values
free of control bytes, and ``Content-Length`` given once.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Protocol

try:
    import httptools

    PARSER_NAME = "httptools"
    _ParserError: tuple[type[Exception], ...] = (httptools.HttpParserError,)
    _Upgrade: tuple[type[Exception], ...] = (httptools.HttpParserUpgrade,)
except ImportError:  # pragma: no cover - exercised by the fallback tests directly
    httptools = None  # type: ignore[assignment]
    PARSER_NAME = "shoal.protocol.http1 (pure Python fallback)"
    _ParserError = ()
    _Upgrade = ()

FALLBACK_NAME = "shoal.protocol.http1 (pure Python fallback)"
HAVE_HTTPTOOLS = httptools is not None


class HttpParseError(Exception):
    """A request that cannot be parsed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpUpgradeRequested(Exception):
    """The fallback parser's signal that a request asked to switch protocols; ``rest``
    holds the bytes that followed its head (the new protocol's)."""

    def __init__(self, rest: bytes) -> None:
        super().__init__("upgrade")
        self.rest = rest


class ParserCallbacks(Protocol):
    def on_message_begin(self) -> None: ...
    def on_url(self, url: bytes) -> None: ...
    def on_header(self, name: bytes, value: bytes) -> None: ...
    def on_headers_complete(self) -> None: ...
    def on_message_complete(self) -> None: ...


_METHOD_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_MAX_METHOD = 20  # llhttp's longest method (MKCALENDAR, VERSION-CONTROL...) is shorter
# What a request line can start with and still become a valid one: a method, a target of
# visible ASCII, the beginning of "HTTP/d.d".
_LINE_START = re.compile(
    rb"[A-Z]{1,%d}(?: [\x21-\x7e]*(?: (?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.[0-9]?)?)?)?)?)?)?)?)?)?"
    % _MAX_METHOD
)
_TARGET = re.compile(rb"[\x21-\x7e]+")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class Http1RequestParser:
    """Incremental parser: feed bytes as they arrive, get one callback series per request."""

    def __init__(
        self,
        callbacks: ParserCallbacks,
        max_request_line: int = 8192,
        max_head: int = 24576,
        max_body: int = 65536,
    ) -> None:
        self._cb = callbacks
        self._buf = b""
        self._body_left = 0
        self._in_message = False
        self._line_checked = False  # the current request line is whole and was checked
        self._max_line = max_request_line
        self._max_head = max_head
        self._max_body = max_body
        self._version = "1.1"
        self._method = b""
        self._keep_alive = True
        self._upgrade = False

    def get_http_version(self) -> str:
        return self._version

    def get_method(self) -> bytes:
        return self._method

    def should_keep_alive(self) -> bool:
        return self._keep_alive

    def should_upgrade(self) -> bool:
        """The request just completed asks to switch protocols (``Upgrade`` header with
        ``Connection: upgrade``, no body), as llhttp decides it."""
        return self._upgrade

    def feed_data(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while buf:
            if self._body_left:
                taken = min(self._body_left, len(buf))
                self._body_left -= taken
                buf = buf[taken:]
                if not self._body_left:
                    self._complete()
                continue
            if not self._in_message:
                buf = buf.lstrip(b"\r\n")  # RFC 9112 2.2: skip empty lines before a request
                if not buf:
                    break
                self._in_message = True
                self._line_checked = False
                self._cb.on_message_begin()
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                line_end = buf.find(b"\r\n")
                if not self._line_checked:  # (once whole, not again for every header byte)
                    self._check_line_start(buf if line_end < 0 else buf[:line_end])
                    self._line_checked = line_end >= 0
                # Limits count what the head will be, not a line break cut in half, so a
                # request is judged the same however the stream is split.
                line = len(buf) - buf.endswith(b"\r") if line_end < 0 else line_end
                if line > self._max_line:
                    raise HttpParseError(414, "request line too long")
                if len(buf.rstrip(b"\r\n")) > self._max_head:
                    raise HttpParseError(431, "request headers too large")
                break
            head = buf[:end]
            buf = buf[end + 4 :]
            self._parse_head(head)
            if self._upgrade:
                self._buf = b""
                raise HttpUpgradeRequested(buf)
        self._buf = buf

    def _check_line_start(self, line: bytes) -> None:
        """Fail now if the request line received so far cannot become a valid one."""
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.startswith(b"PRI "):
            raise HttpParseError(400, "HTTP/2 is not supported")
        # A prefix of a valid start is one too, so the check stops at the length limit.
        if _LINE_START.fullmatch(line[: self._max_line]) is None:
            raise HttpParseError(400, "malformed request line")

    def _parse_head(self, head: bytes) -> None:
        if len(head) > self._max_head:
            raise HttpParseError(431, "request headers too large")
        lines = head.split(b"\r\n")
        request_line = lines[0]
        if len(request_line) > self._max_line:
            raise HttpParseError(414, "request line too long")
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _METHOD_CHARS:
            raise HttpParseError(400, "malformed request line")
        method, url, version = parts
        if method == b"PRI":
            raise HttpParseError(400, "HTTP/2 is not supported")
        if len(method) > _MAX_METHOD or _TARGET.fullmatch(url) is None:
            raise HttpParseError(400, "malformed request line")
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise HttpParseError(505 if version.startswith(b"HTTP/") else 400, "bad version")
        self._method = method
        self._version = version[5:].decode()
        keep_alive = version == b"HTTP/1.1"
        connection_upgrade = has_upgrade = False
        content_length = -1
        cb = self._cb
        cb.on_url(url)
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:
                raise HttpParseError(400, "malformed header")
            value = value.strip(b" \t")
            if _VALUE_CONTROL.search(value) is not None:
                raise HttpParseError(400, "control byte in a header value")
            lname = name.lower()
            if lname == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
                connection_upgrade = connection_upgrade or b"upgrade" in tokens
            elif lname == b"upgrade":
                has_upgrade = True
            elif lname == b"content-length":
                if content_length >= 0:
                    raise HttpParseError(400, "duplicate Content-Length")
                if not value.isdigit():
                    raise HttpParseError(400, "bad Content-Length")
                if len(value) > 18 or int(value) > self._max_body:
                    raise HttpParseError(413, "request body too large")
                content_length = int(value)
            elif lname == b"transfer-encoding":
                raise HttpParseError(501, "request bodies with Transfer-Encoding are not accepted")
            cb.on_header(name, value)
        self._keep_alive = keep_alive
        self._upgrade = connection_upgrade and has_upgrade and content_length <= 0
        cb.on_headers_complete()
        if content_length > 0:
            self._body_left = content_length
        else:
            self._complete()

    def _complete(self) -> None:
        self._in_message = False
        self._cb.on_message_complete()


# -- the connection as events -------------------------------------------------------------

MAX_BODY = 65536


class Request(NamedTuple):
    """A complete request to answer. ``real_ip`` is the configured real-IP header (its
    values joined by commas, None when absent or not asked for); ``keep_alive`` says whether
    the connection stays open after the reply, ``legacy`` that it is HTTP/1.0 (whose
    keep-alive reply must say so); ``started`` is the time of its first byte."""

    method: bytes
    target: bytes
    real_ip: bytes | None
    keep_alive: bool
    legacy: bool
    started: float


class HttpError(NamedTuple):
    """The input cannot be parsed (or breaks a limit): answer ``status``, then close, the
    stream being out of step. ``target`` and ``started`` are the unfinished request's (empty
    and None when the error came between requests)."""

    status: int
    target: bytes
    started: float | None


class Upgrade(NamedTuple):
    """A request asked to switch protocols (``Upgrade`` with ``Connection: upgrade``); no
    more HTTP follows. ``rest`` holds the bytes after its head, the new protocol's."""

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    rest: bytes
    started: float


HttpEvent = Request | HttpError | Upgrade


class Http1Connection:
    """One HTTP/1.x connection's input, as events: :meth:`receive` takes the bytes read and
    the time, and hands each event they complete, in order, to :meth:`handle_request`,
    :meth:`handle_error` or :meth:`handle_upgrade` (called while parsing, so a reply can go
    out before the next request is read). Here they are kept in :attr:`events`, for the
    caller to take after each :meth:`receive` (h11-style); a server subclasses this and
    overrides the three to act at once, which keeps the announce path free of an event
    object and a call per request (measured: that indirection cost 2-3% of an announce).
    Limits: the request line (414), header count and bytes (431), a body (413); an error
    ends the stream, as do a request that does not keep the connection alive (input after
    it is ignored) and an upgrade. The caller owns sockets, deadlines and replies; it stops
    calling :meth:`receive` when it wants to parse no further (backpressure), keeping the
    bytes."""

    __slots__ = (
        "_body", "_fields", "_head_bytes", "_header_bytes", "_headers", "_max_header_bytes",
        "_max_headers", "_max_request_line", "_now", "_parser", "_real_ip_header",
        "_use_httptools", "begun",
        "events", "head_done", "in_request", "input_closed", "messages", "real_ip", "target",
    )

    def __init__(
        self,
        max_request_line: int = 8192,
        max_header_bytes: int = 16384,
        max_headers: int = 64,
        real_ip_header: bytes | None = None,
        use_httptools: bool = True,
    ) -> None:
        self.events: list[HttpEvent] = []
        self._max_request_line = max_request_line
        self._max_header_bytes = max_header_bytes
        self._max_headers = max_headers
        self._real_ip_header = real_ip_header  # lower case; None: not looked for
        self._now = 0.0
        self.input_closed = False  # no more events: the stream ended, broke or switched
        self.in_request = False  # a request has begun and is not yet complete
        self.head_done = False  # ... and its head is complete
        self.messages = 0
        self.begun = 0.0  # the time of the current request's first byte
        self.target = b""
        self.real_ip: bytes | None = None
        self._headers = 0
        self._header_bytes = 0
        self._head_bytes = 0  # bytes of an unfinished head, counted in whole chunks
        self._body = 0
        # The current head's fields, kept only where a target has no query, as a WebSocket
        # handshake's has not (keeping every tracker request's cost 0.6% of an announce).
        self._fields: list[tuple[bytes, bytes]] | None = None
        # Made on the first input (a connection whose requests the compiled data plane
        # answers never needs one: making it was a tenth of a short connection's cost).
        self._parser: Any = None
        self._use_httptools = use_httptools and httptools is not None

    def _new_parser(self) -> Any:
        if self._use_httptools:
            return httptools.HttpRequestParser(self)
        return Http1RequestParser(self, self._max_request_line,
                                  self._max_request_line + self._max_header_bytes, MAX_BODY)

    # the events (kept here; a server overrides these)

    def handle_request(self, method: bytes, target: bytes, real_ip: bytes | None,
                       keep_alive: bool, legacy: bool, started: float) -> None:
        """A complete request (the fields of :class:`Request`)."""
        self.events.append(Request(method, target, real_ip, keep_alive, legacy, started))

    def handle_error(self, status: int, target: bytes, started: float | None) -> None:
        """Input that cannot be parsed or breaks a limit (the fields of :class:`HttpError`)."""
        self.events.append(HttpError(status, target, started))

    def handle_upgrade(self, method: bytes, target: bytes,
                       headers: tuple[tuple[bytes, bytes], ...], rest: bytes,
                       started: float) -> None:
        """A request to switch protocols (the fields of :class:`Upgrade`)."""
        self.events.append(Upgrade(method, target, headers, rest, started))

    def receive(self, data: bytes, now: float) -> None:
        """Parse ``data``, read at time ``now``, handing on the events it completes."""
        if self.input_closed:
            return
        self._now = now
        in_head, messages = self.in_request and not self.head_done, self.messages
        parser = self._parser
        if parser is None:
            parser = self._parser = self._new_parser()
        try:
            parser.feed_data(data)
            if self.in_request and not self.head_done:
                # httptools buffers a header line whole before calling back, so bound the
                # head here: count every chunk that fell entirely inside the same head.
                if in_head and messages == self.messages:
                    self._head_bytes += len(data)
                    if self._head_bytes > self._max_request_line + self._max_header_bytes:
                        raise HttpParseError(431, "request headers too large")
                else:
                    self._head_bytes = 0
        except HttpParseError as exc:
            self._error(exc.status)
        except HttpUpgradeRequested as exc:
            self._upgrade(exc.rest)
        except _Upgrade as exc:  # httptools': the offset of what follows the head
            self._upgrade(data[exc.args[0] :])
        except _ParserError as exc:
            # httptools wraps an error raised in a callback (a limit) in its own.
            cause = exc.__context__
            self._error(cause.status if isinstance(cause, HttpParseError) else 400)

    def end_input(self) -> None:
        """No more input (the connection is gone): drop the parser, which refers back, so
        nothing waits for the cyclic garbage collector."""
        self.input_closed = True
        self._parser = None

    def _error(self, status: int) -> None:
        if self.input_closed:
            return  # after the last request: its reply ends the connection anyway
        self.input_closed = True
        begun = self.in_request
        self.handle_error(status, self.target if begun else b"", self.begun if begun else None)

    def _upgrade(self, rest: bytes) -> None:
        if self._fields is None:
            # Taken for a plain request (its target has a query): refused, as before.
            self._error(400)
            return
        if self.input_closed:
            return  # it came after a request that ended the stream
        self.input_closed = True
        self.handle_upgrade(self._parser.get_method(), self.target, tuple(self._fields), rest,
                            self.begun)

    # parser callbacks

    def on_message_begin(self) -> None:
        self.in_request = True
        self.head_done = False
        self._head_bytes = 0
        self.messages += 1
        self.target = b""
        self._headers = 0
        self._header_bytes = 0
        self._body = 0
        self.real_ip = None
        self.begun = self._now

    def on_url(self, url: bytes) -> None:
        target = self.target = self.target + url
        if len(target) > self._max_request_line:
            raise HttpParseError(414, "request line too long")
        self._fields = None if b"?" in target else []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._headers > self._max_headers or self._header_bytes > self._max_header_bytes:
            raise HttpParseError(431, "request headers too large")
        fields = self._fields
        if fields is not None:
            fields.append((name, value))
        if self._real_ip_header is not None and name.lower() == self._real_ip_header:
            # A field value has no whitespace at its ends (RFC 9110 5.5): llhttp drops the
            # leading but keeps the trailing, which the fallback parser and C both drop.
            value = value.rstrip(b" \t")
            self.real_ip = value if self.real_ip is None else self.real_ip + b"," + value

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        if self._body > MAX_BODY:
            raise HttpParseError(413, "request body too large")

    def on_message_complete(self) -> None:
        self.in_request = False
        if self.input_closed:
            return  # pipelined after a request that ends the connection: not answered
        parser = self._parser
        if self._fields is not None and parser.should_upgrade():
            return  # the parser signals it next (an Upgrade event)
        keep_alive = parser.should_keep_alive()
        if not keep_alive:
            self.input_closed = True
        self.handle_request(parser.get_method(), self.target, self.real_ip, keep_alive,
                            parser.get_http_version() == "1.0", self.begun)
