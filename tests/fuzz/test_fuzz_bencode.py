"""Fuzzing bencode (shoal.protocol.bencode).

``decode`` of any bytes returns a value or raises BencodeError, nothing else; since it
accepts canonical encodings only, whatever it accepts encodes back to the very same bytes;
and every value encodes and decodes back to itself.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.protocol.bencode import Bencodable, BencodeError, decode, encode

from .corpus import FUZZ, seeds


def check_decode(data: bytes) -> None:
    try:
        value = decode(data)
    except BencodeError as exc:
        assert str(exc)
        return
    assert encode(value) == data


values: st.SearchStrategy[Bencodable] = st.recursive(
    st.one_of(st.binary(max_size=30), st.integers(), st.integers(-(10**60), 10**60)),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.binary(max_size=8), children, max_size=5),
    ),
    max_leaves=30,
)
# Streams of bencode's own tokens reach deeper than uniform bytes.
token_soup = st.lists(
    st.sampled_from([b"i", b"l", b"d", b"e", b"0", b"1", b"9", b"-", b":", b"3:abc", b"i0e",
                     b"i-0e", b"i01e", b"01:a", b"\xff", b"99999999999999999999:"]),
    max_size=40,
).map(b"".join)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid encoding with a few bytes replaced, inserted or removed."""
    data = bytearray(encode(draw(values)))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from(b"ilde0123456789:-x"))
        if how == "insert":
            data.insert(pos, byte)
        elif pos < len(data):
            if how == "replace":
                data[pos] = byte
            else:
                del data[pos]
    return bytes(data)


@FUZZ
@given(st.one_of(st.binary(max_size=200), token_soup, mutated()))
@example(b"l" * 5000 + b"e" * 5000)
@example(b"i" + b"9" * 5000 + b"e")
@example(b"9" * 5000 + b":")
def test_decode_raises_only_bencode_error_and_accepts_only_canonical_input(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(values)
def test_values_round_trip(value: Bencodable) -> None:
    assert decode(encode(value)) == value


@pytest.mark.parametrize("data", seeds("bencode"))
def test_corpus(data: bytes) -> None:
    check_decode(data)
