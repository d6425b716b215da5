"""One torrent's swarm: who is in it, who is seeding, and which peers to hand out.

Peers are kept per address family (:class:`FamilyPeers`), so a reply never mixes families by
accident. Within a family, every peer has a slot, and the slots are dense: seeders fill
slots ``0 .. seeders-1`` and leechers the rest. Each slot's compact address lives back to
back in one bytearray (the bytes a reply is made of), its 20-byte peer id in another, and
its last-announce time, key, flags and last reported uploaded/downloaded in an array of
64-bit words. So:

- a reply is a random contiguous run of slots from the seeder or the leecher region, copied
  as one or two slices: picking N peers costs O(N), never O(swarm);
- a seeder is answered from the leecher region alone, at no cost;
- a peer costs about 58 bytes plus, in swarms larger than ``INDEX_MIN``, dict entries from
  its address and its id to its slot and 8 bytes of id ring (below); smaller swarms search
  the bytearrays, which is faster than hashing at that size and saves the dicts.

Several entries may carry one peer_id (see Identity below). The id index maps a peer_id to
one of them, and the entries sharing a peer_id are linked in a ring (a next and a previous
slot each, ``ring``), so when the indexed one goes, the index moves to another in O(1), and
every entry is found by its id in an indexed family as in a searched one.

Identity (the threat model is in the README): a peer entry *is* its address (ip and
announced port). A peer_id is public (``compact=0`` replies carry it), so it is never a
credential: an announce may change or remove an entry only when it comes from the entry's
address with the entry's peer_id, or when it proves from another address the BEP 7 key the
entry registered with (a client that moved). No key is asked at the entry's own address,
since real clients (aria2, uTorrent) change their key between announces; and a key sent
later is never adopted by a keyless entry. Another peer_id at an entry's address replaces
the entry (a restarted client), so one endpoint is never handed out twice; a peer_id seen
at another address without the key is simply another peer, so nobody can lock a client
out by announcing its peer_id first.

(Written by hand rather than with a container library because this is the announce hot
path, and the memory per peer is a published target; see bench/.)
"""

from __future__ import annotations

import random
from array import array

from shoal.errors import ClientError
from shoal.types import (
    PEER_ID_LENGTH,
    ROLE_LEECHER,
    ROLE_NONE,
    ROLE_SEEDER,
    AnnounceRequest,
    Event,
    SwarmCounts,
)

NO_KEY = 0  # BEP 7 keys are 32 bits; a key of 0 is taken as "no key"
INDEX_MIN = 24  # families larger than this keep dicts from address and id to slot
_ID = PEER_ID_LENGTH
_KEY_MASK = 0xFFFFFFFF
_WORDS = 4  # meta words per slot: seen, key | flags << 32, uploaded, downloaded
_COMPLETED = 1 << 32  # flag: this entry's completed download has been counted
_U64 = (1 << 64) - 1

SWARM_FULL = "swarm is full"
ADDRESS_FULL = "too many peers from your address in this swarm"


_LOOPBACK6 = bytes(15) + b"\x01"


def _is_loopback(addr: bytes) -> bool:
    """Loopback clients (the operator's own tools, load tests) are not capped per address."""
    return addr[0] == 127 if len(addr) == 6 else addr[:16] == _LOOPBACK6


def _slot_of(packed: bytearray, value: bytes, width: int) -> int:
    """The first slot of ``width`` bytes in ``packed`` that holds ``value``, or -1 (a match
    straddling two slots does not count). Faster than a dict in small swarms."""
    pos = packed.find(value)
    while pos > 0 and pos % width:
        pos = packed.find(value, pos + 1)
    return pos // width if pos >= 0 else -1


class Tally:
    """Running totals over every swarm of a store, kept as peers come, go and change role,
    so whole-store figures cost O(1) to read."""

    __slots__ = ("completed", "leechers", "seeders")

    def __init__(self) -> None:
        self.seeders = 0
        self.leechers = 0
        self.completed = 0


class Limits:
    """What one swarm may hold (read on every announce; replaced whole on reload):
    ``keep_totals`` says whether the peers' reported uploaded/downloaded totals are held
    (when not, they are stored as 0 and the outcome's previous totals are 0)."""

    __slots__ = ("keep_totals", "max_peers", "max_per_ip")

    def __init__(self, max_peers: int = 200_000, max_per_ip: int = 100,
                 keep_totals: bool = False) -> None:
        self.max_peers = max_peers
        self.max_per_ip = max_per_ip
        self.keep_totals = keep_totals


UNLIMITED = Limits(1 << 62, 1 << 62, keep_totals=True)


class FamilyPeers:
    """The peers of one address family in a swarm, in dense slots, seeders first.

    ``meta`` holds four 64-bit words per slot: last announce time (whole seconds), the key
    in the low 32 bits with flags above, and the uploaded and downloaded totals the peer
    last reported (0 while the store does not keep them, ``Limits.keep_totals``).
    """

    __slots__ = ("addrs", "by_addr", "by_id", "ids", "meta", "per_ip", "ring", "seeders",
                 "tally", "width")

    def __init__(self, width: int, tally: Tally | None = None) -> None:
        self.width = width
        self.addrs = bytearray()
        self.ids = bytearray()
        self.meta = array("Q")
        self.seeders = 0
        self.tally = tally if tally is not None else Tally()
        self.by_addr: dict[bytes, int] | None = None
        self.by_id: dict[bytes, int] | None = None
        self.per_ip: dict[bytes, int] | None = None
        # With the indexes: per slot, the next and the previous slot of the ring of entries
        # sharing its peer_id (itself twice when it is alone).
        self.ring: array[int] | None = None

    def __len__(self) -> int:
        return len(self.ids) // _ID

    @property
    def leechers(self) -> int:
        return len(self.ids) // _ID - self.seeders

    def find(self, peer_id: bytes) -> int:
        """A slot holding ``peer_id``, or -1. When several do: the first in a searched
        family, in an indexed one the latest registered of those still there."""
        if self.by_id is not None:
            return self.by_id.get(peer_id, -1)
        return _slot_of(self.ids, peer_id, _ID)

    def find_addr(self, addr: bytes) -> int:
        """The slot of the entry at ``addr``, or -1."""
        if self.by_addr is not None:
            return self.by_addr.get(addr, -1)
        return _slot_of(self.addrs, addr, self.width)

    def peers_at_ip(self, ip: bytes) -> int:
        """How many entries have the address ``ip`` (any port)."""
        if self.per_ip is not None:
            return self.per_ip.get(ip, 0)
        w = self.width
        addrs = self.addrs
        return sum(1 for i in range(0, len(addrs), w) if addrs[i : i + w - 2] == ip)

    def peer_id(self, slot: int) -> bytes:
        return bytes(self.ids[slot * _ID : slot * _ID + _ID])

    def addr(self, slot: int) -> bytes:
        w = self.width
        return bytes(self.addrs[slot * w : slot * w + w])

    def seen(self, slot: int) -> int:
        return self.meta[_WORDS * slot]

    def key(self, slot: int) -> int:
        return self.meta[_WORDS * slot + 1] & _KEY_MASK

    def counted_completed(self, slot: int) -> bool:
        return bool(self.meta[_WORDS * slot + 1] & _COMPLETED)

    def reported(self, slot: int) -> tuple[int, int]:
        """(uploaded, downloaded) as the peer last reported them."""
        base = _WORDS * slot
        return self.meta[base + 2], self.meta[base + 3]

    def is_seeder(self, slot: int) -> bool:
        return slot < self.seeders

    def insert(
        self,
        peer_id: bytes,
        addr: bytes,
        now: int,
        key: int,
        seeder: bool,
        uploaded: int = 0,
        downloaded: int = 0,
        flags: int = 0,
    ) -> int:
        """Add a peer; return its slot."""
        slot = len(self.ids) // _ID
        self.addrs += addr
        self.ids += peer_id
        self.meta.extend((now, key | flags, uploaded & _U64, downloaded & _U64))
        if self.by_addr is not None:
            self.by_addr[addr] = slot
            assert self.per_ip is not None and self.ring is not None
            self.ring.extend((slot, slot))
            self._link(slot, peer_id)
            ip = addr[:-2]
            self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        elif slot >= INDEX_MIN:
            self._build_index()
        tally = self.tally
        if seeder:
            tally.seeders += 1
            first_leecher = self.seeders
            self.seeders += 1
            if first_leecher != slot:
                self._swap(slot, first_leecher)
            slot = first_leecher
        else:
            tally.leechers += 1
        return slot

    def remove(self, slot: int) -> None:
        """Remove the peer in ``slot``, keeping slots dense and seeders first."""
        last = len(self.ids) // _ID - 1
        if self.by_addr is not None:
            self._unindex(slot)
        if slot < self.seeders:
            self.tally.seeders -= 1
            last_seeder = self.seeders - 1
            if slot != last_seeder:
                self._copy(last_seeder, slot)
            slot = last_seeder
            self.seeders -= 1
        else:
            self.tally.leechers -= 1
        if slot != last:
            self._copy(last, slot)
        w = self.width
        del self.addrs[last * w :]
        del self.ids[last * _ID :]
        del self.meta[_WORDS * last :]
        if self.ring is not None:
            del self.ring[2 * last :]
            if last < INDEX_MIN // 2:
                self.by_addr = self.by_id = self.per_ip = self.ring = None

    def _link(self, slot: int, peer_id: bytes) -> None:
        """Index ``slot`` under ``peer_id``: it joins the ring of the entries holding it
        (before the indexed one, which it replaces in the index)."""
        assert self.by_id is not None and self.ring is not None
        ring = self.ring
        head = self.by_id.get(peer_id, -1)
        if head < 0:
            ring[2 * slot] = ring[2 * slot + 1] = slot
        else:
            tail = ring[2 * head + 1]
            ring[2 * slot], ring[2 * slot + 1] = head, tail
            ring[2 * tail] = ring[2 * head + 1] = slot
        self.by_id[peer_id] = slot

    def _unlink(self, slot: int, peer_id: bytes) -> None:
        """Take ``slot`` out of its id ring; if the index pointed at it, it now points at
        the next entry holding that id (the latest registered of those left), if any."""
        assert self.by_id is not None and self.ring is not None
        ring = self.ring
        after, before = ring[2 * slot], ring[2 * slot + 1]
        if after == slot:
            del self.by_id[peer_id]
            return
        ring[2 * before] = after
        ring[2 * after + 1] = before
        if self.by_id[peer_id] == slot:
            self.by_id[peer_id] = after

    def _unindex(self, slot: int) -> None:
        assert self.by_addr is not None and self.per_ip is not None
        addr = self.addr(slot)
        del self.by_addr[addr]
        self._unlink(slot, self.peer_id(slot))
        ip = addr[:-2]
        left = self.per_ip[ip] - 1
        if left:
            self.per_ip[ip] = left
        else:
            del self.per_ip[ip]

    def set_role(self, slot: int, seeder: bool) -> int:
        """Move a peer between the seeder and leecher regions; return its new slot."""
        if seeder and slot >= self.seeders:
            target = self.seeders
            self.seeders += 1
            self.tally.seeders += 1
            self.tally.leechers -= 1
        elif not seeder and slot < self.seeders:
            self.seeders -= 1
            target = self.seeders
            self.tally.seeders -= 1
            self.tally.leechers += 1
        else:
            return slot
        if target != slot:
            self._swap(slot, target)
        return target

    def update(
        self, slot: int, now: int, uploaded: int, downloaded: int, completed: bool
    ) -> None:
        """Refresh a peer that announced again from its own address."""
        meta = self.meta
        base = _WORDS * slot
        meta[base] = now
        if completed:
            meta[base + 1] |= _COMPLETED
        meta[base + 2] = uploaded & _U64
        meta[base + 3] = downloaded & _U64

    def replace(self, slot: int, peer_id: bytes, addr: bytes, key: int) -> None:
        """Give ``slot`` to another client (a new peer_id at this address, or this peer_id
        moved to a new address with its key), keeping its role."""
        base = _WORDS * slot
        # The same client keeps its counted completion; another one has none yet.
        same = self.ids[slot * _ID : slot * _ID + _ID] == peer_id
        self.meta[base + 1] = key | (self.meta[base + 1] & _COMPLETED if same else 0)
        if self.by_addr is not None:
            assert self.per_ip is not None
            self._unindex(slot)
            self.by_addr[addr] = slot
            self._link(slot, peer_id)
            ip = addr[:-2]
            self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        w = self.width
        self.addrs[slot * w : slot * w + w] = addr
        self.ids[slot * _ID : slot * _ID + _ID] = peer_id

    def _build_index(self) -> None:
        ids = bytes(self.ids)
        addrs = bytes(self.addrs)
        w = self.width
        n = len(ids) // _ID
        self.by_id = {}
        self.ring = array("I", bytes(8 * n))
        for i in range(n):
            self._link(i, ids[i * _ID : i * _ID + _ID])  # so the last of a shared id is indexed
        self.by_addr = {addrs[i * w : i * w + w]: i for i in range(n)}
        per_ip: dict[bytes, int] = {}
        for i in range(n):
            ip = addrs[i * w : i * w + w - 2]
            per_ip[ip] = per_ip.get(ip, 0) + 1
        self.per_ip = per_ip

    def _copy(self, src: int, dst: int) -> None:
        """Copy slot ``src`` over slot ``dst`` (whose peer is being dropped)."""
        w = self.width
        addr = self.addrs[src * w : src * w + w]
        self.addrs[dst * w : dst * w + w] = addr
        moved = self.ids[src * _ID : src * _ID + _ID]
        self.ids[dst * _ID : dst * _ID + _ID] = moved
        meta = self.meta
        meta[_WORDS * dst : _WORDS * dst + _WORDS] = meta[_WORDS * src : _WORDS * src + _WORDS]
        if self.by_addr is not None:
            assert self.by_id is not None and self.ring is not None
            self.by_addr[bytes(addr)] = dst
            moved_id = bytes(moved)
            if self.by_id[moved_id] == src:
                self.by_id[moved_id] = dst
            ring = self.ring
            after, before = ring[2 * src], ring[2 * src + 1]
            if after == src:
                ring[2 * dst] = ring[2 * dst + 1] = dst
            else:
                ring[2 * dst], ring[2 * dst + 1] = after, before
                ring[2 * before] = ring[2 * after + 1] = dst

    def _swap(self, a: int, b: int) -> None:
        w = self.width
        addrs, ids, meta = self.addrs, self.ids, self.meta
        addr_a = addrs[a * w : a * w + w]
        addr_b = addrs[b * w : b * w + w]
        addrs[a * w : a * w + w] = addr_b
        addrs[b * w : b * w + w] = addr_a
        id_a = ids[a * _ID : a * _ID + _ID]
        id_b = ids[b * _ID : b * _ID + _ID]
        ids[a * _ID : a * _ID + _ID] = id_b
        ids[b * _ID : b * _ID + _ID] = id_a
        ma = meta[_WORDS * a : _WORDS * a + _WORDS]
        meta[_WORDS * a : _WORDS * a + _WORDS] = meta[_WORDS * b : _WORDS * b + _WORDS]
        meta[_WORDS * b : _WORDS * b + _WORDS] = ma
        if self.by_addr is not None:
            assert self.by_id is not None and self.ring is not None
            self.by_addr[bytes(addr_a)] = b
            self.by_addr[bytes(addr_b)] = a
            ka, kb = bytes(id_a), bytes(id_b)
            slot_a, slot_b = self.by_id[ka], self.by_id[kb]
            if slot_a == a:
                self.by_id[ka] = b
            if slot_b == b:
                self.by_id[kb] = a
            self._swap_links(a, b)

    def _swap_links(self, a: int, b: int) -> None:
        """The id rings after the entries of slots ``a`` and ``b`` traded places (they
        may share a ring, even be neighbours in it)."""
        assert self.ring is not None
        ring = self.ring
        next_a, prev_a, next_b, prev_b = ring[2 * a], ring[2 * a + 1], ring[2 * b], ring[2 * b + 1]

        def moved(s: int) -> int:
            return b if s == a else a if s == b else s

        ring[2 * b], ring[2 * b + 1] = moved(next_a), moved(prev_a)
        ring[2 * a], ring[2 * a + 1] = moved(next_b), moved(prev_b)
        if prev_a != a and prev_a != b:
            ring[2 * prev_a] = b
        if next_a != a and next_a != b:
            ring[2 * next_a + 1] = b
        if prev_b != a and prev_b != b:
            ring[2 * prev_b] = a
        if next_b != a and next_b != b:
            ring[2 * next_b + 1] = a

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
        if count <= 0:
            return b"", b""
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
        seen = self.meta[_WORDS * lo : _WORDS * hi : _WORDS]
        if not seen or min(seen) >= before:  # the common case, checked in C
            return 0
        removed = 0
        for slot in range(hi - 1, lo - 1, -1):
            if self.meta[_WORDS * slot] < before:
                # Removing moves a later slot into this one; walking down, every slot
                # above has been checked already, so nothing is missed.
                self.remove(slot)
                removed += 1
        return removed

    def expire_at(self, slot: int, before: int) -> None:
        if self.meta[_WORDS * slot] < before:
            self.remove(slot)


class Swarm:
    """One torrent: its peers by family, its completed count and when it was last touched."""

    __slots__ = ("completed", "cursor", "last_seen", "tally", "v4", "v6")

    def __init__(self, tally: Tally | None = None) -> None:
        self.v4: FamilyPeers | None = None
        self.v6: FamilyPeers | None = None
        self.completed = 0
        self.last_seen = 0
        self.cursor = 0
        self.tally = tally if tally is not None else Tally()

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

    def family(self, width: int) -> FamilyPeers:
        """The family of compact width ``width`` (6 or 18), made when missing."""
        fam = self.v6 if width == 18 else self.v4
        if fam is None:
            fam = FamilyPeers(width, self.tally)
            if width == 18:
                self.v6 = fam
            else:
                self.v4 = fam
        return fam

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
        timeout: int,
        rng: random.Random,
        limits: Limits = UNLIMITED,
    ) -> tuple[bytes, bytes, bytes, bytes, int, int, bool, int, int]:
        """Apply one announce (asking for ``request.numwant`` peers, already resolved by
        the policy) and pick the peers to return.

        Returns ``(peers4, peers6, ids4, ids6, role_before, role_after, completed,
        prev_uploaded, prev_downloaded)``: the outcome of :class:`AnnounceResult`. Raises
        :class:`ClientError` when a limit keeps a new peer out; a refused announce changes
        nothing. The peers are picked before a new peer is added, and with the
        requester's own slot left out, so nobody is sent itself.
        """
        self.last_seen = now
        self._expire_some(now - timeout)
        addr = request.addr
        width = len(addr)
        is_v6 = width == 18
        fam = self.v6 if is_v6 else self.v4
        stopped = request.event == Event.STOPPED
        if fam is None:
            if stopped:
                return b"", b"", b"", b"", ROLE_NONE, ROLE_NONE, False, 0, 0
            fam = self.family(width)
        peer_id = request.peer_id
        key = NO_KEY if request.key is None else request.key & _KEY_MASK
        seeder = request.left == 0
        completing = request.event == Event.COMPLETED and seeder
        meta = fam.meta
        role_before = ROLE_NONE
        prev_up = prev_down = 0
        keep = limits.keep_totals
        slot = fam.find_addr(addr)
        if slot >= 0:
            base = _WORDS * slot
            if fam.ids[slot * _ID : slot * _ID + _ID] == peer_id:
                # From its own address no key is asked: aria2 and uTorrent change their key
                # between announces. The registered key is kept; only it moves the entry.
                role_before = ROLE_SEEDER if slot < fam.seeders else ROLE_LEECHER
                if keep:
                    prev_up, prev_down = meta[base + 2], meta[base + 3]
                if stopped:
                    fam.remove(slot)
                    return b"", b"", b"", b"", role_before, ROLE_NONE, False, prev_up, prev_down
            elif stopped:
                # Not this client's entry: a stop removes only its own.
                return b"", b"", b"", b"", ROLE_NONE, ROLE_NONE, False, 0, 0
            else:
                fam.replace(slot, peer_id, addr, key)  # a client restarted at this address
        else:
            moved = fam.find(peer_id) if key != NO_KEY else -1
            if moved >= 0 and meta[_WORDS * moved + 1] & _KEY_MASK == key:
                # The registered key proves it is the same client, now at a new address.
                role_before = ROLE_SEEDER if moved < fam.seeders else ROLE_LEECHER
                if keep:
                    prev_up, prev_down = meta[_WORDS * moved + 2], meta[_WORDS * moved + 3]
                if stopped:
                    fam.remove(moved)
                    return b"", b"", b"", b"", role_before, ROLE_NONE, False, prev_up, prev_down
                fam.replace(moved, peer_id, addr, key)
                slot = moved
            elif stopped:
                return b"", b"", b"", b"", ROLE_NONE, ROLE_NONE, False, 0, 0
            else:
                if len(self) >= limits.max_peers:
                    raise ClientError(SWARM_FULL, 5)
                if len(fam) >= limits.max_per_ip and not _is_loopback(addr) and (
                    fam.peers_at_ip(addr[:-2]) >= limits.max_per_ip
                ):
                    raise ClientError(ADDRESS_FULL, 5)
        completed = False
        up, down = (request.uploaded, request.downloaded) if keep else (0, 0)
        if slot >= 0:
            if completing and not meta[_WORDS * slot + 1] & _COMPLETED:
                completed = not self._completed_elsewhere(peer_id, is_v6, now - timeout)
            fam.update(slot, now, up, down, completing)
            if seeder != (slot < fam.seeders):
                slot = fam.set_role(slot, seeder)
        elif completing:
            completed = not self._completed_elsewhere(peer_id, is_v6, now - timeout)
        if completed:
            self.completed += 1
            self.tally.completed += 1
        want_seeders = not seeder and request.event != Event.PAUSED
        with_ids = request.want_peer_ids
        numwant = request.numwant
        own, own_ids = fam.pick_for(numwant, slot, want_seeders, rng, with_ids)
        other = other_ids = b""
        if request.mixed_families:
            remaining = numwant - len(own) // width
            other_fam = self.v4 if is_v6 else self.v6
            if remaining > 0 and other_fam is not None:
                # The same client over the other family is still the requester.
                other, other_ids = other_fam.pick_for(
                    remaining, other_fam.find(peer_id), want_seeders, rng, with_ids
                )
        if slot < 0:
            fam.insert(peer_id, addr, now, key, seeder, up, down,
                       _COMPLETED if completing else 0)
        role_after = ROLE_SEEDER if seeder else ROLE_LEECHER
        if is_v6:
            return (other, own, other_ids, own_ids, role_before, role_after, completed,
                    prev_up, prev_down)
        return (own, other, own_ids, other_ids, role_before, role_after, completed,
                prev_up, prev_down)

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

    def _completed_elsewhere(self, peer_id: bytes, is_v6: bool, before: int) -> bool:
        """Whether the same client's completion was already counted over the other address
        family, so its second family's completed event is not a second download. An entry
        there last seen before ``before`` has expired (only not yet removed): it counts
        for nothing, as an expired entry in this family does."""
        other = self.v4 if is_v6 else self.v6
        if other is None:
            return False
        slot = other.find(peer_id)
        return slot >= 0 and other.counted_completed(slot) and not other.seen(slot) < before
