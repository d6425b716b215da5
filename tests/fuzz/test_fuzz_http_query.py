"""Fuzzing the HTTP announce and scrape query codec (shoal.protocol.http).

For any bytes, ``parse_announce``, ``parse_scrape`` and ``percent_decode`` either give a
valid record or raise ClientError, nothing else; well-formed queries, however they are
percent-encoded, give back exactly the bytes that were encoded.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.errors import ClientError
from shoal.protocol.http import parse_announce, parse_scrape, percent_decode
from shoal.types import Event

from .corpus import FUZZ, seeds

PEER_V4 = bytes([127, 0, 0, 1])
PEER_V6 = bytes(15) + b"\x01"
MAX_U64 = 2**64 - 1
HEX = b"0123456789abcdefABCDEF"
KEYS = [
    b"info_hash", b"peer_id", b"port", b"uploaded", b"downloaded", b"left", b"event",
    b"compact", b"numwant", b"key", b"no_peer_id", b"ip", b"ipv4", b"ipv6", b"trackerid",
]
# Bytes that may stand for themselves in a query value: not the separators, not '%'.
LITERAL_SAFE = frozenset(range(0x21, 0x7F)) - set(b"&=%#")


def reference_percent_decode(value: bytes) -> bytes | None:
    """The specification, written plainly: %XX is one byte, anything else after '%' is
    malformed (None); every other byte, '+' included, stands for itself."""
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == 0x25:
            pair = value[i + 1 : i + 3]
            if len(pair) < 2 or pair[0] not in HEX or pair[1] not in HEX:
                return None
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(value[i])
            i += 1
    return bytes(out)


def check_announce(query: bytes, peer_ip: bytes = PEER_V4, allow_ip_param: bool = False) -> None:
    """The contract: a valid record, or ClientError with a reason."""
    try:
        request, compact = parse_announce(query, peer_ip, allow_ip_param, b"/announce")
    except ClientError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return
    assert isinstance(compact, bool)
    assert len(request.info_hash) == 20
    assert len(request.peer_id) == 20
    assert len(request.addr) in (6, 18)
    if not allow_ip_param:
        assert request.addr[:-2] == peer_ip
    assert 1 <= int.from_bytes(request.addr[-2:], "big") <= 65535
    for number in (request.uploaded, request.downloaded, request.left):
        assert 0 <= number <= MAX_U64
    assert isinstance(request.event, Event)
    assert -(2**31) < request.numwant < 10**10
    assert request.key is None or 0 <= request.key < 2**32
    assert request.path == b"/announce"


def check_scrape(query: bytes, max_hashes: int = 64) -> None:
    try:
        hashes = parse_scrape(query, max_hashes)
    except ClientError as exc:
        assert exc.reason
        return
    assert len(hashes) <= max_hashes
    assert all(isinstance(h, bytes) and len(h) == 20 for h in hashes)


def encode_bytes(data: bytes, rng: random.Random) -> bytes:
    """``data`` with every byte encoded one of the ways a client may: itself (when that is
    legal), %XX or %xx. (A seeded Random per example: drawing each byte's choice from
    hypothesis costs ten times as much.)"""
    out = []
    for byte in data:
        choices = ["upper", "lower"] + (["literal"] * 2 if byte in LITERAL_SAFE else [])
        how = rng.choice(choices)
        if how == "literal":
            out.append(bytes([byte]))
        elif how == "upper":
            out.append(b"%%%02X" % byte)
        else:
            out.append(b"%%%02x" % byte)
    return b"".join(out)


# Arbitrary bytes, and "query soup": known and unknown keys with hostile values.
value_soup = st.one_of(
    st.binary(max_size=40),
    st.binary(min_size=20, max_size=20).map(lambda b: b"".join(b"%%%02x" % x for x in b)),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: str(n).encode()),
    st.sampled_from(
        [b"", b"%", b"%4", b"%zz", b"%%", b"+", b"-", b"-0", b"0" * 30, b"\x00", b"\r\n",
         b"127.0.0.1", b"[::1]:80", b"::ffff:10.0.0.1", b"10.0.0.1:6881", b"\xff" * 4,
         b"started", b"stopped", b"completed", b"paused", b"\xd9\xa0"]
    ),
)
query_soup = st.lists(
    st.tuples(st.one_of(st.sampled_from(KEYS), st.binary(max_size=8)), value_soup),
    max_size=16,
).map(lambda items: b"&".join(k + b"=" + v for k, v in items))
any_query = st.one_of(st.binary(max_size=300), query_soup)


@FUZZ
@given(any_query, st.sampled_from([PEER_V4, PEER_V6]), st.booleans())
@example(b"info_hash=" + b"%41" * 20 + b"&peer_id=" + b"B" * 20 + b"&port=0", PEER_V4, False)
@example(b"numwant=-" + b"9" * 40, PEER_V4, False)
def test_announce_parses_or_refuses_with_client_error(
    query: bytes, peer_ip: bytes, allow_ip_param: bool
) -> None:
    check_announce(query, peer_ip, allow_ip_param)


@st.composite
def announce_queries(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """A valid announce, every byte of every value randomly encoded, keys in random order,
    keys repeated (the last wins) and unknown keys and empty items mixed in."""
    fields: dict[str, object] = {
        "info_hash": draw(st.binary(min_size=20, max_size=20)),
        "peer_id": draw(st.binary(min_size=20, max_size=20)),
        "port": draw(st.integers(1, 65535)),
        "uploaded": draw(st.integers(0, MAX_U64)),
        "downloaded": draw(st.integers(0, MAX_U64)),
        "left": draw(st.integers(0, MAX_U64)),
        "event": draw(st.sampled_from(["", "started", "stopped", "completed", "paused"])),
        "numwant": draw(st.one_of(st.none(), st.integers(-(2**31) + 1, 2**31 - 1))),
        "key": draw(st.one_of(st.none(), st.integers(0, 2**32 - 1))),
        "compact": draw(st.sampled_from([None, "0", "1"])),
    }
    rng = draw(st.randoms(use_true_random=False))
    items: list[bytes] = []
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bytes):
            raw = value
        elif name == "key":
            raw = b"%08x" % value  # type: ignore[str-format]
        else:
            raw = str(value).encode()
        if draw(st.booleans()):  # an earlier, garbage occurrence the last one overrides
            items.append(name.encode() + b"=" + draw(st.binary(max_size=6)).replace(b"&", b""))
        encoded = raw if name in ("port", "uploaded", "downloaded", "left", "numwant", "event",
                                  "compact") else encode_bytes(raw, rng)
        items.append(name.encode() + b"=" + encoded)
        if draw(st.integers(0, 4)) == 0:
            items.append(draw(st.sampled_from([b"", b"x=1", b"pad=%20+", b"supportcrypto=1"])))
    shuffled = list(items)
    rng.shuffle(shuffled)
    # Shuffled, but each key's occurrences back in their own order: the valid one is last.
    by_key: dict[bytes, list[bytes]] = {}
    for item in items:
        by_key.setdefault(item.partition(b"=")[0], []).append(item)
    cursor = {k: 0 for k in by_key}
    final = []
    for item in shuffled:
        k = item.partition(b"=")[0]
        final.append(by_key[k][cursor[k]])
        cursor[k] += 1
    return b"&".join(final), fields


@FUZZ
@given(announce_queries())
def test_every_encoding_of_a_valid_announce_round_trips(
    case: tuple[bytes, dict[str, object]],
) -> None:
    query, f = case
    request, compact = parse_announce(query, PEER_V4)
    assert request.info_hash == f["info_hash"]
    assert request.peer_id == f["peer_id"]
    assert request.addr == PEER_V4 + f["port"].to_bytes(2, "big")  # type: ignore[attr-defined]
    assert (request.uploaded, request.downloaded, request.left) == (
        f["uploaded"], f["downloaded"], f["left"]
    )
    event_names = {"": Event.NONE, "started": Event.STARTED, "stopped": Event.STOPPED,
                   "completed": Event.COMPLETED, "paused": Event.PAUSED}
    assert request.event == event_names[f["event"]]  # type: ignore[index]
    assert request.numwant == (-1 if f["numwant"] is None else f["numwant"])
    assert request.key == f["key"]
    assert compact == (f["compact"] != "0")


@FUZZ
@given(st.one_of(st.binary(max_size=300), query_soup), st.integers(1, 80))
@example(b"info_hash=%", 64)
@example(b"info_hash=" + b"a" * 20 + b"&info_hash=" + b"b" * 20, 1)
def test_scrape_parses_or_refuses_with_client_error(query: bytes, max_hashes: int) -> None:
    check_scrape(query, max_hashes)


@FUZZ
@given(st.lists(st.binary(min_size=20, max_size=20), max_size=20), st.data())
def test_every_encoding_of_a_scrape_round_trips(hashes: list[bytes], data: st.DataObject) -> None:
    rng = data.draw(st.randoms(use_true_random=False))
    items = [b"info_hash=" + encode_bytes(h, rng) for h in hashes]
    noise = data.draw(st.lists(st.sampled_from([b"", b"peer_id=xyz", b"x", b"info_hashes=1"])))
    for item in noise:
        items.insert(data.draw(st.integers(0, len(items))), item)
    assert parse_scrape(b"&".join(items), 64) == hashes


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        st.lists(st.sampled_from([b"%", b"=", b"%4", b"%41", b"%e9", b"\r", b"\n", b"+", b"a",
                                  b"\x00", b"%%", b"=4", b"= ", b" ", b"\t"]), max_size=30
                 ).map(b"".join),
    )
)
@example(b"%41%")
@example(b"%41=")
@example(b"%4\n1")
def test_percent_decode_agrees_with_the_plain_reading(value: bytes) -> None:
    expected = reference_percent_decode(value)
    try:
        decoded = percent_decode(value)
    except ClientError:
        assert expected is None, f"refused a well-formed value {value!r}"
        return
    assert decoded == expected


@pytest.mark.parametrize("query", seeds("http_query"))
def test_announce_corpus(query: bytes) -> None:
    check_announce(query)
    check_announce(query, PEER_V6, allow_ip_param=True)


@pytest.mark.parametrize("query", seeds("http_scrape"))
def test_scrape_corpus(query: bytes) -> None:
    check_scrape(query)
    check_scrape(query, 1)
