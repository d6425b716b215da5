"""The seeded workload model the load generators replay.

The mix imitates a public tracker's traffic:

* ``torrents`` swarms (default 10,000) whose popularity follows a Zipf law with exponent
  ``zipf_s`` (default 1.0): torrent of rank ``r`` (0-based) has weight ``1 / (r + 1) ** s``.
  With the defaults the biggest swarm holds about a tenth of all peers and thousands of
  torrents hold one or two: a few huge swarms and a long tail of tiny ones.
* ``peers`` distinct peers (default 100,000). Each peer joins ``1 + Geometric`` torrents
  (mean ``torrents_per_peer``, default 1.5, at most 10), drawn by popularity without
  repeats. A (peer, torrent) membership is a *pair*; a pair is a seeder (``left=0``) with
  probability ``seeder_fraction`` (default 0.10), otherwise a leecher with some bytes left.
  Every announce reports non-zero totals, as real clients do: ``downloaded`` is what the
  pair already has, ``uploaded`` half of it.
* Peers come from ``addresses`` distinct loopback source addresses (default 256:
  127.0.1.1 to 127.0.2.6, see :func:`address_for`): peer ``index`` always sends from
  address ``index % addresses`` and listens on port ``1024 + (index // addresses) % 64512``,
  so no two peers share an address and port below 256 x 64,512 peers (opentracker, which
  tells peers apart by address and port only, sees every one of them). The load generators
  bind each socket to its peer's address before sending (UDP) or connecting (HTTP), so a
  tracker sees a few hundred distinct client IPs, each with its own connection ids (UDP)
  and connections (HTTP). Loopback addresses only; every one of 127.0.0.0/8 reaches the
  tracker on Linux without configuration. A scrape comes from a random one of them.
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
* Connects (UDP only): an operation of the mix is marked ``connect`` with probability
  ``connect_fraction`` (default 5%): the UDP generator then drops its source address's
  connection id and sends a BEP 15 connect before the request, as a client does when its
  id is too old (real clients, announcing every half hour, connect before nearly every
  announce; ``--udp-connect-share 1`` in ``python -m bench`` models that). With the
  default about 4.8% of the UDP requests are connects; the runner reports the share it
  measured. HTTP has no connects and ignores the mark.
* Every announce asks for ``numwant`` (50) compact peers and carries the peer's BEP 7 key.

The same seed always gives the same torrents, peers, addresses, fill and mix, byte for byte.
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
DEFAULT_ADDRESSES = 256
# Source addresses are 127.0.<1 + k // 250>.<1 + k % 250>: at most 250 x 254 of them.
_HOSTS_PER_NET = 250
MAX_ADDRESSES = _HOSTS_PER_NET * 254


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
    source: int = 0  # index of the source address (see address_for)
    connect: bool = False  # UDP: connect afresh before sending it


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape of a few info hashes."""

    info_hashes: tuple[bytes, ...]
    source: int = 0
    connect: bool = False


Op = Announce | Scrape


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """The knobs of the model; see the module docstring for what each one does."""

    torrents: int = 10_000
    peers: int = 100_000
    seed: int = 1
    zipf_s: float = 1.0
    torrents_per_peer: float = 1.5
    seeder_fraction: float = 0.10
    scrape_fraction: float = 0.10
    max_scrape_hashes: int = 10
    stop_probability: float = 0.03
    complete_probability: float = 0.02
    numwant: int = 50
    mix_length: int = 100_000
    addresses: int = DEFAULT_ADDRESSES
    connect_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not 1 <= self.addresses <= MAX_ADDRESSES:
            raise ValueError(f"addresses must be 1 to {MAX_ADDRESSES}")
        if not 0.0 <= self.connect_fraction <= 1.0:
            raise ValueError("connect_fraction must be between 0 and 1")


def info_hash_for(seed: int, index: int) -> bytes:
    """The info hash of torrent ``index`` under ``seed``."""
    return hashlib.sha1(f"shoal-bench/{seed}/{index}".encode()).digest()


def peer_id_for(index: int) -> bytes:
    """A 20-byte Azureus-style peer id for peer ``index``."""
    return b"-SB0001-" + f"{index:012d}".encode()


def port_for(index: int, addresses: int = 1) -> int:
    """The listening port peer ``index`` announces when peers come from ``addresses``
    source addresses (unique per address up to 64,512 peers on each)."""
    return PORT_BASE + (index // addresses) % PORT_SPAN


def source_for(index: int, addresses: int) -> int:
    """The index of the source address peer ``index`` sends from."""
    return index % addresses


def address_for(source: int) -> str:
    """The loopback address of source ``source``: 127.0.1.1, 127.0.1.2, ... 127.0.1.250,
    127.0.2.1, ... (never 127.0.0.1, which probes and other tools use)."""
    if not 0 <= source < MAX_ADDRESSES:
        raise ValueError(f"source {source} out of range")
    return f"127.0.{1 + source // _HOSTS_PER_NET}.{1 + source % _HOSTS_PER_NET}"


def source_addresses(addresses: int) -> list[str]:
    """The first ``addresses`` source addresses, by index."""
    return [address_for(k) for k in range(addresses)]


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
        n_addresses = config.addresses
        # Connect marks and scrape sources come from a generator of their own, so the rest
        # of the mix does not change with connect_fraction or addresses.
        aux = random.Random(config.seed * 1_000_003 + 17)

        def announce(pair: _Pair, event: Event, connect: bool = False) -> Announce:
            return Announce(
                info_hash=info_hashes[pair.torrent],
                peer_id=peer_ids[pair.peer],
                port=port_for(pair.peer, n_addresses),
                key=keys[pair.peer],
                uploaded=(pair.size - pair.left) // 2,
                downloaded=pair.size - pair.left,
                left=pair.left,
                event=event,
                numwant=config.numwant,
                source=source_for(pair.peer, n_addresses),
                connect=connect,
            )

        fill_order = list(range(len(pairs)))
        rng.shuffle(fill_order)
        fill = [announce(pairs[i], Event.STARTED) for i in fill_order]

        mix: list[Op] = []
        active = list(range(len(pairs)))  # indices of pairs in their swarm
        slot = list(range(len(pairs)))  # position of each active pair in ``active``
        inactive: list[int] = []
        for _ in range(config.mix_length if pairs else 0):
            connect = aux.random() < config.connect_fraction
            roll = rng.random()
            if roll < config.scrape_fraction:
                want = min(rng.randint(1, config.max_scrape_hashes), config.torrents)
                picked: list[int] = []
                while len(picked) < want:
                    t = rng.choices(torrent_ids, cum_weights=cum_weights)[0]
                    if t not in picked:
                        picked.append(t)
                source = aux.randrange(n_addresses)
                mix.append(Scrape(tuple(info_hashes[t] for t in picked), source, connect))
                continue
            roll = rng.random()
            if roll < config.stop_probability and len(active) > 1:
                i = active[rng.randrange(len(active))]
                last = active.pop()
                if last != i:
                    active[slot[i]] = last
                    slot[last] = slot[i]
                inactive.append(i)
                mix.append(announce(pairs[i], Event.STOPPED, connect))
            elif roll < 2 * config.stop_probability and inactive:
                i = inactive.pop(rng.randrange(len(inactive)))
                slot[i] = len(active)
                active.append(i)
                mix.append(announce(pairs[i], Event.STARTED, connect))
            else:
                pair = pairs[active[rng.randrange(len(active))]]
                if pair.left and rng.random() < config.complete_probability:
                    pair.left = 0
                    mix.append(announce(pair, Event.COMPLETED, connect))
                else:
                    mix.append(announce(pair, Event.NONE, connect))
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
        seeders = sum(1 for a in self.fill if a.left == 0)
        return {
            "torrents": len(self.info_hashes),
            "peers": self.config.peers,
            "pairs": len(self.fill),
            "seeders": seeders,
            "largest_swarm": sizes[0] if sizes else 0,
            "swarms_of_1_or_2": sum(1 for s in sizes if 0 < s <= 2),
            "empty_swarms": sum(1 for s in sizes if s == 0),
            "mix_ops": len(self.mix),
            "scrape_share": round((len(self.mix) - len(announces)) / n, 4),
            "started_share": round(events[Event.STARTED] / n, 4),
            "stopped_share": round(events[Event.STOPPED] / n, 4),
            "completed_share": round(events[Event.COMPLETED] / n, 4),
            "seeder_share": round(seeders / max(len(self.fill), 1), 4),
            "source_addresses": len({op.source for op in itertools.chain(self.fill, self.mix)}),
            "udp_connect_marks": round(sum(1 for op in self.mix if op.connect) / n, 4),
        }
