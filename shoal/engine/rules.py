"""Access rules as plain data: banned networks, torrent lists, client prefixes.

Each rule is an immutable object with a ``check(request, source)`` that returns quietly or
raises :class:`ClientError` with a short, stable reason. The logic layer runs the active
ones in order before the store sees an announce, and swaps the whole tuple at once on
reload, so a request sees the old rules or the new ones, never a mix. Being plain sets,
tuples and integers, they are also what a compiled path can read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shoal.errors import ClientError
from shoal.types import AnnounceRequest

BANNED = "your address is banned from this tracker"
TORRENT_NOT_ALLOWED = "torrent not allowed on this tracker"
CLIENT_NOT_ALLOWED = "client not allowed on this tracker"
RETRY_LATER = 60  # BEP 31 minutes: lasting, but lists can change on reload

Rule = Callable[[AnnounceRequest, bytes], None]


class NetworkSet:
    """A set of IPv4 and IPv6 networks with a membership test that costs one set lookup
    per distinct prefix length (a flattened prefix trie)."""

    __slots__ = ("count", "v4", "v6")

    def __init__(self, networks: Iterable[str] = ()) -> None:
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        count = 0
        for text in networks:
            net = ipaddress.ip_network(text.strip(), strict=False)
            if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
                mapped = net.network_address.ipv4_mapped
                net = ipaddress.ip_network(f"{mapped}/{max(0, net.prefixlen - 96)}", strict=False)
            table, bits = (v4, 32) if net.version == 4 else (v6, 128)
            shift = bits - net.prefixlen
            table.setdefault(shift, set()).add(int(net.network_address) >> shift)
            count += 1
        # Longest prefixes (smallest shifts) need no order; tuples iterate fastest.
        self.v4 = tuple((shift, frozenset(nets)) for shift, nets in sorted(v4.items()))
        self.v6 = tuple((shift, frozenset(nets)) for shift, nets in sorted(v6.items()))
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __contains__(self, ip: object) -> bool:
        """Whether a packed address (4 or 16 bytes) is in one of the networks."""
        if not isinstance(ip, bytes):
            return False
        table = self.v4 if len(ip) == 4 else self.v6
        if not table:
            return False
        value = int.from_bytes(ip, "big")
        return any((value >> shift) in nets for shift, nets in table)


@dataclass(frozen=True, slots=True)
class BannedNetworks:
    """Refuses announces from (or for) an address in the banned networks."""

    networks: NetworkSet

    def check(self, request: AnnounceRequest, source: bytes) -> None:
        if source in self.networks or request.addr[:-2] in self.networks:
            raise ClientError(BANNED, RETRY_LATER)


@dataclass(frozen=True, slots=True)
class TorrentList:
    """``allow``: serves only the listed torrents; ``deny``: refuses the listed ones."""

    allow: bool
    hashes: frozenset[bytes]

    def check(self, request: AnnounceRequest, source: bytes) -> None:
        if (request.info_hash in self.hashes) != self.allow:
            raise ClientError(TORRENT_NOT_ALLOWED, RETRY_LATER)

    def permits(self, info_hash: bytes) -> bool:
        return (info_hash in self.hashes) == self.allow


@dataclass(frozen=True, slots=True)
class ClientPrefixes:
    """Peer_id prefixes, matched on the raw bytes: with ``allow``, only clients whose
    peer_id starts with one of them; ``deny`` refuses those that do."""

    allow: tuple[bytes, ...]
    deny: tuple[bytes, ...]

    def check(self, request: AnnounceRequest, source: bytes) -> None:
        peer_id = request.peer_id
        if (self.allow and not peer_id.startswith(self.allow)) or (
            self.deny and peer_id.startswith(self.deny)
        ):
            raise ClientError(CLIENT_NOT_ALLOWED, RETRY_LATER)


@dataclass(frozen=True, slots=True)
class AccessRules:
    """Every access rule of one configuration, built once and swapped whole."""

    banned: NetworkSet
    torrents: TorrentList | None = None
    clients: ClientPrefixes | None = None

    @classmethod
    def build(
        cls,
        torrents: str = "open",
        torrent_list: Iterable[bytes] = (),
        client_allow: Iterable[str | bytes] = (),
        client_deny: Iterable[str | bytes] = (),
        banned_networks: Iterable[str] = (),
    ) -> AccessRules:
        """Rules from settings values; ``torrents`` is ``open``, ``allow`` or ``deny``.
        Raises ValueError for a bad mode or network."""
        if torrents not in ("open", "allow", "deny"):
            raise ValueError(f"access.torrents must be open, allow or deny, got {torrents!r}")
        listed = None if torrents == "open" else TorrentList(
            torrents == "allow", frozenset(torrent_list)
        )

        def raw(prefixes: Iterable[str | bytes]) -> tuple[bytes, ...]:
            return tuple(p.encode("latin-1") if isinstance(p, str) else p for p in prefixes)

        allow, deny = raw(client_allow), raw(client_deny)
        clients = ClientPrefixes(allow, deny) if allow or deny else None
        return cls(NetworkSet(banned_networks), listed, clients)

    def announce_rules(self) -> tuple[Rule, ...]:
        """The active checks, cheapest refusals first; empty when nothing is restricted."""
        rules: list[Rule] = []
        if len(self.banned):
            rules.append(BannedNetworks(self.banned).check)
        if self.torrents is not None:
            rules.append(self.torrents.check)
        if self.clients is not None:
            rules.append(self.clients.check)
        return tuple(rules)

    def summary(self) -> str:
        """One line for the log, e.g. "10,000 allowed torrents, 3 client prefixes denied,
        12 banned networks"."""
        parts = []
        if self.torrents is None:
            parts.append("all torrents")
        else:
            kind = "allowed" if self.torrents.allow else "denied"
            parts.append(f"{len(self.torrents.hashes):,} {kind} torrents")
        if self.clients is not None:
            if self.clients.allow:
                parts.append(f"{len(self.clients.allow):,} client prefixes allowed")
            if self.clients.deny:
                parts.append(f"{len(self.clients.deny):,} client prefixes denied")
        parts.append(f"{len(self.banned):,} banned networks")
        return ", ".join(parts)


OPEN = AccessRules(NetworkSet())
