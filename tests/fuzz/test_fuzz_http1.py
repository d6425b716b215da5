"""Fuzzing the fallback HTTP/1 request parser (shoal.protocol.http1).

Any byte stream, cut anywhere, raises nothing but HttpParseError; and a stream gives the
same callbacks (and the same error, if any) whether it arrives in one piece or in many.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.protocol.http1 import Http1RequestParser, HttpParseError

from .corpus import FUZZ, seeds

# Small limits, so that random streams reach them.
LIMITS = {"max_request_line": 64, "max_head": 256, "max_body": 64}


class Recorder:
    """Every callback, with the parser's view at the end of each message."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.parser: Http1RequestParser | None = None

    def on_message_begin(self) -> None:
        self.events.append("begin")

    def on_url(self, url: bytes) -> None:
        self.events.append(("url", url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.events.append(("header", name, value))

    def on_headers_complete(self) -> None:
        self.events.append("headers")

    def on_message_complete(self) -> None:
        assert self.parser is not None
        p = self.parser
        self.events.append(
            ("complete", p.get_method(), p.get_http_version(), p.should_keep_alive())
        )


def feed(chunks: list[bytes], limits: dict[str, int]) -> tuple[list[object], int | None]:
    """The callbacks and the error status (None: no error) of feeding ``chunks`` in turn;
    the first error ends the stream, as it ends the connection in the server."""
    rec = Recorder()
    parser = Http1RequestParser(rec, **limits)
    rec.parser = parser
    for chunk in chunks:
        try:
            parser.feed_data(chunk)
        except HttpParseError as exc:
            assert exc.status in (400, 413, 414, 431, 501, 505)
            return rec.events, exc.status
    return rec.events, None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def check_stream(data: bytes, cuts: list[int], limits: dict[str, int]) -> None:
    whole = feed([data], limits)
    assert feed(split(data, cuts), limits) == whole
    assert feed([data[i : i + 1] for i in range(len(data))], limits) == whole


# HTTP-ish streams: request lines and headers built from pieces that matter to the parser.
methods = st.sampled_from([b"GET", b"POST", b"HEAD", b"get", b"G ET", b"", b"PRI", b"\x16\x03"])
urls = st.one_of(
    st.sampled_from([b"/announce?info_hash=%00", b"/", b"*", b"/a b", b"/\x00", b"/\r", b""]),
    st.binary(max_size=20).map(lambda b: b"/" + b),
)
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "])
header_names = st.sampled_from(
    [b"Host", b"Connection", b"Content-Length", b"Transfer-Encoding", b"X", b" Host", b"",
     b"Host ", b"content-length"]
)
header_values = st.one_of(
    st.sampled_from([b"close", b"keep-alive", b"Keep-Alive, Upgrade", b"0", b"5", b"64",
                     b"65", b"-1", b"+5", b"99999999999999999999", b"chunked", b"", b" x "]),
    st.binary(max_size=12).filter(lambda b: b"\r\n" not in b),
)
headers = st.lists(
    st.one_of(
        st.tuples(header_names, header_values).map(lambda nv: nv[0] + b":" + nv[1]),
        st.binary(max_size=10).filter(lambda b: b"\r\n" not in b),
    ),
    max_size=5,
)
requests = st.tuples(
    st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n"]),
    methods, urls, versions, headers, st.binary(max_size=8),
).map(
    lambda r: r[0] + r[1] + b" " + r[2] + b" " + r[3] + b"\r\n"
    + b"".join(h + b"\r\n" for h in r[4]) + b"\r\n" + r[5]
)
streams = st.one_of(st.binary(max_size=400), st.lists(requests, max_size=4).map(b"".join))
cut_points = st.lists(st.integers(0, 10_000), max_size=8)


@FUZZ
@given(streams, cut_points)
@example(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", [3])  # a TLS ClientHello's start
@example(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [5, 17])  # the HTTP/2 preface
def test_any_stream_raises_only_http_parse_error_and_splits_do_not_matter(
    data: bytes, cuts: list[int]
) -> None:
    # Within the limits: the default ones, which random streams this short never reach.
    check_stream(data, cuts, {})


@FUZZ
@given(streams, cut_points)
def test_small_limits_raise_only_http_parse_error(data: bytes, cuts: list[int]) -> None:
    for chunks in ([data], split(data, cuts)):
        feed(chunks, LIMITS)


# Where the parser checks its limits depends on how the bytes arrive (found by fuzzing):
# a request line of exactly max_request_line bytes is refused (414) when its CR arrives in
# one read and its LF in the next, but accepted when the line ends in one read; and a head
# over max_head bytes is refused (431) only when it arrives in pieces, never in one read.
LIMIT_EDGES = [
    pytest.param(
        b"GET /" + b"a" * 50 + b" HTTP/1.1\r\n\r\n",
        [65],
        id="request-line-of-exactly-the-limit-split-between-cr-and-lf",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 300 + b"\r\n\r\n",
        [300],
        id="head-over-max-head-split",
    ),
]


@pytest.mark.parametrize(("data", "cuts"), LIMIT_EDGES)
def test_limits_do_not_depend_on_the_split(data: bytes, cuts: list[int]) -> None:
    assert feed(split(data, cuts), LIMITS) == feed([data], LIMITS)


@pytest.mark.parametrize("data", seeds("http1"))
def test_corpus(data: bytes) -> None:
    check_stream(data, [1, 7, 20, 100], {})
    feed([data], LIMITS)
