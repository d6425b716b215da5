"""WebSocket (WebTorrent) tracker load generator: many sockets, each a browser-like peer.

The workload (:class:`WsWorkload`): ``sockets`` peers, each with a WebSocket of its own and a
peer id, each in ``torrents_per_socket`` of ``torrents`` swarms (drawn uniformly, seeded).
The fill opens every socket and announces ``started`` (no offers) for each of its torrents,
so every swarm is full before measuring. Then each socket keeps one announce in flight,
cycling through its torrents: a regular announce carrying ``offers`` WebRTC offers (the
reference client sends 5) of a realistic size, as WebTorrent re-announces do. Every offer
the tracker relays to a socket is answered at once (as the reference client does), and the
tracker routes the answer back to the offer's sender; so each announce costs the tracker its
reply plus the relays, as in a real swarm.

Counted: announce replies (checked: ``action``, ``info_hash``, ``interval``, ``complete``,
``incomplete``; a ``failure reason`` is an error), offers and answers received, answers
sent, and each announce reply's latency. A socket that closes, or an announce left without a
reply for ``timeout`` seconds, is counted too. The generator talks to 127.0.0.1 only and
every phase is bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from bench.spin import Spinner
from bench.stats import LoadStats

OFFER_SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=candidate:1467250027 1 udp 2122260223 192.0.2.2 46243 typ host generation 0 "
    "network-cost 999\r\n"
    "a=ice-ufrag:Xb3k\r\na=ice-pwd:7nVY4oCeVSmmk1yU0XZSW+Nq\r\na=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:"
    "24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=sctp-port:5000\r\na=max-message-size:262144\r\n"
)
ANSWER_SDP = OFFER_SDP.replace("a=setup:actpass", "a=setup:active")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _ident(rng: random.Random) -> str:
    """A 20-character id (printable, so the JSON stays plain; trackers take any)."""
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(20))


@dataclass(frozen=True)
class WsWorkload:
    """Sockets, their peer ids and the swarms each one joins (the same for the same seed)."""

    sockets: int
    torrents: int
    torrents_per_socket: int
    offers: int
    seed: int
    info_hashes: list[str] = field(repr=False)
    peer_ids: list[str] = field(repr=False)
    memberships: list[list[int]] = field(repr=False)

    @classmethod
    def build(
        cls, *, sockets: int, torrents: int, torrents_per_socket: int, offers: int, seed: int
    ) -> WsWorkload:
        if not 0 < torrents_per_socket <= torrents:
            raise ValueError("torrents_per_socket must be between 1 and torrents")
        rng = random.Random(seed)
        hashes = [_ident(rng) for _ in range(torrents)]
        peers = [_ident(rng) for _ in range(sockets)]
        memberships = [rng.sample(range(torrents), torrents_per_socket) for _ in range(sockets)]
        return cls(sockets, torrents, torrents_per_socket, offers, seed, hashes, peers,
                   memberships)

    @property
    def info_hash_bytes(self) -> list[bytes]:
        return [h.encode("latin-1") for h in self.info_hashes]

    def describe(self) -> str:
        pairs = self.sockets * self.torrents_per_socket
        return (f"{self.sockets:,} WebSockets, each in {self.torrents_per_socket} of "
                f"{self.torrents:,} swarms ({pairs / self.torrents:,.1f} peers per swarm), "
                f"{self.offers} offers per announce")


@dataclass
class WsCounts:
    """What a WebSocket phase saw besides announce replies."""

    offers_received: int = 0
    answers_sent: int = 0
    answers_received: int = 0
    closed: int = 0

    def summary(self) -> dict[str, int]:
        return {"offers_received": self.offers_received, "answers_sent": self.answers_sent,
                "answers_received": self.answers_received, "sockets_closed": self.closed}


class _Peer:
    """One socket: announces in turn for its torrents, answers the offers it is sent."""

    def __init__(self, load: WsLoad, index: int, ws: ClientConnection) -> None:
        self.load = load
        self.index = index
        self.ws = ws
        workload = load.workload
        self.peer_id = workload.peer_ids[index]
        self.hashes = [workload.info_hashes[t] for t in workload.memberships[index]]
        self.rng = random.Random(workload.seed * 1_000_003 + index)
        self.cursor = 0
        self.sent_ns = 0  # when the announce in flight went out; 0: none in flight
        self.fill_left = len(self.hashes)
        self.reader = asyncio.get_running_loop().create_task(self._read())

    def announce_message(self, started: bool) -> str:
        info_hash = self.hashes[self.cursor % len(self.hashes)]
        self.cursor += 1
        message: dict[str, Any] = {
            "action": "announce", "info_hash": info_hash, "peer_id": self.peer_id,
            "uploaded": 0, "downloaded": 0, "left": 1000,
        }
        if started:
            message.update(event="started", numwant=0)
        else:
            offers = self.load.workload.offers
            message["numwant"] = offers
            message["offers"] = [
                {"offer": {"type": "offer", "sdp": OFFER_SDP}, "offer_id": _ident(self.rng)}
                for _ in range(offers)
            ]
        return json.dumps(message)

    async def send_announce(self, started: bool = False) -> None:
        self.sent_ns = time.perf_counter_ns()
        await self.ws.send(self.announce_message(started))

    async def _read(self) -> None:
        load = self.load
        try:
            async for raw in self.ws:
                await self._handle(raw)
        except ConnectionClosed:
            pass
        load.counts.closed += 1
        if self.sent_ns:
            self.sent_ns = 0
            load.stats.error("socket closed with an announce in flight")
        load.settled()

    async def _handle(self, raw: str | bytes) -> None:
        load = self.load
        try:
            data = json.loads(raw)
        except ValueError:
            load.stats.error("a message that is not JSON")
            return
        if not isinstance(data, dict):
            load.stats.error("a message that is not an object")
            return
        if "offer" in data:
            load.counts.offers_received += 1
            answer = {
                "action": "announce", "info_hash": data.get("info_hash"),
                "peer_id": self.peer_id, "to_peer_id": data.get("peer_id"),
                "offer_id": data.get("offer_id"),
                "answer": {"type": "answer", "sdp": ANSWER_SDP},
            }
            await self.ws.send(json.dumps(answer))
            load.counts.answers_sent += 1
            return
        if "answer" in data:
            load.counts.answers_received += 1
            return
        if data.get("action") == "scrape":
            return
        if not self.sent_ns:
            load.stats.error("an announce reply with no announce in flight")
            return
        problem = check_announce_reply(data)
        if problem is None:
            load.stats.responses += 1
            load.stats.announces += 1
            if load.record:
                load.stats.latencies_ns.append(time.perf_counter_ns() - self.sent_ns)
        else:
            load.stats.error(problem)
        self.sent_ns = 0
        if load.filling:
            self.fill_left -= 1
            if self.fill_left > 0:
                await self.send_announce(started=True)
                return
        elif load.issuing:
            await self.send_announce()
            return
        load.settled()


def check_announce_reply(data: dict[str, Any]) -> str | None:
    """None when ``data`` is a proper WebTorrent announce reply; else why not."""
    failure = data.get("failure reason")
    if failure is not None:
        return "failure reason: " + str(failure)[:80]
    if data.get("action") != "announce":
        return f"unexpected action {str(data.get('action'))[:20]!r}"
    for key in ("interval", "complete", "incomplete"):
        if not isinstance(data.get(key), int):
            return f"announce reply without {key}"
    if not isinstance(data.get("info_hash"), str):
        return "announce reply without info_hash"
    return None


class WsLoad:
    """The workload's sockets against ``ws://host:port/announce``."""

    def __init__(self, host: str, port: int, workload: WsWorkload, *,
                 timeout: float = 5.0) -> None:
        if host not in ("127.0.0.1", "::1"):
            raise ValueError("the benchmark only talks to 127.0.0.1 or ::1")
        self.url = f"ws://{host}:{port}/announce"
        self.workload = workload
        self.timeout = timeout
        self.peers: list[_Peer] = []
        self.stats = LoadStats()
        self.counts = WsCounts()
        self.record = False
        self.filling = False
        self.issuing = False
        self._settled: asyncio.Event | None = None

    def settled(self) -> None:
        """A socket has nothing in flight any more: wake the phase if none has."""
        if self._settled is not None and not any(p.sent_ns for p in self.peers):
            self._settled.set()

    async def _wait_settled(self, limit: float) -> None:
        """Until no announce is in flight, or ``limit`` seconds; the late ones are
        counted as timeouts and forgotten."""
        self._settled = asyncio.Event()
        self.settled()
        try:
            await asyncio.wait_for(self._settled.wait(), max(limit, 0.01))
        except TimeoutError:
            for peer in self.peers:
                if peer.sent_ns:
                    peer.sent_ns = 0
                    self.stats.timeouts += 1
        self._settled = None

    async def open_and_fill(self, limit: float = 300.0, parallel: int = 64) -> LoadStats:
        """Open every socket (``parallel`` handshakes at a time) and announce ``started``
        for each of its torrents; at most ``limit`` seconds."""
        self.stats, self.counts = LoadStats(), WsCounts()
        start = time.monotonic()
        self.filling = True
        gate = asyncio.Semaphore(parallel)

        async def open_one(index: int) -> None:
            async with gate:
                try:
                    ws = await connect(self.url, open_timeout=self.timeout, compression=None,
                                       max_size=2**20, ping_interval=None)
                except (OSError, TimeoutError, ConnectionClosed) as exc:
                    self.stats.error(f"connect failed: {type(exc).__name__}")
                    return
                peer = _Peer(self, index, ws)
                self.peers.append(peer)
                await peer.send_announce(started=True)

        try:
            await asyncio.wait_for(
                asyncio.gather(*(open_one(i) for i in range(self.workload.sockets))),
                limit)
        except TimeoutError:
            self.stats.error("the sockets did not all open in time")
        await self._wait_settled(limit - (time.monotonic() - start))
        self.filling = False
        self.stats.connects = len(self.peers)
        self.stats.elapsed = time.monotonic() - start
        return self.stats

    async def run(self, duration: float, *, record: bool = False,
                  spin: bool = True) -> tuple[LoadStats, WsCounts]:
        """Every socket keeps one announce (with offers) in flight for ``duration``
        seconds; then what is in flight gets ``timeout`` seconds to come back (the
        elapsed time includes that drain)."""
        self.stats, self.counts = LoadStats(), WsCounts()
        self.record = record
        loop = asyncio.get_running_loop()
        spinner = Spinner(loop) if spin else None
        if spinner is not None:
            await spinner.calibrate()
            spinner.start()
        start = time.monotonic()
        self.issuing = True
        for peer in self.peers:
            if peer.ws.state is not State.OPEN:
                continue
            try:
                await peer.send_announce()
            except ConnectionClosed:
                peer.sent_ns = 0
        await asyncio.sleep(duration)
        self.issuing = False
        await self._wait_settled(self.timeout)
        self.stats.elapsed = time.monotonic() - start
        if spinner is not None:
            spinner.stop()
            self.stats.busy_share = spinner.busy_share(time.monotonic() - start)
        return self.stats, self.counts

    async def close(self) -> None:
        """Close every socket (a tracker counts that as ``stopped`` for its torrents)."""
        peers, self.peers = self.peers, []
        await asyncio.gather(*(p.ws.close() for p in peers), return_exceptions=True)
        for peer in peers:
            peer.reader.cancel()
        await asyncio.gather(*(p.reader for p in peers), return_exceptions=True)
