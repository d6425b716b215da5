"""Compact peer entries (BEP 23 for IPv4, BEP 7 for IPv6): address then port, network order."""

from __future__ import annotations

import ipaddress
import struct

_PORT = struct.Struct("!H")
_V4_MAPPED = bytes(10) + b"\xff\xff"


def pack_peer(ip: str, port: int) -> bytes:
    """``"1.2.3.4", 6881`` -> 6 bytes; an IPv6 address gives 18 bytes."""
    return ipaddress.ip_address(ip).packed + _PORT.pack(port)


def unpack_peers(data: bytes, width: int) -> list[tuple[str, int]]:
    """Split a compact peer string of ``width``-byte entries (6 or 18) into (ip, port)."""
    if width not in (6, 18):
        raise ValueError("width must be 6 or 18")
    if len(data) % width:
        raise ValueError(f"length {len(data)} is not a multiple of {width}")
    out = []
    for i in range(0, len(data), width):
        ip = ipaddress.ip_address(data[i : i + width - 2])
        out.append((str(ip), _PORT.unpack_from(data, i + width - 2)[0]))
    return out


def pack_address(ip: bytes, port: int) -> bytes:
    """A packed IP (4 or 16 bytes) and a port -> the compact entry (6 or 18 bytes)."""
    return ip + port.to_bytes(2, "big")


def normalize_ip(packed: bytes) -> bytes:
    """Map an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) to its 4 IPv4 bytes."""
    if len(packed) == 16 and packed[:12] == _V4_MAPPED:
        return packed[12:]
    return packed
