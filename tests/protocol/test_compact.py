"""Compact peer entries: 6 bytes for IPv4 (BEP 23), 18 bytes for IPv6 (BEP 7)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.protocol.compact import normalize_ip, pack_peer, unpack_peers


def test_pack_ipv4_golden() -> None:
    assert pack_peer("10.0.0.1", 6881) == b"\x0a\x00\x00\x01\x1a\xe1"


def test_pack_ipv6_golden() -> None:
    assert pack_peer("2001:db8::1", 51413) == (
        b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01" + b"\xc8\xd5"
    )


def test_pack_port_extremes() -> None:
    assert pack_peer("0.0.0.0", 0) == b"\0" * 6
    assert pack_peer("255.255.255.255", 65535) == b"\xff" * 6


def test_unpack_ipv4_golden() -> None:
    data = b"\x7f\x00\x00\x01\x1a\xe1\xc0\xa8\x01\x02\x00\x50"
    assert unpack_peers(data, 6) == [("127.0.0.1", 6881), ("192.168.1.2", 80)]


def test_unpack_ipv6_golden() -> None:
    data = b"\x00" * 15 + b"\x01" + b"\x1a\xe1"
    assert unpack_peers(data, 18) == [("::1", 6881)]


def test_unpack_empty() -> None:
    assert unpack_peers(b"", 6) == []
    assert unpack_peers(b"", 18) == []


@pytest.mark.parametrize(("data", "width"), [(b"\0" * 7, 6), (b"\0" * 17, 18), (b"\0" * 6, 5)])
def test_unpack_refuses_bad_lengths_and_widths(data: bytes, width: int) -> None:
    with pytest.raises(ValueError):
        unpack_peers(data, width)


def test_normalize_maps_ipv4_mapped_ipv6_to_ipv4() -> None:
    mapped = ipaddress.IPv6Address("::ffff:192.0.2.7").packed
    assert normalize_ip(mapped) == b"\xc0\x00\x02\x07"


@pytest.mark.parametrize(
    "address", ["::1", "2001:db8::ffff:1.2.3.4", "::1.2.3.4", "1.2.3.4", "::fffe:1.2.3.4"]
)
def test_normalize_leaves_other_addresses_alone(address: str) -> None:
    packed = ipaddress.ip_address(address).packed
    assert normalize_ip(packed) == packed


ports = st.integers(min_value=0, max_value=65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)


@given(st.lists(st.tuples(ipv4, ports), max_size=20))
def test_ipv4_round_trip(peers: list[tuple[str, int]]) -> None:
    data = b"".join(pack_peer(ip, port) for ip, port in peers)
    assert len(data) == 6 * len(peers)
    assert unpack_peers(data, 6) == peers


@given(st.lists(st.tuples(ipv6, ports), max_size=20))
def test_ipv6_round_trip(peers: list[tuple[str, int]]) -> None:
    data = b"".join(pack_peer(ip, port) for ip, port in peers)
    assert len(data) == 18 * len(peers)
    assert unpack_peers(data, 18) == peers


@given(st.binary(min_size=4, max_size=4))
def test_normalize_of_a_mapped_address_gives_back_the_ipv4_bytes(v4: bytes) -> None:
    assert normalize_ip(b"\0" * 10 + b"\xff\xff" + v4) == v4
    assert normalize_ip(v4) == v4
