"""The UDP frontend (BEP 15, BEP 41): one datagram in, at most one datagram out.

It shares the store with HTTP, so peers meet whichever protocol they announce over. No
reply is ever larger than the datagram that caused it unless the datagram carried a valid
connection id (which proves the sender receives at its address), so the tracker cannot be
used to reflect traffic at a spoofed victim.

The reply's address family follows the client's address, not the socket's: on a dual-stack
socket an IPv4 client arrives as ``::ffff:a.b.c.d`` and is treated (stored, answered with
6-byte peers, bound into its connection id) as the IPv4 client it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from shoal.errors import ClientError
from shoal.logic import Later, TrackerLogic
from shoal.protocol import udp as codec
from shoal.protocol.compact import pack_address
from shoal.protocol.connid import ConnectionIds
from shoal.server.addr import packed_ip
from shoal.server.clock import Clock
from shoal.server.stats import Counters
from shoal.types import AnnounceRequest, AnnounceResult, SwarmCounts

log = logging.getLogger("shoal.udp")

_CHECKED_MAX = 200_000  # client addresses remembered; past that the memory starts over
_FAMILY = {4: "ipv4", 16: "ipv6"}
_PEER_BYTES_V4 = codec.max_peers(6) * 6
_PEER_BYTES_V6 = codec.max_peers(18) * 18
_ANNOUNCE, _SCRAPE = codec.ANNOUNCE, codec.SCRAPE


@dataclass(frozen=True, slots=True)
class UdpOptions:
    """The UDP frontend's settings."""

    allow_ip_param: bool = False


class UdpEndpoint(asyncio.DatagramProtocol):
    """One bound UDP socket (IPv4 or IPv6); each reply follows its client's family.

    A datagram is parse -> logic -> encode: one codec call turns it into a validated
    request (checking the connection id before anything costly), the logic layer answers
    it, and the reply callback encodes and sends."""

    def __init__(
        self,
        logic: TrackerLogic,
        clock: Clock,
        counters: Counters,
        connection_ids: ConnectionIds,
        options: UdpOptions,
    ) -> None:
        self.logic = logic
        self.clock = clock
        self.counters = counters
        self.ids = connection_ids
        self.options = options
        self.transport: asyncio.DatagramTransport | None = None
        # Connection ids already checked, by client address: (id, first and last second it is
        # valid). Clients send many datagrams with one id, and a dict lookup costs a tenth of
        # the keyed hash.
        # Only ids that passed the check get in, so spoofed traffic cannot grow it.
        self._checked: dict[bytes, tuple[int, int, int]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (port unreachable and the like): nothing to do.
        self.counters.dropped["udp_icmp_error"] += 1

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        counters = self.counters
        counters.bytes_in["udp"] += len(data)
        started = time.perf_counter()
        try:
            ip = packed_ip(addr[0])
            if not self.logic.admits(ip):
                counters.dropped["udp_banned"] += 1
                return
            self._answer(data, ip, addr, started)
        except Exception:
            log.exception("internal error answering a UDP datagram")
            counters.internal_errors += 1

    def _answer(self, data: bytes, ip: bytes, addr: tuple[Any, ...], started: float) -> None:
        counters = self.counters
        family = _FAMILY[len(ip)]
        now = self.clock.now
        source = pack_address(ip, addr[1])
        decoded = codec.decode_request(data, ip, source, self._id_ok, self.options.allow_ip_param)
        if isinstance(decoded, codec.Malformed):
            self._malformed(decoded, family, addr, started)
            return
        action, tid, payload = decoded
        if action == _ANNOUNCE:
            assert isinstance(payload, AnnounceRequest)
            counters.requests["udp", family, "announce"] += 1
            v6 = len(ip) == 16
            found = self.logic.announce(payload, ip, now)
            if isinstance(found, Later):
                found.then(lambda later: self._announced(later, tid, v6, addr, started))
            else:
                self._announced(found, tid, v6, addr, started)
        elif action == _SCRAPE:
            assert isinstance(payload, list)
            counters.requests["udp", family, "scrape"] += 1
            counts = self.logic.scrape(payload, ip)
            if isinstance(counts, Later):
                counts.then(lambda later: self._scraped(later, tid, addr, started))
            else:
                self._scraped(counts, tid, addr, started)
        else:
            counters.requests["udp", family, "connect"] += 1
            self._send(codec.encode_connect(tid, self.ids.issue(source, now)), addr, started)

    def _malformed(self, bad: codec.Malformed, family: str, addr: tuple[Any, ...],
                   started: float) -> None:
        """Count a datagram that is not a valid request; answer only when that is safe."""
        counters = self.counters
        counters.requests["udp", family, "error"] += 1
        if bad.bad_id:
            counters.dropped["udp_bad_connection_id"] += 1
        else:
            counters.dropped[f"udp_malformed: {bad.message}"] += 1
        if bad.reply and bad.transaction_id is not None:
            self._send(codec.encode_error(bad.transaction_id, bad.message), addr, started)

    def _announced(self, found: AnnounceResult | ClientError, tid: int, v6: bool,
                   addr: tuple[Any, ...], started: float) -> None:
        if isinstance(found, ClientError):
            self._send(self._error(tid, found.reason), addr, started)
            return
        # One family only, and never past one datagram's budget whatever a store returned.
        peers = found.peers6[:_PEER_BYTES_V6] if v6 else found.peers4[:_PEER_BYTES_V4]
        reply = codec.encode_announce(tid, found.interval, found.incomplete, found.complete, peers)
        self._send(reply, addr, started)

    def _scraped(self, found: list[SwarmCounts] | ClientError, tid: int,
                 addr: tuple[Any, ...], started: float) -> None:
        if isinstance(found, ClientError):
            self._send(self._error(tid, found.reason), addr, started)
        else:
            self._send(codec.encode_scrape(tid, found), addr, started)

    def _send(self, reply: bytes, addr: tuple[Any, ...], started: float) -> None:
        if self.transport is not None:
            self.transport.sendto(reply, addr)
            self.counters.bytes_out["udp"] += len(reply)
            self.counters.observe_latency(time.perf_counter() - started)

    def _id_ok(self, conn_id: int, source: bytes) -> bool:
        now = self.clock.now
        known = self._checked.get(source)
        if known is not None and known[0] == conn_id and known[1] <= now <= known[2]:
            return True
        window = self.ids.window(conn_id, source, now)
        if window is None:
            return False
        if len(self._checked) >= _CHECKED_MAX:
            self._checked.clear()
        self._checked[source] = (conn_id, *window)
        return True

    def _error(self, tid: int, reason: str) -> bytes:
        self.counters.failures[reason] += 1  # counted once as its kind, and here by reason
        return codec.encode_error(tid, reason)

