"""Access rules as plain data: each rule alone, and the set built from settings."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.peers import request

from shoal.engine.rules import (
    BANNED,
    CLIENT_NOT_ALLOWED,
    TORRENT_NOT_ALLOWED,
    AccessRules,
    NetworkSet,
)
from shoal.errors import ClientError
from shoal.types import AnnounceRequest

V4 = ipaddress.IPv4Address
A, B = bytes([1]) * 20, bytes([2]) * 20


def announce(torrent: bytes = A, peer_id: bytes = b"-TR2940-000000000001") -> AnnounceRequest:
    req = request(1, torrent=torrent)
    req.peer_id = peer_id
    return req


def check(rules: AccessRules, req: AnnounceRequest, source: bytes = b"\x0a\0\0\1") -> None:
    for rule in rules.announce_rules():
        rule(req, source)


def test_no_settings_make_no_rules() -> None:
    assert AccessRules.build().announce_rules() == ()


@pytest.mark.parametrize(("networks", "inside", "outside"), [
    (["10.0.0.0/8"], "10.200.1.1", "11.0.0.1"),
    (["192.0.2.7"], "192.0.2.7", "192.0.2.8"),
    (["2001:db8::/32"], "2001:db8:1::5", "2001:db9::1"),
    (["::ffff:198.51.100.0/120"], "198.51.100.9", "198.51.101.9"),  # IPv4-mapped is IPv4
    (["0.0.0.0/0"], "203.0.113.1", "::1"),
])
def test_network_set_membership(networks: list[str], inside: str, outside: str) -> None:
    nets = NetworkSet(networks)
    assert ipaddress.ip_address(inside).packed in nets
    assert ipaddress.ip_address(outside).packed not in nets


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=8),
       st.integers(0, 2**32 - 1))
def test_network_set_agrees_with_ipaddress(nets: list[tuple[int, int]], ip: int) -> None:
    texts = [f"{V4(n)}/{p}" for n, p in nets]
    expected = any(V4(ip) in ipaddress.ip_network(t, strict=False) for t in texts)
    assert (V4(ip).packed in NetworkSet(texts)) == expected


def test_a_bad_network_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        AccessRules.build(banned_networks=["10.0.0.0/33"])


def test_banned_source_is_refused_with_a_lasting_reason() -> None:
    rules = AccessRules.build(banned_networks=["10.0.0.0/24"])
    with pytest.raises(ClientError) as refused:
        check(rules, announce(), b"\x0a\0\0\x05")
    assert (refused.value.reason, refused.value.retry_in) == (BANNED, 60)
    check(rules, request(70_000), b"\x0b\0\0\x05")  # another source, a peer outside


def test_allow_list_serves_only_listed_torrents() -> None:
    rules = AccessRules.build("allow", [A])
    check(rules, announce(A))
    with pytest.raises(ClientError, match=TORRENT_NOT_ALLOWED):
        check(rules, announce(B))


def test_deny_list_refuses_listed_torrents() -> None:
    rules = AccessRules.build("deny", [A])
    check(rules, announce(B))
    with pytest.raises(ClientError, match=TORRENT_NOT_ALLOWED):
        check(rules, announce(A))


def test_unknown_torrent_mode_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        AccessRules.build("maybe")


def test_client_prefixes_match_the_raw_bytes() -> None:
    rules = AccessRules.build(client_allow=["-TR", b"\xff\x01"], client_deny=["-TR1"])
    check(rules, announce(peer_id=b"-TR2940-000000000001"))
    check(rules, announce(peer_id=b"\xff\x01" + bytes(18)))
    for refused in (b"-TR1000-000000000001", b"-qB4520-000000000001"):
        with pytest.raises(ClientError, match=CLIENT_NOT_ALLOWED):
            check(rules, announce(peer_id=refused))


def test_summary_says_what_is_restricted() -> None:
    rules = AccessRules.build("allow", [A, B], client_deny=["-XX", "-YY", "-ZZ"],
                              banned_networks=["10.0.0.0/8"])
    assert rules.summary() == ("2 allowed torrents, 3 client prefixes denied, "
                               "1 banned networks")
    assert AccessRules.build().summary() == "all torrents, 0 banned networks"
