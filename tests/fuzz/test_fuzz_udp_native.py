"""Differential fuzzing: the compiled UDP datagram path (``shoal._native_udp``) against the
Python codec (``shoal.protocol.udp.decode_request`` and its encoders).

Every datagram, valid or hostile, from an IPv4 or IPv6 source, with a fresh, aged, future
or forged connection id, must get the same decision from both: the same kind (connect,
announce, scrape, malformed, bad id), the same refusal message, the same reply bytes (or
silence), and for a valid announce or scrape the same request handed to the logic layer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.native import native_udp

from shoal.protocol import udp
from shoal.protocol.connid import ConnectionIds
from shoal.protocol.udp import Malformed
from shoal.server.stats import LATENCY_BUCKETS
from shoal.types import AnnounceRequest, Event

from .corpus import FUZZ, seeds

KEY = bytes(range(32))
TTL, SKEW = 120, 5
NOW = 1_800_000_000
HEADER = struct.Struct(">QII")
ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
CONNECT, ANNOUNCE_ACTION, SCRAPE, MALFORMED, BAD_ID = 0, 1, 2, 3, 4
IDS = ConnectionIds(KEY, ttl=TTL, skew=SKEW)


def make_engine(allow_ip_param: bool = False) -> Any:
    native = native_udp()
    events = tuple(Event(n) for n in range(5))
    return native.Engine(-1, IDS.key, TTL, SKEW, allow_ip_param, AnnounceRequest, events,
                         LATENCY_BUCKETS)


def python_decision(data: bytes, source: bytes, now: int,
                    allow_ip_param: bool) -> tuple[int, int | None, str, bytes | None, Any]:
    """What the Python path decides: (kind, tid, message, reply, payload)."""
    ip = source[:-2]
    decoded = udp.decode_request(data, ip, source, lambda c, s: IDS.valid(c, s, now),
                                 allow_ip_param)
    if isinstance(decoded, Malformed):
        reply = None
        if decoded.reply and decoded.transaction_id is not None:
            reply = udp.encode_error(decoded.transaction_id, decoded.message)
        kind = BAD_ID if decoded.bad_id else MALFORMED
        return kind, decoded.transaction_id, decoded.message, reply, None
    action, tid, payload = decoded
    if action == udp.CONNECT:
        return CONNECT, tid, "", udp.encode_connect(tid, IDS.issue(source, now)), None
    return action, tid, "", None, payload


def check_same(data: bytes, source: bytes, now: int = NOW, allow_ip_param: bool = False,
               engine: Any = None) -> int:
    """Both paths decide alike on ``data`` from ``source``; the kind decided."""
    engine = engine if engine is not None else make_engine(allow_ip_param)
    kind, tid, message, reply, item = engine.decide(data, source, now)
    want = python_decision(data, source, now, allow_ip_param)
    assert (kind, tid, message, reply) == want[:4]
    if kind in (ANNOUNCE_ACTION, SCRAPE):
        action, item_tid, payload, ip, _sockaddr = item
        assert (action, item_tid, ip) == (kind, tid, source[:-2])
        assert payload == want[4]
    else:
        assert item is None
    return int(kind)


# Sources: IPv4 and IPv6 packed addresses with ports.
sources = st.one_of(
    st.builds(lambda ip, port: ip + port.to_bytes(2, "big"), st.binary(min_size=4, max_size=4),
              st.integers(0, 65535)),
    st.builds(lambda ip, port: ip + port.to_bytes(2, "big"),
              st.binary(min_size=16, max_size=16), st.integers(0, 65535)),
)

# A BEP 41 option area: NOP runs, URL data, END, unknown kinds, lengths past the end.
option = st.one_of(
    st.integers(1, 40).map(lambda n: b"\x01" * n),
    st.binary(max_size=60).map(lambda d: bytes((2, len(d))) + d),
    st.just(b"\x00"),
    st.tuples(st.integers(3, 255), st.binary(max_size=20)).map(
        lambda t: bytes((t[0], len(t[1]))) + t[1]),
    st.tuples(st.sampled_from([2, 7]), st.integers(0, 255)).map(lambda t: bytes(t)),
    st.binary(max_size=8),
)
options = st.lists(option, max_size=12).map(b"".join)


@st.composite
def connection_ids(draw: Callable[..., Any], source: bytes) -> int:
    """Valid at various ages, expired, from the future, for another address, or made up."""
    how = draw(st.sampled_from(["fresh", "aged", "future", "other", "random"]))
    if how == "random":
        return int(draw(st.integers(0, 2**64 - 1)))
    if how == "other":
        return IDS.issue(draw(sources), NOW)
    if how == "fresh":
        return IDS.issue(source, NOW)
    if how == "aged":
        return IDS.issue(source, NOW - draw(st.integers(0, TTL + 3)))
    return IDS.issue(source, NOW + draw(st.integers(0, SKEW + 3)))


@st.composite
def datagrams(draw: Callable[..., Any]) -> tuple[bytes, bytes]:
    """(datagram, source): valid and hostile requests of every action."""
    source = draw(sources)
    kind = draw(st.sampled_from(["connect", "announce", "scrape", "other", "raw"]))
    tid = draw(st.integers(0, 2**32 - 1))
    if kind == "raw":
        return draw(st.binary(max_size=1600)), source
    if kind == "connect":
        cid = draw(st.sampled_from([udp.PROTOCOL_ID, 0, udp.PROTOCOL_ID + 1]))
        data = HEADER.pack(cid, 0, tid) + draw(st.binary(max_size=30))
    elif kind == "other":
        data = HEADER.pack(draw(connection_ids(source)), draw(st.integers(3, 2**32 - 1)), tid)
        data += draw(st.binary(max_size=120))
    elif kind == "scrape":
        count = draw(st.integers(0, 80))
        data = HEADER.pack(draw(connection_ids(source)), 2, tid)
        data += b"".join(draw(st.binary(min_size=20, max_size=20)) for _ in range(min(count, 3)))
        data += bytes(20) * max(0, count - 3)
        data += draw(st.binary(max_size=25))
    else:
        data = ANNOUNCE.pack(
            draw(connection_ids(source)), 1, tid, draw(st.binary(min_size=20, max_size=20)),
            draw(st.binary(min_size=20, max_size=20)), draw(st.integers(0, 2**64 - 1)),
            draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1)),
            draw(st.integers(0, 6) | st.integers(0, 2**32 - 1)),
            draw(st.sampled_from([0, 0x0A000001]) | st.integers(0, 2**32 - 1)),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.sampled_from([-1, 0, 1, 50, 65, 66, 196, 197, -2, 2**31 - 1, -2**31])),
            draw(st.sampled_from([0, 6881]) | st.integers(0, 65535)),
        )
        data += draw(options)
        if draw(st.booleans()):
            data += b"\x01" * draw(st.integers(0, 700))
    if draw(st.integers(0, 9)) == 0:  # truncated anywhere
        data = data[: draw(st.integers(0, len(data)))]
    return data, source


@FUZZ
@given(datagrams(), st.booleans(), st.integers(-3, 3))
@example((b"", b"\x7f\0\0\1\0\1"), False, 0)
@example((b"\x01" * 1497, b"\x7f\0\0\1\0\1"), False, 0)
def test_the_compiled_path_decides_every_datagram_as_the_python_codec(
    case: tuple[bytes, bytes], allow_ip_param: bool, drift: int
) -> None:
    data, source = case
    check_same(data, source, NOW + drift, allow_ip_param)


@FUZZ
@given(sources, st.integers(0, 2**32 - 1), options, st.booleans())
def test_valid_announces_with_options_reach_python_as_the_codec_builds_them(
    source: bytes, tid: int, area: bytes, allow_ip_param: bool
) -> None:
    data = ANNOUNCE.pack(IDS.issue(source, NOW), 1, tid, b"h" * 20, b"p" * 20, 1, 2, 3, 2,
                         0x0A000001, 7, 80, 6881) + area
    kind = check_same(data, source, allow_ip_param=allow_ip_param)
    assert kind in (ANNOUNCE_ACTION, MALFORMED)


@pytest.mark.parametrize("data", seeds("udp"))
def test_corpus(data: bytes) -> None:
    for source in (b"\x7f\0\0\1\x1a\xe1", bytes(15) + b"\1\x1a\xe1"):
        check_same(data, source)
        # and again with a valid id spliced in, so the corpus reaches past the id check
        if len(data) >= 16:
            check_same(IDS.issue(source, NOW).to_bytes(8, "big") + data[8:], source)


def test_the_counts_follow_each_decision() -> None:
    engine = make_engine()
    source = b"\x7f\0\0\1\x1a\xe1"
    engine.counts()
    check_same(udp.encode_connect_request(5), source, engine=engine)
    check_same(HEADER.pack(1, 1, 5) + bytes(90), source, engine=engine)  # bad id, 106 bytes
    check_same(b"short", source, engine=engine)
    pairs, latency_sum = engine.counts()
    native = native_udp()
    too_short = 14 + native.MESSAGES.index("packet too short")
    # slots: bytes in, ipv4 connect, ipv4 error, bad id, malformed "packet too short"
    assert dict(pairs) == {0: 16 + 106 + 5, 4: 1, 5: 2, 11: 1, too_short: 1}
    assert latency_sum == 0  # decide() sends nothing
    assert engine.counts() == ((), 0.0)  # zeroed once read
