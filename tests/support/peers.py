"""Test helpers: numbered peers and torrents, announce requests, and reply decoding.

Peer ``n`` has peer id ``-SH0100-<n, 12 digits>``, IPv4 address ``10.x.y.z`` (``n`` in the
low three bytes) and IPv6 address ``2001:db8::<n>``; ``variant`` shifts the port, so one
peer can announce from a second address. Decoding a reply maps each address back to
``(peer number, variant)``, which lets a test check every entry against what it expects.
"""

from __future__ import annotations

import hashlib

from shoal.types import AnnounceRequest, AnnounceResult, Event

BASE_PORT = 6881


def info_hash(name: str) -> bytes:
    return hashlib.sha1(name.encode()).digest()


TORRENT = info_hash("torrent a")
OTHER_TORRENT = info_hash("torrent b")
UNKNOWN_TORRENT = info_hash("never announced")


def peer_id(n: int) -> bytes:
    return f"-SH0100-{n:012d}".encode()


def peer_number(pid: bytes) -> int:
    assert pid.startswith(b"-SH0100-"), pid
    return int(pid[8:])


def addr4(n: int, variant: int = 0) -> bytes:
    assert 0 <= n < 1 << 24
    return bytes([10]) + n.to_bytes(3, "big") + (BASE_PORT + variant).to_bytes(2, "big")


def addr6(n: int, variant: int = 0) -> bytes:
    ip = bytes.fromhex("20010db8") + bytes(8) + n.to_bytes(4, "big")
    return ip + (BASE_PORT + variant).to_bytes(2, "big")


def addr(n: int, v6: bool = False, variant: int = 0) -> bytes:
    return addr6(n, variant) if v6 else addr4(n, variant)


def decode_addr(entry: bytes) -> tuple[int, int]:
    """``(peer number, variant)`` of a compact entry made by :func:`addr4`/:func:`addr6`."""
    port = int.from_bytes(entry[-2:], "big")
    if len(entry) == 6:
        assert entry[0] == 10, entry
        return int.from_bytes(entry[1:4], "big"), port - BASE_PORT
    assert len(entry) == 18 and entry[:12] == bytes.fromhex("20010db8") + bytes(8), entry
    return int.from_bytes(entry[12:16], "big"), port - BASE_PORT


def request(
    n: int,
    *,
    torrent: bytes = TORRENT,
    left: int = 100,
    event: Event = Event.NONE,
    v6: bool = False,
    variant: int = 0,
    key: int | None = None,
    numwant: int = -1,
    mixed: bool = True,
    ids: bool = False,
) -> AnnounceRequest:
    """An announce by peer ``n`` (a leecher unless ``left=0``)."""
    return AnnounceRequest(
        info_hash=torrent,
        peer_id=peer_id(n),
        addr=addr(n, v6, variant),
        uploaded=0,
        downloaded=0,
        left=left,
        event=event,
        numwant=numwant,
        key=key,
        mixed_families=mixed,
        want_peer_ids=ids,
    )


def split(data: bytes, width: int) -> list[bytes]:
    assert len(data) % width == 0, (len(data), width)
    return [data[i : i + width] for i in range(0, len(data), width)]


def peers4(result: AnnounceResult) -> list[int]:
    """Peer numbers in ``peers4``, in reply order."""
    return [decode_addr(e)[0] for e in split(result.peers4, 6)]


def peers6(result: AnnounceResult) -> list[int]:
    """Peer numbers in ``peers6``, in reply order."""
    return [decode_addr(e)[0] for e in split(result.peers6, 18)]


def all_peers(result: AnnounceResult) -> list[int]:
    return peers4(result) + peers6(result)
