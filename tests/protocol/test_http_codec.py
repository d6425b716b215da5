"""The HTTP announce/scrape codec: raw-byte query parsing and bencoded replies."""

from __future__ import annotations

import contextlib
import ipaddress
import zlib
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.errors import ClientError
from shoal.protocol import bencode
from shoal.protocol.http import (
    encode_announce,
    encode_failure,
    encode_scrape,
    key_to_int,
    parse_announce,
    parse_query,
    parse_scrape,
    percent_decode,
    scrape_path,
)
from shoal.types import AnnounceResult, Event, SwarmCounts

INFO_HASH = bytes(range(20))
PEER_ID = b"-TR3000-" + bytes(range(0xF0, 0xFC))
V4 = b"\x7f\x00\x00\x01"
V6 = ipaddress.IPv6Address("2001:db8::1").packed


def q(value: bytes) -> bytes:
    """Percent-encode every byte, as a careful client does."""
    return b"".join(b"%%%02X" % c for c in value)


def query(**params: bytes | str | int | None) -> bytes:
    """A complete announce query; a parameter given as None is left out."""
    base: dict[str, bytes | str | int | None] = {
        "info_hash": INFO_HASH,
        "peer_id": PEER_ID,
        "port": 6881,
        "uploaded": 0,
        "downloaded": 0,
        "left": 100,
    }
    base.update(params)
    parts = []
    for name, value in base.items():
        if value is None:
            continue
        if isinstance(value, bytes):
            parts.append(name.encode() + b"=" + q(value))
        else:
            parts.append(f"{name}={value}".encode())
    return b"&".join(parts)


def announce(raw: bytes, peer_ip: bytes = V4, allow_ip: bool = False) -> tuple[object, bool]:
    return parse_announce(raw, peer_ip, allow_ip)


# percent_decode


def test_percent_decode_passes_plain_bytes_through() -> None:
    assert percent_decode(b"abcXYZ-._~") == b"abcXYZ-._~"


def test_percent_decode_yields_raw_bytes_including_nul_and_high_bytes() -> None:
    assert percent_decode(b"%00%7f%80%FF%fF") == b"\x00\x7f\x80\xff\xff"


def test_percent_decode_of_every_byte_value() -> None:
    everything = bytes(range(256))
    assert percent_decode(q(everything)) == everything


def test_percent_decode_mixes_literal_and_escaped_bytes() -> None:
    assert percent_decode(b"%41BC%44") == b"ABCD"


def test_plus_is_kept_as_byte_0x2b_not_a_space() -> None:
    # Pinned on purpose (PROTOCOL.md): opentracker and aquatic keep '+', and an info_hash
    # containing byte 0x2B may arrive unescaped.
    assert percent_decode(b"a+b") == b"a\x2bb"
    assert percent_decode(b"+%2B+") == b"+++"
    info_hash = b"+" * 20
    request, _ = announce(query(info_hash=None) + b"&info_hash=" + info_hash)
    assert request.info_hash == info_hash  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "raw", [b"%", b"abc%", b"%4", b"a%4", b"%G0", b"%0g", b"%%41", b"% 1", b"%\xff\xff", b"%-1"]
)
def test_percent_decode_refuses_truncated_or_non_hex_escapes(raw: bytes) -> None:
    with pytest.raises(ClientError):
        percent_decode(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"%41%\n", id="truncated-escape-before-lf"),
        pytest.param(b"%41%\r\n", id="truncated-escape-before-crlf"),
        pytest.param(b"%G%\rA\n", id="bad-escape-then-cr-text-lf"),
        pytest.param(b"%\n%41", id="lone-percent-then-lf"),
        pytest.param(b"x%=41", id="percent-equals"),
    ],
)
def test_percent_decode_refuses_bad_escapes_next_to_line_breaks_and_equals(raw: bytes) -> None:
    # Quoted-printable style shortcuts read '=' followed by CR/LF as a soft line break; a
    # percent-decoder must not.
    with pytest.raises(ClientError):
        percent_decode(raw)


def test_percent_decode_keeps_literal_equals_and_line_breaks() -> None:
    assert percent_decode(b"a=b%41\r\n=%3D") == b"a=bA\r\n=="


HEX_DIGITS = b"0123456789abcdefABCDEF"
non_hex_byte = st.integers(0, 255).filter(lambda c: c not in HEX_DIGITS).map(lambda c: bytes([c]))
bad_escapes = (
    st.just(b"%")
    | non_hex_byte.map(lambda c: b"%" + c)
    | st.tuples(st.sampled_from(HEX_DIGITS), non_hex_byte).map(
        lambda t: b"%" + bytes([t[0]]) + t[1]
    )
)


@given(st.binary(max_size=40), bad_escapes, st.binary(max_size=40))
def test_percent_decode_refuses_any_value_with_a_bad_escape(
    head: bytes, bad: bytes, tail: bytes
) -> None:
    escaped_head = quote_from_bytes(head, safe="=\r\n").encode()
    escaped_tail = quote_from_bytes(tail, safe="=\r\n").encode()
    for value in (escaped_head + bad, escaped_head + bad + b"z" + escaped_tail):
        with pytest.raises(ClientError):
            percent_decode(value)


def test_percent_decode_error_names_the_parameter() -> None:
    with pytest.raises(ClientError, match="peer_id"):
        percent_decode(b"%zz", "peer_id")


@given(st.binary(max_size=64))
def test_percent_decode_round_trips_any_bytes(data: bytes) -> None:
    assert percent_decode(quote_from_bytes(data, safe="").encode()) == data


def test_parse_query_keeps_repeats_and_order_and_decodes_keys() -> None:
    assert parse_query(b"a=1&b=%41&a=2&&c&d%5Fe=") == [
        (b"a", b"1"),
        (b"b", b"A"),
        (b"a", b"2"),
        (b"c", b""),
        (b"d_e", b""),
    ]


# parse_announce: the happy path


def test_parse_announce_reads_every_field() -> None:
    raw = query(
        uploaded=123, downloaded=456, left=789, event="started", numwant=30, key="DEADBEEF",
        compact=1,
    )
    request, compact = parse_announce(raw, V4, path=b"/announce")
    assert compact is True
    assert request.info_hash == INFO_HASH
    assert request.peer_id == PEER_ID
    assert request.addr == V4 + (6881).to_bytes(2, "big")
    assert (request.uploaded, request.downloaded, request.left) == (123, 456, 789)
    assert request.event is Event.STARTED
    assert request.numwant == 30
    assert request.key == 0xDEADBEEF
    assert request.want_peer_ids is False
    assert request.mixed_families is True
    assert request.path == b"/announce"


def test_parse_announce_uses_the_ipv6_socket_address() -> None:
    request, _ = announce(query(port=51413), V6)
    assert request.addr == V6 + b"\xc8\xd5"  # type: ignore[attr-defined]


def test_parse_announce_defaults() -> None:
    request, compact = parse_announce(query(), V4)
    assert compact is True
    assert request.event is Event.NONE
    assert request.numwant == -1
    assert request.key is None
    assert request.want_peer_ids is False


def test_parse_announce_ignores_unknown_and_optional_parameters() -> None:
    raw = query() + b"&trackerid=x&supportcrypto=1&corrupt=0&redundant=0&foo=%00&=&&bar"
    request, _ = parse_announce(raw, V4)
    assert request.info_hash == INFO_HASH


@pytest.mark.parametrize(
    ("text", "event"),
    [
        ("started", Event.STARTED),
        ("stopped", Event.STOPPED),
        ("completed", Event.COMPLETED),
        ("paused", Event.PAUSED),
        ("", Event.NONE),
        ("empty", Event.NONE),
        ("STARTED", Event.NONE),
        ("bogus", Event.NONE),
    ],
)
def test_parse_announce_events_and_unknown_event_tolerated(text: str, event: Event) -> None:
    request, _ = parse_announce(query(event=text), V4)
    assert request.event is event


# parse_announce: required parameters


@pytest.mark.parametrize(
    "missing", ["info_hash", "peer_id", "port", "uploaded", "downloaded", "left"]
)
def test_a_missing_required_parameter_is_a_failure_naming_it(missing: str) -> None:
    with pytest.raises(ClientError, match=f"missing {missing}"):
        parse_announce(query(**{missing: None}), V4)


def test_an_empty_query_names_info_hash_first() -> None:
    with pytest.raises(ClientError, match="info_hash"):
        parse_announce(b"", V4)


@pytest.mark.parametrize("name", ["info_hash", "peer_id"])
@pytest.mark.parametrize("length", [0, 1, 19, 21, 40])
def test_hash_and_peer_id_must_be_exactly_20_bytes(name: str, length: int) -> None:
    with pytest.raises(ClientError, match=f"{name} must be 20 bytes"):
        parse_announce(query(**{name: b"\xab" * length}), V4)


def test_a_40_character_hex_info_hash_is_not_20_bytes() -> None:
    with pytest.raises(ClientError, match="info_hash"):
        parse_announce(query(info_hash=None) + b"&info_hash=" + INFO_HASH.hex().encode(), V4)


@pytest.mark.parametrize("name", ["info_hash", "peer_id"])
def test_a_truncated_escape_in_a_hash_is_a_failure_naming_it(name: str) -> None:
    raw = query(**{name: None}) + f"&{name}=".encode() + q(b"x" * 19) + b"%4"
    with pytest.raises(ClientError, match=name):
        parse_announce(raw, V4)


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-1", "abc", "", "1.5", "0x10", " 1"])
def test_bad_ports_are_failures_naming_port(port: str) -> None:
    with pytest.raises(ClientError, match="port"):
        parse_announce(query(port=port), V4)


@pytest.mark.parametrize("port", [1, 65535])
def test_port_limits_are_accepted(port: int) -> None:
    request, _ = parse_announce(query(port=port), V4)
    assert request.addr[-2:] == port.to_bytes(2, "big")


@pytest.mark.parametrize("name", ["uploaded", "downloaded", "left"])
@pytest.mark.parametrize(
    "value",
    [
        "-1",
        "-0",
        "abc",
        "",
        "1e9",
        "+5",
        str(2**64),
        "9" * 25,
        "9" * 5000,
        "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit, not to the tracker
    ],
)
def test_counters_must_be_non_negative_integers_below_2_64(name: str, value: str) -> None:
    raw = query(**{name: None}) + f"&{name}=".encode() + value.encode()
    with pytest.raises(ClientError, match=name):
        parse_announce(raw, V4)


def test_counters_up_to_2_64_minus_1_are_accepted() -> None:
    request, _ = parse_announce(query(uploaded=2**64 - 1, downloaded=0, left=0), V4)
    assert request.uploaded == 2**64 - 1
    assert request.left == 0


def test_repeated_parameters_take_the_last_value() -> None:
    other = b"\xee" * 20
    raw = query(left=5) + b"&left=0&info_hash=" + q(other)
    request, _ = parse_announce(raw, V4)
    assert request.left == 0
    assert request.info_hash == other


def test_non_ascii_bytes_are_fine_in_hashes_and_unknown_parameters() -> None:
    raw = query(info_hash=None, peer_id=None) + (
        b"&info_hash=\xc3\xa9" + b"\xff" * 18 + b"&peer_id=" + b"\x80" * 20 + b"&\xe2\x82\xac=\xff"
    )
    request, _ = parse_announce(raw, V4)
    assert request.info_hash == b"\xc3\xa9" + b"\xff" * 18
    assert request.peer_id == b"\x80" * 20


# parse_announce: options


@pytest.mark.parametrize(
    ("extra", "compact", "want_ids"),
    [
        ("", True, False),
        ("compact=1", True, False),
        ("compact=0", False, True),
        ("compact=0&no_peer_id=1", False, False),
        ("compact=0&no_peer_id=0", False, True),
        ("compact=1&no_peer_id=1", True, False),
    ],
)
def test_compact_and_no_peer_id(extra: str, compact: bool, want_ids: bool) -> None:
    request, is_compact = parse_announce(query() + b"&" + extra.encode(), V4)
    assert is_compact is compact
    assert request.want_peer_ids is want_ids


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"DEADBEEF", 0xDEADBEEF),
        (b"deadbeef", 0xDEADBEEF),
        (b"1", 1),
        (b"00000000", 0),
        (b"123456789", zlib.crc32(b"123456789")),  # 9 digits: not a 32-bit hex key
        (b"not-hex!", zlib.crc32(b"not-hex!")),
        (b"\xff\x00", zlib.crc32(b"\xff\x00")),
    ],
)
def test_key_to_int(value: bytes, expected: int) -> None:
    assert key_to_int(value) == expected
    assert 0 <= key_to_int(value) < 2**32


def test_key_parameter_is_percent_decoded_then_reduced() -> None:
    request, _ = parse_announce(query(key=b"\x00\x01"), V4)
    assert request.key == zlib.crc32(b"\x00\x01")


@pytest.mark.parametrize(
    ("value", "expected"), [("50", 50), ("0", 0), ("-1", -1), ("-50", -50), ("1000", 1000)]
)
def test_numwant_is_passed_on_as_asked(value: str, expected: int) -> None:
    request, _ = parse_announce(query(numwant=value), V4)
    assert request.numwant == expected


@pytest.mark.parametrize("value", ["9" * 11, "9" * 30, str(2**64 + 1)])
def test_a_huge_numwant_is_capped_not_refused(value: str) -> None:
    request, _ = parse_announce(query(numwant=value), V4)
    assert request.numwant >= 2**31 - 1


def test_a_hugely_negative_numwant_means_the_default() -> None:
    request, _ = parse_announce(query(numwant="-" + "9" * 30), V4)
    assert request.numwant <= 0


@pytest.mark.parametrize("value", ["abc", "", "-", "1.5", "--1"])
def test_a_non_integer_numwant_is_a_failure_naming_it(value: str) -> None:
    with pytest.raises(ClientError, match="numwant"):
        parse_announce(query(numwant=value), V4)


# the ip / ipv4 / ipv6 parameters


@pytest.mark.parametrize("param", ["ip=10.9.8.7", "ipv4=10.9.8.7", "ipv6=2001:db8::9"])
def test_ip_parameters_are_ignored_unless_allowed(param: str) -> None:
    request, _ = parse_announce(query() + b"&" + param.encode(), V4, allow_ip_param=False)
    assert request.addr[:-2] == V4


@pytest.mark.parametrize(
    ("param", "address"),
    [
        ("ip=10.9.8.7", "10.9.8.7"),
        ("ip=10.9.8.7:1234", "10.9.8.7"),
        ("ip=2001:db8::9", "2001:db8::9"),
        ("ip=%5B2001:db8::9%5D", "2001:db8::9"),
        ("ip=[2001:db8::9]:6881", "2001:db8::9"),
        ("ipv4=10.9.8.7", "10.9.8.7"),
        ("ipv6=2001:db8::9", "2001:db8::9"),
        ("ipv6=2001%3Adb8%3A%3A9", "2001:db8::9"),
        ("ip=::ffff:10.9.8.7", "10.9.8.7"),
    ],
)
def test_ip_parameters_are_honoured_when_allowed(param: str, address: str) -> None:
    request, _ = parse_announce(query() + b"&" + param.encode(), V4, allow_ip_param=True)
    assert request.addr[:-2] == ipaddress.ip_address(address).packed
    assert request.addr[-2:] == (6881).to_bytes(2, "big")


@pytest.mark.parametrize(
    "param", ["ip=example.com", "ip=", "ipv4=2001:db8::9", "ipv6=10.9.8.7", "ip=1.2.3.4.5"]
)
def test_unusable_ip_parameters_fall_back_to_the_socket_address(param: str) -> None:
    request, _ = parse_announce(query() + b"&" + param.encode(), V4, allow_ip_param=True)
    assert request.addr[:-2] == V4


def test_a_malformed_escape_in_an_allowed_ip_parameter_is_a_failure() -> None:
    with pytest.raises(ClientError, match="ip"):
        parse_announce(query() + b"&ip=%zz", V4, allow_ip_param=True)


def test_with_both_families_given_the_socket_family_wins() -> None:
    raw = query() + b"&ipv6=2001:db8::9&ipv4=10.9.8.7"
    request, _ = parse_announce(raw, V4, allow_ip_param=True)
    assert request.addr[:-2] == ipaddress.ip_address("10.9.8.7").packed
    request, _ = parse_announce(raw, V6, allow_ip_param=True)
    assert request.addr[:-2] == ipaddress.ip_address("2001:db8::9").packed


# hostile input


@given(st.binary(max_size=300))
def test_any_query_bytes_raise_only_client_error(raw: bytes) -> None:
    for allow in (False, True):
        with contextlib.suppress(ClientError):
            parse_announce(raw, V4, allow)


query_atoms = st.sampled_from(
    [b"info_hash", b"peer_id", b"port", b"uploaded", b"downloaded", b"left", b"event",
     b"compact", b"numwant", b"key", b"no_peer_id", b"ip", b"ipv4", b"ipv6", b"=", b"&", b"%",
     b"%4", b"%41", b"%zz", b"-", b"+", b"0", b"1", b"65536", b"99999999999999999999999",
     b"[", b"]", b":", b"::1", b"1.2.3.4", b"\xff", b"\x00"]
)


@given(st.lists(query_atoms | st.binary(max_size=4), max_size=60).map(b"".join))
def test_query_like_bytes_raise_only_client_error(raw: bytes) -> None:
    for allow in (False, True):
        with contextlib.suppress(ClientError):
            parse_announce(raw, V6, allow)


@given(st.binary(min_size=20, max_size=20), st.binary(min_size=20, max_size=20),
       st.integers(1, 65535), st.integers(0, 2**64 - 1))
def test_well_formed_announces_round_trip(
    info_hash: bytes, peer_id: bytes, port: int, left: int
) -> None:
    request, _ = parse_announce(query(info_hash=info_hash, peer_id=peer_id, port=port,
                                      left=left), V4)
    assert (request.info_hash, request.peer_id, request.left) == (info_hash, peer_id, left)
    assert request.addr == V4 + port.to_bytes(2, "big")


# parse_scrape


def test_parse_scrape_reads_repeated_info_hashes_in_order() -> None:
    a, b = b"\xaa" * 20, b"\xbb" * 20
    raw = b"info_hash=" + q(a) + b"&info_hash=" + q(b) + b"&info_hash=" + q(a)
    assert parse_scrape(raw, 64) == [a, b, a]


def test_parse_scrape_without_info_hash_is_a_full_scrape() -> None:
    assert parse_scrape(b"", 64) == []
    assert parse_scrape(b"foo=bar", 64) == []


def test_parse_scrape_caps_the_number_of_hashes() -> None:
    raw = b"&".join(b"info_hash=" + q(bytes([i]) * 20) for i in range(5))
    assert len(parse_scrape(raw, 5)) == 5
    with pytest.raises(ClientError, match="at most 4"):
        parse_scrape(raw, 4)


@pytest.mark.parametrize("bad", [b"info_hash=abc", b"info_hash=" + q(b"x" * 21), b"info_hash=%z"])
def test_parse_scrape_refuses_bad_hashes(bad: bytes) -> None:
    with pytest.raises(ClientError, match="info_hash"):
        parse_scrape(bad, 64)


@given(st.binary(max_size=200))
def test_any_scrape_query_raises_only_client_error(raw: bytes) -> None:
    with contextlib.suppress(ClientError):
        parse_scrape(raw, 3)


# scrape_path (BEP 48's examples)


@pytest.mark.parametrize(
    ("announce_path", "expected"),
    [
        (b"/announce", b"/scrape"),
        (b"/x/announce", b"/x/scrape"),
        (b"/announce.php", b"/scrape.php"),
        (b"/a", None),
        (b"/announce?x2%0644", b"/scrape?x2%0644"),
        (b"/announce?x=2/4", None),
        (b"/x%064announce", None),
        (b"/0123456789abcdef/announce", b"/0123456789abcdef/scrape"),
        (b"/announce/x", None),
        (b"", None),
    ],
)
def test_scrape_path_per_bep_48(announce_path: bytes, expected: bytes | None) -> None:
    assert scrape_path(announce_path) == expected


# encode_announce

PEER_A = b"\x0a\x00\x00\x01\x1a\xe1"  # 10.0.0.1:6881
PEER_B = b"\x0a\x00\x00\x02\x1a\xe2"  # 10.0.0.2:6882
PEER_C = ipaddress.IPv6Address("2001:db8::c").packed + b"\x1a\xe3"  # [2001:db8::c]:6883
ID_A, ID_B, ID_C = b"A" * 20, b"B" * 20, b"C" * 20


def result(**kw: object) -> AnnounceResult:
    base: dict[str, object] = dict(complete=2, incomplete=3, downloaded=4, interval=1800,
                                   min_interval=300)
    base.update(kw)
    return AnnounceResult(**base)  # type: ignore[arg-type]


def test_encode_announce_golden_compact_without_peers_still_has_peers() -> None:
    assert encode_announce(result(), True, V4) == (
        b"d8:completei2e10:downloadedi4e11:external ip4:\x7f\x00\x00\x01"
        b"10:incompletei3e8:intervali1800e12:min intervali300e5:peers0:e"
    )


def test_encode_announce_golden_compact_ipv4_peers_and_no_peers6() -> None:
    wire = encode_announce(result(peers4=PEER_A + PEER_B), True, V4)
    assert wire.endswith(b"5:peers12:" + PEER_A + PEER_B + b"e")
    assert b"peers6" not in wire


def test_encode_announce_golden_compact_with_ipv6_peers() -> None:
    wire = encode_announce(result(peers4=PEER_A, peers6=PEER_C), True, V6)
    assert wire == (
        b"d8:completei2e10:downloadedi4e11:external ip16:" + V6 +
        b"10:incompletei3e8:intervali1800e12:min intervali300e"
        b"5:peers6:" + PEER_A + b"6:peers618:" + PEER_C + b"e"
    )


def test_encode_announce_compact_decodes_with_sorted_keys() -> None:
    wire = encode_announce(result(peers4=PEER_A, peers6=PEER_C), True, V4, warning="slow down")
    decoded = bencode.decode(wire)  # the strict decoder refuses unsorted keys
    assert decoded == {
        b"complete": 2,
        b"incomplete": 3,
        b"downloaded": 4,
        b"interval": 1800,
        b"min interval": 300,
        b"external ip": V4,
        b"peers": PEER_A,
        b"peers6": PEER_C,
        b"warning message": b"slow down",
    }


def test_encode_announce_dictionary_peers_with_peer_ids() -> None:
    r = result(peers4=PEER_A + PEER_B, peers6=PEER_C, peer_ids4=ID_A + ID_B, peer_ids6=ID_C)
    wire = encode_announce(r, False, V4)
    assert b"5:peersld2:ip8:10.0.0.17:peer id20:" + ID_A + b"4:porti6881ee" in wire
    decoded = bencode.decode(wire)
    assert isinstance(decoded, dict)
    assert b"peers6" not in decoded
    assert decoded[b"peers"] == [
        {b"ip": b"10.0.0.1", b"peer id": ID_A, b"port": 6881},
        {b"ip": b"10.0.0.2", b"peer id": ID_B, b"port": 6882},
        {b"ip": b"2001:db8::c", b"peer id": ID_C, b"port": 6883},
    ]


def test_encode_announce_dictionary_peers_without_peer_ids() -> None:
    wire = encode_announce(result(peers4=PEER_A, peers6=PEER_C), False, V4)
    decoded = bencode.decode(wire)
    assert isinstance(decoded, dict)
    assert decoded[b"peers"] == [
        {b"ip": b"10.0.0.1", b"port": 6881},
        {b"ip": b"2001:db8::c", b"port": 6883},
    ]


def test_encode_announce_dictionary_peers_empty_list() -> None:
    wire = encode_announce(result(), False, V4)
    assert b"5:peerslee" in wire
    decoded = bencode.decode(wire)
    assert isinstance(decoded, dict)
    assert decoded[b"peers"] == []


def test_encode_announce_non_ascii_warning_is_measured_in_bytes() -> None:
    wire = encode_announce(result(), True, V4, warning="\u00e9t\u00e9")
    assert b"15:warning message5:\xc3\xa9t\xc3\xa9e" in wire


peer_lists4 = st.lists(st.binary(min_size=6, max_size=6), max_size=10)
peer_lists6 = st.lists(st.binary(min_size=18, max_size=18), max_size=10)


@given(peer_lists4, peer_lists6, st.booleans(), st.integers(0, 2**40))
def test_encode_announce_always_decodes(
    peers4: list[bytes], peers6: list[bytes], compact: bool, count: int
) -> None:
    r = result(complete=count, peers4=b"".join(peers4), peers6=b"".join(peers6),
               peer_ids4=b"i" * 20 * len(peers4), peer_ids6=b"j" * 20 * len(peers6))
    decoded = bencode.decode(encode_announce(r, compact, V6))
    assert isinstance(decoded, dict)
    assert decoded[b"complete"] == count
    peers = decoded[b"peers"]
    if compact:
        assert peers == b"".join(peers4)
        assert decoded.get(b"peers6", b"") == b"".join(peers6)
        assert (b"peers6" in decoded) == bool(peers6)
    else:
        assert isinstance(peers, list)
        assert len(peers) == len(peers4) + len(peers6)


# encode_failure


def test_encode_failure_golden() -> None:
    assert encode_failure("missing port") == b"d14:failure reason12:missing porte"


def test_encode_failure_with_retry_in_minutes() -> None:
    assert encode_failure("busy", 5) == b"d14:failure reason4:busy8:retry ini5ee"


def test_encode_failure_with_retry_in_never() -> None:
    wire = encode_failure("unregistered torrent", "never")
    assert wire == b"d14:failure reason20:unregistered torrent8:retry in5:nevere"
    assert bencode.decode(wire) == {b"failure reason": b"unregistered torrent",
                                    b"retry in": b"never"}


def test_encode_failure_non_ascii_reason() -> None:
    assert bencode.decode(encode_failure("\u00fcber")) == {b"failure reason": b"\xc3\xbcber"}


# encode_scrape


def test_encode_scrape_golden() -> None:
    h = b"\x01" * 20
    assert encode_scrape([h], [SwarmCounts(1, 2, 3)]) == (
        b"d5:filesd20:" + h + b"d8:completei1e10:downloadedi3e10:incompletei2eeee"
    )


def test_encode_scrape_empty() -> None:
    assert encode_scrape([], []) == b"d5:filesdee"


def test_encode_scrape_sorts_hashes_and_lists_duplicates_once() -> None:
    a, b = b"\xaa" * 20, b"\x0b" * 20
    wire = encode_scrape([a, b, a], [SwarmCounts(1, 0, 0), SwarmCounts(0, 1, 0),
                                     SwarmCounts(1, 0, 0)])
    decoded = bencode.decode(wire)
    assert decoded == {
        b"files": {
            b: {b"complete": 0, b"incomplete": 1, b"downloaded": 0},
            a: {b"complete": 1, b"incomplete": 0, b"downloaded": 0},
        }
    }
    assert wire.index(b) < wire.index(a)


@given(st.dictionaries(st.binary(min_size=20, max_size=20),
                       st.tuples(st.integers(0, 2**32), st.integers(0, 2**32),
                                 st.integers(0, 2**32)), max_size=20))
def test_encode_scrape_round_trips(files: dict[bytes, tuple[int, int, int]]) -> None:
    hashes = list(files)
    counts = [SwarmCounts(*files[h]) for h in hashes]
    decoded = bencode.decode(encode_scrape(hashes, counts))
    assert decoded == {
        b"files": {
            h: {b"complete": c, b"incomplete": i, b"downloaded": d}
            for h, (c, i, d) in files.items()
        }
    }
