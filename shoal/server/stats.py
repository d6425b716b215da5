"""Plain counters kept by the servers on the hot path, read only when someone asks.

Incrementing a dict entry or an attribute is all a request pays; Prometheus metrics, the
JSON stats and the dashboard are built from these when they are scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable

# Upper bounds, in seconds, of the request latency histogram buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)


class Counters:
    """Every figure the frontends count.

    ``requests`` is keyed by ``(protocol, family, kind)``: protocol ``"http"``, ``"udp"`` or
    ``"ws"`` (kinds ``handshake``, ``answer`` too),
    family ``"ipv4"`` or ``"ipv6"``, kind ``"announce"``, ``"scrape"``, ``"connect"`` or
    ``"error"``. ``failures`` counts failure replies by their (fixed) reason text, and
    ``dropped`` counts packets or requests given no reply at all, by cause.
    """

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.failures: defaultdict[str, int] = defaultdict(int)
        self.dropped: defaultdict[str, int] = defaultdict(int)
        self.internal_errors = 0
        self.bytes_in: defaultdict[str, int] = defaultdict(int)
        self.bytes_out: defaultdict[str, int] = defaultdict(int)
        self.connections_open = 0
        self.connections_total = 0
        # WebSocket (WebTorrent): sockets, and the offers and answers relayed between peers.
        self.ws_connections_open = 0
        self.ws_connections_total = 0
        self.ws_peers = 0  # (socket, torrent) pairs: WebSocket peers in swarms now
        self.ws_swarms = 0  # torrents with a WebSocket peer now
        self.ws_offers_relayed = 0
        self.ws_answers_relayed = 0
        self.ws_answers_refused = 0  # answers to no offer relayed to that socket: dropped
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.component_failures: defaultdict[str, int] = defaultdict(int)
        self.reloads = 0
        self.reload_failures = 0
        self.sweeps = 0
        self.sweep_seconds = 0.0
        self.last_sweep_seconds = 0.0
        # Run by pull(): each adds figures kept elsewhere (the compiled HTTP and UDP data
        # planes count in C) to these, so whoever reads them first calls pull(); the
        # tracker pulls every second too.
        self.pullers: list[Callable[[], None]] = []

    def pull(self) -> None:
        """Bring in the figures counted elsewhere since the last pull (call before reading:
        the admin's stats, metrics and dashboard do)."""
        for puller in self.pullers:
            puller()

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
