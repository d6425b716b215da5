"""What the machine's network offers the tests."""

from __future__ import annotations

import socket


def has_ipv6_loopback(kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    """Whether a ``kind`` socket can bind to ::1 here (some containers have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, kind) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True
