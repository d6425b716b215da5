"""Socket addresses to packed IPs: the one place the servers turn an address string from
the event loop into the 4 or 16 bytes the codecs and the store use.

An IPv6 address may carry a zone (``fe80::1%eth0``), which is dropped; an IPv4-mapped IPv6
address (``::ffff:a.b.c.d``, as an IPv4 client appears on a dual-stack socket) becomes its
IPv4 bytes, so that client is stored, answered and banned as the IPv4 client it is.
"""

from __future__ import annotations

import socket

from shoal.protocol.compact import normalize_ip

_INET = socket.AF_INET
_INET6 = socket.AF_INET6
_pton = socket.inet_pton


def packed_ip(host: str) -> bytes:
    """``"1.2.3.4"`` -> 4 bytes, ``"2001:db8::1%eth0"`` -> 16 bytes; raises OSError (or
    ValueError) for what is not an address."""
    if ":" in host:
        return normalize_ip(_pton(_INET6, host.partition("%")[0]))
    return _pton(_INET, host)
