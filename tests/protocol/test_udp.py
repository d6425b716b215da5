"""The UDP tracker codec (BEP 15 with BEP 41 options): golden bytes, round trips, bad input."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.protocol import udp
from shoal.protocol.udp import (
    ANNOUNCE,
    CONNECT,
    MAX_OPTIONS,
    MAX_SCRAPE_HASHES,
    PROTOCOL_ID,
    SCRAPE,
    AnnounceReply,
    AnnounceRequestUdp,
    ConnectReply,
    ConnectRequest,
    ErrorReply,
    Malformed,
    ScrapeReply,
    ScrapeRequestUdp,
    decode_request,
    encode_announce,
    encode_announce_request,
    encode_connect,
    encode_connect_request,
    encode_error,
    encode_scrape,
    encode_scrape_request,
    max_peers,
    parse_announce_reply,
    parse_connect_reply,
    parse_error_reply,
    parse_reply,
    parse_request,
    parse_scrape_reply,
)
from shoal.types import AnnounceRequest, Event, SwarmCounts

# Golden datagrams, written field by field from the BEP 15 tables.


def fields(*hex_fields: str) -> bytes:
    """A datagram from its fields, each given as hex."""
    return bytes.fromhex("".join(hex_fields))


CONNECT_REQUEST = fields(
    "0000041727101980",  # protocol id
    "00000000",  # action: connect
    "12345678",  # transaction id
)
CONNECT_REPLY = fields(
    "00000000",  # action: connect
    "12345678",  # transaction id
    "0102030405060708",  # connection id
)
INFO_HASH = bytes.fromhex("aa" * 20)
INFO_HASH_2 = bytes.fromhex("bb" * 20)
PEER_ID = b"-SH0100-abcdefghijkl"
ANNOUNCE_REQUEST = fields(
    "0102030405060708",  # connection id
    "00000001",  # action: announce
    "deadbeef",  # transaction id
    "aa" * 20,  # info_hash
    PEER_ID.hex(),  # peer_id
    "0000000000001000",  # downloaded
    "0000000000002000",  # left
    "0000000000003000",  # uploaded
    "00000002",  # event: started
    "00000000",  # ip: use source
    "cafebabe",  # key
    "ffffffff",  # num_want: -1, default
    "1ae1",  # port 6881
)
ANNOUNCE_RECORD = AnnounceRequestUdp(
    connection_id=0x0102030405060708,
    transaction_id=0xDEADBEEF,
    info_hash=INFO_HASH,
    peer_id=PEER_ID,
    downloaded=0x1000,
    left=0x2000,
    uploaded=0x3000,
    event=Event.STARTED,
    ip=0,
    key=0xCAFEBABE,
    num_want=-1,
    port=6881,
)
ANNOUNCE_REPLY_V4 = fields(
    "00000001",  # action: announce
    "deadbeef",  # transaction id
    "00000708",  # interval 1800
    "00000005",  # leechers
    "00000003",  # seeders
    "c0a800011ae1",  # 192.168.0.1:6881
    "0a0000021ae2",  # 10.0.0.2:6882
)
PEER_V6 = fields(
    "20010db8000000000000000000000001",  # 2001:db8::1
    "1ae1",  # port 6881
)
ANNOUNCE_REPLY_V6 = fields(
    "00000001",  # action: announce
    "00000007",  # transaction id
    "00000384",  # interval 900
    "00000000",  # leechers
    "00000001",  # seeders
    PEER_V6.hex(),  # 18-byte entries for an IPv6 requester
)
SCRAPE_REQUEST = fields(
    "0102030405060708",  # connection id
    "00000002",  # action: scrape
    "00000009",  # transaction id
    "aa" * 20,  # info_hash 1
    "bb" * 20,  # info_hash 2
)
SCRAPE_REPLY = fields(
    "00000002",  # action: scrape
    "00000009",  # transaction id
    "00000004",  # hash 1 seeders
    "00000064",  # hash 1 completed
    "00000007",  # hash 1 leechers
    "00000000",  # hash 2 (unknown torrent) seeders
    "00000000",  # hash 2 completed
    "00000000",  # hash 2 leechers
)
SCRAPE_COUNTS = [SwarmCounts(complete=4, incomplete=7, downloaded=100), SwarmCounts(0, 0, 0)]
ERROR_REPLY = fields(
    "00000003",  # action: error
    "12345678",  # transaction id
    b"invalid port".hex(),  # message
)


def announce_with_options(options: bytes) -> bytes:
    return ANNOUNCE_REQUEST + options


def parsed_announce(data: bytes) -> AnnounceRequestUdp:
    result = parse_request(data)
    assert isinstance(result, AnnounceRequestUdp), result
    return result


def malformed(data: bytes) -> Malformed:
    result = parse_request(data)
    assert isinstance(result, Malformed), result
    return result


# Golden bytes.


def test_protocol_constants() -> None:
    assert PROTOCOL_ID == 0x41727101980
    assert (udp.CONNECT, udp.ANNOUNCE, udp.SCRAPE, udp.ERROR) == (0, 1, 2, 3)


def test_connect_request_golden() -> None:
    assert encode_connect_request(0x12345678) == CONNECT_REQUEST
    assert parse_request(CONNECT_REQUEST) == ConnectRequest(0x12345678)


def test_connect_reply_golden() -> None:
    assert encode_connect(0x12345678, 0x0102030405060708) == CONNECT_REPLY
    assert parse_connect_reply(CONNECT_REPLY) == ConnectReply(0x12345678, 0x0102030405060708)


def test_connect_request_longer_than_16_bytes_accepted() -> None:
    assert parse_request(CONNECT_REQUEST + b"\x00" * 4) == ConnectRequest(0x12345678)


def test_announce_request_golden() -> None:
    assert len(ANNOUNCE_REQUEST) == 98
    assert encode_announce_request(ANNOUNCE_RECORD) == ANNOUNCE_REQUEST
    assert parse_request(ANNOUNCE_REQUEST) == ANNOUNCE_RECORD


def test_announce_reply_ipv4_golden() -> None:
    peers = ANNOUNCE_REPLY_V4[20:]
    assert encode_announce(0xDEADBEEF, 1800, 5, 3, peers) == ANNOUNCE_REPLY_V4
    assert parse_announce_reply(ANNOUNCE_REPLY_V4) == AnnounceReply(0xDEADBEEF, 1800, 5, 3, peers)


def test_announce_reply_ipv6_golden() -> None:
    assert encode_announce(7, 900, 0, 1, PEER_V6) == ANNOUNCE_REPLY_V6


def test_announce_reply_without_peers_is_20_bytes() -> None:
    golden = fields("00000001", "00000001", "00000708", "00000000", "00000000")
    assert encode_announce(1, 1800, 0, 0, b"") == golden


def test_scrape_request_golden() -> None:
    assert encode_scrape_request(0x0102030405060708, 9, [INFO_HASH, INFO_HASH_2]) == SCRAPE_REQUEST
    assert parse_request(SCRAPE_REQUEST) == ScrapeRequestUdp(
        0x0102030405060708, 9, [INFO_HASH, INFO_HASH_2]
    )


def test_scrape_reply_golden_uses_seeders_completed_leechers_order() -> None:
    assert encode_scrape(9, SCRAPE_COUNTS) == SCRAPE_REPLY
    assert parse_scrape_reply(SCRAPE_REPLY) == ScrapeReply(9, SCRAPE_COUNTS)


def test_error_reply_golden() -> None:
    assert encode_error(0x12345678, "invalid port") == ERROR_REPLY
    assert parse_error_reply(ERROR_REPLY) == ErrorReply(0x12345678, "invalid port")


def test_parse_reply_dispatches_on_action() -> None:
    assert isinstance(parse_reply(CONNECT_REPLY), ConnectReply)
    assert isinstance(parse_reply(ANNOUNCE_REPLY_V4), AnnounceReply)
    assert isinstance(parse_reply(SCRAPE_REPLY), ScrapeReply)
    assert isinstance(parse_reply(ERROR_REPLY), ErrorReply)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00\x00", fields("00000009", "00000000"), CONNECT_REPLY[:15]],
)
def test_parse_reply_rejects_garbage(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_reply(data)


def test_reply_decoders_reject_the_wrong_action() -> None:
    with pytest.raises(ValueError):
        parse_connect_reply(ERROR_REPLY + b"1234")
    with pytest.raises(ValueError):
        parse_announce_reply(SCRAPE_REPLY)
    with pytest.raises(ValueError):
        parse_scrape_reply(ERROR_REPLY)
    with pytest.raises(ValueError):
        parse_error_reply(CONNECT_REPLY)


def test_announce_reply_with_partial_peer_rejected() -> None:
    with pytest.raises(ValueError):
        parse_announce_reply(ANNOUNCE_REPLY_V4[:-1])


# Announce fields.


def test_unknown_event_is_treated_as_none() -> None:
    data = bytearray(ANNOUNCE_REQUEST)
    data[80:84] = (77).to_bytes(4, "big")
    assert parsed_announce(bytes(data)).event is Event.NONE


def test_event_4_is_paused() -> None:
    data = bytearray(ANNOUNCE_REQUEST)
    data[80:84] = (4).to_bytes(4, "big")
    assert parsed_announce(bytes(data)).event is Event.PAUSED


def test_num_want_is_signed_and_counters_unsigned_64() -> None:
    data = bytearray(ANNOUNCE_REQUEST)
    data[56:64] = b"\xff" * 8
    data[92:96] = (50).to_bytes(4, "big")
    request = parsed_announce(bytes(data))
    assert request.downloaded == 2**64 - 1
    assert request.num_want == 50


def test_ip_field_is_carried_raw() -> None:
    data = bytearray(ANNOUNCE_REQUEST)
    data[84:88] = bytes([1, 2, 3, 4])
    assert parsed_announce(bytes(data)).ip == 0x01020304


def test_port_zero_is_malformed_with_reply() -> None:
    result = malformed(ANNOUNCE_REQUEST[:-2] + b"\x00\x00")
    assert result.message == "invalid port"
    assert result.reply
    assert result.transaction_id == 0xDEADBEEF
    assert result.connection_id == 0x0102030405060708


# decode_request: the server's one call from datagram to validated request.

SOURCE_IP = bytes([192, 168, 0, 9])
SOURCE = SOURCE_IP + (40000).to_bytes(2, "big")


def accept_any(conn_id: int, source: bytes) -> bool:
    return True


def refuse_all(conn_id: int, source: bytes) -> bool:
    return False


def decoded_announce(data: bytes, allow_ip: bool = False) -> AnnounceRequest:
    found = decode_request(data, SOURCE_IP, SOURCE, accept_any, allow_ip)
    assert not isinstance(found, Malformed), found
    action, tid, payload = found
    assert (action, tid) == (ANNOUNCE, 0xDEADBEEF)
    assert isinstance(payload, AnnounceRequest)
    return payload


def test_decode_request_builds_the_engine_request_with_the_announced_port() -> None:
    engine = decoded_announce(announce_with_options(b"\x02\x05/pass"))
    assert engine.addr == SOURCE_IP + (6881).to_bytes(2, "big")
    assert engine.info_hash == INFO_HASH
    assert engine.peer_id == PEER_ID
    assert (engine.downloaded, engine.left, engine.uploaded) == (0x1000, 0x2000, 0x3000)
    assert engine.event is Event.STARTED
    assert engine.numwant == -1
    assert engine.key == 0xCAFEBABE
    assert engine.path == b"/pass"
    assert not engine.mixed_families
    assert not engine.want_peer_ids


def test_decode_request_checks_the_connection_id_before_parsing_anything_else() -> None:
    """A made-up id with a truncated option list is refused as a bad id: the options are
    never looked at."""
    seen: list[tuple[int, bytes]] = []

    def record(conn_id: int, source: bytes) -> bool:
        seen.append((conn_id, source))
        return False

    found = decode_request(announce_with_options(b"\x02\xff"), SOURCE_IP, SOURCE, record)
    assert isinstance(found, Malformed)
    assert found.bad_id and found.message == "connection id expired"
    assert seen == [(0x0102030405060708, SOURCE)]


def test_decode_request_bad_id_reply_is_never_larger_than_the_datagram() -> None:
    header_only = ANNOUNCE_REQUEST[:16]
    found = decode_request(header_only, SOURCE_IP, SOURCE, refuse_all)
    assert isinstance(found, Malformed) and found.bad_id
    assert not found.reply  # 8 + len("connection id expired") > 16


def test_decode_request_drops_datagrams_longer_than_any_request_unread() -> None:
    calls: list[int] = []

    def count(conn_id: int, source: bytes) -> bool:
        calls.append(conn_id)
        return True

    found = decode_request(ANNOUNCE_REQUEST + b"\x01" * 65000, SOURCE_IP, SOURCE, count)
    assert isinstance(found, Malformed) and not found.reply
    assert calls == []


def test_decode_request_refuses_an_option_area_past_the_bound() -> None:
    found = decode_request(ANNOUNCE_REQUEST + b"\x01" * (MAX_OPTIONS + 1), SOURCE_IP, SOURCE,
                           accept_any)
    assert isinstance(found, Malformed) and found.reply
    assert found.message == "announce options too long"


def test_decode_request_skips_a_full_option_area_of_no_ops() -> None:
    data = ANNOUNCE_REQUEST + b"\x01" * (MAX_OPTIONS - 4) + b"\x02\x02/a"
    assert decoded_announce(data).path == b"/a"


@pytest.mark.parametrize(("asked", "expected"), [(-1, -1), (-7, -1), (0, 0), (5, 5),
                                                 (100_000, 196)])
def test_decode_request_numwant_minus_one_is_default_zero_is_none_and_caps_to_a_datagram(
    asked: int, expected: int
) -> None:
    data = ANNOUNCE_REQUEST[:92] + asked.to_bytes(4, "big", signed=True) + ANNOUNCE_REQUEST[96:]
    assert decoded_announce(data).numwant == expected


def test_decode_request_takes_the_ip_field_only_when_allowed() -> None:
    data = ANNOUNCE_REQUEST[:84] + bytes([10, 0, 0, 7]) + ANNOUNCE_REQUEST[88:]
    assert decoded_announce(data).addr[:4] == SOURCE_IP
    assert decoded_announce(data, allow_ip=True).addr[:4] == bytes([10, 0, 0, 7])


def test_decode_request_connect_and_scrape() -> None:
    connect = decode_request(encode_connect_request(7), SOURCE_IP, SOURCE, refuse_all)
    assert connect == (CONNECT, 7, None)
    scrape = decode_request(encode_scrape_request(1, 9, [INFO_HASH, INFO_HASH]), SOURCE_IP,
                            SOURCE, accept_any)
    assert scrape == (SCRAPE, 9, [INFO_HASH, INFO_HASH])


# BEP 41 options.


def test_url_data_split_in_two_chunks_concatenates() -> None:
    data = announce_with_options(b"\x02\x05/abcd" + b"\x02\x04?x=1")
    assert parsed_announce(data).url_data == b"/abcd?x=1"


def test_nop_option_has_no_length_byte() -> None:
    data = announce_with_options(b"\x01\x01\x02\x03/ab\x01")
    assert parsed_announce(data).url_data == b"/ab"


def test_end_of_options_stops_parsing() -> None:
    data = announce_with_options(b"\x02\x02/a\x00\x02\x02/b garbage after end")
    assert parsed_announce(data).url_data == b"/a"


def test_unknown_option_type_is_skipped_by_its_length() -> None:
    data = announce_with_options(b"\x07\x03xyz\x02\x02/a\xfe\x00")
    assert parsed_announce(data).url_data == b"/a"


def test_empty_url_data_chunk_is_fine() -> None:
    assert parsed_announce(announce_with_options(b"\x02\x00")).url_data == b""


@pytest.mark.parametrize(
    "options",
    [b"\x02", b"\x02\x05/ab", b"\x02\x02/a\x09", b"\x09\x04ab", b"\x01\x02"],
)
def test_truncated_option_list_is_malformed_with_reply(options: bytes) -> None:
    result = malformed(announce_with_options(options))
    assert result.reply
    assert result.transaction_id == 0xDEADBEEF
    assert result.connection_id == 0x0102030405060708


def test_long_url_data_is_encoded_in_255_byte_chunks() -> None:
    url = bytes(range(256)) + bytes(range(100))  # within MAX_OPTIONS once chunked
    request = dataclasses.replace(ANNOUNCE_RECORD, url_data=url)
    data = encode_announce_request(request)
    assert data[98:100] == b"\x02\xff"
    assert parsed_announce(data).url_data == url


# Malformed datagrams and the no-amplification rule.


@pytest.mark.parametrize("size", range(16))
def test_packet_shorter_than_header_gets_no_reply(size: int) -> None:
    result = malformed(CONNECT_REQUEST[:size])
    assert result == Malformed(None, "packet too short", reply=False)


def test_connect_with_wrong_magic_gets_no_reply() -> None:
    result = malformed(fields("0000041727101981", "00000000", "12345678"))
    assert not result.reply
    assert result.transaction_id == 0x12345678


@pytest.mark.parametrize("action", [3, 4, 0xFFFFFFFF])
def test_unknown_action_gets_no_reply(action: int) -> None:
    data = bytes.fromhex("0102030405060708") + action.to_bytes(4, "big") + b"\x00" * 100
    result = malformed(data)
    assert result.message == "unknown action"
    assert not result.reply


def test_short_announce_is_malformed() -> None:
    result = malformed(ANNOUNCE_REQUEST[:97])
    assert result.message == "announce too short"
    assert result.reply
    assert result.connection_id == 0x0102030405060708


def test_short_announce_smaller_than_error_reply_gets_no_reply() -> None:
    result = malformed(ANNOUNCE_REQUEST[:16])
    assert result.message == "announce too short"
    assert not result.reply


def test_scrape_not_a_multiple_of_20_is_malformed() -> None:
    result = malformed(SCRAPE_REQUEST[:-1])
    assert result.message == "bad scrape length"
    assert result.reply


def test_scrape_without_hashes_is_malformed() -> None:
    result = malformed(SCRAPE_REQUEST[:16])
    assert result.message == "no info_hash"
    assert not result.reply  # the error would be larger than the 16-byte datagram


def test_scrape_with_most_hashes_allowed() -> None:
    data = encode_scrape_request(1, 2, [INFO_HASH] * MAX_SCRAPE_HASHES)
    result = parse_request(data)
    assert isinstance(result, ScrapeRequestUdp)
    assert len(result.info_hashes) == MAX_SCRAPE_HASHES


def test_scrape_with_too_many_hashes_is_longer_than_any_request_and_dropped() -> None:
    result = malformed(encode_scrape_request(1, 2, [INFO_HASH] * (MAX_SCRAPE_HASHES + 1)))
    assert result.message == "packet too long"
    assert not result.reply


@given(st.binary(max_size=2000))
def test_parse_never_raises_on_random_bytes(data: bytes) -> None:
    result = parse_request(data)
    if isinstance(result, Malformed) and result.reply:
        assert result.transaction_id is not None
        assert len(encode_error(result.transaction_id, result.message)) <= len(data)


@given(st.integers(0, 2), st.binary(max_size=600))
def test_parse_never_raises_behind_a_valid_header(action: int, tail: bytes) -> None:
    heads = {0: CONNECT_REQUEST, 1: ANNOUNCE_REQUEST, 2: SCRAPE_REQUEST[:16]}
    data = heads[action] + tail
    result = parse_request(data)
    if isinstance(result, Malformed) and result.reply:
        assert result.transaction_id is not None
        assert len(encode_error(result.transaction_id, result.message)) <= len(data)


# Reply sizing.


def test_max_peers_keeps_reply_within_budget() -> None:
    assert max_peers(6) == 196
    assert max_peers(18) == 65
    assert len(encode_announce(1, 1800, 0, 0, b"\x00" * 6 * max_peers(6))) <= 1200
    assert len(encode_announce(1, 1800, 0, 0, b"\x00" * 18 * max_peers(18))) <= 1200
    assert max_peers(6, budget=10) == 0


def test_max_peers_rejects_a_nonsense_width() -> None:
    with pytest.raises(ValueError):
        max_peers(0)


def test_reply_figures_are_clamped_to_signed_32_bits() -> None:
    reply = parse_announce_reply(encode_announce(1, 2**40, 2**33, 2**31, b""))
    assert (reply.interval, reply.leechers, reply.seeders) == (2**31 - 1,) * 3
    counts = parse_scrape_reply(encode_scrape(1, [SwarmCounts(2**40, 2**40, 2**40)])).counts
    assert counts == [SwarmCounts(2**31 - 1, 2**31 - 1, 2**31 - 1)]


# Round trips.

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i31 = st.integers(0, 2**31 - 1)
hash20 = st.binary(min_size=20, max_size=20)

announce_requests = st.builds(
    AnnounceRequestUdp,
    connection_id=u64,
    transaction_id=u32,
    info_hash=hash20,
    peer_id=hash20,
    downloaded=u64,
    left=u64,
    uploaded=u64,
    event=st.sampled_from(Event),
    ip=u32,
    key=u32,
    num_want=st.integers(-(2**31), 2**31 - 1),
    port=st.integers(1, 65535),
    url_data=st.binary(max_size=700),
)


@given(u32)
def test_connect_request_round_trip(transaction_id: int) -> None:
    assert parse_request(encode_connect_request(transaction_id)) == ConnectRequest(transaction_id)


@given(u32, u64)
def test_connect_reply_round_trip(transaction_id: int, connection_id: int) -> None:
    reply = parse_connect_reply(encode_connect(transaction_id, connection_id))
    assert reply == ConnectReply(transaction_id, connection_id)


@given(announce_requests)
def test_announce_request_round_trip(request: AnnounceRequestUdp) -> None:
    assert parse_request(encode_announce_request(request)) == request


@given(u32, i31, i31, i31, st.sampled_from([6, 18]), st.data())
def test_announce_reply_round_trip(
    transaction_id: int, interval: int, leechers: int, seeders: int, width: int, data: st.DataObject
) -> None:
    count = data.draw(st.integers(0, max_peers(width)))
    peers = data.draw(st.binary(min_size=width * count, max_size=width * count))
    reply = parse_reply(encode_announce(transaction_id, interval, leechers, seeders, peers))
    assert reply == AnnounceReply(transaction_id, interval, leechers, seeders, peers)


@given(u64, u32, st.lists(hash20, min_size=1, max_size=MAX_SCRAPE_HASHES))
def test_scrape_request_round_trip(
    connection_id: int, transaction_id: int, hashes: list[bytes]
) -> None:
    parsed = parse_request(encode_scrape_request(connection_id, transaction_id, hashes))
    assert parsed == ScrapeRequestUdp(connection_id, transaction_id, hashes)


@given(u32, st.lists(st.builds(SwarmCounts, i31, i31, i31), max_size=MAX_SCRAPE_HASHES))
def test_scrape_reply_round_trip(transaction_id: int, counts: list[SwarmCounts]) -> None:
    assert parse_reply(encode_scrape(transaction_id, counts)) == ScrapeReply(transaction_id, counts)


@given(u32, st.text(max_size=200))
def test_error_reply_round_trip(transaction_id: int, message: str) -> None:
    reply = parse_reply(encode_error(transaction_id, message))
    assert reply.transaction_id == transaction_id
    assert isinstance(reply, ErrorReply)
    assert reply.message == message.encode("utf-8", "replace").decode("utf-8", "replace")


def test_scrape_reply_beyond_request_cap_still_encodes() -> None:
    counts = [SwarmCounts(1, 2, 3)] * (MAX_SCRAPE_HASHES + 6)
    assert parse_scrape_reply(encode_scrape(4, counts)).counts == counts
