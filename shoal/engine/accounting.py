"""Private mode: who may announce, and what each announce adds to a user's account.

:class:`PrivateTracker` holds the registry (users by passkey, torrents by either hash of a
hybrid v1+v2 torrent) and the accounting not yet written. The logic layer calls
:meth:`PrivateTracker.admit` before the store (it refuses, or returns a ticket naming the
user and the torrent, and rewrites a hybrid torrent's second hash to its first, so both
are one swarm) and :meth:`PrivateTracker.settle` with the store's outcome after it.

The accounting rules, per (user, torrent):

- uploaded and downloaded are taken as deltas of the totals a client reports, against the
  totals it reported on its previous announce (the store's outcome carries them). A client
  counts from its ``started``, so a new peer or a ``started`` starts a new baseline and
  credits nothing, and a total lower than the previous one (a client that restarted without
  saying so) starts a new baseline too: a decrease is never subtracted;
- credited amounts are the deltas times the user's and the torrent's factors (freeleech:
  download factor 0, also site-wide; double upload: upload factor 2); the raw deltas are
  kept too;
- a delta whose implied rate (bytes over the seconds since this peer's previous announce)
  exceeds ``max_rate`` is not credited but recorded as a :class:`Flag`, for the site to
  investigate;
- seeding time is the sum of the intervals that began with the peer seeding; a snatch is
  an announce that the store counted as a completed download; every announce counts, and
  the last one's time is kept.

Nothing here does IO or reads a clock: ``now`` is a parameter, and the pending tallies are
taken (:meth:`take`) by a writer that puts them in the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shoal.engine.passkeys import PasskeyIndex
from shoal.errors import ClientError
from shoal.protocol.routes import route
from shoal.types import ROLE_NONE, ROLE_SEEDER, AnnounceRequest, AnnounceResult, Event

RETRY_LASTING = 60  # BEP 31 minutes: lasting, but a site can fix it at any moment

PASSKEY_REQUIRED = "passkey required: use the announce URL the site gave you"
UNKNOWN_PASSKEY = "unknown passkey"
USER_DISABLED = "account disabled"
UNREGISTERED = "torrent not registered on this tracker"
NO_LEECHING = "leeching not allowed for your account: you may only seed"


def peer_limit_reason(limit: int) -> str:
    return f"too many peers for this torrent from your account (limit {limit})"


@dataclass(frozen=True, slots=True)
class User:
    """A site's user: its own id, the passkey, and what it may do.

    ``can_leech`` false: seeding announces are served, leeching ones refused. The factors
    multiply what is credited; ``peer_limit`` None means the tracker's default."""

    id: int
    passkey: str
    enabled: bool = True
    can_leech: bool = True
    upload_factor: float = 1.0
    download_factor: float = 1.0
    peer_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Torrent:
    """A registered torrent: its info_hash (20 bytes) and, for a hybrid v1+v2 torrent,
    the second one (both are one swarm, under ``info_hash``), with its factors."""

    info_hash: bytes
    info_hash2: bytes | None = None
    upload_factor: float = 1.0
    download_factor: float = 1.0


@dataclass(frozen=True, slots=True)
class AccountingRules:
    """The settings of private mode that reload can change."""

    peer_limit: int = 3
    max_rate: int = 1_000_000_000  # bytes per second; 0: never flag
    freeleech: bool = False
    peer_timeout: int = 2880  # a peer silent this long no longer counts against the limit


@dataclass(slots=True)
class Tally:
    """What announces added to one (user, torrent) since the last write."""

    uploaded: int = 0
    downloaded: int = 0
    raw_uploaded: int = 0
    raw_downloaded: int = 0
    seeding_seconds: int = 0
    snatches: int = 0
    announces: int = 0
    first_seen: int = 0
    last_seen: int = 0

    def add(self, other: Tally) -> None:
        self.uploaded += other.uploaded
        self.downloaded += other.downloaded
        self.raw_uploaded += other.raw_uploaded
        self.raw_downloaded += other.raw_downloaded
        self.seeding_seconds += other.seeding_seconds
        self.snatches += other.snatches
        self.announces += other.announces
        self.first_seen = min(self.first_seen, other.first_seen) or other.first_seen
        self.last_seen = max(self.last_seen, other.last_seen)


@dataclass(frozen=True, slots=True)
class Flag:
    """A delta not credited because its implied rate was above ``max_rate``."""

    user_id: int
    info_hash: bytes
    at: int
    uploaded: int
    downloaded: int
    seconds: int


def delta(reported: int, previous: int, fresh: bool) -> int:
    """What a reported total adds: nothing for a fresh baseline (a new peer or a
    ``started``) or a decrease (a new baseline), else the increase."""
    if fresh or reported < previous:
        return 0
    return reported - previous


def exceeds(amount: int, seconds: int, max_rate: int) -> bool:
    """Whether ``amount`` bytes in ``seconds`` (at least one) is faster than ``max_rate``
    bytes per second (0: no limit)."""
    return max_rate > 0 and amount > max_rate * max(1, seconds)


Key = tuple[int, bytes]  # (user id, primary info_hash)
Ticket = tuple[User, Torrent]


@dataclass(slots=True)
class _Peers:
    """One user's peers in one torrent: compact address -> second of its last announce."""

    seen: dict[bytes, int] = field(default_factory=dict)

    def active(self, now: int, timeout: int) -> int:
        stale = [addr for addr, at in self.seen.items() if now - at > timeout]
        for addr in stale:
            del self.seen[addr]
        return len(self.seen)


class PrivateTracker:
    """The registry and the accounting of private mode; see the module docstring."""

    def __init__(self, rules: AccountingRules | None = None, key: bytes | None = None) -> None:
        self.rules = rules or AccountingRules()
        self.users: dict[int, User] = {}
        self._by_passkey: PasskeyIndex[User] = PasskeyIndex(key)
        self.torrents: dict[bytes, Torrent] = {}  # by either hash
        self._peers: dict[Key, _Peers] = {}
        self.pending: dict[Key, Tally] = {}
        self.flags: list[Flag] = []

    def configure(self, rules: AccountingRules) -> None:
        self.rules = rules

    # -- the registry ---------------------------------------------------------------

    def put_user(self, user: User) -> None:
        """Add or replace a user; a replaced passkey stops working at once."""
        old = self.users.get(user.id)
        if old is not None:
            self._by_passkey.remove(old.passkey)
        self.users[user.id] = user
        self._by_passkey.put(user.passkey, user)

    def remove_user(self, user_id: int) -> None:
        old = self.users.pop(user_id, None)
        if old is not None:
            self._by_passkey.remove(old.passkey)

    def user_by_passkey(self, passkey: bytes) -> User | None:
        return self._by_passkey.get(passkey)

    def put_torrent(self, torrent: Torrent) -> None:
        """Add or replace a torrent (under both of its hashes)."""
        self.remove_torrent(torrent.info_hash)
        self.torrents[torrent.info_hash] = torrent
        if torrent.info_hash2 is not None:
            self.torrents[torrent.info_hash2] = torrent

    def remove_torrent(self, info_hash: bytes) -> None:
        old = self.torrents.get(info_hash)
        if old is None:
            return
        self.torrents.pop(old.info_hash, None)
        if old.info_hash2 is not None:
            self.torrents.pop(old.info_hash2, None)

    def load(self, users: Iterable[User], torrents: Iterable[Torrent]) -> None:
        for user in users:
            self.put_user(user)
        for torrent in torrents:
            self.put_torrent(torrent)

    def primary(self, info_hash: bytes) -> bytes | None:
        """The swarm a registered torrent's hash (either one) belongs to, or None."""
        torrent = self.torrents.get(info_hash)
        return None if torrent is None else torrent.info_hash

    # -- the announce path ----------------------------------------------------------

    def user_of(self, target: bytes) -> User:
        """The enabled user whose passkey ``target`` (a request path or BEP 41 URL data)
        carries; raises :class:`ClientError` otherwise."""
        passkey = route(target)[1]
        if not passkey:
            raise ClientError(PASSKEY_REQUIRED, RETRY_LASTING)
        user = self._by_passkey.get(passkey)
        if user is None:
            raise ClientError(UNKNOWN_PASSKEY, RETRY_LASTING)
        if not user.enabled:
            raise ClientError(USER_DISABLED, RETRY_LASTING)
        return user

    def admit(self, request: AnnounceRequest, now: int) -> Ticket:
        """Check an announce before the store sees it; returns the ticket for
        :meth:`settle`. Rewrites a hybrid torrent's second hash to its first."""
        user = self.user_of(request.path)
        torrent = self.torrents.get(request.info_hash)
        if torrent is None:
            raise ClientError(UNREGISTERED, RETRY_LASTING)
        request.info_hash = torrent.info_hash
        if request.event == Event.STOPPED:
            return user, torrent
        if request.left and not user.can_leech:
            raise ClientError(NO_LEECHING, RETRY_LASTING)
        limit = self.rules.peer_limit if user.peer_limit is None else user.peer_limit
        peers = self._peers.get((user.id, torrent.info_hash))
        if peers is None:
            active = 0
        elif request.addr in peers.seen:
            return user, torrent  # a peer already counted
        else:
            active = peers.active(now, self.rules.peer_timeout)
        if active >= limit:
            raise ClientError(peer_limit_reason(limit))
        return user, torrent

    def settle(self, ticket: Ticket, request: AnnounceRequest, result: AnnounceResult,
               now: int) -> None:
        """Account an announce the store answered (see the module docstring)."""
        user, torrent = ticket
        rules = self.rules
        key = (user.id, torrent.info_hash)
        peers = self._peers.get(key)
        if peers is None:
            peers = self._peers[key] = _Peers()
        last = peers.seen.get(request.addr)
        if result.role_after == ROLE_NONE:
            peers.seen.pop(request.addr, None)
        else:
            peers.seen[request.addr] = now
        if not peers.seen:
            del self._peers[key]
        tally = self.pending.get(key)
        if tally is None:
            tally = self.pending[key] = Tally(first_seen=now)
        tally.announces += 1
        tally.last_seen = now
        if result.completed:
            tally.snatches += 1
        if last is not None and result.role_before == ROLE_SEEDER:
            tally.seeding_seconds += max(0, now - last)
        fresh = result.role_before == ROLE_NONE or request.event == Event.STARTED
        up = delta(request.uploaded, result.prev_uploaded, fresh)
        down = delta(request.downloaded, result.prev_downloaded, fresh)
        if not (up or down):
            return
        # Unknown last announce (the tracker restarted): at most a peer timeout ago.
        seconds = max(1, now - last) if last is not None else rules.peer_timeout
        if exceeds(max(up, down), seconds, rules.max_rate):
            self.flags.append(Flag(user.id, torrent.info_hash, now, up, down, seconds))
            return
        tally.raw_uploaded += up
        tally.raw_downloaded += down
        tally.uploaded += round(up * user.upload_factor * torrent.upload_factor)
        if not rules.freeleech:
            tally.downloaded += round(down * user.download_factor * torrent.download_factor)

    def scrape_hashes(self, info_hashes: Iterable[bytes], target: bytes) -> list[bytes | None]:
        """For a scrape carrying ``target``: each hash as its swarm's (primary) hash, None
        for an unregistered one; raises :class:`ClientError` for a bad passkey."""
        self.user_of(target)
        torrents = self.torrents
        return [None if (t := torrents.get(h)) is None else t.info_hash for h in info_hashes]

    # -- the writer's side ----------------------------------------------------------

    def take(self) -> tuple[dict[Key, Tally], list[Flag]]:
        """The tallies and flags gathered since the last take (now cleared)."""
        pending, flags = self.pending, self.flags
        self.pending, self.flags = {}, []
        return pending, flags

    def give_back(self, pending: dict[Key, Tally], flags: list[Flag]) -> None:
        """Put back what a failed write took, merged with what came since."""
        for key, tally in pending.items():
            mine = self.pending.get(key)
            if mine is None:
                self.pending[key] = tally
            else:
                mine.add(tally)
        self.flags[:0] = flags

    def prune(self, now: int) -> int:
        """Forget peers silent for longer than the peer timeout; returns how many."""
        removed = 0
        timeout = self.rules.peer_timeout
        for key in list(self._peers):
            peers = self._peers[key]
            before = len(peers.seen)
            if not peers.active(now, timeout):
                del self._peers[key]
            removed += before - len(peers.seen)
        return removed

    def owners(self, info_hash: bytes) -> dict[bytes, int]:
        """The user of each peer (by compact address) in a torrent (primary hash)."""
        return {addr: uid for (uid, h), p in self._peers.items() if h == info_hash
                for addr in p.seen}

    def peers_of(self, user_id: int) -> dict[bytes, int]:
        """How many peers ``user_id`` has now, by torrent (primary hash)."""
        return {h: len(p.seen) for (uid, h), p in self._peers.items() if uid == user_id}
