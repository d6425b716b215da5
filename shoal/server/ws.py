"""The WebSocket frontend: the WebTorrent tracker for browsers.

A WebSocket arrives as an upgraded HTTP request on the HTTP port (``ws://host:port/``,
``/announce`` or, in private mode, ``/<passkey>/announce``) or on a port of its own
(``ws.port``). The ``websockets`` library's sans-IO ``ServerProtocol`` does the handshake
and the framing; this module reads its frames, decodes the messages
(``shoal.protocol.ws``), calls the logic layer, relays offers and answers, and writes.

WebSocket peers live in swarms of their own (a browser cannot reach a TCP peer, nor the
other way round): the logic layer given here sits over a store of its own, with the same
access rules and private mode as the others. The store picks the peers an announce's
offers go to (at random, a different peer for each offer); this frontend keeps, per swarm,
the socket of each peer id. An answer is relayed only for an offer this tracker relayed to
the answering socket, to the peer that made it. A closed socket counts as ``stopped`` for
every torrent it announced.

Limits: message size, offers per announce, torrents per socket, open sockets; a socket
silent for ``ping_interval`` is pinged, one silent for ``idle_timeout`` is closed. A bad
message gets an error message on its socket, and the socket stays open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from shoal.errors import ClientError
from shoal.logic import Later, TrackerLogic
from shoal.protocol import ws as codec
from shoal.protocol.routes import mask, route
from shoal.server.addr import packed_ip
from shoal.server.clock import Clock
from shoal.server.stats import Counters
from shoal.types import AnnounceRequest, AnnounceResult, Event, SwarmCounts

log = logging.getLogger("shoal.ws")
# The protocol's own log: one line per socket opened and closed at INFO, so kept to warnings.
_protocol_log = logging.getLogger("shoal.ws.protocol")
_protocol_log.setLevel(logging.WARNING)

_PATHS = (b"/", b"/announce")
_WRITE_HIGH = 262144  # a socket whose client does not read beyond this is closed
_FULL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 20\r\nConnection: close\r\n\r\ntoo many WebSockets\n")
_RELAYED_KEPT = 256  # offers relayed to one socket remembered for its answers, at most


@dataclass(frozen=True, slots=True)
class WsOptions:
    """The WebSocket frontend's settings."""

    max_connections: int = 10000
    max_message_bytes: int = 65536
    max_offers: int = 10
    max_torrents_per_socket: int = 100
    max_scrape_hashes: int = 64
    ping_interval: float = 30.0
    idle_timeout: float = 120.0
    handshake_timeout: float = 10.0


def handshake_target(target: bytes) -> bytes | None:
    """The path a WebSocket may be opened on (``/``, ``/announce``, ``/<passkey>/announce``),
    or None."""
    path = target.partition(b"?")[0]
    if path in _PATHS:
        return path
    endpoint, passkey = route(path)
    return path if endpoint == b"/announce" and passkey else None


class WsFrontend:
    """State shared by every WebSocket of one tracker: the sockets of each swarm's peers."""

    def __init__(self, logic: TrackerLogic, clock: Clock, counters: Counters,
                 options: WsOptions) -> None:
        self.logic = logic
        self.clock = clock
        self.counters = counters
        self.options = options
        self.connections: set[WsConnection] = set()
        self.swarms: dict[bytes, dict[bytes, WsConnection]] = {}  # info_hash -> peer_id -> socket
        self._serial = 0
        self.closing = False

    # the ways in

    def upgrade(self, transport: asyncio.Transport, peer_ip: bytes, target: bytes,
                headers: list[tuple[bytes, bytes]], rest: bytes) -> bool:
        """Take over an HTTP connection whose request asks for a WebSocket (the HTTP
        frontend's upgrade handler); False refuses it (answered 400 there)."""
        path = handshake_target(target)
        if path is None:
            self.counters.dropped["ws_bad_path"] += 1
            return False
        if self.closing or len(self.connections) >= self.options.max_connections:
            self.counters.dropped["ws_connection_limit"] += 1
            transport.write(_FULL)
            transport.close()
            return True
        conn = WsConnection(self)
        conn.attach(transport, peer_ip)
        # The sans-IO protocol reads its handshake from the stream: it is given the request
        # again, as the HTTP connection parsed it, and whatever followed.
        head = b"".join([b"GET ", target, b" HTTP/1.1\r\n",
                         *(b"%s: %s\r\n" % field for field in headers), b"\r\n"])
        transport.set_protocol(conn)
        conn.data_received(head + rest)
        return True

    def protocol(self) -> WsConnection:
        """A connection on the WebSocket port (its handshake parsed by ``websockets``)."""
        return WsConnection(self)

    # swarms

    def join(self, info_hash: bytes, peer_id: bytes, conn: WsConnection) -> None:
        peers = self.swarms.setdefault(info_hash, {})
        if peer_id not in peers:
            self.counters.ws_peers += 1
        peers[peer_id] = conn
        self.counters.ws_swarms = len(self.swarms)

    def leave(self, info_hash: bytes, peer_id: bytes, conn: WsConnection) -> None:
        peers = self.swarms.get(info_hash)
        if peers is not None and peers.get(peer_id) is conn:
            del peers[peer_id]
            self.counters.ws_peers -= 1
            if not peers:
                del self.swarms[info_hash]
                self.counters.ws_swarms = len(self.swarms)

    def socket_of(self, info_hash: bytes, peer_id: bytes) -> WsConnection | None:
        peers = self.swarms.get(info_hash)
        return None if peers is None else peers.get(peer_id)

    def next_port(self) -> int:
        """A port number for a socket's peer entries: the store knows a peer by address,
        and several browsers (or tabs) share one address."""
        self._serial = self._serial % 65535 + 1
        return self._serial

    # time

    async def sweep(self, now: int, peer_timeout: int, budget: int) -> int:
        """Take out of their swarms the peers that have not announced for ``peer_timeout``
        seconds, though their sockets are open (a socket that answers pings but stopped
        announcing a torrent), as the store's sweep does for HTTP and UDP peers: the same
        as a ``stopped`` from them. Yields to the loop after every ``budget`` peers looked
        at; the number removed."""
        removed = examined = 0
        for conn in list(self.connections):
            for info_hash, peer_id in list(conn.torrents.items()):
                examined += 1
                if now - conn.announced.get(info_hash, now) > peer_timeout:
                    del conn.torrents[info_hash]
                    conn.announced.pop(info_hash, None)
                    conn._stop(info_hash, peer_id)
                    removed += 1
            if examined >= budget:
                examined = 0
                await asyncio.sleep(0)
        return removed

    def tick(self) -> None:
        """Ping the sockets silent for ``ping_interval``; close those silent for
        ``idle_timeout`` (called about once a second)."""
        now = time.monotonic()
        opts = self.options
        for conn in list(self.connections):
            conn.check(now, opts)

    async def run_keeper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick()

    def close_all(self) -> None:
        """For shutdown: close every socket (going away)."""
        self.closing = True
        for conn in list(self.connections):
            conn.close(1001, "tracker shutting down")


class WsConnection(asyncio.Protocol):
    """One WebSocket: its frames in, messages handled in order, replies out."""

    def __init__(self, frontend: WsFrontend) -> None:
        self.frontend = frontend
        self.transport: asyncio.Transport | None = None
        self.peer_ip = b""
        self.family = "ipv4"
        self.path = b"/"
        self.port = frontend.next_port()
        self.protocol = ServerProtocol(max_size=frontend.options.max_message_bytes,
                                       logger=_protocol_log)
        self.opened = False  # the handshake is done
        self.last_seen = time.monotonic()
        self.pinged = False  # pinged since it was last heard from
        self.pings = 0
        self.torrents: dict[bytes, bytes] = {}  # info_hash -> the peer id announced in it
        self.announced: dict[bytes, int] = {}  # info_hash -> when it last announced there
        # Offers relayed to this socket, awaiting its answer: (info_hash, offer_id) -> the
        # peer id that made the offer (oldest forgotten first).
        self.relayed: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()
        self._fragments: list[bytes] = []
        self._fragment_bytes = 0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A connection on the WebSocket port (an upgraded one comes through attach)."""
        transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        try:
            packed = packed_ip(peer[0])
        except (TypeError, ValueError, IndexError, OSError):
            packed = b"\0\0\0\0"
        self.attach(transport, packed)

    def attach(self, transport: asyncio.Transport, peer_ip: bytes) -> None:
        fe = self.frontend
        counters = fe.counters
        if fe.closing or len(fe.connections) >= fe.options.max_connections:
            counters.dropped["ws_connection_limit"] += 1
            transport.abort()
            return
        self.transport = transport
        self.peer_ip = peer_ip
        self.family = "ipv6" if len(peer_ip) == 16 else "ipv4"
        fe.connections.add(self)
        counters.ws_connections_total += 1
        counters.ws_connections_open = len(fe.connections)
        transport.set_write_buffer_limits(high=_WRITE_HIGH)

    def connection_lost(self, exc: Exception | None) -> None:
        fe = self.frontend
        if self.transport is None and self not in fe.connections:
            return
        self.transport = None
        fe.connections.discard(self)
        fe.counters.ws_connections_open = len(fe.connections)
        # A closed socket counts as stopped for every torrent it announced.
        for info_hash, peer_id in list(self.torrents.items()):
            self._stop(info_hash, peer_id)
        self.torrents.clear()
        self.announced.clear()
        self.relayed.clear()

    def pause_writing(self) -> None:
        # A browser that does not read what it is sent: nothing more is queued for it.
        self.frontend.counters.dropped["ws_not_reading"] += 1
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.frontend.counters.bytes_in["ws"] += len(data)
        self.last_seen = time.monotonic()
        self.pinged = False
        proto = self.protocol
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Request):
                self.handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)
            if self.transport is None:
                return
        self._send()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._send()
        return None

    # the handshake

    def handshake(self, request: Request) -> None:
        proto = self.protocol
        path = handshake_target(request.path.encode("latin-1", "replace"))
        if path is None:
            response = proto.reject(404, "not found: open the WebSocket on / or /announce\n")
        else:
            self.path = path
            response = proto.accept(request)
        proto.send_response(response)
        if response.status_code == 101:
            self.opened = True
            self.frontend.counters.requests["ws", self.family, "handshake"] += 1
        else:
            self.frontend.counters.dropped["ws_handshake_refused"] += 1
        self._send()

    # frames and messages

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        data = bytes(frame.data)
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._fragments = [data]
            self._fragment_bytes = len(data)
        elif opcode is Opcode.CONT and self._fragments:
            self._fragments.append(data)
            self._fragment_bytes += len(data)
        else:
            return  # ping, pong, close: the protocol answers them
        if self._fragment_bytes > self.frontend.options.max_message_bytes:
            self._fragments = []
            self.protocol.fail(1009, "message too big")
            return
        if frame.fin:
            data = b"".join(self._fragments)
            self._fragments = []
            self._message(data)

    def _message(self, data: bytes) -> None:
        fe = self.frontend
        counters = fe.counters
        opts = fe.options
        try:
            message = codec.decode_message(data, opts.max_offers, opts.max_scrape_hashes)
            if isinstance(message, codec.WsScrape):
                counters.requests["ws", self.family, "scrape"] += 1
                self._scrape(message)
            elif message.answer is not None:
                counters.requests["ws", self.family, "answer"] += 1
                self._answer(message)
            else:
                counters.requests["ws", self.family, "announce"] += 1
                self._announce(message)
        except codec.WsMessageError as exc:
            counters.requests["ws", self.family, "error"] += 1
            counters.failures[exc.reason] += 1
            self.send(codec.encode_error(exc.reason, exc.action, exc.info_hash))
        except Exception:
            log.exception("internal error answering a WebSocket message on %r",
                          mask(self.path)[:200])
            counters.internal_errors += 1
            self.send(codec.encode_error("internal error, try again later"))

    def _announce(self, message: codec.WsAnnounce) -> None:
        fe = self.frontend
        info_hash, peer_id = message.info_hash, message.peer_id
        known = self.torrents.get(info_hash)
        if known is None and len(self.torrents) >= fe.options.max_torrents_per_socket:
            raise codec.WsMessageError("too many torrents on one socket", codec.ANNOUNCE,
                                       info_hash)
        if known is not None and known != peer_id:
            self._stop(info_hash, known)  # the same socket under a new peer id
            del self.torrents[info_hash]
        offers = message.offers
        stopping = message.event is Event.STOPPED
        request = AnnounceRequest(
            info_hash, peer_id, self.peer_ip + self.port.to_bytes(2, "big"),
            message.uploaded, message.downloaded, message.left, message.event,
            0 if stopping else len(offers), None, True, True, self.path,
        )
        if not stopping:
            self.torrents[info_hash] = peer_id
            self.announced[info_hash] = fe.clock.now
            fe.join(info_hash, peer_id, self)
        found = fe.logic.announce(request, self.peer_ip, fe.clock.now)
        self._then(found, lambda result: self._announced(message, result))

    def _announced(self, message: codec.WsAnnounce,
                   result: AnnounceResult | ClientError) -> None:
        fe = self.frontend
        info_hash, peer_id = message.info_hash, message.peer_id
        if isinstance(result, ClientError):
            if self.torrents.get(info_hash) == peer_id:
                del self.torrents[info_hash]
                self.announced.pop(info_hash, None)
                fe.leave(info_hash, peer_id, self)
            fe.counters.failures[result.reason] += 1
            self.send(codec.encode_error(result.reason, codec.ANNOUNCE, info_hash))
            return
        if message.event is Event.STOPPED:
            if self.torrents.get(info_hash) == peer_id:
                del self.torrents[info_hash]
                self.announced.pop(info_hash, None)
            fe.leave(info_hash, peer_id, self)
        counts = SwarmCounts(result.complete, result.incomplete, result.downloaded)
        self.send(codec.encode_announce_reply(info_hash, counts, result.interval))
        if message.offers and self.transport is not None:
            self._relay_offers(message, result.peer_ids4 + result.peer_ids6)

    def _relay_offers(self, message: codec.WsAnnounce, peer_ids: bytes) -> None:
        fe = self.frontend
        info_hash, sender = message.info_hash, message.peer_id
        offers = iter(message.offers)
        for start in range(0, len(peer_ids), 20):
            target_id = peer_ids[start : start + 20]
            if target_id == sender:
                continue
            target = fe.socket_of(info_hash, target_id)
            if target is None or target is self or target.transport is None:
                continue
            offer = next(offers, None)
            if offer is None:
                return
            target.remember_offer(info_hash, offer.offer_id, sender)
            target.send(codec.encode_offer(info_hash, sender, offer))
            fe.counters.ws_offers_relayed += 1

    def remember_offer(self, info_hash: bytes, offer_id: bytes, sender: bytes) -> None:
        relayed = self.relayed
        relayed[info_hash, offer_id] = sender
        if len(relayed) > _RELAYED_KEPT:
            relayed.popitem(last=False)

    def _answer(self, message: codec.WsAnnounce) -> None:
        """Relay an answer to the peer whose offer this socket was handed; any other
        answer is dropped (counted), so no socket can send unasked messages to another."""
        fe = self.frontend
        assert message.answer is not None and message.offer_id is not None
        info_hash = message.info_hash
        offerer = self.relayed.get((info_hash, message.offer_id))
        target = None
        if offerer is not None and offerer == message.to_peer_id:
            target = fe.socket_of(info_hash, offerer)
        if target is None or target.transport is None:
            fe.counters.ws_answers_refused += 1
            return
        del self.relayed[info_hash, message.offer_id]
        target.send(codec.encode_answer(info_hash, message.peer_id, message.offer_id,
                                        message.answer))
        fe.counters.ws_answers_relayed += 1

    def _scrape(self, message: codec.WsScrape) -> None:
        fe = self.frontend
        hashes = message.info_hashes
        if not hashes:
            hashes = tuple(self.torrents)  # (no full scrape here: the socket's own torrents)
        found = fe.logic.scrape(hashes, self.peer_ip, self.path)
        self._then(found, lambda counts: self._scraped(hashes, counts))

    def _scraped(self, hashes: tuple[bytes, ...],
                 counts: list[SwarmCounts] | ClientError) -> None:
        if isinstance(counts, ClientError):
            self.frontend.counters.failures[counts.reason] += 1
            self.send(codec.encode_error(counts.reason, codec.SCRAPE))
            return
        self.send(codec.encode_scrape_reply(list(zip(hashes, counts, strict=True))))

    def _then(self, found: Any, reply: Callable[[Any], None]) -> None:
        if isinstance(found, Later):
            found.then(reply)
        else:
            reply(found)

    def _stop(self, info_hash: bytes, peer_id: bytes) -> None:
        """Remove this socket's peer from a swarm (it closed, or announced anew)."""
        fe = self.frontend
        fe.leave(info_hash, peer_id, self)
        request = AnnounceRequest(info_hash, peer_id, self.peer_ip + self.port.to_bytes(2, "big"),
                                  0, 0, 0, Event.STOPPED, 0, None, True, False, self.path)
        found = fe.logic.announce(request, self.peer_ip, fe.clock.now)
        if isinstance(found, Later):
            found.then(lambda _: None)

    # writing

    def send(self, text: str) -> None:
        if self.transport is None or self.protocol.state is not State.OPEN:
            return
        self.protocol.send_text(text.encode())
        self._send()

    def _send(self) -> None:
        transport = self.transport
        if transport is None:
            return
        counters = self.frontend.counters
        for chunk in self.protocol.data_to_send():
            if chunk:
                counters.bytes_out["ws"] += len(chunk)
                transport.write(chunk)
            else:
                transport.close()  # the close handshake is over (or the handshake failed)
                return
        if self.protocol.state is State.CLOSED:
            transport.close()

    # time

    def check(self, now: float, opts: WsOptions) -> None:
        transport = self.transport
        if transport is None:
            return
        silent = now - self.last_seen
        if not self.opened:
            if silent > opts.handshake_timeout:
                self.frontend.counters.dropped["ws_handshake_timeout"] += 1
                transport.abort()
            return
        if silent > opts.idle_timeout:
            self.frontend.counters.dropped["ws_idle_timeout"] += 1
            transport.abort()
        elif silent > opts.ping_interval and not self.pinged:
            self.pinged = True
            self.pings += 1
            if self.protocol.state is State.OPEN:
                self.protocol.send_ping(b"shoal")
                self._send()

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.transport is None:
            return
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._send()
        else:
            self.transport.close()
