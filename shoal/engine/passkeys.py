"""Passkeys: how they are made, which ones are accepted, and how they are found without
timing leaks.

A generated passkey is 32 characters drawn uniformly (``secrets``) from :data:`ALPHABET`,
the 62 ASCII letters and digits: about 190 bits, and safe in a URL path or query without
escaping. A passkey a site brings (moving from another tracker) may be 16 to 64 characters
from the URL-unreserved set (letters, digits, ``-``, ``.``, ``_``, ``~``).

:class:`PasskeyIndex` finds the user of a passkey by a keyed BLAKE2b digest of it (so the
dictionary's own comparisons are on values a client cannot steer) and then compares the
passkey itself with :func:`hmac.compare_digest`, so the time taken does not depend on how
much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterator
from typing import Generic, TypeVar

ALPHABET = string.ascii_letters + string.digits
LENGTH = 32
MIN_LENGTH = 16
MAX_LENGTH = 64
_ACCEPTED = frozenset(ALPHABET + "-._~")

V = TypeVar("V")


def generate() -> str:
    """A new passkey: :data:`LENGTH` characters from :data:`ALPHABET`."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def problem(passkey: str) -> str | None:
    """Why ``passkey`` cannot be used, or None when it can."""
    if not MIN_LENGTH <= len(passkey) <= MAX_LENGTH:
        return f"a passkey is {MIN_LENGTH} to {MAX_LENGTH} characters, got {len(passkey)}"
    if not set(passkey) <= _ACCEPTED:
        return "a passkey may hold only letters, digits and - . _ ~"
    return None


class PasskeyIndex(Generic[V]):
    """Values (users) by passkey, found in constant time with respect to the passkey's
    content; see the module docstring."""

    __slots__ = ("_by_digest", "_key")

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self._by_digest: dict[bytes, tuple[bytes, V]] = {}

    def _digest(self, passkey: bytes) -> bytes:
        return hashlib.blake2b(passkey, key=self._key, digest_size=16).digest()

    def put(self, passkey: str, value: V) -> None:
        raw = passkey.encode("ascii")
        self._by_digest[self._digest(raw)] = (raw, value)

    def remove(self, passkey: str) -> None:
        self._by_digest.pop(self._digest(passkey.encode("ascii")), None)

    def get(self, passkey: bytes) -> V | None:
        """The value of ``passkey`` (raw bytes from a request), or None."""
        if not passkey or len(passkey) > MAX_LENGTH:
            return None
        found = self._by_digest.get(self._digest(passkey))
        if found is None or not hmac.compare_digest(found[0], passkey):
            return None
        return found[1]

    def __len__(self) -> int:
        return len(self._by_digest)

    def values(self) -> Iterator[V]:
        return (value for _, value in self._by_digest.values())
