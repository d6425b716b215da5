"""Wiring: build the store and the frontends from the settings, run them, stop them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

from shoal import __version__
from shoal.config import Settings
from shoal.engine.policy import Policy
from shoal.engine.store import MemoryStore, PeerStore, SweepProgress
from shoal.protocol.connid import ConnectionIds
from shoal.server.admin import AdminOptions, AdminServer, listener_health
from shoal.server.clock import Clock
from shoal.server.http import HttpFrontend, HttpOptions, parser_name
from shoal.server.stats import Counters
from shoal.server.udp import UdpEndpoint, UdpOptions

log = logging.getLogger("shoal")

# Errors that mean "this machine has no such address family or address": a default
# listener on them is skipped with a warning instead of failing the start.
_UNAVAILABLE = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT)


@dataclass(frozen=True, slots=True)
class Listener:
    """One bound socket: what it serves and where."""

    kind: str  # "http" or "udp"
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind}://{host}:{self.port}/announce"


def event_loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__name__}"


def bind_socket(host: str, port: int, kind: int) -> socket.socket:
    """A socket bound to ``host:port``; IPv6 sockets are IPv6-only so that ``::`` and
    ``0.0.0.0`` can share a port number."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _raise_buffers(sock: socket.socket, size: int = 4 << 20) -> None:
    """Ask for larger UDP socket buffers so bursts are queued rather than dropped (the
    kernel caps the request at net.core.rmem_max / wmem_max)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, size)


def policy_from(settings: Settings) -> Policy:
    t = settings.tracker
    return Policy(
        interval=t.interval,
        min_interval=t.min_interval,
        interval_jitter=t.interval_jitter,
        default_numwant=t.default_numwant,
        max_numwant=t.max_numwant,
        peer_timeout=t.peer_timeout,
    )


class Tracker:
    """One tracker process: a store, its frontends and their background tasks."""

    def __init__(self, settings: Settings, store: PeerStore | None = None) -> None:
        self.settings = settings
        self.clock = Clock()
        self.counters = Counters()
        self.store: PeerStore = store if store is not None else MemoryStore(policy_from(settings))
        t, h = settings.tracker, settings.http
        self.http = HttpFrontend(
            self.store,
            self.clock,
            self.counters,
            HttpOptions(
                max_connections=h.max_connections,
                request_timeout=h.request_timeout,
                keepalive_timeout=h.keepalive_timeout,
                max_request_line=h.max_request_line,
                max_header_bytes=h.max_header_bytes,
                max_headers=h.max_headers,
                trusted_proxies=tuple(h.trusted_proxies),
                real_ip_header=h.real_ip_header,
                allow_ip_param=t.allow_ip_param,
                max_scrape_hashes=t.max_scrape_hashes,
                full_scrape=t.full_scrape,
                full_scrape_cache=t.full_scrape_cache,
                access_log=h.access_log,
                use_httptools=h.parser == "auto",
            ),
        )
        u = settings.udp
        secret = bytes.fromhex(u.secret) if u.secret else os.urandom(32)
        self.connection_ids = ConnectionIds(secret, ttl=u.connection_id_ttl)
        self.udp_options = UdpOptions(allow_ip_param=t.allow_ip_param)
        self.listeners: list[Listener] = []
        self.started_at = time.time()
        self._servers: list[asyncio.Server] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop: asyncio.Event | None = None
        self.admin: AdminServer | None = None
        self.admin_listener: Listener | None = None

    async def start(self) -> None:
        """Bind every listener and start the background tasks."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        h = self.settings.http
        if h.enabled:
            for host, sock in self._bind_all("http", h.hosts, h.port, socket.SOCK_STREAM):
                server = await loop.create_server(self.http.protocol, sock=sock, backlog=1024)
                self._servers.append(server)
                self.listeners.append(Listener("http", host, sock.getsockname()[1]))
            self._tasks.append(asyncio.ensure_future(self.http.run_reaper()))
        u = self.settings.udp
        if u.enabled:
            for host, sock in self._bind_all("udp", u.hosts, u.port, socket.SOCK_DGRAM):
                _raise_buffers(sock)
                transport, _ = await loop.create_datagram_endpoint(self.udp_endpoint, sock=sock)
                self._transports.append(transport)
                self.listeners.append(Listener("udp", host, sock.getsockname()[1]))
        if not self.listeners:
            raise OSError("no listener could be bound: enable http or udp, check hosts")
        self._tasks.append(asyncio.ensure_future(self.clock.run()))
        self._tasks.append(asyncio.ensure_future(self._sweeper()))
        log.info(
            "Shoal %s serving %s (pid %d, event loop %s, HTTP parser %s)",
            __version__,
            ", ".join(x.url for x in self.listeners),
            os.getpid(),
            event_loop_name(),
            parser_name(self.http.use_httptools),
        )
        if self.settings.admin.enabled:
            await self._start_admin()

    async def _start_admin(self) -> None:
        """Serve metrics, stats, health and the dashboard. Tracking goes on without them when
        the admin port cannot be bound; the error is logged (and /health stays unreachable)."""
        a = self.settings.admin
        try:
            sock = bind_socket(a.host, a.port, socket.SOCK_STREAM)
        except OSError as exc:
            log.error("admin: cannot listen on %s:%d: %s; running without the admin listener",
                      a.host, a.port, exc.strerror)
            return
        self.admin_listener = Listener("admin", a.host, sock.getsockname()[1])
        try:
            self.admin = AdminServer(self, AdminOptions(dashboard=a.dashboard, metrics=a.metrics))
        except OSError as exc:  # the dashboard's files missing from a broken install
            log.error("admin: dashboard unavailable (%s); serving metrics, stats and health", exc)
            self.admin = AdminServer(self, AdminOptions(dashboard=False, metrics=a.metrics))
        await self.admin.start(sock)
        host = f"[{a.host}]" if ":" in a.host else a.host
        log.info("admin listening on http://%s:%d/ (dashboard %s, metrics %s)", host,
                 self.admin_listener.port, "on" if self.admin.options.dashboard else "off",
                 "on" if a.metrics else "off")

    def listener_health(self) -> list[tuple[Listener, bool]]:
        """Each HTTP and UDP listener and whether it still serves (for /health)."""
        return listener_health(self.listeners, self._servers, self._transports)

    def _bind_all(
        self, name: str, hosts: list[str], port: int, kind: int
    ) -> list[tuple[str, socket.socket]]:
        """Bind ``port`` on every host; with port 0 the hosts share the first port chosen."""
        bound = []
        for host in hosts:
            sock = self._bind(host, port, kind, name, explicit=hosts)
            if sock is not None:
                port = sock.getsockname()[1]
                bound.append((host, sock))
        return bound

    def _bind(
        self, host: str, port: int, kind: int, name: str, explicit: list[str]
    ) -> socket.socket | None:
        try:
            return bind_socket(host, port, kind)
        except OSError as exc:
            wildcard = host in ("::", "0.0.0.0") and len(explicit) > 1
            if wildcard and exc.errno in _UNAVAILABLE:
                log.warning("%s: not listening on %s: %s", name, host, exc.strerror)
                return None
            raise OSError(
                exc.errno, f"{name}: cannot listen on {host}:{port}: {exc.strerror}"
            ) from exc

    def udp_endpoint(self) -> UdpEndpoint:
        return UdpEndpoint(
            self.store, self.clock, self.counters, self.connection_ids, self.udp_options
        )

    async def _sweeper(self) -> None:
        """Expire silent peers in small steps, yielding to the loop between steps."""
        t = self.settings.tracker
        while True:
            await asyncio.sleep(t.sweep_interval)
            await self.sweep_once()

    async def sweep_once(self) -> None:
        started = time.perf_counter()
        peers = torrents = swarms = 0
        while True:
            found = self.store.sweep(self.clock.now, self.settings.tracker.sweep_budget)
            progress = found if isinstance(found, SweepProgress) else await found
            peers += progress.peers_removed
            torrents += progress.torrents_removed
            swarms += progress.swarms_examined
            if progress.finished:
                break
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - started
        c = self.counters
        c.sweeps += 1
        c.sweep_seconds += elapsed
        c.last_sweep_seconds = elapsed
        log.debug("sweep: %d swarms examined, %d peers and %d torrents removed in %.3f s",
                  swarms, peers, torrents, elapsed)

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)

    async def wait_stopped(self) -> None:
        assert self._stop is not None
        await self._stop.wait()

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace`` seconds), close."""
        log.info("shutting down")
        for server in self._servers:
            server.close()
        for transport in self._transports:
            transport.close()
        self.http.close_idle()
        deadline = time.monotonic() + grace
        while self.http.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.http.connections):
            conn.close()
        for server in self._servers:
            await server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.admin is not None:  # last, so /health answers 503 while the rest closes
            await self.admin.close()
            self.admin = None
        log.info("stopped")

    async def serve(self) -> None:
        """Start, run until SIGINT or SIGTERM (or :meth:`request_stop`), shut down."""
        await self.start()
        self.install_signal_handlers()
        try:
            await self.wait_stopped()
        finally:
            await self.shutdown()
