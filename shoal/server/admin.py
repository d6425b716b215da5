"""The admin listener: Prometheus metrics, JSON stats, a health probe and the dashboard.

It listens apart from the tracker (loopback by default) and reads the plain counters the
frontends keep, plus the store's figures, only when asked, so the announce path does no
work for it. The HTTP handling is deliberately small: GET and HEAD only, one request per
connection, a bounded request head, a deadline, and a cap on open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from shoal import __version__
from shoal.errors import ClientError
from shoal.logic import resolved
from shoal.server.dashboard import (
    PROTOCOLS,
    RequestHistory,
    count_clients,
    load_assets,
    mix_of,
)
from shoal.server.listeners import Listener, listener_address
from shoal.server.stats import LATENCY_BUCKETS, Counters
from shoal.storage.base import PeerStore
from shoal.storage.memory import MemoryStore
from shoal.types import StoreTotals, SwarmCounts

if TYPE_CHECKING:
    from shoal.server.api import Api

log = logging.getLogger("shoal.admin")

FAMILIES = ("ipv4", "ipv6")
TOP_STEP = 500  # torrents examined per step when looking for the largest swarms
SAMPLE_STEP = 500  # swarms sampled, or peer ids decoded, per step for the client mix
KINDS = {"http": ("announce", "scrape", "error"), "udp": ("connect", "announce", "scrape", "error")}

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_SECURITY_HEADERS = (
    "X-Content-Type-Options: nosniff\r\n"
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'\r\n"
)


@dataclass(frozen=True, slots=True)
class AdminOptions:
    """What the admin listener serves and its limits."""

    dashboard: bool = True
    metrics: bool = True
    sample_period: float = 10.0
    history_size: int = 360
    top_swarms: int = 10
    client_sample: int = 5000
    detail_ttl: float = 10.0
    max_connections: int = 64
    request_timeout: float = 5.0
    max_head_bytes: int = 8192


class StatsSource(Protocol):
    """What the admin listener reads of a running tracker, and nothing more."""

    counters: Counters
    started_at: float

    @property
    def store(self) -> PeerStore: ...

    def listener_health(self) -> list[tuple[Listener, bool]]:
        """Each HTTP and UDP listener and whether it still serves."""
        ...

    def component_health(self) -> list[tuple[str, bool, str]]:
        """Each background component (sweeper, snapshot writer, ...): name, whether it
        runs, and its last error or an empty string."""
        ...

    def store_health(self) -> tuple[str, str, bool, str]:
        """The peer store: kind (``memory``, ``redis``), description, whether it answers,
        and its last error or an empty string."""
        ...


def latency_quantile(counts: list[int], q: float) -> float | None:
    """Upper bound of the histogram bucket holding quantile ``q`` (``None``: past the last
    bucket, or no requests yet)."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for bound, count in zip(LATENCY_BUCKETS, counts, strict=False):
        seen += count
        if seen >= rank:
            return bound
    return None


class TrackerCollector(Collector):
    """Prometheus metrics built from the counters and store totals at scrape time."""

    def __init__(self, tracker: StatsSource) -> None:
        self.tracker = tracker
        self.totals = StoreTotals(0, 0, 0, 0)  # set by the admin server before each scrape

    def collect(self) -> Iterator[Metric]:
        tracker = self.tracker
        c: Counters = tracker.counters
        c.pull()
        info = GaugeMetricFamily("shoal_info", "Shoal version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "shoal_start_time_seconds", "Start time, seconds since the epoch.",
            value=tracker.started_at,
        )

        requests = CounterMetricFamily(
            "shoal_requests", "Requests answered or refused, by protocol, address family and "
            "kind (announce, scrape, connect, error).", labels=["protocol", "family", "kind"],
        )
        seen = dict(c.requests)
        for protocol in PROTOCOLS:
            for family in FAMILIES:
                for kind in KINDS[protocol]:
                    seen.setdefault((protocol, family, kind), 0)
        for (protocol, family, kind), count in sorted(seen.items()):
            requests.add_metric([protocol, family, kind], count)
        yield requests

        yield _labelled_counter(
            "shoal_failures", "Failure replies, by reason.", "reason", c.failures
        )
        yield _labelled_counter(
            "shoal_dropped", "Requests or packets given no reply, by cause.", "cause", c.dropped
        )
        yield CounterMetricFamily(
            "shoal_internal_errors", "Requests that hit an internal error.",
            value=c.internal_errors,
        )
        yield _labelled_counter(
            "shoal_received_bytes", "Bytes received, by protocol.", "protocol",
            {p: c.bytes_in.get(p, 0) for p in {*PROTOCOLS, *c.bytes_in}},
        )
        yield _labelled_counter(
            "shoal_sent_bytes", "Bytes sent, by protocol.", "protocol",
            {p: c.bytes_out.get(p, 0) for p in {*PROTOCOLS, *c.bytes_out}},
        )
        yield GaugeMetricFamily(
            "shoal_http_connections_open", "HTTP connections open now.",
            value=c.connections_open,
        )
        yield CounterMetricFamily(
            "shoal_http_connections", "HTTP connections accepted.", value=c.connections_total
        )
        yield GaugeMetricFamily(
            "shoal_ws_connections_open", "WebSockets (WebTorrent) open now.",
            value=c.ws_connections_open,
        )
        yield CounterMetricFamily(
            "shoal_ws_connections", "WebSockets opened.", value=c.ws_connections_total
        )
        yield GaugeMetricFamily(
            "shoal_ws_peers", "WebSocket peers in swarms (a socket counts once per torrent).",
            value=c.ws_peers,
        )
        yield _labelled_counter(
            "shoal_ws_relayed", "WebRTC offers and answers relayed between WebSocket peers.",
            "kind", {"offer": c.ws_offers_relayed, "answer": c.ws_answers_relayed},
        )
        yield CounterMetricFamily(
            "shoal_ws_answers_refused",
            "Answers dropped: to no offer relayed to the answering socket.",
            value=c.ws_answers_refused,
        )

        latency = HistogramMetricFamily(
            "shoal_request_duration_seconds", "Time from a complete request to its reply."
        )
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, c.latency_counts, strict=False):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", sum(c.latency_counts)))
        latency.add_metric([], buckets, c.latency_sum)
        yield latency

        yield SummaryMetricFamily(
            "shoal_sweep_duration_seconds", "Passes expiring silent peers, and their time.",
            count_value=c.sweeps, sum_value=c.sweep_seconds,
        )
        yield GaugeMetricFamily(
            "shoal_last_sweep_duration_seconds", "Duration of the latest sweep pass.",
            value=c.last_sweep_seconds,
        )
        yield _labelled_counter(
            "shoal_component_failures", "Background components restarted after an error.",
            "component", c.component_failures,
        )
        component_up = GaugeMetricFamily(
            "shoal_component_up", "1 while a background component runs, else 0.",
            labels=["component"],
        )
        for name, running, _ in tracker.component_health():
            component_up.add_metric([name], 1 if running else 0)
        yield component_up
        yield CounterMetricFamily("shoal_reloads", "Reloads applied (SIGHUP).", value=c.reloads)
        yield CounterMetricFamily(
            "shoal_reload_failures", "Reloads refused (a bad file; the running rules kept).",
            value=c.reload_failures,
        )

        kind, _, available, _ = tracker.store_health()
        store = GaugeMetricFamily(
            "shoal_store_up", "1 while the peer store answers, else 0; the totals below are "
            "the whole store's (every node's, with a shared store).", labels=["store"],
        )
        store.add_metric([kind], int(available))
        yield store
        t = self.totals
        yield GaugeMetricFamily("shoal_torrents", "Torrents tracked.", value=t.torrents)
        yield GaugeMetricFamily(
            "shoal_peers", "Peers in all swarms.", value=t.seeders + t.leechers
        )
        yield GaugeMetricFamily("shoal_seeders", "Seeders in all swarms.", value=t.seeders)
        yield GaugeMetricFamily("shoal_leechers", "Leechers in all swarms.", value=t.leechers)
        yield GaugeMetricFamily(
            "shoal_completed", "Completed downloads, summed over the torrents tracked now.",
            value=t.completed,
        )

        up = GaugeMetricFamily(
            "shoal_listener_up", "1 while a tracker listener serves, else 0.",
            labels=["kind", "address"],
        )
        for listener, serving in tracker.listener_health():
            up.add_metric([listener.kind, listener_address(listener)], int(serving))
        yield up


def _labelled_counter(
    name: str, doc: str, label: str, values: dict[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, count in sorted(values.items()):
        family.add_metric([key], count)
    return family


class AdminServer:
    """Serves ``/metrics``, ``/stats``, ``/health`` and the dashboard for one tracker."""

    def __init__(self, tracker: StatsSource, options: AdminOptions | None = None) -> None:
        self.tracker = tracker
        self.options = options or AdminOptions()
        opts = self.options
        self.history = RequestHistory(tracker.counters, opts.sample_period, opts.history_size)
        self.assets = load_assets() if opts.dashboard else {}
        self.collector: TrackerCollector | None = None
        self.registry: CollectorRegistry | None = None
        if opts.metrics:
            self.registry = CollectorRegistry()
            self.collector = TrackerCollector(tracker)
            self.registry.register(self.collector)
            ProcessCollector(registry=self.registry)
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: set[asyncio.Task[Any]] = set()
        self._details: dict[str, Any] | None = None
        self._details_at = 0.0
        self.api: Api | None = None  # the REST API (shoal.server.api), when a token is set
        self._totals = StoreTotals(0, 0, 0, 0)  # the last read, kept while the store is away

    async def start(self, sock: socket.socket) -> None:
        """Serve on a bound listening socket; sample the request history for the chart."""
        self._server = await asyncio.start_server(
            self._accept, sock=sock, limit=self.options.max_head_bytes
        )
        if self.options.dashboard:
            self._tasks.append(asyncio.ensure_future(self.history.run()))

    def is_serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in [*self._tasks, *self._clients]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._tasks.clear()

    # figures

    def health(self) -> tuple[bool, dict[str, Any]]:
        states = self.tracker.listener_health()
        components = self.tracker.component_health()
        kind, description, available, error = self.tracker.store_health()
        healthy = (bool(states) and all(serving for _, serving in states)
                   and all(running for _, running, _ in components) and available)
        return healthy, {
            "status": "ok" if healthy else "unavailable",
            "store": {"kind": kind, "description": description, "available": available,
                      "last_error": error},
            "listeners": [
                {"kind": x.kind, "address": listener_address(x), "serving": serving}
                for x, serving in states
            ],
            "components": [
                {"name": name, "running": running, "last_error": error}
                for name, running, error in components
            ],
        }

    async def details(self) -> dict[str, Any]:
        """Top swarms and client mix: O(torrents) to gather, so kept for ``detail_ttl``."""
        now = time.monotonic()
        if self._details is not None and now - self._details_at < self.options.detail_ttl:
            return self._details
        store = self.tracker.store
        top: list[tuple[bytes, SwarmCounts]]
        ids: list[bytes]
        if isinstance(store, MemoryStore):
            top = await self._top_in_steps(store)
            ids = await self._sample_in_steps(store)
        else:
            try:
                top = await resolved(store.top_swarms(self.options.top_swarms))
                ids = await resolved(store.sample_peer_ids(self.options.client_sample))
            except ClientError:  # a shared store out of reach: show what was last seen
                if self._details is not None:
                    return self._details
                top, ids = [], []
        versions: dict[str, Counter[str]] = {}
        for start in range(0, len(ids), SAMPLE_STEP):
            count_clients(ids[start : start + SAMPLE_STEP], versions)
            await asyncio.sleep(0)
        self._details = {
            "top_swarms": [
                {
                    "info_hash": info_hash.hex(),
                    "peers": counts.complete + counts.incomplete,
                    "seeders": counts.complete,
                    "leechers": counts.incomplete,
                    "completed": counts.downloaded,
                }
                for info_hash, counts in top
            ],
            "clients": {"sampled_peers": len(ids), "mix": mix_of(versions)},
        }
        self._details_at = now
        return self._details

    async def _top_in_steps(self, store: MemoryStore) -> list[tuple[bytes, SwarmCounts]]:
        """The largest swarms, found a few thousand torrents a step so that a dashboard
        refresh never holds the loop for long at millions of torrents."""
        best: list[tuple[int, bytes]] = []
        cursor = store.cursor()
        while not store.walked(cursor):
            store.top_step(cursor, TOP_STEP, self.options.top_swarms, best)
            await asyncio.sleep(0)
        # Counted again now (a swarm may have changed since its step), largest first.
        found = {h: store.swarms[h].scrape_counts() for _, h in best if h in store.swarms}
        return sorted(found.items(), key=lambda item: -(item[1].complete + item[1].incomplete))

    async def _sample_in_steps(self, store: MemoryStore) -> list[bytes]:
        """Up to ``client_sample`` peer ids, an even share from each swarm (so one huge
        swarm does not stand for the whole tracker), gathered in steps."""
        limit = self.options.client_sample
        share = max(1, limit // max(1, len(store.swarms)))
        ids: list[bytes] = []
        cursor = store.cursor()
        while len(ids) < limit and not store.walked(cursor):
            for _, swarm in store.walk(cursor, SAMPLE_STEP):
                ids.extend(swarm.peer_ids(min(share, limit - len(ids))))
                if len(ids) >= limit:
                    break
            await asyncio.sleep(0)
        return ids

    async def stats(self) -> dict[str, Any]:
        """Every figure as one JSON-ready dict (what ``/stats`` serves)."""
        tracker = self.tracker
        c = tracker.counters
        c.pull()
        totals = await self.store_totals()
        now = time.time()
        requests = dict(c.requests)
        by: dict[str, dict[str, int]] = {"protocol": {}, "family": {}, "kind": {}}
        for protocol in PROTOCOLS:
            by["protocol"][protocol] = 0
        for family in FAMILIES:
            by["family"][family] = 0
        for (protocol, family, kind), count in requests.items():
            by["protocol"][protocol] = by["protocol"].get(protocol, 0) + count
            by["family"][family] = by["family"].get(family, 0) + count
            by["kind"][kind] = by["kind"].get(kind, 0) + count
        healthy, health = self.health()
        latency_count = sum(c.latency_counts)
        cumulative = 0
        buckets = []
        for bound, count in zip(LATENCY_BUCKETS, c.latency_counts, strict=False):
            cumulative += count
            buckets.append([bound, cumulative])
        p50 = latency_quantile(c.latency_counts, 0.5)
        p99 = latency_quantile(c.latency_counts, 0.99)
        return {
            "version": __version__,
            "time": round(now, 3),
            "started_at": round(tracker.started_at, 3),
            "uptime_seconds": round(now - tracker.started_at, 3),
            "healthy": healthy,
            "store": health["store"],
            "listeners": health["listeners"],
            "totals": {
                "torrents": totals.torrents,
                "peers": totals.seeders + totals.leechers,
                "seeders": totals.seeders,
                "leechers": totals.leechers,
                "completed": totals.completed,
            },
            "requests": {
                "total": sum(requests.values()),
                "by_protocol": by["protocol"],
                "by_family": by["family"],
                "by_kind": by["kind"],
                "detail": [
                    {"protocol": p, "family": f, "kind": k, "count": n}
                    for (p, f, k), n in sorted(requests.items())
                ],
            },
            "failures": dict(sorted(c.failures.items(), key=lambda kv: -kv[1])),
            "dropped": dict(sorted(c.dropped.items(), key=lambda kv: -kv[1])),
            "internal_errors": c.internal_errors,
            "bytes": {"received": dict(c.bytes_in), "sent": dict(c.bytes_out)},
            "http_connections": {"open": c.connections_open, "total": c.connections_total},
            "websocket": {
                "open": c.ws_connections_open,
                "total": c.ws_connections_total,
                "peers": c.ws_peers,
                "swarms": c.ws_swarms,
                "offers_relayed": c.ws_offers_relayed,
                "answers_relayed": c.ws_answers_relayed,
                "answers_refused": c.ws_answers_refused,
            },
            "latency": {
                "count": latency_count,
                "sum_seconds": c.latency_sum,
                "mean_seconds": c.latency_sum / latency_count if latency_count else None,
                "p50_seconds": p50,
                "p99_seconds": p99,
                "buckets": buckets,
            },
            "sweep": {
                "count": c.sweeps,
                "seconds_total": c.sweep_seconds,
                "last_seconds": c.last_sweep_seconds,
            },
            "components": health["components"],
            "component_failures": dict(c.component_failures),
            "reloads": {"applied": c.reloads, "failed": c.reload_failures},
            "history": self.history.series(now),
            **await self.details(),
        }

    async def metrics(self) -> bytes:
        assert self.registry is not None and self.collector is not None
        self.collector.totals = await self.store_totals()
        return generate_latest(self.registry)

    async def store_totals(self) -> StoreTotals:
        """The whole store's figures; the last ones read while a shared store is away."""
        with contextlib.suppress(ClientError):
            self._totals = await resolved(self.tracker.store.totals())
        return self._totals

    # HTTP

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._clients) >= self.options.max_connections or task is None:
            writer.close()
            return
        self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("admin: internal error")
            with contextlib.suppress(Exception):
                writer.write(_response(500, b"internal error\n", "text/plain"))
        finally:
            self._clients.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), self.options.request_timeout
            )
        except asyncio.LimitOverrunError:
            writer.write(_response(431, b"request head too large\n", "text/plain"))
            return
        except TimeoutError:
            writer.write(_response(408, b"request timeout\n", "text/plain"))
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            writer.write(_response(400, b"bad request\n", "text/plain"))
            return
        method, target, _ = parts
        if target.startswith("/api/"):
            await self._serve_api(method, target, head, reader, writer)
            return
        if method not in ("GET", "HEAD"):
            allow = "Allow: GET, HEAD\r\n"
            writer.write(_response(405, b"only GET and HEAD\n", "text/plain", allow))
            return
        status, body, content_type = await self.route(target.split("?", 1)[0])
        writer.write(_response(status, body, content_type, head_only=method == "HEAD"))
        await writer.drain()

    async def _serve_api(self, method: str, target: str, head: bytes,
                         reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A REST API request: read its body (Content-Length), answer it as JSON."""
        from shoal.server.api import MAX_BODY, error

        headers: dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        if self.api is None:
            status, body, ctype, extra = error(404, "the REST API is off: set admin.api_token")
        elif "transfer-encoding" in headers:
            status, body, ctype, extra = error(400, "send the body with Content-Length")
        else:
            length_text = headers.get("content-length", "0")
            length = int(length_text) if length_text.isdigit() and len(length_text) < 12 else -1
            if length < 0:
                status, body, ctype, extra = error(400, "bad Content-Length")
            elif length > MAX_BODY:
                status, body, ctype, extra = error(413,
                                                   f"the body is larger than {MAX_BODY} bytes")
            else:
                try:
                    data = await asyncio.wait_for(reader.readexactly(length),
                                                  self.options.request_timeout * 12)
                except TimeoutError:
                    writer.write(_response(408, b"request timeout\n", "text/plain"))
                    return
                status, body, ctype, extra = await self.api.handle(
                    method, target.split("?", 1)[0], headers.get("authorization"), data)
        if status == 401:
            extra += "WWW-Authenticate: Bearer\r\n"
        writer.write(_response(status, body, ctype, extra, head_only=method == "HEAD"))
        await writer.drain()

    async def route(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type for a GET of ``path``."""
        if path == "/health":
            healthy, health = self.health()
            return (200 if healthy else 503), _json(health), "application/json"
        if path == "/stats":
            return 200, _json(await self.stats()), "application/json"
        if path == "/metrics" and self.registry is not None:
            return 200, await self.metrics(), CONTENT_TYPE_LATEST
        if path == "/index.html":
            path = "/"
        asset = self.assets.get(path)
        if asset is not None:
            return 200, asset[0], asset[1]
        links = ["/stats", "/health"]
        if self.registry is not None:
            links.append("/metrics")
        if self.assets:
            links.append("/")
        return 404, f"not found: try {', '.join(links)}\n".encode(), "text/plain"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _response(
    status: int, body: bytes, content_type: str, extra: str = "", head_only: bool = False
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n"
        f"{_SECURITY_HEADERS}{extra}\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)
