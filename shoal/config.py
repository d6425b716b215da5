"""One typed settings tree: TOML file, then ``SHOAL_*`` environment variables, then flags.

Every field carries its explanation (``doc`` metadata), which ``shoal print-config`` prints
as commented TOML. Unknown sections or keys, and values of the wrong type, are errors that
name the offending key (and the nearest known one), so a typo never silently falls back to a
default. Every problem is reported at once: :class:`ConfigError` carries a list of messages.

Also here: the parsers of the list files the ``[access]`` section points to
(:func:`read_torrent_list`, :func:`read_network_list`), and :func:`live_changes`, which says
which changed settings a running tracker can take without a restart.
"""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from shoal.storage.redis_urls import redis_urls

ENV_PREFIX = "SHOAL_"
CONFIG_ENV = "SHOAL_CONFIG"  # names the config file; not a setting itself
ENGINE_ENV = "SHOAL_ENGINE"  # overrides tracker.engine (the test suite's switch); not a setting
ENGINES = ("auto", "native", "python")
# What "native" needs.
NATIVE_MODULES = ("shoal._native_udp", "shoal._native_http", "shoal._native_store")


class ConfigError(ValueError):
    """Settings that cannot be used. ``messages`` lists every problem found, each naming the
    key (and, when the value came from one, the environment variable or file); ``str()`` is
    those messages, one per line."""

    def __init__(self, messages: str | Sequence[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


def _doc(text: str, default: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    interval: int = _doc("Seconds between a client's announces, as told to clients.", 1800)
    min_interval: int = _doc("Minimum seconds between announces, as told to clients.", 300)
    interval_jitter: int = _doc(
        "At most this many seconds are added at random to each interval, so clients spread.",
        180,
    )
    peer_timeout: int = _doc(
        "Seconds of silence after which a peer is dropped; 0 means 1.5 x interval + jitter.", 0
    )
    default_numwant: int = _doc("Peers sent when the client asks for none (numwant absent).", 50)
    max_numwant: int = _doc("Most peers sent in one reply, whatever the client asks.", 200)
    max_scrape_hashes: int = _doc("Most info_hashes answered in one scrape request.", 64)
    full_scrape: bool = _doc("Answer a scrape without info_hash with every torrent.", False)
    full_scrape_cache: int = _doc("Seconds a full scrape reply is reused before rebuilding.", 10)
    allow_ip_param: bool = _doc(
        "Trust the announce's ip/ipv4/ipv6 parameter (HTTP) or IP field (UDP) as the peer's "
        "address. Off: the address is the connection's.",
        False,
    )
    sweep_interval: int = _doc("Seconds between passes that expire silent peers.", 60)
    sweep_budget: int = _doc(
        "Peers examined per sweep step before yielding to the loop (a torrent counts as 10).",
        5000,
    )
    max_torrents: int = _doc(
        "Most torrents tracked at once; announces for new torrents beyond it are refused.",
        5_000_000,
    )
    max_peers_per_swarm: int = _doc(
        "Most peers in one torrent; new peers beyond it are refused.", 200_000
    )
    max_peers_per_ip: int = _doc(
        "Most peers one IP address may hold in one torrent; new ones beyond it are refused.", 100
    )
    peer_totals: bool = _doc(
        "Keep the uploaded/downloaded totals each peer last reported, so announce hooks see "
        "them as AnnounceResult.prev_uploaded/prev_downloaded (else 0). Costs 12-16 bytes "
        "a peer in the compiled table; private mode keeps them whatever this says (its "
        "accounting needs them).",
        False,
    )
    engine: str = _doc(
        "The compiled data plane: auto (the compiled UDP and HTTP paths and swarm engine when "
        "they were built, else pure Python), native (the compiled ones; the tracker "
        "will not start without them) or python (always pure Python). The "
        "environment variable SHOAL_ENGINE overrides it.",
        "auto",
    )
    mode: str = _doc(
        "public (any torrent, no passkeys) or private (only registered torrents, and every "
        "announce and scrape carries a user's passkey; see [accounting] and [database]).",
        "public",
    )


TORRENT_MODES = ("open", "allow", "deny")


@dataclass(frozen=True, slots=True)
class AccessSettings:
    torrents: str = _doc(
        "Which torrents are tracked: open (any), allow (only those in torrent_list) or deny "
        "(all but those in torrent_list).",
        "open",
    )
    torrent_list: str = _doc(
        "File of info_hashes for torrents = allow or deny: one 40-hex-digit hash per line, "
        "# starts a comment; a relative path is relative to the working directory.",
        "",
    )
    client_allow: list[str] = _doc(
        'peer_id prefixes (e.g. "-TR", "-qB"); when not empty, only clients whose peer_id '
        "starts with one of them are served.",
        [],
    )
    client_deny: list[str] = _doc(
        "peer_id prefixes of clients that are refused.", []
    )
    banned_networks: list[str] = _doc(
        "Networks (CIDR, IPv4 or IPv6; a bare address is one host) whose requests are refused.",
        [],
    )
    ban_list: str = _doc(
        "File of more banned networks, one CIDR per line, # starts a comment; relative to "
        "the working directory. Empty: none.",
        "",
    )


@dataclass(frozen=True, slots=True)
class HttpSettings:
    enabled: bool = _doc("Serve HTTP announce and scrape.", True)
    hosts: list[str] = _doc(
        "Addresses to listen on; the default is every IPv4 and IPv6 address.", ["0.0.0.0", "::"]
    )
    port: int = _doc("TCP port for HTTP announce and scrape.", 6969)
    max_connections: int = _doc("Open connections beyond this are closed at once.", 10000)
    request_timeout: float = _doc(
        "Seconds a client has to send a whole request once it started; slower ones are closed.",
        10.0,
    )
    keepalive_timeout: float = _doc("Seconds an idle keep-alive connection stays open.", 30.0)
    max_request_line: int = _doc("Longest request line in bytes (longer: 414).", 8192)
    max_header_bytes: int = _doc("Most bytes of headers (more: 431).", 16384)
    max_headers: int = _doc("Most header lines (more: 431).", 64)
    trusted_proxies: list[str] = _doc(
        "Networks (CIDR) of reverse proxies whose real-IP header is believed.", []
    )
    real_ip_header: str = _doc(
        "Header carrying the client address when the request comes from a trusted proxy; the "
        "rightmost address that is not itself a trusted proxy is taken.",
        "X-Forwarded-For",
    )
    access_log: bool = _doc("Log one line per request (logger shoal.access).", False)
    max_connections_per_ip: int = _doc(
        "Most open connections from one client address; more are closed at once.", 256
    )
    first_byte_timeout: float = _doc(
        "Seconds a new connection has to send its first byte; silent ones are closed.", 5.0
    )
    defer_accept: int = _doc(
        "Seconds the kernel holds a new connection until its first bytes arrive before the "
        "tracker accepts it (Linux TCP_DEFER_ACCEPT; 0: off). A connection is then accepted "
        "with its request ready and answered at once (in C, on the compiled path); a silent "
        "one costs the tracker nothing for this long, then first_byte_timeout applies.", 1
    )
    parser: str = _doc(
        "HTTP request parser: auto (httptools when installed, else the pure-Python one) or "
        "python (always the pure-Python fallback).",
        "auto",
    )


@dataclass(frozen=True, slots=True)
class WsSettings:
    enabled: bool = _doc(
        "Serve the WebTorrent tracker for browsers over WebSocket on the HTTP port "
        "(ws://host:port/ and /announce).", True
    )
    port: int = _doc(
        "A TCP port for WebSocket only, on the HTTP hosts (0: none, the HTTP port serves it).",
        0,
    )
    max_connections: int = _doc("Open WebSockets beyond this are closed at once.", 10000)
    max_message_bytes: int = _doc("Largest message a WebSocket may send (larger: closed).", 65536)
    max_offers: int = _doc("Most WebRTC offers in one announce (more: an error message).", 10)
    max_torrents_per_socket: int = _doc("Most torrents one WebSocket may announce.", 100)
    ping_interval: float = _doc("Seconds of silence after which a WebSocket is pinged.", 30.0)
    idle_timeout: float = _doc("Seconds of silence after which a WebSocket is closed.", 120.0)


@dataclass(frozen=True, slots=True)
class UdpSettings:
    enabled: bool = _doc("Serve UDP announce and scrape (BEP 15).", True)
    hosts: list[str] = _doc(
        "Addresses to listen on; the default is every IPv4 and IPv6 address.", ["0.0.0.0", "::"]
    )
    port: int = _doc("UDP port for BEP 15.", 6969)
    secret: str = _doc(
        "Hex key for connection ids; processes sharing it accept each other's ids. Empty: a "
        "random key made at start.",
        "",
    )
    connection_id_ttl: int = _doc(
        "Seconds a connection id is accepted (BEP 15 says 120; clients reuse ids late).", 300
    )


@dataclass(frozen=True, slots=True)
class AdminSettings:
    enabled: bool = _doc("Serve /metrics, /stats, /health and the dashboard.", True)
    host: str = _doc("Admin listen address; keep it private (loopback by default).", "127.0.0.1")
    port: int = _doc("Admin TCP port.", 6970)
    dashboard: bool = _doc("Serve the dashboard page at /.", True)
    metrics: bool = _doc("Serve Prometheus metrics at /metrics.", True)
    api_token: str = _doc(
        "Bearer token of the REST API under /api/v1/ (users, torrents, access rules). "
        "Empty: the API is off.",
        "",
    )


@dataclass(frozen=True, slots=True)
class StorageSettings:
    persist: bool = _doc(
        "Keep swarms and completed counts in data_dir across restarts (off: memory only).", True
    )
    data_dir: str = _doc(
        "Directory for snapshots and counts; a relative path is relative to the working "
        "directory.",
        "shoal-data",
    )
    snapshot_interval: int = _doc("Seconds between snapshots of the swarms.", 60)
    flush_interval: float = _doc("Seconds between writes of the completed counts.", 2.0)
    peers: str = _doc(
        "Where swarms live: memory (this process), or redis (shared by every node on one "
        "Redis or Redis Cluster; the data_dir snapshot is then off).",
        "memory",
    )
    redis_url: str = _doc(
        "With peers = redis: a redis:// or rediss:// URL, or several seed nodes of a Redis "
        "Cluster separated by commas.",
        "",
    )
    redis_namespace: str = _doc(
        "Prefix of every Redis key; nodes sharing swarms use the same one.", "shoal"
    )
    redis_timeout: float = _doc(
        "Seconds a Redis call may take before the request is refused as temporarily "
        "unavailable.",
        0.25,
    )


@dataclass(frozen=True, slots=True)
class AccountingSettings:
    flush_interval: float = _doc(
        "Private mode: seconds between writes of the users' accounting to the database "
        "(a kill -9 loses at most this much; a clean stop nothing).",
        5.0,
    )
    peer_limit: int = _doc(
        "Private mode: most peers one user may run in one torrent at once (a user's own "
        "peer_limit overrides it).",
        3,
    )
    max_rate: int = _doc(
        "Private mode: bytes per second above which an uploaded or downloaded delta is not "
        "credited but recorded in the flags table for the site to check; 0: never.",
        1_000_000_000,
    )
    freeleech: bool = _doc("Private mode: site-wide freeleech (no download is credited).",
                           False)


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = _doc(
        "Private mode's database (users, torrents, accounting) as an SQLAlchemy URL, e.g. "
        "postgresql+psycopg://shoal:secret@db.example/shoal. Empty: SQLite, the file "
        "accounts.sqlite3 in storage.data_dir (in memory when storage.persist is off).",
        "",
    )


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = _doc("Log level: DEBUG, INFO, WARNING or ERROR.", "INFO")
    format: str = _doc("Log format: text, or json for log shippers.", "text")


@dataclass(frozen=True, slots=True)
class Settings:
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    udp: UdpSettings = field(default_factory=UdpSettings)
    ws: WsSettings = field(default_factory=WsSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    accounting: AccountingSettings = field(default_factory=AccountingSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    log: LogSettings = field(default_factory=LogSettings)


SECTIONS: dict[str, type[Any]] = {
    f.name: get_type_hints(Settings)[f.name] for f in fields(Settings)
}


def _convert(key: str, hint: Any, value: Any, from_text: bool) -> Any:
    """Check (and, for environment and flag text, parse) one value against its type."""
    origin = get_origin(hint)
    if from_text and isinstance(value, str):
        if hint is str:
            return value
        if hint is bool:
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
        if origin is list:
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except (json.JSONDecodeError, RecursionError) as exc:
                    raise ConfigError(f"{key}: not a list: {_show(value)}") from exc
            else:
                value = [part.strip() for part in text.split(",") if part.strip()]
        else:
            try:
                value = hint(value)
            except ValueError as exc:
                raise ConfigError(f"{key}: expected {hint.__name__}, got {_show(value)}") from exc
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError as exc:
            raise ConfigError(f"{key}: number too large") from exc
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{key}: expected a list of {item.__name__}, got {_show(value)}")
        return list(value)
    if isinstance(value, bool) != (hint is bool) or not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {_show(value)}")
    return value


# Where a value came from, for messages: "section.key" -> the environment variable or file.
Origins = dict[str, str]
Label = Callable[[str, str], str | None]


def _nearest(word: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _merge(
    settings: Settings,
    values: Mapping[str, Any],
    text: bool,
    errors: list[str],
    origins: Origins,
    label: Label = lambda section, key: None,
) -> Settings:
    """``settings`` with every good value of ``values`` applied; a message for each bad one
    is appended to ``errors`` (the bad value is left out)."""
    changed: dict[str, Any] = {}
    for section, items in values.items():
        if section not in SECTIONS:
            near = _nearest(section, SECTIONS)
            hint = f"did you mean [{near}]?" if near else f"known: {', '.join(SECTIONS)}"
            errors.append(f"unknown section [{section}]; {hint}")
            continue
        if not isinstance(items, Mapping):
            errors.append(f"[{section}] must be a table")
            continue
        hints = get_type_hints(SECTIONS[section])
        updates = {}
        for key, value in items.items():
            where = label(section, key)
            prefix = f"{where}: " if where else ""
            if key not in hints:
                near = _nearest(key, hints)
                hint = f"; did you mean {section}.{near}?" if near else ""
                errors.append(f"{prefix}unknown key {section}.{key}{hint}")
                continue
            try:
                updates[key] = _convert(f"{section}.{key}", hints[key], value, text)
            except ConfigError as exc:
                errors += [prefix + message for message in exc.messages]
                continue
            if where:
                origins[f"{section}.{key}"] = where
            else:
                origins.pop(f"{section}.{key}", None)
        if updates:
            current = changed.get(section, getattr(settings, section))
            changed[section] = replace(current, **updates)
    return replace(settings, **changed) if changed else settings


def _apply(settings: Settings, values: Mapping[str, Mapping[str, Any]], text: bool) -> Settings:
    errors: list[str] = []
    result = _merge(settings, values, text, errors, {})
    errors += _problems(result, {})
    if errors:
        raise ConfigError(errors)
    return result


def _problems(settings: Settings, origins: Origins, check_files: bool = True) -> list[str]:
    """Every range and cross-setting problem of ``settings``, as messages; a message about a
    key whose value came from an environment variable or file starts with its name."""
    found: list[tuple[str, str]] = []  # (key, message)

    def problem(key: str, message: str) -> None:
        found.append((key, f"{key}: {message}"))

    t, a, h, u = settings.tracker, settings.access, settings.http, settings.udp
    positive = {
        "tracker.interval": t.interval,
        "tracker.max_scrape_hashes": t.max_scrape_hashes,
        "tracker.sweep_interval": t.sweep_interval,
        "tracker.sweep_budget": t.sweep_budget,
        "tracker.max_torrents": t.max_torrents,
        "tracker.max_peers_per_swarm": t.max_peers_per_swarm,
        "tracker.max_peers_per_ip": t.max_peers_per_ip,
        "http.max_connections": h.max_connections,
        "http.max_connections_per_ip": h.max_connections_per_ip,
        "http.max_request_line": h.max_request_line,
        "http.max_header_bytes": h.max_header_bytes,
        "http.max_headers": h.max_headers,
        "udp.connection_id_ttl": u.connection_id_ttl,
        "ws.max_connections": settings.ws.max_connections,
        "ws.max_message_bytes": settings.ws.max_message_bytes,
        "ws.max_offers": settings.ws.max_offers,
        "ws.max_torrents_per_socket": settings.ws.max_torrents_per_socket,
        "storage.snapshot_interval": settings.storage.snapshot_interval,
    }
    non_negative = {
        "http.defer_accept": h.defer_accept,
        "tracker.min_interval": t.min_interval,
        "tracker.interval_jitter": t.interval_jitter,
        "tracker.peer_timeout": t.peer_timeout,
        "tracker.default_numwant": t.default_numwant,
        "tracker.max_numwant": t.max_numwant,
        "tracker.full_scrape_cache": t.full_scrape_cache,
    }
    for key, value in positive.items():
        if value <= 0:
            problem(key, f"must be positive, got {value}")
    for key, value in non_negative.items():
        if value < 0:
            problem(key, f"must not be negative, got {value}")
    for key, seconds in (("http.request_timeout", h.request_timeout),
                         ("http.keepalive_timeout", h.keepalive_timeout),
                         ("http.first_byte_timeout", h.first_byte_timeout),
                         ("storage.flush_interval", settings.storage.flush_interval),
                         ("storage.redis_timeout", settings.storage.redis_timeout),
                         ("ws.ping_interval", settings.ws.ping_interval),
                         ("ws.idle_timeout", settings.ws.idle_timeout)):
        if not 0 < seconds < math.inf:  # also refuses nan, which compares false
            problem(key, f"must be a positive number of seconds, got {seconds}")
    for key, port in (("http.port", h.port), ("udp.port", u.port), ("ws.port", settings.ws.port),
                      ("admin.port", settings.admin.port)):
        if not 0 <= port <= 65535:
            problem(key, f"must be 0..65535, got {port}")
    for key, hosts in (("http.hosts", h.hosts), ("udp.hosts", u.hosts),
                       ("admin.host", [settings.admin.host])):
        for host in hosts:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                problem(key, f"not an IP address: {host!r}")
    for key, nets in (("http.trusted_proxies", h.trusted_proxies),
                      ("access.banned_networks", a.banned_networks)):
        for net in nets:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                problem(key, f"not a network: {net!r}")
    if u.connection_id_ttl > 65000:  # ids carry a 16-bit time stamp (shoal.protocol.connid)
        problem("udp.connection_id_ttl", f"at most 65000 seconds, got {u.connection_id_ttl}")
    if u.secret:
        try:
            bytes.fromhex(u.secret)
        except ValueError:
            problem("udp.secret", "must be hexadecimal")
    if settings.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        problem("log.level", f"unknown level {settings.log.level!r}")
    if h.parser not in ("auto", "python"):
        problem("http.parser", f"must be auto or python, got {h.parser!r}")
    if settings.log.format not in ("text", "json"):
        problem("log.format", f"must be text or json, got {settings.log.format!r}")
    if a.torrents not in TORRENT_MODES:
        problem("access.torrents", f"must be open, allow or deny, got {a.torrents!r}")
    for key, prefixes in (("access.client_allow", a.client_allow),
                          ("access.client_deny", a.client_deny)):
        for prefix in prefixes:
            if not prefix or len(prefix) > 20 or not prefix.isascii():
                problem(key, f"a peer_id prefix is 1 to 20 ASCII characters, got {prefix!r}")
    if not settings.storage.data_dir:
        problem("storage.data_dir", "must not be empty")
    if t.engine not in ENGINES:
        problem("tracker.engine", f"must be auto, native or python, got {t.engine!r}")
    elif t.engine == "native":
        missing = [m for m in NATIVE_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            problem("tracker.engine", f"native, but {', '.join(missing)} is not built (install "
                    "with a C compiler and the Python headers, e.g. `make`), or set it to auto")
    if t.mode not in ("public", "private"):
        problem("tracker.mode", f"must be public or private, got {t.mode!r}")
    acc = settings.accounting
    if not 0 < acc.flush_interval < math.inf:
        problem("accounting.flush_interval",
                f"must be a positive number of seconds, got {acc.flush_interval}")
    if acc.peer_limit < 1:
        problem("accounting.peer_limit", f"must be at least 1, got {acc.peer_limit}")
    if t.mode == "private" and t.full_scrape:
        problem("tracker.full_scrape",
                "not available in private mode (it would list every torrent to anyone)")
    if acc.max_rate < 0:
        problem("accounting.max_rate", f"must be 0 or more, got {acc.max_rate}")
    st = settings.storage
    if st.peers not in ("memory", "redis"):
        problem("storage.peers", f"must be memory or redis, got {st.peers!r}")
    if st.redis_url:
        try:
            redis_urls(st.redis_url)
        except ValueError as exc:
            problem("storage.redis_url", str(exc))
    elif st.peers == "redis":
        problem("storage.redis_url", "storage.peers = \"redis\" needs a redis:// URL")
    if not st.redis_namespace or any(c in st.redis_namespace for c in "{}:* "):
        problem("storage.redis_namespace",
                f"a non-empty name without braces, colons, spaces or '*', "
                f"got {st.redis_namespace!r}")

    # Settings that are fine alone but not together.
    if t.min_interval > t.interval:
        problem("tracker.min_interval",
                f"{t.min_interval} is above tracker.interval ({t.interval})")
    if not h.enabled and not u.enabled:
        problem("http.enabled", "neither http nor udp is enabled: nothing would be served")
    for key, message in _listener_clashes(settings):
        problem(key, message)
    if a.torrents in ("allow", "deny") and not a.torrent_list:
        problem("access.torrents", f"{a.torrents!r} needs access.torrent_list (a file)")
    if check_files:
        for key, path, reader in (("access.torrent_list", a.torrent_list, read_torrent_list),
                                  ("access.ban_list", a.ban_list, read_network_list)):
            if path:
                try:
                    reader(path)
                except ConfigError as exc:
                    found += [(key, f"{key}: {message}") for message in exc.messages]

    messages = []
    for key, message in found:
        where = origins.get(key)
        messages.append(f"{where}: {message}" if where else message)
    return messages


def _overlap(a: str, b: str) -> bool:
    """Whether listening on hosts ``a`` and ``b`` (same port) would collide; an IPv6
    wildcard covers IPv6 only (Shoal's IPv6 sockets are IPv6-only)."""
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False  # reported as not an IP address
    return x.version == y.version and (x == y or x.is_unspecified or y.is_unspecified)


def _listener_clashes(settings: Settings) -> list[tuple[str, str]]:
    h, u, adm = settings.http, settings.udp, settings.admin
    listeners: list[tuple[str, str, str, int]] = []  # (name, protocol, host, port)
    if h.enabled:
        listeners += [("http", "TCP", host, h.port) for host in h.hosts]
    if u.enabled:
        listeners += [("udp", "UDP", host, u.port) for host in u.hosts]
    if adm.enabled:
        listeners.append(("admin", "TCP", adm.host, adm.port))
    if settings.ws.enabled and settings.ws.port:
        listeners += [("ws", "TCP", host, settings.ws.port) for host in h.hosts]
    clashes = []
    for i, (name, proto, host, port) in enumerate(listeners):
        for other, other_proto, other_host, other_port in listeners[:i]:
            if port and port == other_port and proto == other_proto and _overlap(host,
                                                                                   other_host):
                key = f"{name}.port" if name != other else f"{name}.hosts"
                clashes.append((key, f"{name} listener {_addr(host, port)} clashes with "
                                     f"{other} listener {_addr(other_host, other_port)} "
                                     f"(both {proto})"))
    return clashes


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def validate(settings: Settings) -> None:
    """Range and cross-setting checks that types alone cannot express, including reading
    the list files ``[access]`` names; raises :class:`ConfigError` listing every problem."""
    errors = _problems(settings, {})
    if errors:
        raise ConfigError(errors)


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text ({exc.reason})") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from exc
    except ValueError as exc:  # an integer past Python's digit limit, for one
        raise ConfigError(f"{path}: not valid TOML: {_show(str(exc))}") from exc


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut short; never fails (a huge integer has no
    decimal form past Python's digit limit)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def engine_choice(settings: Settings, environ: Mapping[str, str]) -> str:
    """``tracker.engine``, unless ``SHOAL_ENGINE`` names another one (checked here)."""
    chosen = environ.get(ENGINE_ENV, "").strip().lower()
    if not chosen:
        return settings.tracker.engine
    if chosen not in ENGINES:
        raise ConfigError([f"environment variable {ENGINE_ENV}: must be auto, native or "
                           f"python, got {chosen!r}"])
    return chosen


def load_file(path: str | Path, base: Settings | None = None) -> Settings:
    """Settings from a TOML file over ``base`` (the defaults)."""
    return _apply(base or Settings(), _read_toml(path), text=False)


def _env_values(
    environ: Mapping[str, str], errors: list[str]
) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], str]]:
    """``SHOAL_SECTION_KEY`` variables as values by section and key, with each one's name."""
    values: dict[str, dict[str, str]] = {}
    names: dict[tuple[str, str], str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in (CONFIG_ENV, ENGINE_ENV):
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section, _, key = rest.partition("_")
        if section not in SECTIONS or not key:
            known = [f"{ENV_PREFIX}{s}_{f.name}".upper()
                     for s, cls in SECTIONS.items() for f in fields(cls)]
            near = _nearest(name, known)
            hint = f"; did you mean {near}?" if near else ""
            errors.append(f"environment variable {name}: no such setting{hint}")
            continue
        values.setdefault(section, {})[key] = value
        names[section, key] = name
    return values, names


def apply_env(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """Apply ``SHOAL_SECTION_KEY=value`` variables, e.g. ``SHOAL_HTTP_PORT=8080``."""
    errors: list[str] = []
    values, names = _env_values(environ, errors)
    if not values and not errors:
        return settings
    origins: Origins = {}
    result = _merge(settings, values, True, errors, origins, lambda s, k: names.get((s, k)))
    errors += _problems(result, origins)
    if errors:
        raise ConfigError(errors)
    return result


def _assignment_values(assignments: Sequence[str], errors: list[str]) -> dict[str, Any]:
    values: dict[str, dict[str, str]] = {}
    for item in assignments:
        name, eq, value = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not eq or not dot:
            errors.append(f"--set {item!r}: expected section.key=value")
            continue
        values.setdefault(section, {})[key.strip()] = value
    return values


def apply_assignments(settings: Settings, assignments: list[str]) -> Settings:
    """Apply ``section.key=value`` strings (the ``--set`` flag)."""
    errors: list[str] = []
    values = _assignment_values(assignments, errors)
    if not values and not errors:
        return settings
    result = _merge(settings, values, True, errors, {})
    errors += _problems(result, {})
    if errors:
        raise ConfigError(errors)
    return result


def resolve(
    path: str | Path | None,
    environ: Mapping[str, str],
    assignments: Sequence[str] = (),
    *,
    check_files: bool = True,
) -> Settings:
    """The defaults, then the TOML file at ``path``, then ``SHOAL_*`` variables in
    ``environ``, then ``section.key=value`` assignments; checked once at the end, so the
    :class:`ConfigError` lists every problem of every layer. A message about a value from the
    file or a variable starts with the file's or the variable's name. ``check_files=False``
    skips reading the ``[access]`` list files."""
    errors: list[str] = []
    origins: Origins = {}
    settings = Settings()
    if path:
        try:
            data = _read_toml(path)
        except ConfigError as exc:
            errors += exc.messages
        else:
            settings = _merge(settings, data, False, errors, origins, lambda s, k: str(path))
    values, names = _env_values(environ, errors)
    settings = _merge(settings, values, True, errors, origins, lambda s, k: names.get((s, k)))
    settings = _merge(settings, _assignment_values(assignments, errors), True, errors, origins)
    errors += _problems(settings, origins, check_files)
    if errors:
        raise ConfigError(errors)
    return settings


# The list files of [access]. Lines are stripped; "#" starts a comment; blank lines are
# skipped. Every bad line is reported (up to MAX_LIST_ERRORS of them) as "file:line: ...".

MAX_LIST_ERRORS = 20


def _list_lines(path: str | Path) -> list[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            lines.append((number, entry))
    return lines


def _raise_bad_lines(path: str | Path, bad: list[str]) -> None:
    if bad:
        shown = bad[:MAX_LIST_ERRORS]
        if len(bad) > len(shown):
            shown.append(f"{path}: {len(bad) - len(shown)} more bad lines")
        raise ConfigError(shown)


def read_torrent_list(path: str | Path) -> frozenset[bytes]:
    """The 20-byte info_hashes of a torrent list file: one as 40 hex digits per line."""
    hashes = set()
    bad = []
    for number, entry in _list_lines(path):
        if len(entry) == 40:
            try:
                hashes.add(bytes.fromhex(entry))
                continue
            except ValueError:
                pass
        bad.append(f"{path}:{number}: not an info_hash (40 hex digits): {entry!r}")
    _raise_bad_lines(path, bad)
    return frozenset(hashes)


def read_network_list(path: str | Path) -> list[str]:
    """The networks of a ban list file: one CIDR (or bare address) per line, IPv4 or IPv6;
    returned in canonical form (host bits cleared), in file order."""
    networks = []
    bad = []
    for number, entry in _list_lines(path):
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            bad.append(f"{path}:{number}: not a network (CIDR): {entry!r}")
    _raise_bad_lines(path, bad)
    return networks


# Which changes a running tracker takes without a restart (on SIGHUP).

LIVE_KEYS = frozenset({
    *(f"access.{f.name}" for f in fields(AccessSettings)),
    *(f"tracker.{name}" for name in (
        "interval", "min_interval", "interval_jitter", "peer_timeout", "default_numwant",
        "max_numwant", "max_scrape_hashes", "full_scrape", "full_scrape_cache", "max_torrents",
        "max_peers_per_swarm", "max_peers_per_ip", "sweep_interval", "sweep_budget",
        "allow_ip_param", "peer_totals",
    )),
    "log.level", "log.format", "http.access_log",
    "accounting.peer_limit", "accounting.max_rate", "accounting.freeleech",
})


def live_changes(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """The ``section.key`` names whose values differ between ``old`` and ``new``: those a
    running tracker applies live, and those that need a restart (in settings order)."""
    live: list[str] = []
    restart: list[str] = []
    for section in SECTIONS:
        before, after = getattr(old, section), getattr(new, section)
        for f in fields(before):
            if getattr(before, f.name) != getattr(after, f.name):
                key = f"{section}.{f.name}"
                (live if key in LIVE_KEYS else restart).append(key)
    return live, restart


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def render_toml(settings: Settings | None = None) -> str:
    """Every setting with its value and a one-line explanation, as TOML."""
    settings = settings or Settings()
    out = ["# Shoal configuration. Every key is optional; these are the defaults.",
           "# Environment: SHOAL_<SECTION>_<KEY>=value; flags: --set section.key=value."]
    for section in SECTIONS:
        out.append("")
        out.append(f"[{section}]")
        obj = getattr(settings, section)
        for f in fields(obj):
            out.append(f"# {f.metadata['doc']}")
            out.append(f"{f.name} = {_toml_value(getattr(obj, f.name))}")
    return "\n".join(out) + "\n"
