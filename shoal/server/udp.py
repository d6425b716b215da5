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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from shoal.engine.rules import NetworkSet
from shoal.errors import ClientError
from shoal.logic import Later, TrackerLogic
from shoal.protocol import udp as codec
from shoal.protocol.compact import pack_address
from shoal.protocol.connid import ConnectionIds
from shoal.server.addr import packed_ip
from shoal.server.clock import Clock
from shoal.server.compiled import FAILURES, CompiledAnswer, WatchedSocket
from shoal.server.stats import LATENCY_BUCKETS, Counters
from shoal.types import AnnounceRequest, AnnounceResult, Event, SwarmCounts

try:
    from shoal import _native_udp
except ImportError:  # not built (no compiler or headers): the pure-Python path serves
    _native_udp = None  # type: ignore[assignment]

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
        self._send(announce_reply(self.counters, found, tid, v6), addr, started)

    def _scraped(self, found: list[SwarmCounts] | ClientError, tid: int,
                 addr: tuple[Any, ...], started: float) -> None:
        self._send(scrape_reply(self.counters, found, tid), addr, started)

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



def announce_reply(counters: Counters, found: AnnounceResult | ClientError, tid: int,
                   v6: bool) -> bytes:
    """The reply datagram to an announce the logic layer answered (or refused)."""
    if isinstance(found, ClientError):
        return _error(counters, tid, found.reason)
    # One family only, and never past one datagram's budget whatever a store returned.
    peers = found.peers6[:_PEER_BYTES_V6] if v6 else found.peers4[:_PEER_BYTES_V4]
    return codec.encode_announce(tid, found.interval, found.incomplete, found.complete, peers)


def scrape_reply(counters: Counters, found: list[SwarmCounts] | ClientError, tid: int) -> bytes:
    """The reply datagram to a scrape the logic layer answered (or refused)."""
    if isinstance(found, ClientError):
        return _error(counters, tid, found.reason)
    return codec.encode_scrape(tid, found)


def _error(counters: Counters, tid: int, reason: str) -> bytes:
    counters.failures[reason] += 1  # counted once as its kind, and here by reason
    return codec.encode_error(tid, reason)


# -- the compiled data plane ------------------------------------------------------------

NATIVE_AVAILABLE = _native_udp is not None
NATIVE_NAME = "native (shoal._native_udp: recvmmsg/sendmmsg batches)"
PYTHON_NAME = "python (asyncio datagram protocol)"
MAX_BATCHES = 16
"""Batches of datagrams (``_native_udp.BATCH`` each) one readable event may answer before
the loop runs other callbacks: a flood on UDP cannot starve HTTP or the timers."""
_FAMILIES = ("ipv4", "ipv6")
_KINDS = ("announce", "scrape", "connect", "error")
_EVENT_OBJECTS = tuple(Event(number) for number in range(5))
Item = tuple[int, int, Any, bytes, bytes]


class NativeUdpEndpoint(WatchedSocket):
    """One bound UDP socket served by the compiled data plane (``shoal._native_udp``).

    The event loop calls :meth:`drain` when the socket is readable. The compiled engine
    reads datagrams in batches (``recvmmsg``), checks each one as
    :func:`shoal.protocol.udp.decode_request` does, answers connects, bad connection ids
    and malformed datagrams itself, passes the valid announces and scrapes of a batch to
    :meth:`_answer_batch` in one call, and sends every reply of the batch at once
    (``sendmmsg``). A reply from a networked store that comes later is sent from here.
    A reply the socket buffer cannot take is dropped and counted (``udp_send_blocked``)
    rather than queued. Banned networks are compiled into the engine and recompiled
    whenever the logic layer's rules were swapped, so a banned source never gets a reply.
    It is also the transport the tracker lists for health and closes on stop.
    """

    def __init__(
        self,
        sock: socket.socket,
        logic: TrackerLogic,
        clock: Clock,
        counters: Counters,
        connection_ids: ConnectionIds,
        options: UdpOptions,
    ) -> None:
        if _native_udp is None:
            raise RuntimeError("the compiled UDP data plane (shoal._native_udp) is not built")
        super().__init__(sock)
        self.logic = logic
        self.clock = clock
        self.counters = counters
        self.ids = connection_ids
        self._options = options
        self.engine = _native_udp.Engine(
            sock.fileno(), connection_ids.key, connection_ids.ttl, connection_ids.skew,
            options.allow_ip_param, AnnounceRequest, _EVENT_OBJECTS, LATENCY_BUCKETS,
        )
        self.answered_in_c: dict[str, int] = {"announce": 0, "scrape": 0}
        """Announces and scrapes answered entirely in C (the compiled answer), so far."""
        targets = _count_targets(counters, _native_udp.MESSAGES, self.answered_in_c)
        self.compiled = CompiledAnswer(
            "UDP", log, self.engine, counters, targets, len(targets) - len(FAILURES),
            self.engine.attach_store, self.engine.detach_store)
        self._banned: NetworkSet | None = None
        self._generation = -1  # the logic layer's, the compiled answer was synced to
        # The engine's figures are added to the counters when someone reads them (and every
        # second): collecting after each drain cost a quarter of the tracker's time under
        # load, in Python, measured with perf.
        counters.pullers.append(self.compiled.collect)

    @property
    def options(self) -> UdpOptions:
        return self._options

    @options.setter
    def options(self, options: UdpOptions) -> None:  # a reload
        self._options = options
        self.engine.allow_ip_param = int(options.allow_ip_param)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve the socket on ``loop`` (from a coroutine running on it)."""
        self.watch(loop, self.drain)

    def drain(self) -> None:
        """Answer what the socket holds, up to ``MAX_BATCHES`` batches."""
        if self._closed:
            return
        banned = self.logic.access.banned
        if banned is not self._banned:
            self.engine.set_banned(banned.v4, banned.v6)
            self._banned = banned
        try:
            if self.logic.generation != self._generation:
                self._sync_fast()
            self.engine.drain(self.clock.now, self._answer_batch, MAX_BATCHES)
        except Exception:
            log.exception("internal error answering a batch of UDP datagrams")
            self.counters.internal_errors += 1

    @property
    def fast(self) -> bool:
        """Whether announces and scrapes are answered in C (see :meth:`_sync_fast`)."""
        attached: bool = self.engine.attached
        return attached

    def _sync_fast(self) -> None:
        """Answer announces and scrapes in C when nothing Python-only is in force, and keep
        the compiled copies of the policy and rules those of the logic layer (see
        :func:`shoal.server.compiled.fast_plan`). Run before a drain when the logic layer's
        generation moved: a reload (new configuration), a hook or private mode added is
        seen at once."""
        self._generation = self.logic.generation
        self.compiled.sync(self.logic)

    def _answer_batch(self, items: list[Item]) -> Sequence[bytes | None]:
        """The replies to one batch's valid announces and scrapes (None: none now)."""
        logic = self.logic
        counters = self.counters
        now = self.clock.now
        started = time.perf_counter()
        replies: list[bytes | None] = []
        for action, tid, payload, ip, sockaddr in items:
            try:
                if action == _ANNOUNCE:
                    v6 = len(ip) == 16
                    found = logic.announce(payload, ip, now)
                    if isinstance(found, Later):
                        found.then(partial(self._announced_later, tid, v6, sockaddr, started))
                        replies.append(None)
                    else:
                        replies.append(announce_reply(counters, found, tid, v6))
                else:
                    counts = logic.scrape(payload, ip)
                    if isinstance(counts, Later):
                        counts.then(partial(self._scraped_later, tid, sockaddr, started))
                        replies.append(None)
                    else:
                        replies.append(scrape_reply(counters, counts, tid))
            except Exception:
                log.exception("internal error answering a UDP datagram")
                counters.internal_errors += 1
                replies.append(None)
        return replies

    def _announced_later(self, tid: int, v6: bool, sockaddr: bytes, started: float,
                         found: AnnounceResult | ClientError) -> None:
        self._send_later(announce_reply(self.counters, found, tid, v6), sockaddr, started)

    def _scraped_later(self, tid: int, sockaddr: bytes, started: float,
                       found: list[SwarmCounts] | ClientError) -> None:
        self._send_later(scrape_reply(self.counters, found, tid), sockaddr, started)

    def _send_later(self, reply: bytes, sockaddr: bytes, started: float) -> None:
        if self._closed:
            return
        counters = self.counters
        try:
            self.engine.sendto(reply, sockaddr)
        except BlockingIOError:
            counters.dropped["udp_send_blocked"] += 1
        except OSError:
            counters.dropped["udp_icmp_error"] += 1
        counters.bytes_out["udp"] += len(reply)
        counters.observe_latency(time.perf_counter() - started)


def _count_targets(counters: Counters, messages: Sequence[str],
                   answered_in_c: dict[str, int]) -> list[tuple[Any, Any]]:
    """Where each of the engine's count slots goes: (table, key), in the slot order that
    ``Engine.counts`` documents."""
    targets: list[tuple[Any, Any]] = [(counters.bytes_in, "udp"), (counters.bytes_out, "udp")]
    targets += [(counters.requests, ("udp", family, kind))
                for family in _FAMILIES for kind in _KINDS]
    targets += [(counters.dropped, reason) for reason in (
        "udp_banned", "udp_bad_connection_id", "udp_send_blocked", "udp_icmp_error")]
    targets += [(counters.dropped, f"udp_malformed: {message}") for message in messages]
    targets += [(counters.latency_counts, index) for index in range(len(LATENCY_BUCKETS) + 1)]
    targets += [(answered_in_c, kind) for kind in ("announce", "scrape")]
    # Refusals answered in C, by reason: the texts come from Engine.attach_store.
    targets += [(counters.failures, reason) for reason in FAILURES]
    return targets
