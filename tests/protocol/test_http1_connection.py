"""The HTTP/1.x connection as events, without sockets: bytes in, requests, errors and
upgrades out, under the request limits, with httptools and with the pure-Python parser."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.protocol.http1 import (
    HAVE_HTTPTOOLS,
    Http1Connection,
    HttpError,
    HttpEvent,
    Request,
    Upgrade,
)

PARSERS = [
    pytest.param(True, id="httptools",
                 marks=pytest.mark.skipif(not HAVE_HTTPTOOLS, reason="httptools not installed")),
    pytest.param(False, id="python"),
]


@pytest.fixture(params=PARSERS)
def use_httptools(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def get(target: str, version: str = "HTTP/1.1", headers: str = "") -> bytes:
    return f"GET {target} {version}\r\nHost: tracker\r\n{headers}\r\n".encode()


def connection(use_httptools: bool, **limits: Any) -> Http1Connection:
    return Http1Connection(use_httptools=use_httptools, **limits)


def take(conn: Http1Connection, chunk: bytes, now: float) -> list[HttpEvent]:
    """The events ``chunk`` completes."""
    conn.receive(chunk, now)
    events = list(conn.events)
    conn.events.clear()
    return events


def feed(conn: Http1Connection, *chunks: bytes, now: float = 1.0) -> list[HttpEvent]:
    events: list[HttpEvent] = []
    for chunk in chunks:
        events += take(conn, chunk, now)
    return events


def test_a_request_is_one_event_with_its_method_target_and_keep_alive(
    use_httptools: bool,
) -> None:
    events = feed(connection(use_httptools), get("/announce?x=1"), now=7.5)
    assert events == [Request(b"GET", b"/announce?x=1", None, True, False, 7.5)]


def test_a_request_in_pieces_comes_out_once_complete_timed_from_its_first_byte(
    use_httptools: bool,
) -> None:
    conn = connection(use_httptools)
    data = get("/scrape")
    assert take(conn, data[:5], 1.0) == []
    assert conn.in_request
    assert take(conn, data[5:20], 2.0) == []
    assert take(conn, data[20:], 3.0) == [Request(b"GET", b"/scrape", None, True, False, 1.0)]
    assert not conn.in_request


def test_pipelined_requests_come_out_in_order(use_httptools: bool) -> None:
    events = feed(connection(use_httptools), get("/a") + get("/b") + get("/c"))
    assert [e.target for e in events] == [b"/a", b"/b", b"/c"]


def test_connection_close_ends_the_stream_and_later_requests_are_ignored(
    use_httptools: bool,
) -> None:
    conn = connection(use_httptools)
    events = feed(conn, get("/", headers="Connection: close\r\n") + get("/announce?x"))
    assert events == [Request(b"GET", b"/", None, False, False, 1.0)]
    assert conn.input_closed
    assert take(conn, get("/more"), 2.0) == []


def test_http_1_0_does_not_keep_alive_unless_it_asks(use_httptools: bool) -> None:
    plain = feed(connection(use_httptools), get("/", "HTTP/1.0"))
    asked = feed(connection(use_httptools), get("/", "HTTP/1.0", "Connection: keep-alive\r\n"))
    assert plain == [Request(b"GET", b"/", None, False, True, 1.0)]
    assert asked == [Request(b"GET", b"/", None, True, True, 1.0)]


def test_the_real_ip_header_is_read_only_when_asked_and_repeats_are_joined(
    use_httptools: bool,
) -> None:
    data = get("/", headers="X-Real: 1.2.3.4\r\nx-real: 5.6.7.8\r\n")
    asked = feed(connection(use_httptools, real_ip_header=b"x-real"), data)
    assert asked[0].real_ip == b"1.2.3.4,5.6.7.8"  # type: ignore[union-attr]
    assert feed(connection(use_httptools), data)[0].real_ip is None  # type: ignore[union-attr]


def test_a_request_line_within_the_limit_is_a_request(use_httptools: bool) -> None:
    events = feed(connection(use_httptools, max_request_line=1024), get("/x?" + "a" * 900))
    assert [type(e) for e in events] == [Request]


def test_an_oversize_request_line_is_414(use_httptools: bool) -> None:
    conn = connection(use_httptools, max_request_line=1024)
    events = feed(conn, get("/announce?" + "a" * 2000), now=4.0)
    assert len(events) == 1 and isinstance(events[0], HttpError)
    assert events[0].status == 414
    assert events[0].started == 4.0  # the unfinished request's, for the access log
    assert conn.input_closed


def test_too_many_headers_is_431(use_httptools: bool) -> None:
    conn = connection(use_httptools, max_headers=10)
    ok = feed(conn, get("/", headers="".join(f"X-{i}: y\r\n" for i in range(8))))
    assert [type(e) for e in ok] == [Request]
    bad = feed(conn, get("/", headers="".join(f"X-{i}: y\r\n" for i in range(20))))
    assert bad == [HttpError(431, b"/", 1.0)]


def test_too_many_header_bytes_is_431(use_httptools: bool) -> None:
    conn = connection(use_httptools, max_header_bytes=2000)
    events = feed(conn, get("/", headers="".join(f"X-{i}: {'v' * 200}\r\n" for i in range(20))))
    assert [(type(e), getattr(e, "status", None)) for e in events] == [(HttpError, 431)]


def test_one_endless_header_is_431_once_past_the_head_limit_not_buffered(
    use_httptools: bool,
) -> None:
    conn = connection(use_httptools, max_request_line=1024, max_header_bytes=2000)
    events = take(conn, b"GET / HTTP/1.1\r\nX-Long: ", 1.0)
    fed = 0
    while not events and fed < 1 << 20:
        events = take(conn, b"v" * 4096, 1.0)
        fed += 4096
    assert [getattr(e, "status", None) for e in events] == [431]
    assert fed <= 8192  # decided within a chunk or two of the 3 KB limit


def test_a_body_beyond_the_limit_is_413(use_httptools: bool) -> None:
    events = feed(connection(use_httptools), b"GET / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n"
                  + b"x" * 70000)
    assert [getattr(e, "status", None) for e in events] == [413]


def test_a_malformed_request_is_400_between_requests(use_httptools: bool) -> None:
    events = feed(connection(use_httptools), b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n")
    assert [getattr(e, "status", None) for e in events] == [400]


def test_requests_before_an_error_come_out_before_it(use_httptools: bool) -> None:
    events = feed(connection(use_httptools), get("/a") + b"\x16\x03\x01 not http\r\n\r\n")
    assert [type(e) for e in events] == [Request, HttpError]


def test_nothing_comes_out_after_an_error(use_httptools: bool) -> None:
    conn = connection(use_httptools)
    feed(conn, b"\x16\x03\x01\x02\x00")
    assert take(conn, get("/"), 2.0) == []


def test_a_websocket_upgrade_is_one_upgrade_event_with_headers_and_what_followed(
    use_httptools: bool,
) -> None:
    conn = connection(use_httptools)
    head = (b"GET /announce HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: abc\r\n\r\n")
    events = feed(conn, head + b"\x81\x00", now=3.0)
    assert events == [Upgrade(b"GET", b"/announce", (
        (b"Host", b"t"), (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", b"abc")), b"\x81\x00", 3.0)]
    assert conn.input_closed
    assert take(conn, get("/"), 4.0) == []  # no more HTTP on it


def test_an_upgrade_pipelined_after_connection_close_is_ignored(use_httptools: bool) -> None:
    conn = connection(use_httptools)
    upgrade = (b"GET /announce HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    events = feed(conn, get("/", headers="Connection: close\r\n") + upgrade)
    assert events == [Request(b"GET", b"/", None, False, False, 1.0)]


def test_an_upgrade_to_a_target_with_a_query_is_answered_then_refused(
    use_httptools: bool,
) -> None:
    """Fields are kept only for targets without a query (a WebSocket handshake's): such a
    request is taken for a plain one, then the stream ends with 400 (as before upgrades
    were handled)."""
    events = feed(connection(use_httptools), b"GET /announce?a=1 HTTP/1.1\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert [type(e) for e in events] == [Request, HttpError]
    assert events[1] == HttpError(400, b"", None)  # (between requests)


def test_an_upgrade_header_without_connection_upgrade_is_a_plain_request(
    use_httptools: bool,
) -> None:
    events = feed(connection(use_httptools), get("/", headers="Upgrade: h2c\r\n"))
    assert [type(e) for e in events] == [Request]


@given(st.lists(st.sampled_from(["/announce?a=1", "/scrape", "/", "/x%20y"]), min_size=1,
                max_size=6), st.data())
def test_any_split_of_a_pipeline_gives_the_same_requests(targets: list[str],
                                                         data: st.DataObject) -> None:
    stream = b"".join(get(t) for t in targets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    for use_httptools in (True, False):
        if use_httptools and not HAVE_HTTPTOOLS:
            continue
        events = feed(connection(use_httptools), *chunks)
        assert [e.target for e in events] == [t.encode() for t in targets]
        assert all(type(e) is Request for e in events)
