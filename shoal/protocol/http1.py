"""A small HTTP/1.x request parser: the fallback where httptools cannot be installed.

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
from typing import Protocol


class HttpParseError(Exception):
    """A request that cannot be parsed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpUpgradeRequested(Exception):
    """The signal that a request asked to switch protocols (as httptools'
    ``HttpParserUpgrade``, raised after its ``on_message_complete``); ``rest`` holds the
    bytes that followed its head (the new protocol's)."""

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
