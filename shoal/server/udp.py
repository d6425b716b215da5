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
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, cast

from shoal.engine.store import PeerStore
from shoal.errors import ClientError
from shoal.protocol import udp as codec
from shoal.protocol.connid import ConnectionIds
from shoal.server.clock import Clock
from shoal.server.stats import Counters
from shoal.types import AnnounceResult

log = logging.getLogger("shoal.udp")

_EXPIRED = "connection id expired"
_CHECKED_MAX = 200_000  # client addresses remembered; past that the memory starts over
_V4_MAPPED = bytes(10) + b"\xff\xff"
_FAMILY = {4: "ipv4", 16: "ipv6"}
_MAX_PEERS = {4: codec.max_peers(6), 16: codec.max_peers(18)}
_PEER_BYTES_V4 = _MAX_PEERS[4] * 6
_PEER_BYTES_V6 = _MAX_PEERS[16] * 18


@dataclass(frozen=True, slots=True)
class UdpOptions:
    """The UDP frontend's settings."""

    allow_ip_param: bool = False


class UdpEndpoint(asyncio.DatagramProtocol):
    """One bound UDP socket (IPv4 or IPv6); each reply follows its client's family."""

    def __init__(
        self,
        store: PeerStore,
        clock: Clock,
        counters: Counters,
        connection_ids: ConnectionIds,
        options: UdpOptions,
    ) -> None:
        self.store = store
        self.clock = clock
        self.counters = counters
        self.ids = connection_ids
        self.options = options
        self.transport: asyncio.DatagramTransport | None = None
        self._v6 = False
        self._pending: set[asyncio.Future[None]] = set()
        # Connection ids already checked, by client address: (id, first and last second it is
        # valid). Clients send many datagrams with one id, and a dict lookup costs a tenth of
        # the keyed hash.
        # Only ids that passed the check get in, so spoofed traffic cannot grow it.
        self._checked: dict[bytes, tuple[int, int, int]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_INET6:
            self._v6 = True

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
            if not self._v6:
                ip = socket.inet_pton(socket.AF_INET, addr[0])
            else:
                # A link-local client's address carries its zone ("fe80::1%eth0").
                ip = socket.inet_pton(socket.AF_INET6, addr[0].partition("%")[0])
                if ip[:12] == _V4_MAPPED:
                    ip = ip[12:]
            source = ip + addr[1].to_bytes(2, "big")
            reply = self._answer(data, ip, source, addr)
        except Exception:
            log.exception("internal error answering a UDP datagram")
            counters.internal_errors += 1
            return
        if reply is not None:
            self._send(reply, addr)
            counters.observe_latency(time.perf_counter() - started)

    def _send(self, reply: bytes, addr: tuple[Any, ...]) -> None:
        if self.transport is not None:
            self.transport.sendto(reply, addr)
            self.counters.bytes_out["udp"] += len(reply)

    def _answer(
        self, data: bytes, ip: bytes, source: bytes, addr: tuple[Any, ...]
    ) -> bytes | None:
        counters = self.counters
        family = _FAMILY[len(ip)]
        parsed = codec.parse_request(data)
        now = self.clock.now
        if isinstance(parsed, codec.AnnounceRequestUdp):
            counters.requests["udp", family, "announce"] += 1
            if not self._id_ok(parsed.connection_id, source, now):
                return self._refuse(parsed.transaction_id, _EXPIRED, len(data))
            opts = self.options
            if opts.allow_ip_param and parsed.ip and len(ip) == 4:
                ip = parsed.ip.to_bytes(4, "big")
            # The engine's policy turns "none" into its default and applies its cap; here
            # only what fits one datagram (and _announce_reply trims to it whatever comes).
            cap = _MAX_PEERS[len(ip)]
            numwant = min(parsed.num_want, cap) if parsed.num_want > 0 else -1
            request = codec.to_announce_request(parsed, ip, numwant)
            tid = parsed.transaction_id
            try:
                found = self.store.announce(request, now)
            except ClientError as exc:
                return self._error(tid, exc.reason)
            if isinstance(found, AnnounceResult):
                return self._announce_reply(tid, found, len(ip) == 16)
            self._later(found, tid, addr, family)
            return None
        if isinstance(parsed, codec.ConnectRequest):
            counters.requests["udp", family, "connect"] += 1
            return codec.encode_connect(parsed.transaction_id, self.ids.issue(source, now))
        if isinstance(parsed, codec.ScrapeRequestUdp):
            counters.requests["udp", family, "scrape"] += 1
            if not self._id_ok(parsed.connection_id, source, now):
                return self._refuse(parsed.transaction_id, _EXPIRED, len(data))
            try:
                counts = self.store.scrape(parsed.info_hashes)
            except ClientError as exc:
                return self._error(parsed.transaction_id, exc.reason)
            if isinstance(counts, list):
                return codec.encode_scrape(parsed.transaction_id, counts)
            self._later(counts, parsed.transaction_id, addr, family)
            return None
        # Malformed: answer only when that is safe (see the module docstring).
        counters.requests["udp", family, "error"] += 1
        counters.dropped[f"udp_malformed: {parsed.message}"] += 1
        if not parsed.reply or parsed.transaction_id is None:
            return None
        if parsed.connection_id is not None and not self._id_ok(
            parsed.connection_id, source, now
        ):
            return None
        return codec.encode_error(parsed.transaction_id, parsed.message)

    def _id_ok(self, conn_id: int, source: bytes, now: int) -> bool:
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

    @staticmethod
    def _announce_reply(tid: int, found: AnnounceResult, v6: bool) -> bytes:
        # One family only, and never past one datagram's budget whatever a store returned.
        peers = found.peers6[:_PEER_BYTES_V6] if v6 else found.peers4[:_PEER_BYTES_V4]
        return codec.encode_announce(tid, found.interval, found.incomplete, found.complete, peers)

    def _error(self, tid: int, reason: str) -> bytes:
        self.counters.failures[reason] += 1  # counted once as its kind, and here by reason
        return codec.encode_error(tid, reason)

    def _refuse(self, tid: int, message: str, size: int) -> bytes | None:
        """An error for a bad connection id, only if it is no larger than the request."""
        self.counters.dropped["udp_bad_connection_id"] += 1
        reply = codec.encode_error(tid, message)
        return reply if len(reply) <= size else None

    def _later(
        self, awaitable: Awaitable[Any], tid: int, addr: tuple[Any, ...], family: str
    ) -> None:
        async def answer() -> None:
            try:
                result = await awaitable
            except ClientError as exc:
                self._send(self._error(tid, exc.reason), addr)
                return
            except Exception:
                log.exception("internal error answering a UDP datagram")
                self.counters.internal_errors += 1
                return
            if isinstance(result, AnnounceResult):
                self._send(self._announce_reply(tid, result, family == "ipv6"), addr)
            else:
                self._send(codec.encode_scrape(tid, result), addr)

        task = asyncio.ensure_future(answer())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
