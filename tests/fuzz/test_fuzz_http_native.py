"""Differential fuzzing: the compiled HTTP data plane's parsers (``shoal._native_http``)
against the Python path they stand in for.

The compiled path may decline anything (Python then answers), but what it takes it must
read exactly as Python does: a request as ``Http1Connection`` parses it (target, real-IP
header, keep-alive, HTTP/1.0, the bytes it spans), an announce query as ``parse_announce``
(every field the reply and the store depend on), a scrape query as ``parse_scrape``, the
BEP 7 key as ``key_to_int``, and a trusted proxy's real-IP header as
``HttpConnection._client_ip``. And it must not decline what clients send: a well-formed
compact announce and a plain scrape are always taken.
"""

from __future__ import annotations

import ipaddress
from types import ModuleType
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.engine.rules import NetworkSet
from shoal.errors import ClientError
from shoal.protocol.http import key_to_int, parse_announce, parse_scrape
from shoal.protocol.http1 import Http1Connection, Request
from shoal.server.clock import Clock
from shoal.server.http import HttpConnection, HttpFrontend, HttpOptions
from shoal.server.stats import Counters

from .corpus import FUZZ, seeds

PEER = bytes([127, 0, 0, 1])
LIMITS = (8192, 16384, 64)
KEYS = [b"info_hash", b"peer_id", b"port", b"uploaded", b"downloaded", b"left", b"event",
        b"compact", b"numwant", b"key", b"no_peer_id", b"ip", b"ipv4", b"ipv6", b"junk"]


def native() -> ModuleType:
    return pytest.importorskip("shoal._native_http")


# -- announce and scrape queries ---------------------------------------------------------

values = st.one_of(
    st.binary(max_size=24).map(lambda b: quote_from_bytes(b).encode()),
    st.binary(min_size=20, max_size=20).map(lambda b: quote_from_bytes(b, safe="").encode()),
    st.integers(min_value=-10, max_value=2**64 + 5).map(lambda n: str(n).encode()),
    st.sampled_from([b"", b"0", b"1", b"-", b"-0", b"started", b"stopped", b"completed",
                     b"paused", b"%", b"%4", b"%zz", b"%41%42", b"1a2B3c4D", b"+5", b" 1",
                     b"00012", b"99999999999", b"-99999999999", b"10.0.0.1", b"::1"]),
    st.binary(max_size=12).filter(lambda b: b"&" not in b),
)
items = st.tuples(st.sampled_from(KEYS), st.booleans(), values).map(
    lambda t: t[0] + (b"=" + t[2] if t[1] else b""))
queries = st.lists(items, max_size=14).map(lambda parts: b"&".join(parts))


def valid_announce(info_hash: bytes, peer_id: bytes, port: int, numbers: tuple[int, int, int],
                   event: str, numwant: int | None, key: bytes | None) -> bytes:
    q = (f"info_hash={quote_from_bytes(info_hash, safe='')}&"
         f"peer_id={quote_from_bytes(peer_id)}&port={port}&uploaded={numbers[0]}&"
         f"downloaded={numbers[1]}&left={numbers[2]}&compact=1").encode()
    if event:
        q += b"&event=" + event.encode()
    if numwant is not None:
        q += b"&numwant=%d" % numwant
    if key is not None:
        q += b"&key=" + quote_from_bytes(key).encode()
    return q


def check_announce(query: bytes, allow_ip_param: bool) -> Any:
    got = native().announce_query(query, allow_ip_param)
    try:
        request, compact = parse_announce(query, PEER, allow_ip_param)
    except ClientError:
        assert got is None, "taken by C, refused by Python"
        return None
    if got is None:
        return None
    assert compact
    info_hash, peer_id, port, uploaded, downloaded, left, event, numwant, key = got
    assert (info_hash, peer_id) == (request.info_hash, request.peer_id)
    assert request.addr == PEER + port.to_bytes(2, "big")  # no ip parameter was used
    assert (uploaded, downloaded, left) == (request.uploaded, request.downloaded, request.left)
    assert event == request.event
    assert numwant == request.numwant
    assert key == (0 if request.key is None else request.key)
    return got


@FUZZ
@given(queries, st.booleans())
def test_an_announce_query_taken_in_c_reads_as_parse_announce_reads_it(
    query: bytes, allow_ip_param: bool
) -> None:
    check_announce(query, allow_ip_param)


@FUZZ
@given(st.binary(min_size=20, max_size=20), st.binary(min_size=20, max_size=20),
       st.integers(1, 65535), st.tuples(*[st.integers(0, 10**19 - 1)] * 3),
       st.sampled_from(["", "started", "stopped", "completed", "paused", "other"]),
       st.none() | st.integers(-(10**12), 10**12),
       st.none() | st.binary(max_size=30))
@example(bytes(20), bytes(20), 1, (0, 0, 0), "", None, b"")
def test_a_well_formed_compact_announce_is_always_taken_in_c(
    info_hash: bytes, peer_id: bytes, port: int, numbers: tuple[int, int, int], event: str,
    numwant: int | None, key: bytes | None,
) -> None:
    query = valid_announce(info_hash, peer_id, port, numbers, event, numwant, key)
    assert check_announce(query, False) is not None
    assert check_announce(query + b"&ip=10.1.2.3", True) is None  # the ip parameter: Python


@pytest.mark.parametrize("query", seeds("http_query"))
def test_the_query_corpus_reads_alike(query: bytes) -> None:
    for allow in (False, True):
        check_announce(query, allow)
        check_scrape(query, 64)


def check_scrape(query: bytes, max_hashes: int) -> None:
    got = native().scrape_query(query, max_hashes)
    try:
        expected: list[bytes] | None = parse_scrape(query, max_hashes)
    except ClientError:
        expected = None
    if got is not None:
        assert got == expected
    elif expected and len(expected) <= 74:
        pytest.fail("a valid scrape of a few hashes was declined")


scrape_items = st.one_of(
    st.binary(min_size=20, max_size=20).map(
        lambda b: b"info_hash=" + quote_from_bytes(b).encode()),
    items,
)


@FUZZ
@given(st.lists(scrape_items, max_size=80).map(lambda parts: b"&".join(parts)),
       st.integers(0, 100))
def test_a_scrape_query_taken_in_c_reads_as_parse_scrape_reads_it(
    query: bytes, max_hashes: int
) -> None:
    check_scrape(query, max_hashes)


@FUZZ
@given(st.binary(max_size=70))
@example(b"")
@example(b"DEADbeef")
@example(b"123456789")
def test_the_key_is_read_as_key_to_int_reads_it(key: bytes) -> None:
    assert native().key(key) == key_to_int(key)


# -- request heads -----------------------------------------------------------------------

header_names = st.sampled_from([
    "Host", "User-Agent", "Accept-Encoding", "X-Other", "X-Real-IP"] * 4 + [
    "Connection", "connection", "x-real-ip", "Content-Length", "Upgrade",
    "Transfer-Encoding", "Expect", "Bad Name", "",
])
header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=20),
    st.sampled_from(["close", "keep-alive", "Keep-Alive", "upgrade", "close, keep-alive",
                     " keep-alive ", "keep-alive, TE", "0", "5", "websocket", "1.2.3.4",
                     "", "\t x", "a\x01b", "caf\xe9", "100-continue"]),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=20),
)
# Weighted towards what the compiled path takes, so both branches are well explored.
heads = st.tuples(
    st.sampled_from(["GET"] * 6 + ["POST", "get", "HEAD"]),
    st.one_of(
        st.sampled_from(["/announce?info_hash=x", "/scrape?info_hash=y", "/announce",
                         "/scrape", "/announce?a=1?b=2", "/announce/x", "/x/announce",
                         "/announce?q=<", "/announce?q=%zz", "/announce#f", "*"]),
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)
        .map(lambda t: "/announce?" + t),
        st.text(alphabet="abc=&%0123456789ABCDEF-._~", max_size=40)
        .map(lambda t: "/scrape?" + t),
    ),
    st.sampled_from(["HTTP/1.1"] * 4 + ["HTTP/1.0"] * 2 + ["HTTP/2.0", "HTTP/1.1 ",
                                                            "http/1.1"]),
    st.lists(st.tuples(header_names, header_values), max_size=6),
    st.sampled_from(["\r\n"] * 5 + ["\n"]),
    st.just(b"") | st.binary(max_size=8),
)


def build(head: tuple[Any, ...]) -> bytes:
    method, target, version, headers, eol, tail = head
    lines = [f"{method} {target} {version}"] + [f"{n}: {v}" for n, v in headers]
    return (eol.join(lines) + eol + eol).encode("latin-1") + tail


def python_requests(data: bytes, limits: tuple[int, int, int], real_ip: bytes | None
                    ) -> list[Any]:
    conn = Http1Connection(*limits, real_ip, True)
    conn.receive(data, 0.0)
    return conn.events


def check_head(data: bytes, limits: tuple[int, int, int] = LIMITS,
               real_ip: bytes | None = b"x-real-ip") -> None:
    got = native().parse(data, *limits, real_ip)
    if got is None:
        return
    taken, kind, target, query, header, keep_alive, legacy = got
    events = python_requests(data[:taken], limits, real_ip)
    assert len(events) == 1 and isinstance(events[0], Request), events
    request = events[0]
    assert request.method == b"GET" and request.target == target
    path, _, rest = target.partition(b"?")
    assert (path, rest) == ((b"/announce", query) if kind == 1 else (b"/scrape", query))
    assert request.real_ip == header
    assert (request.keep_alive, request.legacy) == (bool(keep_alive), bool(legacy))


@FUZZ
@given(heads)
@example(("GET", "/announce?a", "HTTP/1.1", [("X-Real-IP", "0 ")], "\r\n", b""))
def test_a_request_taken_in_c_is_the_request_the_python_parser_reads(
    head: tuple[Any, ...]
) -> None:
    check_head(build(head))


@FUZZ
@given(heads, st.integers(10, 200), st.integers(10, 400), st.integers(0, 8))
def test_a_request_over_a_limit_is_left_to_python(
    head: tuple[Any, ...], line: int, header_bytes: int, headers: int
) -> None:
    check_head(build(head), (line, header_bytes, headers))


@pytest.mark.parametrize("data", seeds("http1"))
def test_the_request_corpus_reads_alike(data: bytes) -> None:
    check_head(data)
    check_head(data, (16, 64, 2))


def test_what_clients_send_is_taken_in_c() -> None:
    data = (b"GET /announce?info_hash=%01&peer_id=x HTTP/1.1\r\nHost: t:6969\r\n"
            b"User-Agent: qBittorrent/4.6.0\r\nAccept-Encoding: gzip\r\n"
            b"Connection: close\r\n\r\n")
    got = native().parse(data + b"next", *LIMITS, None)
    assert got is not None and got[0] == len(data) and got[5] is False
    legacy = b"GET /scrape?info_hash=a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    assert native().parse(legacy, *LIMITS, None) == (
        len(legacy), 2, b"/scrape?info_hash=a", b"info_hash=a", None, True, True)


# -- the real-IP header ------------------------------------------------------------------

addresses = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]:443"),
    st.sampled_from(["10.0.0.1", "10.0.0.2", "::ffff:10.0.0.1", "01.2.3.4", "1.2.3", "",
                     "unknown", "fe80::1%eth0", "1.2.3.4:80", " 10.0.0.1 ", "256.1.1.1",
                     "1::2::3", "[::1", "::1]", "1.2.3.4.5", "0.0.0.0", "::"]),
)
PROXIES = ["10.0.0.0/24", "2001:db8::/32", "127.0.0.1/32"]


def python_client_ip(value: bytes, peer: bytes) -> bytes:
    frontend = HttpFrontend(None, Clock(), Counters(),  # type: ignore[arg-type]
                            HttpOptions(trusted_proxies=tuple(PROXIES),
                                        real_ip_header="X-Real-IP"))
    conn = HttpConnection(frontend)
    conn.peer_ip = peer
    conn._real_ip = value
    return conn._client_ip()


@FUZZ
@given(st.lists(addresses, min_size=1, max_size=5),
       st.sampled_from([bytes([127, 0, 0, 1]), bytes([10, 0, 0, 7])]))
def test_the_client_behind_trusted_proxies_is_found_as_python_finds_it(
    entries: list[str], peer: bytes
) -> None:
    value = ",".join(entries).encode()
    proxies = NetworkSet(PROXIES)
    got = native().real_ip(value, peer, proxies.v4, proxies.v6)
    if got is not None:
        assert got == python_client_ip(value, peer)
    else:  # declined only for what it cannot judge as Python would (a scope id)
        assert "%" in value.decode()


def test_the_rightmost_untrusted_address_is_the_client() -> None:
    proxies = NetworkSet(PROXIES)
    peer = bytes([127, 0, 0, 1])
    got = native().real_ip(b"203.0.113.9, 198.51.100.4, 10.0.0.3", peer, proxies.v4,
                           proxies.v6)
    assert got == ipaddress.ip_address("198.51.100.4").packed
