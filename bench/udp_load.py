"""UDP tracker (BEP 15) load generator on asyncio.

Each simulated client is one UDP socket (its own source port) that behaves like a real
BitTorrent client: it sends a connect request once, reuses the connection id for its
announces and scrapes, and connects again when the id gets older than a per-client age
between ``reconnect_min`` and ``reconnect_max`` seconds (60 to 120 by default: BEP 15
lets clients keep an id for a minute, trackers accept it for about two) or when the
tracker answers with an error. Every client keeps up to ``window`` requests in flight.

Requests are pre-encoded (see :func:`encode_udp_ops`); sending one costs a struct pack of
the 16-byte header and a concatenation. Every reply is checked: transaction id known to
the client, action as expected (an error reply counts as an error), and size: an
announce reply is a 20-byte header plus whole 6-byte peers, no more than asked for; a
scrape reply has exactly 12 bytes per hash. Lost requests are counted as timeouts.

Two driving modes: closed loop (each reply triggers the next request: finds the peak
rate) and paced (``rate`` requests per second from a timer, replies trigger nothing:
for latency at a given load).
"""

from __future__ import annotations

import asyncio
import functools
import random
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from bench.driver import LoadDriver
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
    """Pre-encoded requests: action, the bytes after the 16-byte header, and the reply size
    limit (announce: largest acceptable reply; scrape: exact reply size)."""

    actions: list[int]
    bodies: list[bytes]
    sizes: list[int]

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
    for op in ops:
        if isinstance(op, Announce):
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
            actions.append(ACTION_SCRAPE)
            bodies.append(b"".join(op.info_hashes))
            sizes.append(8 + 12 * len(op.info_hashes))
    return UdpOps(actions, bodies, sizes)


class _UdpClient(asyncio.DatagramProtocol):
    """One client socket with its connection id and its requests in flight."""

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

    def send(self, index: int) -> None:
        """Send request ``index`` of the load's operations."""
        assert self.transport is not None
        ops = self.load.ops
        txid = self._next_txid()
        self.pending[txid] = (time.perf_counter_ns(), index)
        self.transport.sendto(
            _REQUEST_HEADER.pack(self.cid, ops.actions[index], txid) + ops.bodies[index]
        )

    def pump(self) -> None:
        """Closed loop: fill the window with new requests."""
        if not self.ready():
            return
        load = self.load
        pending = self.pending
        while len(pending) < load.window:
            index = load.next_op()
            if index < 0:
                return
            self.send(index)

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
            else:
                stats.error(f"bad connect reply (action {action}, {size} bytes)")
                self.cid = -1
            if load.closed_loop:
                self.pump()
            return
        entry = self.pending.pop(txid, None)
        if entry is None:
            stats.late += 1
            return
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
            self.pump()

    def expire(self, now_ns: int, timeout_ns: int) -> None:
        """Give up on requests older than the timeout."""
        load = self.load
        if self.connect_txid >= 0 and now_ns - self.connect_sent_ns > timeout_ns:
            load.stats.timeouts += 1
            self.connect_txid = -1
        if self.pending:
            late = [t for t, (sent, _) in self.pending.items() if now_ns - sent > timeout_ns]
            for t in late:
                _, index = self.pending.pop(t)
                load.stats.timeouts += 1
                load.requeue(index)
        if load.closed_loop:
            self.pump()


def _same(client: _UdpClient) -> _UdpClient:
    return client


class UdpLoad(LoadDriver[UdpOps]):
    """A set of UDP clients aimed at one tracker at ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        clients: int = 32,
        window: int = 4,
        timeout: float = 1.0,
        reconnect_min: float = 60.0,
        reconnect_max: float = 120.0,
        seed: int = 0,
    ) -> None:
        if host not in ("127.0.0.1", "::1"):
            raise ValueError("the benchmark only talks to 127.0.0.1 or ::1")
        super().__init__(UdpOps([], [], []), timeout)
        self.host = host
        self.port = port
        self.n_clients = clients
        self.window = window
        self._rng = random.Random(seed)
        self._reconnect = (reconnect_min, reconnect_max)
        self.clients: list[_UdpClient] = []
        self._turn = 0

    async def open(self) -> None:
        """Create the client sockets."""
        loop = asyncio.get_running_loop()
        for _ in range(self.n_clients):
            client = _UdpClient(
                self, self._rng.uniform(*self._reconnect), self._rng.getrandbits(32)
            )
            await loop.create_datagram_endpoint(
                functools.partial(_same, client), remote_addr=(self.host, self.port)
            )
            self.clients.append(client)

    def close(self) -> None:
        """Close every client socket."""
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()
        self.clients.clear()

    def in_flight(self) -> int:
        """Requests (and connects) waiting for a reply."""
        return sum(len(c.pending) + (c.connect_txid >= 0) for c in self.clients)

    # -- the run loop's hooks (see bench.driver) -------------------------------------------

    async def _prepare(self) -> None:
        if not self.clients:
            await self.open()

    def _start(self) -> None:
        self._turn = 0
        if self.closed_loop:
            for client in self.clients:
                client.pump()
        else:
            for client in self.clients:
                client.ready()

    def _expire(self, now_ns: int, timeout_ns: int) -> None:
        for client in self.clients:
            client.expire(now_ns, timeout_ns)

    def _send_due(self, due: int) -> int:
        """Round-robin over the clients that are connected and below their window."""
        sent = 0
        clients = self.clients
        n = len(clients)
        tried = 0
        while sent < due and tried < n:
            client = clients[self._turn % n]
            self._turn += 1
            if len(client.pending) >= self.window or not client.ready():
                tried += 1
                continue
            index = self.next_op()
            if index < 0:
                break
            client.send(index)
            sent += 1
            tried = 0
        return sent

    def _abandon(self) -> None:
        # Requests still in flight after the drain are abandoned, not counted.
        for client in self.clients:
            client.pending.clear()
