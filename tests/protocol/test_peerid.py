"""Client names and versions decoded from peer_id prefixes (BEP 20 conventions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.protocol.peerid import UNKNOWN, Client, decode


def _id(prefix: bytes) -> bytes:
    return prefix + b"x" * (20 - len(prefix))


@pytest.mark.parametrize(
    ("prefix", "name", "version"),
    [
        (b"-TR2940-", "Transmission", "2.94"),
        (b"-TR3000-", "Transmission", "3.00"),
        (b"-TR300Z-", "Transmission", "3.00+"),
        (b"-TR4050-", "Transmission", "4.0.5"),
        (b"-TR0072-", "Transmission", "0.72"),
        (b"-TR0006-", "Transmission", "0.6"),
        (b"-qB4520-", "qBittorrent", "4.5.2"),
        (b"-qB5010-", "qBittorrent", "5.0.1"),
        (b"-LT2090-", "libtorrent (rasterbar)", "2.0.9"),
        (b"-lt0D80-", "libtorrent (rakshasa)", "0.13.8"),
        (b"-UT355W-", "\u00b5Torrent", "3.5.5"),
        (b"-DE13F0-", "Deluge", "1.3.15"),
        (b"-DE2110-", "Deluge", "2.1.1"),
        (b"-AZ5770-", "Vuze", "5.7.7"),
        (b"-BI3610-", "BiglyBT", "3.6.1"),
        (b"-KT5230-", "KTorrent", "5.2.3"),
        (b"A2-1-36-0-", "aria2", "1.36.0"),
        (b"M7-2-2--", "BitTorrent (Mainline)", "7.2.2"),
        (b"M4-20-8-", "BitTorrent (Mainline)", "4.20.8"),
        (b"S58B-----", "Shadow", "5.8.11"),
        (b"T03I-----", "BitTornado", "0.3.18"),
    ],
)
def test_known_prefixes_decode_to_client_and_version(
    prefix: bytes, name: str, version: str
) -> None:
    assert decode(_id(prefix)) == Client(name, version)


@pytest.mark.parametrize(
    "peer_id",
    [
        b"",
        b"-ZZ1234-" + b"x" * 12,  # unregistered two-letter code
        b"\x00" * 20,
        b"01234567890123456789",
        b"-TR29",  # too short
        b"Sxxxxxxxxxxxxxxxxxxx",  # shadow letter without the dash padding
    ],
)
def test_unrecognised_ids_are_unknown(peer_id: bytes) -> None:
    assert decode(peer_id) == UNKNOWN
    assert decode(peer_id).label == "unknown"


def test_known_client_with_unreadable_version_keeps_its_name() -> None:
    assert decode(_id(b"-qB4\xff20-")) == Client("qBittorrent", "")


def test_label_joins_name_and_version() -> None:
    assert decode(_id(b"-TR2940-")).label == "Transmission 2.94"


@given(st.binary(min_size=0, max_size=20))
def test_decoding_never_raises(peer_id: bytes) -> None:
    client = decode(peer_id)
    assert isinstance(client.name, str) and isinstance(client.version, str)
