"""Bencode (BEP 3): golden bytes from the BEP, canonical-only decoding, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.protocol.bencode import Bencodable, BencodeError, decode, encode

# The examples of BEP 3, plus the edge cases a strict decoder must get right.
GOLDEN: list[tuple[Bencodable, bytes]] = [
    (b"spam", b"4:spam"),
    (b"", b"0:"),
    (3, b"i3e"),
    (-3, b"i-3e"),
    (0, b"i0e"),
    (2**64, b"i18446744073709551616e"),
    ([b"spam", b"eggs"], b"l4:spam4:eggse"),
    ([], b"le"),
    ({b"cow": b"moo", b"spam": b"eggs"}, b"d3:cow3:moo4:spam4:eggse"),
    ({b"spam": [b"a", b"b"]}, b"d4:spaml1:a1:bee"),
    (
        {
            b"publisher": b"bob",
            b"publisher-webpage": b"www.example.com",
            b"publisher.location": b"home",
        },
        b"d9:publisher3:bob17:publisher-webpage15:www.example.com18:publisher.location4:homee",
    ),
    ({}, b"de"),
    (b"\x00\xff:e", b"4:\x00\xff:e"),
]


@pytest.mark.parametrize(("value", "wire"), GOLDEN)
def test_encode_golden(value: Bencodable, wire: bytes) -> None:
    assert encode(value) == wire


@pytest.mark.parametrize(("value", "wire"), GOLDEN)
def test_decode_golden(value: Bencodable, wire: bytes) -> None:
    assert decode(wire) == value


def test_encode_sorts_dictionary_keys_as_raw_bytes() -> None:
    assert encode({b"b": 1, b"a": 2, b"B": 3}) == b"d1:Bi3e1:ai2e1:bi1ee"


def test_encode_accepts_str_as_utf8() -> None:
    assert encode("\u00e9") == b"2:\xc3\xa9"
    assert encode({"k": "v"}) == b"d1:k1:ve"  # type: ignore[dict-item]


def test_encode_refuses_booleans() -> None:
    with pytest.raises(TypeError):
        encode(True)


def test_encode_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        encode(1.5)  # type: ignore[arg-type]


def test_encode_refuses_non_string_dictionary_keys() -> None:
    with pytest.raises(TypeError):
        encode({5: b"x"})  # type: ignore[dict-item]


def test_encode_refuses_keys_that_collide_once_encoded() -> None:
    with pytest.raises(ValueError):
        encode({"a": 1, b"a": 2})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"i03e", id="int-leading-zero"),
        pytest.param(b"i00e", id="int-double-zero"),
        pytest.param(b"i-0e", id="int-negative-zero"),
        pytest.param(b"i-03e", id="int-negative-leading-zero"),
        pytest.param(b"ie", id="int-empty"),
        pytest.param(b"i-e", id="int-only-minus"),
        pytest.param(b"i+3e", id="int-plus-sign"),
        pytest.param(b"i 3e", id="int-space"),
        pytest.param(b"i3", id="int-unterminated"),
        pytest.param(b"i1.5e", id="int-fraction"),
        pytest.param(b"03:abc", id="length-leading-zero"),
        pytest.param(b"-1:a", id="length-negative"),
        pytest.param(b"5:abc", id="string-truncated"),
        pytest.param(b"4spam", id="length-without-colon"),
        pytest.param(b"l4:spam", id="list-unterminated"),
        pytest.param(b"d3:cow3:moo", id="dict-unterminated"),
        pytest.param(b"d3:cowe", id="dict-key-without-value"),
        pytest.param(b"d4:spam4:eggs3:cow3:mooe", id="dict-unsorted"),
        pytest.param(b"d3:cow3:moo3:cow3:mooe", id="dict-duplicate-key"),
        pytest.param(b"di1ei2ee", id="dict-integer-key"),
        pytest.param(b"i3ei4e", id="trailing-value"),
        pytest.param(b"4:spamx", id="trailing-byte"),
        pytest.param(b"", id="empty"),
        pytest.param(b"x", id="unknown-type"),
        pytest.param(b"e", id="lone-end"),
        pytest.param(b"l" * 1000 + b"e" * 1000, id="nested-too-deeply"),
    ],
)
def test_decode_rejects_non_canonical_or_broken_input(wire: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(wire)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"i" + b"1" * 5000 + b"e", id="integer-beyond-int-str-limit"),
        pytest.param(b"9" * 5000 + b":x", id="length-beyond-int-str-limit"),
        pytest.param(b"99999999999999999999:x", id="length-past-end"),
    ],
)
def test_decode_reports_huge_numbers_as_bencode_errors(wire: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(wire)


def test_bencode_error_is_a_value_error() -> None:
    assert issubclass(BencodeError, ValueError)


def test_decode_error_names_the_offset() -> None:
    with pytest.raises(BencodeError, match="offset 4"):
        decode(b"l1:ai01ee")


values: st.SearchStrategy[Bencodable] = st.recursive(
    st.binary(max_size=40) | st.integers(min_value=-(2**70), max_value=2**70),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.binary(max_size=12), children, max_size=6),
    max_leaves=30,
)


@given(values)
def test_round_trip_encode_then_decode(value: Bencodable) -> None:
    assert decode(encode(value)) == value


@given(values)
def test_encoding_is_canonical(value: Bencodable) -> None:
    wire = encode(value)
    assert encode(decode(wire)) == wire


@given(st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_raises_only_bencode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except BencodeError:
        return
    assert encode(value) == data  # whatever is accepted is canonical
