"""The pure-Python HTTP/1.x request parser (the fallback when httptools is missing)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.protocol.http1 import Http1RequestParser, HttpParseError


class Recorder:
    """Collects the callback series; snapshots keep-alive and method at message end."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.parser: Http1RequestParser | None = None
        self.done: list[tuple[bytes, bytes, str, bool]] = []  # method, url, version, keep
        self._url = b""

    def on_message_begin(self) -> None:
        self.events.append("begin")
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self.events.append(("url", url))
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.events.append(("header", name, value))

    def on_headers_complete(self) -> None:
        self.events.append("headers")

    def on_message_complete(self) -> None:
        self.events.append("complete")
        assert self.parser is not None
        p = self.parser
        self.done.append(
            (p.get_method(), self._url, p.get_http_version(), p.should_keep_alive())
        )


def make(**limits: int) -> tuple[Http1RequestParser, Recorder]:
    rec = Recorder()
    parser = Http1RequestParser(rec, **limits)
    rec.parser = parser
    return parser, rec


GET = b"GET /announce?info_hash=%00 HTTP/1.1\r\nHost: t\r\nUser-Agent: x/1\r\n\r\n"


def test_single_request_callback_series() -> None:
    parser, rec = make()
    parser.feed_data(GET)
    assert rec.events == [
        "begin",
        ("url", b"/announce?info_hash=%00"),
        ("header", b"Host", b"t"),
        ("header", b"User-Agent", b"x/1"),
        "headers",
        "complete",
    ]
    assert rec.done == [(b"GET", b"/announce?info_hash=%00", "1.1", True)]


def test_request_without_headers() -> None:
    parser, rec = make()
    parser.feed_data(b"GET / HTTP/1.1\r\n\r\n")
    assert rec.done == [(b"GET", b"/", "1.1", True)]


def test_pipelined_requests_in_one_feed_come_out_in_order() -> None:
    parser, rec = make()
    parser.feed_data(b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(5)))
    assert [url for _, url, _, _ in rec.done] == [b"/0", b"/1", b"/2", b"/3", b"/4"]


def test_byte_at_a_time_feeding_gives_the_same_series() -> None:
    whole, whole_rec = make()
    whole.feed_data(GET + GET)
    split, split_rec = make()
    for i in range(len(GET + GET)):
        split.feed_data((GET + GET)[i : i + 1])
    assert split_rec.events == whole_rec.events
    assert len(split_rec.done) == 2


@given(st.lists(st.integers(1, 40), max_size=30))
def test_any_split_of_pipelined_requests_gives_the_same_series(cuts: list[int]) -> None:
    data = GET + b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET
    expected, expected_rec = make()
    expected.feed_data(data)
    parser, rec = make()
    pos = 0
    for cut in cuts:
        parser.feed_data(data[pos : pos + cut])
        pos += cut
    parser.feed_data(data[pos:])
    assert rec.events == expected_rec.events
    assert rec.done == expected_rec.done


def test_message_begins_with_the_first_byte_like_httptools() -> None:
    # A server times a slow request from its first byte, so a half-sent request is not idle.
    parser, rec = make()
    parser.feed_data(b"G")
    assert rec.events == ["begin"]
    parser.feed_data(b"ET / HTTP/1.1\r\n\r\n")
    assert rec.events == ["begin", ("url", b"/"), "headers", "complete"]


def test_empty_lines_before_a_request_are_skipped() -> None:
    parser, rec = make()
    parser.feed_data(b"\r\n")
    assert rec.events == []
    parser.feed_data(b"\r\nGET / HTTP/1.1\r\n\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
    assert [url for _, url, _, _ in rec.done] == [b"/", b"/2"]


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"HTTP/1.1", None, True),
        (b"HTTP/1.1", b"close", False),
        (b"HTTP/1.1", b"Close", False),
        (b"HTTP/1.1", b"keep-alive", True),
        (b"HTTP/1.1", b"TE, close", False),
        (b"HTTP/1.0", None, False),
        (b"HTTP/1.0", b"keep-alive", True),
        (b"HTTP/1.0", b"Keep-Alive", True),
        (b"HTTP/1.0", b"close", False),
    ],
)
def test_keep_alive_rules(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    parser, rec = make()
    head = b"GET / " + version + b"\r\n"
    if connection is not None:
        head += b"Connection: " + connection + b"\r\n"
    parser.feed_data(head + b"\r\n")
    assert rec.done == [(b"GET", b"/", version[5:].decode(), keep_alive)]


def test_keep_alive_is_decided_per_request() -> None:
    parser, rec = make()
    parser.feed_data(b"GET /1 HTTP/1.1\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
    assert [keep for *_, keep in rec.done] == [False, True]


def test_body_with_content_length_is_skipped() -> None:
    parser, rec = make()
    parser.feed_data(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel")
    assert "complete" not in rec.events
    parser.feed_data(b"loGET /y HTTP/1.1\r\n\r\n")
    assert rec.done == [(b"POST", b"/x", "1.1", True), (b"GET", b"/y", "1.1", True)]


def test_zero_content_length() -> None:
    parser, rec = make()
    parser.feed_data(b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert rec.done == [(b"POST", b"/x", "1.1", True)]


@pytest.mark.parametrize("length", [b"65537", b"1" * 19, b"9" * 5000])
def test_a_body_over_the_limit_is_413(length: bytes) -> None:
    parser, _ = make()
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(b"POST / HTTP/1.1\r\nContent-Length: " + length + b"\r\n\r\n")
    assert info.value.status == 413


def test_a_long_request_line_is_414_before_the_line_ends() -> None:
    parser, _ = make(max_request_line=100)
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(b"GET /" + b"a" * 200)
    assert info.value.status == 414


def test_a_long_request_line_is_414_in_a_complete_request() -> None:
    parser, _ = make(max_request_line=100)
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n\r\n")
    assert info.value.status == 414


def test_a_request_line_at_the_limit_is_accepted() -> None:
    line = b"GET /" + b"a" * 82 + b" HTTP/1.1"
    assert len(line) == 96
    parser, rec = make(max_request_line=96)
    parser.feed_data(line + b"\r\n\r\n")
    assert len(rec.done) == 1


def test_headers_over_the_limit_are_431() -> None:
    parser, _ = make(max_request_line=100, max_head=300)
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 50)
    assert info.value.status == 431


def test_one_endless_header_is_431() -> None:
    parser, _ = make(max_request_line=100, max_head=300)
    with pytest.raises(HttpParseError) as info:
        for _ in range(10):
            parser.feed_data(b"GET / HTTP/1.1\r\nX: " if _ == 0 else b"a" * 100)
    assert info.value.status == 431


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /\r\n\r\n", id="no-version"),
        pytest.param(b"GET\r\n\r\n", id="method-only"),
        pytest.param(b"GET / HTTP/1.1 extra\r\n\r\n", id="four-parts"),
        pytest.param(b"get / HTTP/1.1\r\n\r\n", id="lower-case-method"),
        pytest.param(b"G\xc3\x89T / HTTP/1.1\r\n\r\n", id="non-ascii-method"),
        pytest.param(b" / HTTP/1.1\r\n\r\n", id="empty-method"),
        pytest.param(b"GET / FTP/1.1\r\n\r\n", id="not-http"),
        pytest.param(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", id="header-without-colon"),
        pytest.param(b"GET / HTTP/1.1\r\n: v\r\n\r\n", id="empty-header-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", id="space-before-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", id="obsolete-folding"),
        pytest.param(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", id="negative-length"),
        pytest.param(b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", id="bad-length"),
    ],
)
def test_malformed_requests_are_400(head: bytes) -> None:
    parser, _ = make()
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(head)
    assert info.value.status == 400


def test_unsupported_http_version_is_505() -> None:
    parser, _ = make()
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(b"GET / HTTP/2.0\r\n\r\n")
    assert info.value.status == 505


def test_chunked_request_bodies_are_501() -> None:
    parser, _ = make()
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert info.value.status == 501


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_http_parse_error(data: bytes) -> None:
    parser, _ = make(max_request_line=64, max_head=128)
    try:
        parser.feed_data(data)
    except HttpParseError as exc:
        assert exc.status in (400, 413, 414, 431, 501, 505)


# Refused as llhttp refuses them, and as soon as the offending byte arrives: a client must
# not hold a connection until its deadline with bytes that can never become a request.


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-client-hello"),
        pytest.param(b"PRI * HTTP/2.0\r\n", id="http2-preface-line"),
        pytest.param(b"PRI ", id="http2-preface-start"),
        pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n", id="ssh-banner"),
        pytest.param(b"\x00\x00\x00", id="nul-bytes"),
        pytest.param(b"GETTINGLONGERTHANANYMETHOD", id="method-too-long"),
        pytest.param(b"GET /a\x00b", id="nul-in-target"),
        pytest.param(b"GET /a\rb HTTP/1.1", id="cr-in-target"),
        pytest.param(b"GET /a\x1b[2Jb", id="escape-in-target"),
        pytest.param(b"GET /a\x7fb", id="del-in-target"),
        pytest.param(b"GET /a\xc3\xa9", id="non-ascii-in-target"),
        pytest.param(b"GET /a FTP/1.1", id="not-http-version"),
        pytest.param(b"GET /a HTTP/1.1x", id="junk-after-version"),
        pytest.param(b"GET / HTTP/1.1\r", id="bare-cr-then-more"),
    ],
)
def test_a_request_line_that_cannot_become_http_is_400_before_the_head_ends(
    start: bytes,
) -> None:
    parser, _ = make()
    data = start + b"x" if start.endswith(b"\r") else start
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(data)
    assert info.value.status == 400


def test_every_prefix_of_a_valid_request_line_is_kept_waiting() -> None:
    line = b"GET /announce?info_hash=%00&port=1 HTTP/1.1\r\n"
    for end in range(1, len(line) + 1):
        parser, rec = make()
        parser.feed_data(line[:end])  # no error: it may still become a request
        assert rec.events[0] == "begin"
        assert "complete" not in rec.events


@pytest.mark.parametrize(
    "target", [b"/a\x01b", b"/a\tb", b"/a\x7fb", b"/a\x80b", b"/\xff"],
    ids=["control", "tab", "del", "high", "ff"],
)
def test_a_complete_request_with_a_bad_byte_in_the_target_is_400(target: bytes) -> None:
    parser, rec = make()
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(b"GET " + target + b" HTTP/1.1\r\n\r\n")
    assert info.value.status == 400
    assert not [e for e in rec.events if isinstance(e, tuple) and e[0] == "url"]


def test_an_http2_preface_is_400() -> None:
    parser, _ = make()
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert info.value.status == 400


@pytest.mark.parametrize(
    "lengths", [(b"5", b"5"), (b"5", b"6"), (b"0", b"0")], ids=["same", "conflicting", "zero"]
)
def test_a_repeated_content_length_is_400(lengths: tuple[bytes, bytes]) -> None:
    parser, rec = make()
    head = b"POST / HTTP/1.1\r\n" + b"".join(b"Content-Length: " + n + b"\r\n" for n in lengths)
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(head + b"\r\nabcdef")
    assert info.value.status == 400
    assert "complete" not in rec.events


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"X: a\x00b", id="nul-in-value"),
        pytest.param(b"X: a\x1bb", id="escape-in-value"),
        pytest.param(b"X: a\x7fb", id="del-in-value"),
        pytest.param(b"X: a\rb", id="bare-cr-in-value"),
        pytest.param(b"X\x01: ab", id="control-in-name"),
        pytest.param(b"X(1): ab", id="separator-in-name"),
    ],
)
def test_a_header_with_a_control_byte_or_a_non_token_name_is_400(header: bytes) -> None:
    parser, _ = make()
    with pytest.raises(HttpParseError) as info:
        parser.feed_data(b"GET / HTTP/1.1\r\n" + header + b"\r\n\r\n")
    assert info.value.status == 400


def test_header_values_may_hold_tabs_and_non_ascii_bytes_as_in_llhttp() -> None:
    parser, rec = make()
    parser.feed_data(b"GET / HTTP/1.1\r\nUser-Agent: a\tb \xc3\xa9\r\n\r\n")
    assert ("header", b"User-Agent", b"a\tb \xc3\xa9") in rec.events
    assert len(rec.done) == 1
