"""One torrent's swarm: who is in it, who is seeding, and which peers to hand out.

Peers are kept per address family (:class:`FamilyPeers`), so a reply never mixes families by
accident. Within a family, every peer has a slot, and the slots are dense: seeders fill
slots ``0 .. seeders-1`` and leechers the rest. Each slot's compact address lives back to
back in one bytearray (the bytes a reply is made of), its 20-byte peer id in another, and
its last-announce time and key in an array of 32-bit words. So:

- a reply is a random contiguous run of slots from the seeder or the leecher region, copied
  as one or two slices: picking N peers costs O(N), never O(swarm);
- a seeder is answered from the leecher region alone, at no cost;
- a peer costs about 34 bytes plus, in swarms larger than ``INDEX_MIN``, a dict entry from
  its id to its slot; smaller swarms find an id by searching the id bytearray, which is
  faster than hashing at that size and saves the dict.

(Written by hand rather than with a container library because this is the announce hot
path, and the memory per peer is a published target; see bench/.)
"""

from __future__ import annotations

import random
from array import array

from shoal.errors import ClientError
from shoal.types import PEER_ID_LENGTH, AnnounceRequest, Event, SwarmCounts

NO_KEY = 0  # BEP 7 keys are 32 bits; a key of 0 is taken as "no key"
INDEX_MIN = 24  # families larger than this keep a dict from peer id to slot
_ID = PEER_ID_LENGTH
_KEY_MASK = 0xFFFFFFFF


class FamilyPeers:
    """The peers of one address family in a swarm, in dense slots, seeders first.

    ``meta`` holds two 32-bit words per slot: last announce time (whole seconds) and key.
    """

    __slots__ = ("addrs", "ids", "index", "meta", "seeders", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.addrs = bytearray()
        self.ids = bytearray()
        self.meta = array("I")
        self.seeders = 0
        self.index: dict[bytes, int] | None = None

    def __len__(self) -> int:
        return len(self.ids) // _ID

    @property
    def leechers(self) -> int:
        return len(self.ids) // _ID - self.seeders

    def find(self, peer_id: bytes) -> int:
        """The slot of ``peer_id``, or -1."""
        if self.index is not None:
            return self.index.get(peer_id, -1)
        ids = self.ids
        pos = ids.find(peer_id)
        while pos > 0 and pos % _ID:
            pos = ids.find(peer_id, pos + 1)
        return pos // _ID if pos >= 0 else -1

    def peer_id(self, slot: int) -> bytes:
        return bytes(self.ids[slot * _ID : slot * _ID + _ID])

    def addr(self, slot: int) -> bytes:
        w = self.width
        return bytes(self.addrs[slot * w : slot * w + w])

    def seen(self, slot: int) -> int:
        return self.meta[2 * slot]

    def key(self, slot: int) -> int:
        return self.meta[2 * slot + 1]

    def is_seeder(self, slot: int) -> bool:
        return slot < self.seeders

    def insert(self, peer_id: bytes, addr: bytes, now: int, key: int, seeder: bool) -> int:
        """Add a peer; return its slot."""
        slot = len(self.ids) // _ID
        self.addrs += addr
        self.ids += peer_id
        self.meta.append(now)
        self.meta.append(key)
        if self.index is not None:
            self.index[peer_id] = slot
        elif slot >= INDEX_MIN:
            self._build_index()
        if seeder:
            first_leecher = self.seeders
            self.seeders += 1
            if first_leecher != slot:
                self._swap(slot, first_leecher)
            slot = first_leecher
        return slot

    def remove(self, slot: int) -> None:
        """Remove the peer in ``slot``, keeping slots dense and seeders first."""
        last = len(self.ids) // _ID - 1
        if self.index is not None:
            del self.index[self.peer_id(slot)]
        if slot < self.seeders:
            last_seeder = self.seeders - 1
            if slot != last_seeder:
                self._copy(last_seeder, slot)
            slot = last_seeder
            self.seeders -= 1
        if slot != last:
            self._copy(last, slot)
        w = self.width
        del self.addrs[last * w :]
        del self.ids[last * _ID :]
        del self.meta[2 * last :]
        if self.index is not None and last < INDEX_MIN // 2:
            self.index = None

    def set_role(self, slot: int, seeder: bool) -> int:
        """Move a peer between the seeder and leecher regions; return its new slot."""
        if seeder and slot >= self.seeders:
            target = self.seeders
            self.seeders += 1
        elif not seeder and slot < self.seeders:
            self.seeders -= 1
            target = self.seeders
        else:
            return slot
        if target != slot:
            self._swap(slot, target)
        return target

    def update(self, slot: int, addr: bytes, now: int, key: int) -> None:
        w = self.width
        self.addrs[slot * w : slot * w + w] = addr
        self.meta[2 * slot] = now
        self.meta[2 * slot + 1] = key

    def _build_index(self) -> None:
        ids = bytes(self.ids)
        self.index = {ids[i : i + _ID]: i // _ID for i in range(0, len(ids), _ID)}

    def _copy(self, src: int, dst: int) -> None:
        """Copy slot ``src`` over slot ``dst`` (whose peer is being dropped)."""
        w = self.width
        self.addrs[dst * w : dst * w + w] = self.addrs[src * w : src * w + w]
        moved = self.ids[src * _ID : src * _ID + _ID]
        self.ids[dst * _ID : dst * _ID + _ID] = moved
        self.meta[2 * dst] = self.meta[2 * src]
        self.meta[2 * dst + 1] = self.meta[2 * src + 1]
        if self.index is not None:
            self.index[bytes(moved)] = dst

    def _swap(self, a: int, b: int) -> None:
        w = self.width
        addrs, ids, meta = self.addrs, self.ids, self.meta
        addr_a = addrs[a * w : a * w + w]
        addrs[a * w : a * w + w] = addrs[b * w : b * w + w]
        addrs[b * w : b * w + w] = addr_a
        id_a = ids[a * _ID : a * _ID + _ID]
        id_b = ids[b * _ID : b * _ID + _ID]
        ids[a * _ID : a * _ID + _ID] = id_b
        ids[b * _ID : b * _ID + _ID] = id_a
        meta[2 * a], meta[2 * b] = meta[2 * b], meta[2 * a]
        meta[2 * a + 1], meta[2 * b + 1] = meta[2 * b + 1], meta[2 * a + 1]
        if self.index is not None:
            self.index[bytes(id_a)] = b
            self.index[bytes(id_b)] = a

    def pick(
        self, lo: int, hi: int, count: int, skip: int, rng: random.Random, with_ids: bool
    ) -> tuple[bytes, bytes]:
        """Up to ``count`` peers from a random contiguous run of slots in ``lo:hi`` (wrapping
        round), leaving out slot ``skip``. Returns their addresses and, when ``with_ids``,
        their peer ids, each joined."""
        n = hi - lo
        inside = lo <= skip < hi
        available = n - inside
        if count <= 0 or available <= 0:
            return b"", b""
        if count >= available:
            runs = [(lo, hi)]
        else:
            start = lo + int(rng.random() * n)
            end = start + count
            if inside and (start <= skip < end or skip < end - n):
                end += 1
            runs = [(start, end)] if end <= hi else [(start, hi), (lo, end - n)]
        if inside:
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
            ids = bytes(self.ids[a * _ID : b * _ID]) if with_ids else b""
        else:
            addrs = b"".join([data[a * w : b * w] for a, b in runs])
            ids = b"".join([self.ids[a * _ID : b * _ID] for a, b in runs]) if with_ids else b""
        return addrs, ids

    def pick_for(
        self, count: int, skip: int, want_seeders: bool, rng: random.Random, with_ids: bool
    ) -> tuple[bytes, bytes]:
        """Pick ``count`` peers: leechers only when ``want_seeders`` is false (the requester
        is a seeder), else seeders and leechers in proportion to the swarm, seeders first.
        Slot ``skip`` (the requester, or -1) is never picked."""
        total = len(self.ids) // _ID
        seeders = self.seeders
        if not want_seeders:
            return self.pick(seeders, total, count, skip, rng, with_ids)
        own_seed = 0 <= skip < seeders
        own_leech = skip >= seeders
        n_seed = seeders - own_seed
        n_leech = total - seeders - own_leech
        if n_seed + n_leech <= count:
            take_seed, take_leech = n_seed, n_leech
        else:
            # More peers than wanted: split in proportion. The leechers then always fill
            # the rest, since count < n_seed + n_leech makes the seeders' share at least
            # count - n_leech.
            take_seed = min(n_seed, round(count * n_seed / (n_seed + n_leech)))
            take_leech = count - take_seed
        seeds, seed_ids = self.pick(0, seeders, take_seed, skip, rng, with_ids)
        if not take_leech:
            return seeds, seed_ids
        leeches, leech_ids = self.pick(seeders, total, take_leech, skip, rng, with_ids)
        return seeds + leeches, seed_ids + leech_ids

    def expire(self, before: int, lo: int = 0, hi: int | None = None) -> int:
        """Remove the peers in slots ``lo:hi`` (all by default) last seen before ``before``;
        return how many went."""
        if hi is None:
            hi = len(self.ids) // _ID
        seen = self.meta[2 * lo : 2 * hi : 2]
        if not seen or min(seen) >= before:  # the common case, checked in C
            return 0
        removed = 0
        for slot in range(hi - 1, lo - 1, -1):
            if self.meta[2 * slot] < before:
                # Removing moves a later slot into this one; walking down, every slot
                # above has been checked already, so nothing is missed.
                self.remove(slot)
                removed += 1
        return removed

    def expire_at(self, slot: int, before: int) -> None:
        if self.meta[2 * slot] < before:
            self.remove(slot)


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
        v4, v6 = self.v4, self.v6
        seeders = leechers = 0
        if v4 is not None:
            seeders = v4.seeders
            leechers = len(v4.ids) // _ID - seeders
        if v6 is not None:
            seeders += v6.seeders
            leechers += len(v6.ids) // _ID - v6.seeders
        return seeders, leechers

    def __len__(self) -> int:
        return (len(self.v4) if self.v4 else 0) + (len(self.v6) if self.v6 else 0)

    def scrape_counts(self) -> SwarmCounts:
        """The swarm's figures as scrape reports them."""
        seeders, leechers = self.counts()
        return SwarmCounts(seeders, leechers, self.completed)

    def peer_ids(self, limit: int) -> list[bytes]:
        """Up to ``limit`` of the swarm's peer ids (IPv4 first)."""
        out: list[bytes] = []
        for fam in (self.v4, self.v6):
            if fam is not None:
                ids = fam.ids
                stop = min(len(ids), (limit - len(out)) * _ID)
                out.extend(bytes(ids[i : i + _ID]) for i in range(0, stop, _ID))
        return out

    def expire(self, before: int) -> int:
        """Remove every peer last seen before ``before``; return how many went."""
        removed = 0
        for fam in (self.v4, self.v6):
            if fam is not None:
                removed += fam.expire(before)
        return removed

    def announce(
        self,
        request: AnnounceRequest,
        now: int,
        numwant: int,
        timeout: int,
        rng: random.Random,
    ) -> tuple[bytes, bytes, bytes, bytes]:
        """Apply one announce and pick the peers to return.

        Returns ``(peers4, peers6, ids4, ids6)``. Raises :class:`ClientError` when the peer
        id is registered from another address and the request does not prove, with the same
        BEP 7 key, that it is the same client. The peers are picked before a new peer is
        added, and with the requester's own slot left out, so nobody is sent itself.
        """
        self.last_seen = now
        self._expire_some(now - timeout)
        addr = request.addr
        is_v6 = len(addr) == 18
        fam = self.v6 if is_v6 else self.v4
        stopped = request.event == Event.STOPPED
        if fam is None:
            if stopped:
                return b"", b"", b"", b""
            fam = FamilyPeers(len(addr))
            if is_v6:
                self.v6 = fam
            else:
                self.v4 = fam
        peer_id = request.peer_id
        key = NO_KEY if request.key is None else request.key & _KEY_MASK
        seeder = request.left == 0
        slot = fam.find(peer_id)
        if slot >= 0:
            registered = fam.meta[2 * slot + 1]
            w = fam.width
            if fam.addrs[slot * w : slot * w + w] != addr and (
                registered == NO_KEY or registered != key
            ):
                raise ClientError("peer_id is in use from another address; send its key")
            if stopped:
                fam.remove(slot)
                return b"", b"", b"", b""
            # A peer that registered without a key adopts the first key it sends.
            fam.update(slot, addr, now, registered if registered != NO_KEY else key)
            if seeder != (slot < fam.seeders):
                slot = fam.set_role(slot, seeder)
                if seeder and not self._seeding_elsewhere(peer_id, is_v6):
                    self.completed += 1
        elif stopped:
            return b"", b"", b"", b""
        want_seeders = not seeder and request.event != Event.PAUSED
        with_ids = request.want_peer_ids
        own, own_ids = fam.pick_for(numwant, slot, want_seeders, rng, with_ids)
        other = other_ids = b""
        if request.mixed_families:
            remaining = numwant - len(own) // len(addr)
            other_fam = self.v4 if is_v6 else self.v6
            if remaining > 0 and other_fam is not None:
                # The same client over the other family is still the requester.
                other, other_ids = other_fam.pick_for(
                    remaining, other_fam.find(peer_id), want_seeders, rng, with_ids
                )
        if slot < 0:
            fam.insert(peer_id, addr, now, key, seeder)
        if is_v6:
            return other, own, other_ids, own_ids
        return own, other, own_ids, other_ids

    def _expire_some(self, before: int) -> None:
        """Lazy expiry: each announce checks one peer of each family at a rolling cursor,
        so a swarm's silent peers are gone after about as many announces as it has peers
        (every live peer announces once an interval, so within about an interval)."""
        self.cursor = cursor = self.cursor + 1
        v4, v6 = self.v4, self.v6
        if v4 is not None and v4.ids:
            v4.expire_at(cursor % (len(v4.ids) // _ID), before)
        if v6 is not None and v6.ids:
            v6.expire_at(cursor % (len(v6.ids) // _ID), before)

    def _seeding_elsewhere(self, peer_id: bytes, is_v6: bool) -> bool:
        """Whether the same client already seeds over the other address family, so its
        second family's transition is not a second completed download."""
        other = self.v4 if is_v6 else self.v6
        if other is None:
            return False
        slot = other.find(peer_id)
        return 0 <= slot < other.seeders
