"""Wiring: build the store and the frontends from the settings, run them, stop them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal import __version__
from shoal.config import (
    ConfigError,
    Settings,
    engine_choice,
    live_changes,
    read_network_list,
    read_torrent_list,
)
from shoal.engine.policy import Policy
from shoal.engine.rules import AccessRules
from shoal.errors import ClientError
from shoal.logic import Configuration, TrackerLogic, resolved
from shoal.protocol.connid import ConnectionIds
from shoal.server.admin import AdminOptions, AdminServer
from shoal.server.clock import Clock
from shoal.server.http import NATIVE_AVAILABLE as HTTP_NATIVE_AVAILABLE
from shoal.server.http import NATIVE_NAME as HTTP_NATIVE_NAME
from shoal.server.http import PYTHON_NAME as HTTP_PYTHON_NAME
from shoal.server.http import (
    HttpFrontend,
    HttpOptions,
    NativeHttpListener,
    parser_name,
    prepare_listener,
)
from shoal.server.listeners import Listener, listener_health
from shoal.server.persist import Persistence
from shoal.server.stats import Counters
from shoal.server.supervisor import Supervisor
from shoal.server.udp import (
    NATIVE_AVAILABLE,
    NATIVE_NAME,
    PYTHON_NAME,
    NativeUdpEndpoint,
    UdpEndpoint,
    UdpOptions,
)
from shoal.server.ws import WsFrontend, WsOptions
from shoal.storage.base import PeerStore, StoreSettings
from shoal.storage.memory import EngineError, MemoryStore, resolve_engine

if TYPE_CHECKING:  # imported when configured: SQLAlchemy and redis-py weigh 45 MiB of RSS
    from shoal.server.accounts import PrivateMode
    from shoal.storage.redis import RedisStore

log = logging.getLogger("shoal")

# Errors that mean "this machine has no such address family or address": a default
# listener on them is skipped with a warning instead of failing the start.
_UNAVAILABLE = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT)


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


def configuration_from(settings: Settings) -> Configuration:
    """Policy, access rules (reading their list files) and store limits from the settings.
    Raises ConfigError naming the file and line of a bad list entry."""
    a, t = settings.access, settings.tracker
    policy = policy_from(settings)
    hashes = read_torrent_list(a.torrent_list) if a.torrent_list else frozenset()
    banned = list(a.banned_networks)
    if a.ban_list:
        banned += read_network_list(a.ban_list)
    try:
        access = AccessRules.build(a.torrents, hashes, a.client_allow, a.client_deny, banned)
    except ValueError as exc:
        raise ConfigError(f"access: {exc}") from exc
    limits = StoreSettings(policy.peer_timeout, t.max_torrents, t.max_peers_per_swarm,
                           t.max_peers_per_ip, keep_totals=t.peer_totals)
    return Configuration(policy, access, limits)


def redis_store(store: PeerStore) -> RedisStore | None:
    """``store`` when it is the Redis store (without importing redis-py: a process that
    has not imported it has no Redis store)."""
    module = sys.modules.get("shoal.storage.redis")
    if module is not None and isinstance(store, module.RedisStore):
        found: RedisStore = store
        return found
    return None


def make_store(settings: Settings) -> PeerStore:
    """The store ``storage.peers`` names: this process's memory, or a shared Redis."""
    st = settings.storage
    if st.peers == "redis":
        from shoal.storage.redis import RedisStore

        return RedisStore(st.redis_url, namespace=st.redis_namespace, timeout=st.redis_timeout)
    try:
        engine = resolve_engine(settings.tracker.engine)
    except EngineError as exc:
        raise ConfigError(f"tracker.engine: {exc}") from None
    return MemoryStore(engine=engine)


def store_engine(store: PeerStore) -> str:
    """What holds the swarms, for the start-up line: the in-memory store's engine (native
    or python), or the store's kind."""
    if isinstance(store, MemoryStore):
        return store.engine
    return type(store).__name__


def http_options(settings: Settings) -> HttpOptions:
    t, h = settings.tracker, settings.http
    return HttpOptions(
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
        max_connections_per_ip=h.max_connections_per_ip,
        first_byte_timeout=h.first_byte_timeout,
    )


def ws_options(settings: Settings) -> WsOptions:
    w = settings.ws
    return WsOptions(
        max_connections=w.max_connections,
        max_message_bytes=w.max_message_bytes,
        max_offers=w.max_offers,
        max_torrents_per_socket=w.max_torrents_per_socket,
        max_scrape_hashes=settings.tracker.max_scrape_hashes,
        ping_interval=w.ping_interval,
        idle_timeout=w.idle_timeout,
        handshake_timeout=settings.http.request_timeout,
    )


def _use_native(engine: str, available: bool, module: str) -> bool:
    """Whether a frontend runs on its compiled data plane (``module``): ``tracker.engine``
    (or SHOAL_ENGINE) auto takes it when built, native insists on it, python never uses
    it."""
    if engine == "native" and not available:
        raise ConfigError([
            f"tracker.engine = native, but the compiled extension {module} is not "
            "built (it needs a C compiler and the Python headers at install time; "
            "reinstall with them, or set tracker.engine to auto or python)"
        ])
    return available and engine != "python"


class Tracker:
    """One tracker process: a store behind the logic layer, its frontends, and the
    supervised background components.

    ``reload_settings`` re-reads the settings (file, environment, flags) for SIGHUP; without
    it a reload re-reads the list files of the current settings. ``reconfigure_logging``
    applies a new log level and format.
    """

    def __init__(
        self,
        settings: Settings,
        store: PeerStore | None = None,
        reload_settings: Callable[[], Settings] | None = None,
        reconfigure_logging: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = Clock()
        self.counters = Counters()
        self._store: PeerStore = store if store is not None else make_store(settings)
        self._inflight: set[asyncio.Task[None]] = set()
        self.logic = TrackerLogic(self._store, configuration_from(settings), spawn=self._spawn)
        self.supervisor = Supervisor(self.counters)
        self._reload_settings = reload_settings
        self._reconfigure_logging = reconfigure_logging
        engine = engine_choice(settings, os.environ)
        self.native_http = _use_native(engine, HTTP_NATIVE_AVAILABLE, "shoal._native_http")
        self.http = HttpFrontend(self.logic, self.clock, self.counters, http_options(settings),
                                 native=self.native_http)
        self.private_mode: PrivateMode | None = None
        if settings.tracker.mode == "private":
            from shoal.server.accounts import PrivateMode

            self.private_mode = PrivateMode(settings, self.logic.policy.peer_timeout,
                                            lambda: self.clock.now)
            log.info("private mode: %s", self.private_mode.open())
            self.logic.enable_private(self.private_mode.tracker)
        # WebSocket (WebTorrent) peers: swarms of their own, in a store of their own (a
        # browser reaches only browsers; their sockets do not outlive the process, so
        # nothing of them is persisted), under the same rules and private mode.
        self.ws_logic = TrackerLogic(MemoryStore(), self.logic.config, spawn=self._spawn)
        if self.private_mode is not None:
            self.ws_logic.enable_private(self.private_mode.tracker)
        self.ws = WsFrontend(self.ws_logic, self.clock, self.counters, ws_options(settings))
        if settings.ws.enabled:
            self.http.upgrades = self.ws
        self.persistence: Persistence | None = None
        st = settings.storage
        if st.persist and isinstance(self._store, MemoryStore):
            self.persistence = Persistence(
                Path(st.data_dir), self._store, lambda: self.clock.now,
                st.snapshot_interval, st.flush_interval,
            )
            report = self.persistence.open_and_load()
            log.info("storage: %s (%s)", report.describe(), Path(st.data_dir).resolve())
            self.logic.add_hook(self.persistence.on_announce)
        shared = redis_store(self._store)
        if shared is not None:
            log.info("storage: swarms and completed counts in %s (namespace %r); no snapshot "
                     "in data_dir", shared.describe(), shared.namespace)
        u = settings.udp
        # Nodes sharing a Redis share the UDP secret too (read in start), unless one is set.
        self._secret_from_store = not u.secret and shared is not None
        if u.secret:
            secret = bytes.fromhex(u.secret)
        elif self.persistence is not None:
            secret = self.persistence.udp_secret()  # ids issued before a restart stay valid
        else:
            secret = os.urandom(32)
        self.connection_ids = ConnectionIds(secret, ttl=u.connection_id_ttl)
        self.udp_options = UdpOptions(allow_ip_param=settings.tracker.allow_ip_param)
        self.udp_endpoints: list[UdpEndpoint | NativeUdpEndpoint] = []
        self.native_udp = _use_native(engine, NATIVE_AVAILABLE, "shoal._native_udp")
        self.listeners: list[Listener] = []
        self.started_at = time.time()
        self._servers: list[asyncio.Server] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._stop: asyncio.Event | None = None
        self._reloading: asyncio.Task[bool] | None = None
        self.admin: AdminServer | None = None
        self.admin_listener: Listener | None = None

    @property
    def store(self) -> PeerStore:
        return self._store

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._inflight.discard)

    async def start(self) -> None:
        """Bind every listener and start the background components. A configured listener
        that cannot be bound stops the start with an error naming it."""
        if self._stop is None:  # (serve() makes it first, so a signal during start counts)
            self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if self._secret_from_store and self.settings.udp.enabled:
            await self._share_udp_secret()
        h = self.settings.http
        try:
            if h.enabled:
                for host, sock in self._bind_all("http", h.hosts, h.port, socket.SOCK_STREAM):
                    prepare_listener(sock, h.defer_accept)
                    if self.native_http:  # accepted in C (see NativeHttpListener)
                        sock.listen(1024)
                        acceptor = NativeHttpListener(self.http, sock)
                        acceptor.start(loop)
                        self._transports.append(acceptor)
                    else:
                        server = await loop.create_server(self.http.protocol, sock=sock,
                                                          backlog=1024)
                        self._servers.append(server)
                    self.listeners.append(Listener("http", host, sock.getsockname()[1]))
            w = self.settings.ws
            if w.enabled and w.port:
                for host, sock in self._bind_all("ws", h.hosts, w.port, socket.SOCK_STREAM):
                    server = await loop.create_server(self.ws.protocol, sock=sock,
                                                      backlog=1024)
                    self._servers.append(server)
                    self.listeners.append(Listener("ws", host, sock.getsockname()[1]))
            u = self.settings.udp
            if u.enabled:
                for host, sock in self._bind_all("udp", u.hosts, u.port, socket.SOCK_DGRAM):
                    _raise_buffers(sock)
                    if self.native_udp:
                        native = self.native_udp_endpoint(sock)
                        native.start(loop)
                        self._transports.append(native)
                        self.udp_endpoints.append(native)
                    else:
                        transport, endpoint = await loop.create_datagram_endpoint(
                            self.udp_endpoint, sock=sock
                        )
                        self._transports.append(transport)
                        self.udp_endpoints.append(endpoint)
                    self.listeners.append(Listener("udp", host, sock.getsockname()[1]))
            if not self.listeners:
                raise OSError("no listener could be bound: enable http or udp, check hosts")
            if self.settings.admin.enabled:
                await self._start_admin()
        except BaseException:
            self._close_listeners()
            raise
        sup = self.supervisor
        sup.start("clock", self.clock.run)
        sup.start("sweeper", self._sweeper)
        sup.start("counters-puller", self._pull_counters)
        if redis_store(self._store) is not None:
            sup.start("store-monitor", self._watch_store)
        if h.enabled:
            sup.start("http-reaper", self.http.run_reaper)
        if self.settings.ws.enabled:
            sup.start("ws-keeper", self.ws.run_keeper)
        if self.persistence is not None:
            sup.start("completed-writer", self.persistence.run_flusher)
            sup.start("snapshot-writer", self.persistence.run_snapshots)
        if self.private_mode is not None:
            sup.start("accounting-writer", self.private_mode.run_flusher)
        log.info(
            "Shoal %s serving %s (pid %d, event loop %s, HTTP parser %s, swarm engine %s)",
            __version__,
            ", ".join(x.url for x in self.listeners),
            os.getpid(),
            event_loop_name(),
            parser_name(self.http.use_httptools),
            store_engine(self._store),
        )
        if h.enabled:
            log.info("HTTP path: %s", HTTP_NATIVE_NAME if self.native_http else HTTP_PYTHON_NAME)
        if u.enabled:
            log.info("UDP path: %s", NATIVE_NAME if self.native_udp else PYTHON_NAME)
        log.info("access: %s%s", self.logic.access.summary(),
                 "; private mode: registered torrents and valid passkeys only"
                 if self.private_mode is not None else "")
        if self.admin is not None and self.admin_listener is not None:
            a = self.settings.admin
            host = f"[{a.host}]" if ":" in a.host else a.host
            log.info("admin listening on http://%s:%d/ (dashboard %s, metrics %s)", host,
                     self.admin_listener.port,
                     "on" if self.admin.options.dashboard else "off",
                     "on" if a.metrics else "off")
            log.info("admin: REST API %s", "on at /api/v1/ (bearer token)" if a.api_token
                     else "off (set admin.api_token to serve /api/v1/)")

    async def _start_admin(self) -> None:
        """Serve metrics, stats, health and the dashboard (a bind failure is fatal: an
        operator who configured /health relies on it)."""
        a = self.settings.admin
        try:
            sock = bind_socket(a.host, a.port, socket.SOCK_STREAM)
        except OSError as exc:
            raise OSError(
                exc.errno, f"admin: cannot listen on {a.host}:{a.port}: {exc.strerror}"
            ) from exc
        self.admin_listener = Listener("admin", a.host, sock.getsockname()[1])
        try:
            self.admin = AdminServer(self, AdminOptions(dashboard=a.dashboard, metrics=a.metrics))
        except OSError as exc:  # the dashboard's files missing from a broken install
            log.error("admin: dashboard unavailable (%s); serving metrics, stats and health", exc)
            self.admin = AdminServer(self, AdminOptions(dashboard=False, metrics=a.metrics))
        token = self.settings.admin.api_token
        if token:
            from shoal.server.api import Api

            self.admin.api = Api(token, self.logic, self._store, self.private_mode,
                                 lambda: self.clock.now)
        await self.admin.start(sock)

    def _close_listeners(self) -> None:
        for server in self._servers:
            server.close()
        for transport in self._transports:
            transport.close()

    def listener_health(self) -> list[tuple[Listener, bool]]:
        """Each HTTP and UDP listener and whether it still serves (for /health)."""
        return listener_health(self.listeners, self._servers, self._transports)

    def component_health(self) -> list[tuple[str, bool, str]]:
        """Each supervised background component (for /health)."""
        return self.supervisor.health()

    def store_health(self) -> tuple[str, str, bool, str]:
        """The store's kind, description, whether it answers, and its last error."""
        store = redis_store(self._store)
        if store is not None:
            return "redis", store.describe(), store.available, store.last_error
        return "memory", "this process's memory", True, ""

    async def _share_udp_secret(self) -> None:
        """Take the connection-id secret every node on the Redis store shares, so each
        accepts the ids the others issued (waiting a few seconds for Redis)."""
        store = redis_store(self._store)
        assert store is not None
        for _ in range(20):
            try:
                secret = await store.udp_secret()
                break
            except ClientError:
                await asyncio.sleep(0.25)
        else:
            raise OSError(f"storage: cannot reach {store.describe()} for the UDP "
                          "connection-id secret the nodes share; start Redis or set udp.secret")
        self.connection_ids = ConnectionIds(secret, ttl=self.settings.udp.connection_id_ttl)

    async def _watch_store(self) -> None:
        """Ping the shared store every second, so /health follows it with no traffic."""
        store = redis_store(self._store)
        assert store is not None
        while True:
            await store.check()
            await asyncio.sleep(1.0)

    def _bind_all(
        self, name: str, hosts: list[str], port: int, kind: int
    ) -> list[tuple[str, socket.socket]]:
        """Bind ``port`` on every host; with port 0 the hosts share the first port chosen."""
        bound = []
        try:
            for host in hosts:
                sock = self._bind(host, port, kind, name, explicit=hosts)
                if sock is not None:
                    port = sock.getsockname()[1]
                    bound.append((host, sock))
        except BaseException:
            for _, sock in bound:
                sock.close()
            raise
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
            self.logic, self.clock, self.counters, self.connection_ids, self.udp_options
        )

    def native_udp_endpoint(self, sock: socket.socket) -> NativeUdpEndpoint:
        return NativeUdpEndpoint(
            sock, self.logic, self.clock, self.counters, self.connection_ids, self.udp_options
        )

    async def _pull_counters(self) -> None:
        """Every second, bring in the figures the compiled data planes keep in C (and the
        completions they recorded, for persistence): readers pull too, before reading."""
        while True:
            await asyncio.sleep(1.0)
            self.counters.pull()

    # -- expiry ---------------------------------------------------------------------

    async def _sweeper(self) -> None:
        """Expire silent peers in small steps, yielding to the loop between steps."""
        while True:
            await asyncio.sleep(self.settings.tracker.sweep_interval)
            await self.sweep_once()

    async def sweep_once(self) -> None:
        """One pass over the store, then over the WebSocket peers and their store."""
        started = time.perf_counter()
        now = self.clock.now
        budget = self.settings.tracker.sweep_budget
        peers = torrents = swarms = 0
        while True:
            try:
                progress = await resolved(self._store.sweep(self.clock.now, budget))
            except ClientError:  # a shared store out of reach: the next pass tries again
                return
            peers += progress.peers_removed
            torrents += progress.torrents_removed
            swarms += progress.swarms_examined
            if progress.finished:
                break
            await asyncio.sleep(0)
        # WebSocket peers whose sockets stay open but who stopped announcing: the frontend
        # takes them out (its sockets' bookkeeping and the store alike), then the store's
        # own sweep drops what is left empty.
        ws_peers = await self.ws.sweep(now, self.ws_logic.policy.peer_timeout, budget)
        ws_store = self.ws_logic.store
        while True:
            progress = await resolved(ws_store.sweep(now, budget))
            ws_peers += progress.peers_removed
            torrents += progress.torrents_removed
            if progress.finished:
                break
            await asyncio.sleep(0)
        peers += ws_peers
        elapsed = time.perf_counter() - started
        c = self.counters
        c.sweeps += 1
        c.sweep_seconds += elapsed
        c.last_sweep_seconds = elapsed
        log.debug("sweep: %d swarms examined, %d peers and %d torrents removed in %.3f s",
                  swarms, peers, torrents, elapsed)

    # -- reload ---------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: re-read the settings and list files in a worker thread, then apply what
        can change live. Never stops the tracker."""
        if self._reloading is not None and not self._reloading.done():
            log.warning("reload: one is already running; this one is skipped")
            return
        self._reloading = asyncio.ensure_future(self.reload())

    async def reload(self) -> bool:
        """Re-read and apply; on any error keep everything running as it was."""
        try:
            new, config = await asyncio.to_thread(self._read_configuration)
        except (ConfigError, OSError, ValueError) as exc:
            self.counters.reload_failures += 1
            log.error("reload failed, keeping the running configuration: %s", exc)
            return False
        except Exception:
            self.counters.reload_failures += 1
            log.exception("reload failed, keeping the running configuration")
            return False
        self.apply(new, config)
        return True

    def _read_configuration(self) -> tuple[Settings, Configuration]:
        new = self._reload_settings() if self._reload_settings is not None else self.settings
        return new, configuration_from(new)

    def apply(self, new: Settings, config: Configuration) -> None:
        """Apply the live part of ``new`` (already validated) at once; warn about the
        rest, which waits for a restart."""
        live, restart = live_changes(self.settings, new)
        self.logic.configure(config)
        self.ws_logic.configure(config)
        if self.private_mode is not None:
            self.private_mode.configure(new, config.policy.peer_timeout)
        fe = self.http
        fe.options = replace(
            fe.options,
            allow_ip_param=new.tracker.allow_ip_param,
            max_scrape_hashes=new.tracker.max_scrape_hashes,
            full_scrape=new.tracker.full_scrape,
            full_scrape_cache=new.tracker.full_scrape_cache,
            access_log=new.http.access_log,
        )
        fe.full_scrape.ttl = new.tracker.full_scrape_cache
        self.udp_options = UdpOptions(allow_ip_param=new.tracker.allow_ip_param)
        for endpoint in self.udp_endpoints:
            endpoint.options = self.udp_options
        if self._reconfigure_logging is not None:
            self._reconfigure_logging(new.log.level, new.log.format)
        else:
            logging.getLogger().setLevel(new.log.level.upper())
        # Keep the running values of what needs a restart, so the next diff names them again.
        kept: dict[str, dict[str, Any]] = {}
        for key in restart:
            section, name = key.split(".", 1)
            kept.setdefault(section, {})[name] = getattr(getattr(self.settings, section), name)
        for section, values in kept.items():
            new = replace(new, **{section: replace(getattr(new, section), **values)})
        self.settings = new
        self.counters.reloads += 1
        if restart:
            log.warning("reload: these settings need a restart and were not applied: %s",
                        ", ".join(restart))
        log.info("reload: access: %s; changed: %s", config.access.summary(),
                 ", ".join(live) or "nothing")

    # -- stopping -------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    async def wait_stopped(self) -> None:
        assert self._stop is not None
        await self._stop.wait()

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace`` seconds), close."""
        log.info("shutting down")
        self._close_listeners()
        self.http.close_idle()
        self.ws.close_all()
        deadline = time.monotonic() + grace
        while (self.http.connections or self._inflight) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.http.connections):
            conn.close()
        for server in self._servers:
            await server.wait_closed()
        await self.supervisor.stop()
        self.counters.pull()  # figures and completions the compiled HTTP path holds
        if self.private_mode is not None:  # the last accounting
            try:
                await self.private_mode.close()
            except Exception:
                log.exception("private mode: the last accounting write failed")
        shared = redis_store(self._store)
        if shared is not None:  # sends this node's last changes to totals
            await shared.close()
        if self.persistence is not None:  # the last completed counts and a final snapshot
            try:
                await self.persistence.close()
            except Exception:
                log.exception("storage: the final snapshot failed")
        if self._reloading is not None:
            self._reloading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reloading
        if self.admin is not None:  # last, so /health answers 503 while the rest closes
            await self.admin.close()
            self.admin = None
        log.info("stopped")

    async def serve(self) -> None:
        """Start, run until SIGINT or SIGTERM (or :meth:`request_stop`), shut down."""
        # What exists now (the modules, the settings, the swarms loaded from the snapshot)
        # lives on and holds no cyclic garbage: out of the cyclic collector's reach, its
        # full passes do not walk it (a second-long stall at a million loaded torrents
        # otherwise, bench/stalls.py; and a share of every request's CPU while full passes
        # keep walking the imported modules). Only here, before any request: freezing later
        # would also keep whatever cyclic garbage is in flight (measured under load: 100,000
        # objects in 20 s). (Not in __init__: a process that builds many trackers, as the
        # tests do, would freeze each one's garbage.)
        gc.freeze()
        # Handlers first: the start-up line says "serving" before start() returns, and a
        # SIGINT sent on seeing it must stop the tracker, not find the default handler.
        self._stop = asyncio.Event()
        self.install_signal_handlers()
        await self.start()
        try:
            await self.wait_stopped()
        finally:
            await self.shutdown()
