"""The private-mode side of the benchmark (the ``shoal-private`` target).

Shoal in private mode serves only registered torrents to registered users, each request
carrying a passkey. To replay the same workload against it, every distinct peer of the
workload is one user (the site's id ``peer index + 1``) with a passkey derived from the
seed, and every torrent of the workload is registered. A user then runs at most one peer
per torrent (the workload's peer joins a torrent once), so the per-user peer limit never
refuses the workload. Scrapes carry the passkey of a user picked from the scraped hashes.

The users and torrents reach the tracker as one bulk import (JSON lines, ``POST
/api/v1/import``) before the fill. Nothing here does IO.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass

from bench.workload import Announce, Op, Workload

PASSKEY_ALPHABET = string.ascii_letters + string.digits
PASSKEY_LENGTH = 32
PEER_ID_PREFIX = b"-SB0001-"  # workload.peer_id_for: the prefix, then the index in 12 digits


def passkey_for(seed: int, index: int) -> str:
    """The passkey of user ``index`` under ``seed``: 32 characters from the alphabet of
    Shoal's generated passkeys, the same for the same seed and index."""
    digest = hashlib.blake2b(
        f"shoal-bench-passkey/{seed}/{index}".encode(), digest_size=PASSKEY_LENGTH
    ).digest()
    return "".join(PASSKEY_ALPHABET[b % len(PASSKEY_ALPHABET)] for b in digest)


def peer_index(peer_id: bytes) -> int:
    """The workload's index of the peer with ``peer_id`` (the inverse of
    :func:`bench.workload.peer_id_for`)."""
    if not peer_id.startswith(PEER_ID_PREFIX) or not peer_id[len(PEER_ID_PREFIX) :].isdigit():
        raise ValueError(f"not a benchmark peer id: {peer_id!r}")
    return int(peer_id[len(PEER_ID_PREFIX) :])


@dataclass(frozen=True, slots=True)
class PrivateAccounts:
    """One user per peer of a workload, and the workload's torrents."""

    passkeys: tuple[str, ...]
    info_hashes: tuple[bytes, ...]

    @classmethod
    def for_workload(cls, workload: Workload) -> PrivateAccounts:
        seed = workload.config.seed
        return cls(
            tuple(passkey_for(seed, i) for i in range(workload.config.peers)),
            tuple(workload.info_hashes),
        )

    def user_id(self, index: int) -> int:
        """The site's id of user ``index``."""
        return index + 1

    def passkey_of(self, op: Op) -> str:
        """The passkey ``op`` is sent with: its peer's for an announce; for a scrape, that of
        a user picked by the first scraped hash."""
        if isinstance(op, Announce):
            return self.passkeys[peer_index(op.peer_id)]
        pick = int.from_bytes(op.info_hashes[0][:4]) % len(self.passkeys)
        return self.passkeys[pick]

    def import_body(self) -> bytes:
        """The bulk import of every user and torrent, as JSON lines."""
        lines = [
            json.dumps({"type": "user", "id": self.user_id(i), "passkey": pk})
            for i, pk in enumerate(self.passkeys)
        ]
        lines += [
            json.dumps({"type": "torrent", "info_hash": h.hex()}) for h in self.info_hashes
        ]
        return ("\n".join(lines) + "\n").encode()

