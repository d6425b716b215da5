"""The seeded workload model the load generators replay.

The mix imitates a public tracker's traffic:

* ``torrents`` swarms (default 10,000) whose popularity follows a Zipf law with exponent
  ``zipf_s`` (default 1.0): torrent of rank ``r`` (0-based) has weight ``1 / (r + 1) ** s``.
  With the defaults the biggest swarm holds about a tenth of all peers and thousands of
  torrents hold one or two: a few huge swarms and a long tail of tiny ones.
* ``peers`` distinct peers (default 100,000). Each peer joins ``1 + Geometric`` torrents
  (mean ``torrents_per_peer``, default 1.5, at most 10), drawn by popularity without
  repeats. A (peer, torrent) membership is a *pair*; a pair is a seeder (``left=0``) with
  probability ``seeder_fraction`` (default 0.25), otherwise a leecher with some bytes left.
* Every peer is 127.0.0.1 (the source address; nothing else is allowed) with its own
  peer id and listening port ``1024 + index % 64512``. opentracker tells peers apart by
  address and port only, so in a swarm of more than 64,512 peers some of them coincide for
  it (Shoal tells them apart by peer id).
* ``fill``: one ``event=started`` announce per pair, shuffled, replayed before measuring so
  every swarm is full.
* ``mix``: ``mix_length`` operations (default 100,000) replayed in a loop while measuring.
  About ``scrape_fraction`` (10%) are scrapes of 1 to 10 info hashes (uniformly many, each
  drawn by popularity, no repeats). Of the announces, ``stop_probability`` (3%) stop a
  random active pair (``event=stopped``), as many restart a random stopped pair
  (``event=started``), and the rest come from a random active pair (so a swarm's announce
  rate is proportional to its size, as with clients re-announcing every interval): a
  leecher sends ``completed`` with probability ``complete_probability`` (2%, and is a
  seeder from then on), otherwise a regular announce with no event. With the defaults the
  mix is about 90% announces (81% regular, 2.7% started, 2.7% stopped, 1.3% completed)
  and 10% scrapes.
* Every announce asks for ``numwant`` (50) compact peers and carries the peer's BEP 7 key.

The same seed always gives the same torrents, peers, fill and mix, byte for byte.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field
from enum import IntEnum

PORT_BASE = 1024
PORT_SPAN = 65536 - PORT_BASE
MAX_TORRENTS_PER_PEER = 10


class Event(IntEnum):
    """Announce events, numbered as in BEP 15."""

    NONE = 0
    COMPLETED = 1
    STARTED = 2
    STOPPED = 3


HTTP_EVENT_NAMES: dict[Event, str] = {
    Event.NONE: "",
    Event.COMPLETED: "completed",
    Event.STARTED: "started",
    Event.STOPPED: "stopped",
}


@dataclass(frozen=True, slots=True)
class Announce:
    """One announce as a client would send it (the address is the socket's)."""

    info_hash: bytes
    peer_id: bytes
    port: int
    key: int
    uploaded: int
    downloaded: int
    left: int
    event: Event
    numwant: int


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape of a few info hashes."""

    info_hashes: tuple[bytes, ...]


Op = Announce | Scrape


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """The knobs of the model; see the module docstring for what each one does."""

    torrents: int = 10_000
    peers: int = 100_000
    seed: int = 1
    zipf_s: float = 1.0
    torrents_per_peer: float = 1.5
    seeder_fraction: float = 0.25
    scrape_fraction: float = 0.10
    max_scrape_hashes: int = 10
    stop_probability: float = 0.03
    complete_probability: float = 0.02
    numwant: int = 50
    mix_length: int = 100_000


def info_hash_for(seed: int, index: int) -> bytes:
    """The info hash of torrent ``index`` under ``seed``."""
    return hashlib.sha1(f"shoal-bench/{seed}/{index}".encode()).digest()


def peer_id_for(index: int) -> bytes:
    """A 20-byte Azureus-style peer id for peer ``index``."""
    return b"-SB0001-" + f"{index:012d}".encode()


def port_for(index: int) -> int:
    """The listening port peer ``index`` announces."""
    return PORT_BASE + index % PORT_SPAN


def key_for(seed: int, index: int) -> int:
    """The BEP 7 key of peer ``index`` (32 bits, deterministic)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}/{index}".encode(), digest_size=4).digest())


@dataclass(slots=True)
class _Pair:
    peer: int
    torrent: int
    size: int
    left: int


@dataclass(slots=True)
class Workload:
    """Torrents, the fill announces and the measured mix, built from a :class:`WorkloadConfig`."""

    config: WorkloadConfig
    info_hashes: list[bytes] = field(default_factory=list)
    fill: list[Announce] = field(default_factory=list)
    mix: list[Op] = field(default_factory=list)

    @classmethod
    def build(cls, config: WorkloadConfig) -> Workload:
        """Build the whole workload deterministically from ``config.seed``."""
        rng = random.Random(config.seed)
        info_hashes = [info_hash_for(config.seed, i) for i in range(config.torrents)]
        cum_weights = list(
            itertools.accumulate(1.0 / (r + 1) ** config.zipf_s for r in range(config.torrents))
        )
        torrent_ids = range(config.torrents)
        sizes = [rng.randrange(50_000_000, 5_000_000_000) for _ in range(config.torrents)]

        # Each peer's number of torrents: 1 + geometric with mean (torrents_per_peer - 1).
        extra_mean = max(config.torrents_per_peer - 1.0, 0.0)
        p_more = extra_mean / (1.0 + extra_mean)
        pairs: list[_Pair] = []
        for peer in range(config.peers):
            count = 1
            while count < MAX_TORRENTS_PER_PEER and rng.random() < p_more:
                count += 1
            count = min(count, config.torrents)
            chosen: set[int] = set()
            while len(chosen) < count:
                more = count - len(chosen)
                chosen.update(rng.choices(torrent_ids, cum_weights=cum_weights, k=more))
            for torrent in sorted(chosen):
                size = sizes[torrent]
                left = 0 if rng.random() < config.seeder_fraction else rng.randrange(1, size)
                pairs.append(_Pair(peer, torrent, size, left))

        keys = [key_for(config.seed, i) for i in range(config.peers)]
        peer_ids = [peer_id_for(i) for i in range(config.peers)]

        def announce(pair: _Pair, event: Event) -> Announce:
            return Announce(
                info_hash=info_hashes[pair.torrent],
                peer_id=peer_ids[pair.peer],
                port=port_for(pair.peer),
                key=keys[pair.peer],
                uploaded=(pair.size - pair.left) // 2,
                downloaded=pair.size - pair.left,
                left=pair.left,
                event=event,
                numwant=config.numwant,
            )

        fill_order = list(range(len(pairs)))
        rng.shuffle(fill_order)
        fill = [announce(pairs[i], Event.STARTED) for i in fill_order]

        mix: list[Op] = []
        active = list(range(len(pairs)))  # indices of pairs in their swarm
        slot = list(range(len(pairs)))  # position of each active pair in ``active``
        inactive: list[int] = []
        for _ in range(config.mix_length if pairs else 0):
            roll = rng.random()
            if roll < config.scrape_fraction:
                want = min(rng.randint(1, config.max_scrape_hashes), config.torrents)
                picked: list[int] = []
                while len(picked) < want:
                    t = rng.choices(torrent_ids, cum_weights=cum_weights)[0]
                    if t not in picked:
                        picked.append(t)
                mix.append(Scrape(tuple(info_hashes[t] for t in picked)))
                continue
            roll = rng.random()
            if roll < config.stop_probability and len(active) > 1:
                i = active[rng.randrange(len(active))]
                last = active.pop()
                if last != i:
                    active[slot[i]] = last
                    slot[last] = slot[i]
                inactive.append(i)
                mix.append(announce(pairs[i], Event.STOPPED))
            elif roll < 2 * config.stop_probability and inactive:
                i = inactive.pop(rng.randrange(len(inactive)))
                slot[i] = len(active)
                active.append(i)
                mix.append(announce(pairs[i], Event.STARTED))
            else:
                pair = pairs[active[rng.randrange(len(active))]]
                if pair.left and rng.random() < config.complete_probability:
                    pair.left = 0
                    mix.append(announce(pair, Event.COMPLETED))
                else:
                    mix.append(announce(pair, Event.NONE))
        return cls(config=config, info_hashes=info_hashes, fill=fill, mix=mix)

    def swarm_sizes(self) -> list[int]:
        """Peers per torrent after the fill, by torrent index (for reports)."""
        index = {h: i for i, h in enumerate(self.info_hashes)}
        sizes = [0] * len(self.info_hashes)
        for a in self.fill:
            sizes[index[a.info_hash]] += 1
        return sizes

    def describe(self) -> dict[str, float | int]:
        """Summary figures of the mix, for the results file."""
        sizes = sorted(self.swarm_sizes(), reverse=True)
        announces = [op for op in self.mix if isinstance(op, Announce)]
        events = {e: 0 for e in Event}
        for a in announces:
            events[a.event] += 1
        n = max(len(self.mix), 1)
        return {
            "torrents": len(self.info_hashes),
            "peers": self.config.peers,
            "pairs": len(self.fill),
            "seeders": sum(1 for a in self.fill if a.left == 0),
            "largest_swarm": sizes[0] if sizes else 0,
            "swarms_of_1_or_2": sum(1 for s in sizes if 0 < s <= 2),
            "empty_swarms": sum(1 for s in sizes if s == 0),
            "mix_ops": len(self.mix),
            "scrape_share": round((len(self.mix) - len(announces)) / n, 4),
            "started_share": round(events[Event.STARTED] / n, 4),
            "stopped_share": round(events[Event.STOPPED] / n, 4),
            "completed_share": round(events[Event.COMPLETED] / n, 4),
        }
