"""Fuzzing the UDP tracker codec (shoal.protocol.udp, BEP 15 with BEP 41 options).

``parse_request`` (the records) and ``decode_request`` (the server's one call) never raise:
any datagram becomes a request or a Malformed, and a Malformed that may be answered never
draws a reply larger than the datagram (no traffic amplification at a spoofed address).
``decode_request`` checks the connection id before anything else and never looks at a
datagram longer than any valid request. Requests survive encode/parse round trips, BEP 41
options included (within the bounded option area).
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from shoal.protocol import udp
from shoal.protocol.udp import (
    MAX_SCRAPE_HASHES,
    PROTOCOL_ID,
    AnnounceRequestUdp,
    ConnectRequest,
    Malformed,
    ScrapeRequestUdp,
    encode_announce_request,
    encode_connect_request,
    encode_error,
    encode_scrape_request,
    parse_request,
)
from shoal.types import AnnounceRequest, Event, SwarmCounts

from .corpus import FUZZ, seeds

HEADER = struct.Struct(">QII")
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)


def check_decode(data: bytes, id_valid: bool) -> None:
    """The contract of decode_request for any datagram, with a valid or an invalid id."""
    asked: list[int] = []

    def id_ok(conn_id: int, source: bytes) -> bool:
        asked.append(conn_id)
        return id_valid

    result = udp.decode_request(data, b"\x7f\0\0\1", b"\x7f\0\0\1\x1a\xe1", id_ok)
    if len(data) > udp.MAX_DATAGRAM or len(data) < 16:
        assert isinstance(result, Malformed) and not result.reply and asked == []
        return
    _, action, txid = HEADER.unpack_from(data)
    if isinstance(result, Malformed):
        if result.reply:
            assert result.transaction_id == txid
            assert len(encode_error(txid, result.message)) <= len(data)
        if result.bad_id:
            assert not id_valid and action in (udp.ANNOUNCE, udp.SCRAPE)
        return
    got_action, got_txid, payload = result
    assert (got_action, got_txid) == (action, txid)
    if action != udp.CONNECT:
        assert id_valid and len(asked) == 1  # checked once, and passed
    if action == udp.ANNOUNCE:
        assert isinstance(payload, AnnounceRequest)
        assert len(data) <= udp.MAX_ANNOUNCE_LENGTH and len(payload.addr) == 6
        assert -1 <= payload.numwant <= udp.max_peers(6)


def check_datagram(data: bytes) -> None:
    """The contract of parse_request (and of decode_request) for any datagram."""
    check_decode(data, True)
    check_decode(data, False)
    result = parse_request(data)
    if isinstance(result, Malformed):
        assert isinstance(result.message, str) and result.message
        if result.reply:
            assert result.transaction_id is not None
            assert len(encode_error(result.transaction_id, result.message)) <= len(data)
        if len(data) > udp.MAX_DATAGRAM:
            assert result.transaction_id is None and not result.reply
        elif len(data) >= 16:
            _, action, txid = HEADER.unpack_from(data)
            assert result.transaction_id == txid
        return
    connection_id, action, txid = HEADER.unpack_from(data)
    assert result.transaction_id == txid
    if isinstance(result, ConnectRequest):
        assert (connection_id, action) == (PROTOCOL_ID, udp.CONNECT)
    elif isinstance(result, AnnounceRequestUdp):
        assert action == udp.ANNOUNCE and len(data) >= udp.ANNOUNCE_LENGTH
        assert result.connection_id == connection_id
        assert len(result.info_hash) == 20 and len(result.peer_id) == 20
        assert 1 <= result.port <= 65535
        assert isinstance(result.event, Event)
        assert len(result.url_data) <= len(data) - udp.ANNOUNCE_LENGTH
    else:
        assert isinstance(result, ScrapeRequestUdp)
        assert action == udp.SCRAPE and result.connection_id == connection_id
        assert 1 <= len(result.info_hashes) <= MAX_SCRAPE_HASHES
        assert b"".join(result.info_hashes) == data[16:]


# Option lists as BEP 41 writes them, and as nobody should: END, NOP, URL data, unknown
# kinds with a length, and truncation anywhere.
option = st.one_of(
    st.just(b"\x00"),
    st.just(b"\x01"),
    st.binary(max_size=255).map(lambda b: bytes((2, len(b))) + b),
    st.tuples(st.integers(3, 255), st.binary(max_size=40)).map(
        lambda kb: bytes((kb[0], len(kb[1]))) + kb[1]
    ),
    st.binary(min_size=1, max_size=3),  # a lone kind, or a length that runs past the end
)
announce_body = st.builds(
    lambda ih, pid, nums, event, ip, key, want, port: struct.pack(
        ">20s20sQQQIIIiH", ih, pid, *nums, event, ip, key, want, port
    ),
    st.binary(min_size=20, max_size=20), st.binary(min_size=20, max_size=20),
    st.tuples(U64, U64, U64), st.sampled_from([0, 1, 2, 3, 4, 5, 2**32 - 1]), U32, U32,
    st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, 6881, 65535]),
)
bodies = st.one_of(
    st.binary(max_size=120),
    st.tuples(announce_body, st.lists(option, max_size=8).map(b"".join)).map(b"".join),
    announce_body.map(lambda b: b[: len(b) // 2]),
    st.lists(st.binary(min_size=20, max_size=20), max_size=80).map(b"".join),
)
datagrams = st.one_of(
    st.binary(max_size=200),
    st.tuples(
        st.one_of(st.just(PROTOCOL_ID), U64),
        st.one_of(st.integers(0, 4), U32),
        U32,
        bodies,
    ).map(lambda d: HEADER.pack(d[0], d[1], d[2]) + d[3]),
)


@FUZZ
@given(datagrams)
@example(HEADER.pack(123, udp.ANNOUNCE, 7) + bytes(82) + b"\x01" * 64_000)  # 64 KB of NOPs
@example(HEADER.pack(123, udp.ANNOUNCE, 7) + bytes(10))  # announce cut short
@example(HEADER.pack(123, udp.SCRAPE, 7))  # scrape of nothing, 16 bytes
@example(HEADER.pack(PROTOCOL_ID, udp.CONNECT, 7)[:15])
def test_any_datagram_parses_without_raising_and_never_amplifies(data: bytes) -> None:
    check_datagram(data)


@st.composite
def announces_with_options(draw: st.DrawFn) -> tuple[bytes, AnnounceRequestUdp]:
    """An announce with a random BEP 41 option list, and what it must parse to: the URL
    data chunks before the first END, concatenated; NOPs and unknown options skipped."""
    request = AnnounceRequestUdp(
        connection_id=draw(U64),
        transaction_id=draw(U32),
        info_hash=draw(st.binary(min_size=20, max_size=20)),
        peer_id=draw(st.binary(min_size=20, max_size=20)),
        downloaded=draw(U64),
        left=draw(U64),
        uploaded=draw(U64),
        event=draw(st.sampled_from(list(Event))),
        ip=draw(U32),
        key=draw(U32),
        num_want=draw(st.integers(-(2**31), 2**31 - 1)),
        port=draw(st.integers(1, 65535)),
    )
    head = encode_announce_request(request)
    options: list[bytes] = []
    url_data: list[bytes] = []
    for kind in draw(st.lists(st.sampled_from(["nop", "url", "other"]), max_size=10)):
        if kind == "nop":
            options.append(b"\x01")
        elif kind == "url":
            chunk = draw(st.binary(max_size=255))
            options.append(bytes((2, len(chunk))) + chunk)
            url_data.append(chunk)
        else:
            payload = draw(st.binary(max_size=30))
            options.append(bytes((draw(st.integers(3, 255)), len(payload))) + payload)
    if draw(st.booleans()):
        options.append(b"\x00" + draw(st.binary(max_size=30)))  # END, then anything
    assume(len(b"".join(options)) <= udp.MAX_OPTIONS)  # longer is refused (tested below)
    request.url_data = b"".join(url_data)
    return head + b"".join(options), request


@FUZZ
@given(announces_with_options())
def test_announce_with_options_round_trips(case: tuple[bytes, AnnounceRequestUdp]) -> None:
    data, expected = case
    assert parse_request(data) == expected


@FUZZ
@given(st.binary(max_size=500), st.integers(1, 65535), U32)
def test_url_data_the_encoder_chunks_round_trips(url_data: bytes, port: int, txid: int) -> None:
    request = AnnounceRequestUdp(5, txid, b"i" * 20, b"p" * 20, 0, 1, 0, Event.STARTED, 0, 9,
                                 -1, port, url_data)
    assert parse_request(encode_announce_request(request)) == request


@FUZZ
@given(U64, U32, st.lists(st.binary(min_size=20, max_size=20), min_size=1,
                          max_size=MAX_SCRAPE_HASHES))
def test_scrape_round_trips(connection_id: int, txid: int, hashes: list[bytes]) -> None:
    data = encode_scrape_request(connection_id, txid, hashes)
    assert parse_request(data) == ScrapeRequestUdp(connection_id, txid, hashes)


@FUZZ
@given(U32)
def test_connect_round_trips(txid: int) -> None:
    assert parse_request(encode_connect_request(txid)) == ConnectRequest(txid)


@FUZZ
@given(st.binary(max_size=300))
def test_any_reply_decodes_or_raises_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        udp.parse_reply(data)


@FUZZ
@given(U32, U64, st.integers(0, 2**40), st.integers(0, 2**40),
       st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40)),
                max_size=MAX_SCRAPE_HASHES))
def test_replies_round_trip_through_the_client_decoders(
    txid: int, cid: int, a: int, b: int, counts: list[tuple[int, int, int]]
) -> None:
    clamp = min(2**31 - 1, a)
    assert udp.parse_reply(udp.encode_connect(txid, cid)) == udp.ConnectReply(txid, cid)
    reply = udp.parse_reply(udp.encode_announce(txid, a, b, a, b"\x7f\x00\x00\x01\x1a\xe1"))
    assert reply == udp.AnnounceReply(txid, clamp, min(2**31 - 1, b), clamp,
                                      b"\x7f\x00\x00\x01\x1a\xe1")
    swarm = [SwarmCounts(*c) for c in counts]
    scrape = udp.parse_reply(udp.encode_scrape(txid, swarm))
    assert scrape == udp.ScrapeReply(
        txid, [SwarmCounts(*(min(2**31 - 1, n) for n in c)) for c in counts]
    )


@pytest.mark.parametrize("data", seeds("udp"))
def test_corpus(data: bytes) -> None:
    check_datagram(data)
