"""One typed settings tree: TOML file, then ``SHOAL_*`` environment variables, then flags.

Every field carries its explanation (``doc`` metadata), which ``shoal print-config`` prints
as commented TOML. Unknown sections or keys, and values of the wrong type, are errors that
name the offending key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

ENV_PREFIX = "SHOAL_"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key."""


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
    sweep_budget: int = _doc("Peers examined per sweep step before yielding to the loop.", 20000)


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
    parser: str = _doc(
        "HTTP request parser: auto (httptools when installed, else the pure-Python one) or "
        "python (always the pure-Python fallback).",
        "auto",
    )


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


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = _doc("Log level: DEBUG, INFO, WARNING or ERROR.", "INFO")
    format: str = _doc("Log format: text, or json for log shippers.", "text")


@dataclass(frozen=True, slots=True)
class Settings:
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    udp: UdpSettings = field(default_factory=UdpSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
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
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        if origin is list:
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{key}: not a list: {value!r}") from exc
            else:
                value = [part.strip() for part in text.split(",") if part.strip()]
        else:
            try:
                value = hint(value)
            except ValueError as exc:
                raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}") from exc
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{key}: expected a list of {item.__name__}, got {value!r}")
        return list(value)
    if isinstance(value, bool) != (hint is bool) or not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _apply(settings: Settings, values: Mapping[str, Mapping[str, Any]], text: bool) -> Settings:
    changed: dict[str, Any] = {}
    for section, items in values.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}]; known: {', '.join(SECTIONS)}")
        if not isinstance(items, Mapping):
            raise ConfigError(f"[{section}] must be a table")
        cls = SECTIONS[section]
        hints = get_type_hints(cls)
        current = changed.get(section, getattr(settings, section))
        updates = {}
        for key, value in items.items():
            if key not in hints:
                raise ConfigError(f"unknown key {section}.{key}")
            updates[key] = _convert(f"{section}.{key}", hints[key], value, text)
        changed[section] = replace(current, **updates)
    result = replace(settings, **changed)
    validate(result)
    return result


def validate(settings: Settings) -> None:
    """Range checks that types alone cannot express."""
    t, h, u = settings.tracker, settings.http, settings.udp
    positive = {
        "tracker.interval": t.interval,
        "tracker.max_scrape_hashes": t.max_scrape_hashes,
        "tracker.sweep_interval": t.sweep_interval,
        "tracker.sweep_budget": t.sweep_budget,
        "http.max_connections": h.max_connections,
        "http.max_request_line": h.max_request_line,
        "http.max_header_bytes": h.max_header_bytes,
        "http.max_headers": h.max_headers,
        "udp.connection_id_ttl": u.connection_id_ttl,
    }
    non_negative = {
        "tracker.min_interval": t.min_interval,
        "tracker.interval_jitter": t.interval_jitter,
        "tracker.peer_timeout": t.peer_timeout,
        "tracker.default_numwant": t.default_numwant,
        "tracker.max_numwant": t.max_numwant,
        "tracker.full_scrape_cache": t.full_scrape_cache,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
    for key, seconds in (("http.request_timeout", h.request_timeout),
                         ("http.keepalive_timeout", h.keepalive_timeout)):
        if not 0 < seconds < float("inf"):  # also refuses nan, which compares false
            raise ConfigError(f"{key}: must be a positive number of seconds, got {seconds}")
    for key, port in (("http.port", h.port), ("udp.port", u.port),
                      ("admin.port", settings.admin.port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{key}: must be 0..65535, got {port}")
    for key, hosts in (("http.hosts", h.hosts), ("udp.hosts", u.hosts),
                       ("admin.host", [settings.admin.host])):
        for host in hosts:
            try:
                ipaddress.ip_address(host)
            except ValueError as exc:
                raise ConfigError(f"{key}: not an IP address: {host!r}") from exc
    for net in h.trusted_proxies:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise ConfigError(f"http.trusted_proxies: not a network: {net!r}") from exc
    if u.connection_id_ttl > 65000:  # ids carry a 16-bit time stamp (shoal.protocol.connid)
        raise ConfigError(
            f"udp.connection_id_ttl: at most 65000 seconds, got {u.connection_id_ttl}"
        )
    if u.secret:
        try:
            bytes.fromhex(u.secret)
        except ValueError as exc:
            raise ConfigError("udp.secret: must be hexadecimal") from exc
    if settings.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"log.level: unknown level {settings.log.level!r}")
    if h.parser not in ("auto", "python"):
        raise ConfigError(f"http.parser: must be auto or python, got {h.parser!r}")
    if settings.log.format not in ("text", "json"):
        raise ConfigError(f"log.format: must be text or json, got {settings.log.format!r}")


def load_file(path: str | Path, base: Settings | None = None) -> Settings:
    """Settings from a TOML file over ``base`` (the defaults)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return _apply(base or Settings(), data, text=False)


def apply_env(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """Apply ``SHOAL_SECTION_KEY=value`` variables, e.g. ``SHOAL_HTTP_PORT=8080``."""
    values: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section, _, key = rest.partition("_")
        if section not in SECTIONS or not key:
            raise ConfigError(f"environment variable {name}: no such setting")
        values.setdefault(section, {})[key] = value
    return _apply(settings, values, text=True) if values else settings


def apply_assignments(settings: Settings, assignments: list[str]) -> Settings:
    """Apply ``section.key=value`` strings (the ``--set`` flag)."""
    values: dict[str, dict[str, str]] = {}
    for item in assignments:
        name, eq, value = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not eq or not dot:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        values.setdefault(section, {})[key] = value
    return _apply(settings, values, text=True) if values else settings


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
