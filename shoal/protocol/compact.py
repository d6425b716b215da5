"""Compact peer entries (BEP 23 for IPv4, BEP 7 for IPv6): address then port, network order."""

from __future__ import annotations

import ipaddress
import struct

_PORT = struct.Struct("!H")


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


def normalize_ip(packed: bytes) -> bytes:
    """Map an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) to its 4 IPv4 bytes."""
    if len(packed) == 16 and packed[:12] == b"\0" * 10 + b"\xff\xff":
        return packed[12:]
    return packed
