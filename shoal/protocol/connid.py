"""Stateless UDP connection ids (BEP 15): a keyed hash of the client address and the time.

The tracker keeps nothing per client: an id carries the second it was issued and a MAC over
that second and the client's address, so any process holding the same secret can check it.

Layout of the 64-bit id (big-endian, as it travels)::

    bits 63..48  issue time in seconds, modulo 2**16 (the "stamp")
    bits 47..0   BLAKE2b-48 tag, keyed with the secret, over (full issue time, address)

Why this split: the tag is what stops forgery, so it gets most of the bits. A blind forger
succeeds with probability 2**-48 per datagram; at a million spoofed datagrams a second that is
about one success in nine years, where a 32-bit tag would fall in about an hour. The stamp only
has to tell which second inside the acceptance window the id was issued, so 16 bits suffice:
the verifier rebuilds the full time from ``now`` and the stamp, and a wrong guess simply fails
the tag check.

Trade-offs: ``ttl + skew`` must stay below 2**16 seconds (about 18 hours); ids cannot be revoked
one by one, only all at once by changing the secret (clients then reconnect, one round trip);
an id is bound to the source ip *and* port, so a client whose NAT mapping changes reconnects;
anyone on the path can replay an id within its window, as with any BEP 15 id; the stamp reveals
the issue second, which is harmless. Processes sharing a secret must have clocks within ``skew``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

DEFAULT_TTL = 120
"""Seconds an id is accepted; BEP 15 clients may use one for a minute, so allow two."""

DEFAULT_SKEW = 5
"""Seconds an id may appear to come from the future (clock drift between processes)."""

_STAMP_SHIFT = 48
_STAMP_MOD = 1 << 16
_TAG_BYTES = 6
_TAG_MASK = (1 << (8 * _TAG_BYTES)) - 1
_U64_MAX = (1 << 64) - 1
_PERSON = b"shoal/udp-connid"  # BLAKE2 personalisation: ids never collide with other MACs
_TIME = struct.Struct(">q")
_MAX_KEY = 64


class ConnectionIds:
    """Issues and checks connection ids bound to a client address for ``ttl`` seconds.

    ``secret`` is any non-empty byte string (32 random bytes recommended; longer than 64 bytes
    is hashed down). ``issue`` and ``valid`` take the client's packed address (ip + port, 6 or
    18 bytes) and the current unix time; they read no clock themselves.
    """

    __slots__ = ("_mac", "key", "skew", "ttl")

    def __init__(self, secret: bytes, ttl: int = DEFAULT_TTL, skew: int = DEFAULT_SKEW) -> None:
        if not secret:
            raise ValueError("connection id secret must not be empty")
        if ttl < 1 or skew < 0 or ttl + skew >= _STAMP_MOD:
            raise ValueError(f"need 1 <= ttl and 0 <= skew with ttl + skew < {_STAMP_MOD}")
        if len(secret) > _MAX_KEY:
            secret = hashlib.blake2b(secret, digest_size=_MAX_KEY).digest()
        self.key = secret
        """The BLAKE2b key (the secret, hashed down if longer than 64 bytes), for a compiled
        twin of this class that must issue and accept the same ids."""
        self.ttl = ttl
        self.skew = skew
        self._mac = hashlib.blake2b(key=secret, digest_size=_TAG_BYTES, person=_PERSON)

    def _tag(self, issued: int, addr: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(_TIME.pack(issued) + addr)
        return mac.digest()

    def issue(self, addr: bytes, now: int) -> int:
        """A fresh id for the client at ``addr``, valid from ``now`` for ``ttl`` seconds."""
        tag = int.from_bytes(self._tag(now, addr), "big")
        return ((now % _STAMP_MOD) << _STAMP_SHIFT) | tag

    def valid(self, conn_id: int, addr: bytes, now: int) -> bool:
        """Whether ``conn_id`` was issued to ``addr`` in the last ``ttl`` seconds (constant time).

        Ids up to ``skew`` seconds in the future are accepted, for processes whose clocks drift.
        """
        return self.window(conn_id, addr, now) is not None

    def window(self, conn_id: int, addr: bytes, now: int) -> tuple[int, int] | None:
        """When ``conn_id`` is valid for ``addr`` -- (first second, last second) -- if it is
        valid ``now``, else ``None``; a caller may remember a checked id for that window."""
        if not 0 <= conn_id <= _U64_MAX:
            return None
        age = (now - (conn_id >> _STAMP_SHIFT)) % _STAMP_MOD
        if age >= self.ttl:
            ahead = _STAMP_MOD - age
            if ahead > self.skew:
                return None
            age = -ahead
        issued = now - age
        expected = self._tag(issued, addr)
        if hmac.compare_digest(expected, (conn_id & _TAG_MASK).to_bytes(_TAG_BYTES, "big")):
            return issued - self.skew, issued + self.ttl - 1
        return None
