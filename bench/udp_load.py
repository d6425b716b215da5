"""UDP tracker (BEP 15) load generator on asyncio.

One UDP socket per source address (``sources``: loopback addresses, see
:func:`bench.workload.address_for`), bound to it before anything is sent, so the tracker
sees each as a client of its own with its own connection id. Every request goes out from
the socket of its operation's source address (``UdpOps.sources``), so a peer always
announces from the same address, as a real one does. A socket behaves like a real
BitTorrent client: it sends a connect request before its first request, reuses the
connection id for its announces and scrapes, and connects again when the id gets older
than a per-socket age between ``reconnect_min`` and ``reconnect_max`` seconds (60 to 120
by default: BEP 15 lets clients keep an id for a minute, trackers accept it for about two),
when the tracker answers with an error, or when the operation is marked ``connect`` (the
workload's ``connect_fraction``: a client whose id has grown too old connects before it
announces). Requests for a socket that is connecting wait for the connection id. At most
``window`` requests (128 by default) are in flight over all sockets; connects are counted
apart (``LoadStats.connects``, and the share of replies they were in ``connect_share``).

Requests are pre-encoded (see :func:`encode_udp_ops`); sending one costs a struct pack of
the 16-byte header and a concatenation. Every reply is checked: transaction id known to
the client, action as expected (an error reply counts as an error), and size: an
announce reply is a 20-byte header plus whole 6-byte peers, no more than asked for; a
scrape reply has exactly 12 bytes per hash. Lost requests are counted as timeouts.

Two driving modes: closed loop (each reply triggers the next request: finds the peak
rate) and paced (``rate`` requests per second from a timer, replies trigger nothing:
for latency at a given load). A request's latency runs from its own send (a connect it
waited for is a request of its own, not counted in it).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import random
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from bench.driver import LoadDriver
from bench.stats import LoadStats
from bench.workload import Announce, Op

PROTOCOL_ID = 0x41727101980
ACTION_CONNECT = 0
ACTION_ANNOUNCE = 1
ACTION_SCRAPE = 2
ACTION_ERROR = 3

_HEADER = struct.Struct("!II")
_REQUEST_HEADER = struct.Struct("!QII")
_ANNOUNCE_BODY = struct.Struct("!20s20sQQQIIIiH")
_PEER_SIZE_V4 = 6
OPTION_URL_DATA = 2  # BEP 41
MAX_OPTION_DATA = 255  # one option's length is one byte


def url_data_options(url_data: bytes) -> bytes:
    """``url_data`` as BEP 41 options to append to an announce: type 2, length, data, in
    as many options as it takes at most 255 bytes each (nothing for empty data)."""
    return b"".join(
        bytes((OPTION_URL_DATA, len(chunk))) + chunk
        for chunk in (
            url_data[start : start + MAX_OPTION_DATA]
            for start in range(0, len(url_data), MAX_OPTION_DATA)
        )
    )


@dataclass(frozen=True, slots=True)
class UdpOps:
    """Pre-encoded requests: action, the bytes after the 16-byte header, the reply size
    limit (announce: largest acceptable reply; scrape: exact reply size), the index of the
    source address each goes out from (empty: all from the first), and whether each is
    preceded by a fresh connect (empty: none is)."""

    actions: list[int]
    bodies: list[bytes]
    sizes: list[int]
    sources: list[int] = field(default_factory=list)
    connects: bytes = b""

    def __len__(self) -> int:
        return len(self.actions)


def encode_udp_ops(
    ops: Sequence[Op], *, passkey_of: Callable[[Op], str] | None = None
) -> UdpOps:
    """Encode workload operations as BEP 15 request bodies.

    With ``passkey_of`` (a private tracker) every announce carries ``/<passkey>/announce``
    as BEP 41 URL data, and scrapes are left out: a UDP scrape has no room for URL data, so
    a private tracker refuses it (clients get counts from their announces)."""
    actions: list[int] = []
    bodies: list[bytes] = []
    sizes: list[int] = []
    sources: list[int] = []
    connects = bytearray()
    for op in ops:
        if isinstance(op, Announce):
            sources.append(op.source)
            connects.append(op.connect)
            options = b""
            if passkey_of is not None:
                options = url_data_options(f"/{passkey_of(op)}/announce".encode("ascii"))
            actions.append(ACTION_ANNOUNCE)
            bodies.append(
                _ANNOUNCE_BODY.pack(
                    op.info_hash,
                    op.peer_id,
                    op.downloaded,
                    op.left,
                    op.uploaded,
                    int(op.event),
                    0,
                    op.key,
                    op.numwant,
                    op.port,
                )
                + options
            )
            sizes.append(20 + _PEER_SIZE_V4 * max(op.numwant, 0))
        elif passkey_of is None:
            sources.append(op.source)
            connects.append(op.connect)
            actions.append(ACTION_SCRAPE)
            bodies.append(b"".join(op.info_hashes))
            sizes.append(8 + 12 * len(op.info_hashes))
    return UdpOps(actions, bodies, sizes, sources, bytes(connects))


class _UdpClient(asyncio.DatagramProtocol):
    """One source address's socket, its connection id, its requests in flight and the
    requests waiting for a connection id."""

    def __init__(self, load: UdpLoad, reconnect_after: float, first_txid: int) -> None:
        self.load = load
        self.transport: asyncio.DatagramTransport | None = None
        self.reconnect_after = reconnect_after
        self.cid = -1
        self.cid_at = 0.0
        self.connect_txid = -1
        self.connect_sent_ns = 0
        self.txid = first_txid
        self.pending: dict[int, tuple[int, int]] = {}
        self.waiting: deque[int] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        self.load.stats.error(f"socket error: {type(exc).__name__}")

    def _next_txid(self) -> int:
        self.txid = (self.txid + 1) & 0xFFFFFFFF
        return self.txid

    def _connect(self) -> None:
        assert self.transport is not None
        txid = self._next_txid()
        self.connect_txid = txid
        self.connect_sent_ns = time.perf_counter_ns()
        self.transport.sendto(_REQUEST_HEADER.pack(PROTOCOL_ID, ACTION_CONNECT, txid))

    def ready(self) -> bool:
        """True when the client has a fresh connection id; otherwise start connecting."""
        if self.connect_txid >= 0:
            return False
        if self.cid < 0 or time.monotonic() - self.cid_at > self.reconnect_after:
            self._connect()
            return False
        return True

    def submit(self, index: int, fresh: int) -> None:
        """Send request ``index`` now, or once a connection id is here; with ``fresh``,
        drop the id held and connect first."""
        if fresh and self.connect_txid < 0:
            self.cid = -1
        if self.waiting or not self.ready():
            self.waiting.append(index)
            return
        self.send(index)

    def send(self, index: int) -> None:
        """Send request ``index`` of the load's operations."""
        assert self.transport is not None
        ops = self.load.ops
        txid = self._next_txid()
        self.pending[txid] = (time.perf_counter_ns(), index)
        self.transport.sendto(
            _REQUEST_HEADER.pack(self.cid, ops.actions[index], txid) + ops.bodies[index]
        )

    def _give_up_waiting(self) -> None:
        """The connect failed: the requests waiting for it are dropped (sent again while
        filling)."""
        load = self.load
        waiting = self.waiting
        load.outstanding -= len(waiting)
        while waiting:
            load.requeue(waiting.popleft())

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        load = self.load
        stats = load.stats
        size = len(data)
        if size < 8:
            stats.error("short datagram")
            return
        action, txid = _HEADER.unpack_from(data)
        if txid == self.connect_txid and self.connect_txid >= 0:
            self.connect_txid = -1
            if action == ACTION_CONNECT and size == 16:
                self.cid = int.from_bytes(data[8:16], "big")
                self.cid_at = time.monotonic()
                stats.connects += 1
                waiting = self.waiting
                while waiting:
                    self.send(waiting.popleft())
            else:
                stats.error(f"bad connect reply (action {action}, {size} bytes)")
                self.cid = -1
                self._give_up_waiting()
                if load.closed_loop:
                    load.pump()
            return
        entry = self.pending.pop(txid, None)
        if entry is None:
            stats.late += 1
            return
        load.outstanding -= 1
        sent_ns, index = entry
        ops = load.ops
        expected = ops.actions[index]
        if action != expected:
            if action == ACTION_ERROR:
                stats.error("error reply: " + data[8:].decode("utf-8", "replace")[:80])
                self.cid = -1
            else:
                stats.error(f"action {action} instead of {expected}")
        elif action == ACTION_ANNOUNCE:
            if size < 20 or (size - 20) % _PEER_SIZE_V4 or size > ops.sizes[index]:
                stats.error(f"announce reply of {size} bytes")
            else:
                stats.announces += 1
                stats.responses += 1
                if load.record:
                    stats.latencies_ns.append(time.perf_counter_ns() - sent_ns)
        elif size != ops.sizes[index]:
            stats.error(f"scrape reply of {size} bytes, expected {ops.sizes[index]}")
        else:
            stats.scrapes += 1
            stats.responses += 1
            if load.record:
                stats.latencies_ns.append(time.perf_counter_ns() - sent_ns)
        if load.closed_loop:
            load.pump()

    def expire(self, now_ns: int, timeout_ns: int) -> None:
        """Give up on requests (and a connect) older than the timeout."""
        load = self.load
        if self.connect_txid >= 0 and now_ns - self.connect_sent_ns > timeout_ns:
            load.stats.timeouts += 1
            self.connect_txid = -1
            self._give_up_waiting()
        if self.pending:
            late = [t for t, (sent, _) in self.pending.items() if now_ns - sent > timeout_ns]
            for t in late:
                _, index = self.pending.pop(t)
                load.stats.timeouts += 1
                load.outstanding -= 1
                load.requeue(index)


def _same(client: _UdpClient) -> _UdpClient:
    return client


def check_sources(host: str, sources: Sequence[str]) -> list[str]:
    """``sources`` as a list, once every one is a loopback address of ``host``'s family."""
    if host not in ("127.0.0.1", "::1"):
        raise ValueError("the benchmark only talks to 127.0.0.1 or ::1")
    family = ipaddress.ip_address(host).version
    out = list(sources)
    if not out:
        raise ValueError("no source address")
    for source in out:
        address = ipaddress.ip_address(source)
        if not address.is_loopback or address.version != family:
            raise ValueError(f"source {source} is not a loopback address like {host}")
    return out


class UdpLoad(LoadDriver[UdpOps]):
    """One UDP socket per source address, aimed at one tracker at ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sources: Sequence[str] = ("127.0.0.1",),
        window: int = 128,
        timeout: float = 1.0,
        reconnect_min: float = 60.0,
        reconnect_max: float = 120.0,
        seed: int = 0,
    ) -> None:
        super().__init__(UdpOps([], [], []), timeout)
        self.sources = check_sources(host, sources)
        self.host = host
        self.port = port
        self.window = window
        self.outstanding = 0  # requests sent or waiting for a connection id
        self._rng = random.Random(seed)
        self._reconnect = (reconnect_min, reconnect_max)
        self.clients: list[_UdpClient] = []

    async def open(self) -> None:
        """Create the sockets, each bound to its source address."""
        loop = asyncio.get_running_loop()
        for source in self.sources:
            client = _UdpClient(
                self, self._rng.uniform(*self._reconnect), self._rng.getrandbits(32)
            )
            await loop.create_datagram_endpoint(
                functools.partial(_same, client),
                local_addr=(source, 0),
                remote_addr=(self.host, self.port),
            )
            self.clients.append(client)

    def close(self) -> None:
        """Close every client socket."""
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()
        self.clients.clear()

    def in_flight(self) -> int:
        """Requests (waiting for a connection id included) and connects without a reply."""
        return self.outstanding + sum(c.connect_txid >= 0 for c in self.clients)

    async def run(self, ops: UdpOps, **kwargs: Any) -> LoadStats:
        """:meth:`LoadDriver.run`, once ``ops`` name no source this load has no socket for."""
        if ops.sources and max(ops.sources) >= len(self.sources):
            raise ValueError(
                f"operations from source {max(ops.sources)}, but only "
                f"{len(self.sources)} source addresses"
            )
        return await super().run(ops, **kwargs)

    def dispatch(self, index: int) -> None:
        """Hand request ``index`` to its source address's socket."""
        ops = self.ops
        client = self.clients[ops.sources[index] if ops.sources else 0]
        self.outstanding += 1
        client.submit(index, ops.connects[index] if ops.connects else 0)

    def pump(self) -> None:
        """Closed loop: keep ``window`` requests in flight."""
        while self.outstanding < self.window:
            index = self.next_op()
            if index < 0:
                return
            self.dispatch(index)

    # -- the run loop's hooks (see bench.driver) -------------------------------------------

    async def _prepare(self) -> None:
        if not self.clients:
            await self.open()

    def _start(self) -> None:
        self.outstanding = 0
        if self.closed_loop:
            self.pump()
        else:
            for client in self.clients:
                client.ready()

    def _expire(self, now_ns: int, timeout_ns: int) -> None:
        for client in self.clients:
            client.expire(now_ns, timeout_ns)
        if self.closed_loop:
            self.pump()

    def _send_due(self, due: int) -> int:
        """Open loop: up to ``due`` requests, as long as fewer than ``window`` are out."""
        sent = 0
        while sent < due and self.outstanding < self.window:
            index = self.next_op()
            if index < 0:
                break
            self.dispatch(index)
            sent += 1
        return sent

    def _abandon(self) -> None:
        # Requests still in flight after the drain are abandoned, not counted.
        for client in self.clients:
            client.pending.clear()
            client.waiting.clear()
        self.outstanding = 0
