"""One torrent's swarm: who is in it, who is seeding, and which peers to hand out.

Peers are kept per address family, and within a family seeders apart from leechers, so a
seeder is answered from the leechers alone and a reply never mixes families by accident.
Each :class:`PeerList` stores its peers' compact addresses back to back in one bytearray
(the bytes the reply is made of), with the peer ids, last-announce times and keys in
parallel arrays at the same slot. Removal moves the last peer into the hole, so slots stay
dense, and a reply is a random contiguous run of slots: picking N peers costs O(N), never
O(swarm). (Written by hand rather than with a container library because this is the
announce hot path and the memory per peer is a published target.)
"""

from __future__ import annotations

import random
from array import array

from shoal.errors import ClientError
from shoal.types import AnnounceRequest, Event

NO_KEY = -1
_CURSOR_STEP = 2  # peers checked for expiry on each announce to a swarm


class PeerList:
    """Peers of one role (seeders or leechers) and one address family, in dense slots."""

    __slots__ = ("addrs", "ids", "keys", "seen", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.addrs = bytearray()
        self.ids: list[bytes] = []
        self.seen = array("q")
        self.keys = array("q")

    def __len__(self) -> int:
        return len(self.ids)

    def addr(self, slot: int) -> bytes:
        w = self.width
        return bytes(self.addrs[slot * w : slot * w + w])

    def append(self, peer_id: bytes, addr: bytes, now: int, key: int) -> int:
        slot = len(self.ids)
        self.addrs += addr
        self.ids.append(peer_id)
        self.seen.append(now)
        self.keys.append(key)
        return slot

    def remove(self, slot: int) -> bytes | None:
        """Remove the peer at ``slot``; return the id of the peer moved into it, if any."""
        last = len(self.ids) - 1
        w = self.width
        moved: bytes | None = None
        if slot != last:
            self.addrs[slot * w : slot * w + w] = self.addrs[last * w :]
            moved = self.ids[slot] = self.ids[last]
            self.seen[slot] = self.seen[last]
            self.keys[slot] = self.keys[last]
        del self.addrs[last * w :]
        self.ids.pop()
        self.seen.pop()
        self.keys.pop()
        return moved

    def pick(
        self, count: int, skip: int, rng: random.Random, with_ids: bool
    ) -> tuple[bytes, list[bytes]]:
        """Up to ``count`` peers from a random contiguous run of slots, leaving out ``skip``.

        Returns the peers' compact addresses joined, and their ids when ``with_ids``.
        """
        n = len(self.ids)
        available = n - 1 if 0 <= skip < n else n
        if count <= 0 or available <= 0:
            return b"", []
        if count >= available:
            runs = [(0, n)]
        else:
            start = rng.randrange(n)
            end = start + count
            if skip >= 0 and (start <= skip < end or skip < end - n):
                end += 1
            runs = [(start, end)] if end <= n else [(start, n), (0, end - n)]
        if 0 <= skip < n:
            split: list[tuple[int, int]] = []
            for a, b in runs:
                if a <= skip < b:
                    if a < skip:
                        split.append((a, skip))
                    if skip + 1 < b:
                        split.append((skip + 1, b))
                else:
                    split.append((a, b))
            runs = split
        w = self.width
        data = self.addrs
        if len(runs) == 1:
            a, b = runs[0]
            addrs = bytes(data[a * w : b * w])
        else:
            addrs = b"".join([data[a * w : b * w] for a, b in runs])
        ids: list[bytes] = []
        if with_ids:
            for a, b in runs:
                ids.extend(self.ids[a:b])
        return addrs, ids


class FamilyPeers:
    """The peers of one address family in a swarm: seeders, leechers and an index by id.

    The index maps a peer id to ``slot * 2 + is_seeder``. A client that announces over
    IPv4 and over IPv6 with one peer id is two peers, one in each family, as it is reachable
    at both addresses.
    """

    __slots__ = ("index", "leechers", "seeders")

    def __init__(self, width: int) -> None:
        self.index: dict[bytes, int] = {}
        self.seeders = PeerList(width)
        self.leechers = PeerList(width)

    def __len__(self) -> int:
        return len(self.index)

    def _list(self, code: int) -> PeerList:
        return self.seeders if code & 1 else self.leechers

    def insert(self, peer_id: bytes, addr: bytes, now: int, key: int, seeder: bool) -> int:
        lst = self.seeders if seeder else self.leechers
        code = lst.append(peer_id, addr, now, key) * 2 + seeder
        self.index[peer_id] = code
        return code

    def remove(self, code: int) -> None:
        lst = self._list(code)
        slot = code >> 1
        del self.index[lst.ids[slot]]
        moved = lst.remove(slot)
        if moved is not None:
            self.index[moved] = code

    def expire(self, before: int, lst: PeerList, seeder: int, start: int, stop: int) -> int:
        """Remove the peers of ``lst`` in slots ``start:stop`` last seen before ``before``."""
        removed = 0
        seen = lst.seen
        slot = min(stop, len(lst)) - 1
        while slot >= start:
            if seen[slot] < before:
                self.remove(slot * 2 + seeder)
                removed += 1
            slot -= 1
        return removed


class Swarm:
    """One torrent: its peers by family, its completed count and when it was last touched."""

    __slots__ = ("completed", "cursor", "last_seen", "v4", "v6")

    def __init__(self) -> None:
        self.v4: FamilyPeers | None = None
        self.v6: FamilyPeers | None = None
        self.completed = 0
        self.last_seen = 0
        self.cursor = 0

    def counts(self) -> tuple[int, int]:
        """(seeders, leechers) over both families."""
        seeders = leechers = 0
        for fam in (self.v4, self.v6):
            if fam is not None:
                seeders += len(fam.seeders)
                leechers += len(fam.leechers)
        return seeders, leechers

    def __len__(self) -> int:
        return (len(self.v4) if self.v4 else 0) + (len(self.v6) if self.v6 else 0)

    def expire(self, before: int) -> int:
        """Remove every peer last seen before ``before``; return how many went."""
        removed = 0
        for fam in (self.v4, self.v6):
            if fam is not None:
                removed += fam.expire(before, fam.seeders, 1, 0, len(fam.seeders))
                removed += fam.expire(before, fam.leechers, 0, 0, len(fam.leechers))
        return removed

    def _expire_some(self, before: int) -> None:
        """Lazy expiry: check a couple of peers at a rolling cursor on each announce.

        The cursor runs over seeders and leechers as one sequence, one peer at a time, so
        in a steady swarm every peer is checked once in about ``len / _CURSOR_STEP``
        announces (a run clipped at the seeder/leecher boundary would skip some for good).
        """
        for fam in (self.v4, self.v6):
            if fam is None:
                continue
            for step in range(_CURSOR_STEP):
                n_seed = len(fam.seeders)
                total = n_seed + len(fam.leechers)
                if not total:
                    break
                pos = (self.cursor + step) % total
                if pos < n_seed:
                    fam.expire(before, fam.seeders, 1, pos, pos + 1)
                else:
                    fam.expire(before, fam.leechers, 0, pos - n_seed, pos - n_seed + 1)
        self.cursor += _CURSOR_STEP

    def announce(
        self,
        request: AnnounceRequest,
        now: int,
        numwant: int,
        timeout: int,
        rng: random.Random,
    ) -> tuple[bytes, bytes, list[bytes], list[bytes]]:
        """Apply one announce and pick the peers to return.

        Returns ``(peers4, peers6, ids4, ids6)``. Raises :class:`ClientError` when the peer
        id is registered from another address and the request does not prove, with the same
        BEP 7 key, that it is the same client.
        """
        self.last_seen = now
        self._expire_some(now - timeout)
        addr = request.addr
        is_v6 = len(addr) == 18
        fam = self.v6 if is_v6 else self.v4
        if fam is None:
            if request.event == Event.STOPPED:
                return b"", b"", [], []
            fam = FamilyPeers(len(addr))
            if is_v6:
                self.v6 = fam
            else:
                self.v4 = fam
        peer_id = request.peer_id
        code = fam.index.get(peer_id)
        key = NO_KEY if request.key is None else request.key
        if code is not None:
            lst = fam._list(code)
            slot = code >> 1
            w = lst.width
            if lst.addrs[slot * w : slot * w + w] != addr:
                registered = lst.keys[slot]
                if registered == NO_KEY or registered != key:
                    raise ClientError(
                        "peer_id is in use from another address; send its key"
                    )
                lst.addrs[slot * w : slot * w + w] = addr
            if request.event == Event.STOPPED:
                fam.remove(code)
                return b"", b"", [], []
            lst.seen[slot] = now
            if lst.keys[slot] == NO_KEY:  # a peer that registered keyless adopts its first key
                lst.keys[slot] = key
            seeder = request.left == 0
            if seeder != bool(code & 1):
                registered = lst.keys[slot]  # the peer keeps its key in its new role
                fam.remove(code)
                code = fam.insert(peer_id, addr, now, registered, seeder)
                if seeder:
                    self.completed += 1
        elif request.event == Event.STOPPED:
            return b"", b"", [], []
        else:
            code = None
        want_seeders = request.left != 0 and request.event != Event.PAUSED
        with_ids = request.want_peer_ids
        own_skip = -1 if code is None else code
        own, own_ids = _pick(fam, numwant, own_skip, want_seeders, rng, with_ids)
        other = b""
        other_ids: list[bytes] = []
        if request.mixed_families:
            remaining = numwant - len(own) // len(addr)
            other_fam = self.v4 if is_v6 else self.v6
            if remaining > 0 and other_fam is not None:
                # The same client over the other family is still the requester.
                other_code = other_fam.index.get(peer_id, -1)
                other, other_ids = _pick(
                    other_fam, remaining, other_code, want_seeders, rng, with_ids
                )
        if code is None:
            fam.insert(peer_id, addr, now, key, request.left == 0)
        if is_v6:
            return other, own, other_ids, own_ids
        return own, other, own_ids, other_ids


def _pick(
    fam: FamilyPeers,
    count: int,
    own_code: int,
    want_seeders: bool,
    rng: random.Random,
    with_ids: bool,
) -> tuple[bytes, list[bytes]]:
    """Pick ``count`` peers of one family: leechers only for a seeder, else a mix, seeders
    first, in proportion to the swarm's make-up. ``own_code`` is the requester's index code
    (or -1), so it is never handed itself."""
    seed_skip = own_code >> 1 if own_code >= 0 and own_code & 1 else -1
    leech_skip = own_code >> 1 if own_code >= 0 and not own_code & 1 else -1
    n_leech = len(fam.leechers) - (leech_skip >= 0)
    if not want_seeders:
        return fam.leechers.pick(count, leech_skip, rng, with_ids)
    n_seed = len(fam.seeders) - (seed_skip >= 0)
    if n_seed + n_leech <= count:
        take_seed, take_leech = n_seed, n_leech
    else:
        take_seed = min(n_seed, round(count * n_seed / (n_seed + n_leech)))
        take_leech = min(n_leech, count - take_seed)
        take_seed = min(n_seed, count - take_leech)
    seeds, seed_ids = fam.seeders.pick(take_seed, seed_skip, rng, with_ids)
    leeches, leech_ids = fam.leechers.pick(take_leech, leech_skip, rng, with_ids)
    if not leeches:
        return seeds, seed_ids
    return seeds + leeches, seed_ids + leech_ids
