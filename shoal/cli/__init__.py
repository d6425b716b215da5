"""The ``shoal`` command: ``serve``, ``print-config``, ``check-config``, ``stats``, and
``user``/``torrent`` (private mode, through the REST API)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from shoal import __version__
from shoal.cli.logs import JsonFormatter, TextFormatter, setup_logging
from shoal.config import CONFIG_ENV, ConfigError, Settings, load_file, render_toml, resolve

__all__ = ["JsonFormatter", "TextFormatter", "build_settings", "main", "parser",
           "setup_logging"]

log = logging.getLogger("shoal")


def build_settings(args: argparse.Namespace, environ: Mapping[str, str],
                   *, check_files: bool = True) -> Settings:
    """Defaults, then the config file, then ``SHOAL_*`` variables, then flags; every problem
    of every layer is reported in one :class:`ConfigError`."""
    path = getattr(args, "config", None) or environ.get(CONFIG_ENV)
    sets = list(getattr(args, "set", None) or [])
    if getattr(args, "host", None):
        hosts = json.dumps(args.host)
        sets += [f"http.hosts={hosts}", f"udp.hosts={hosts}"]
    if getattr(args, "http_port", None) is not None:
        sets.append(f"http.port={args.http_port}")
    if getattr(args, "udp_port", None) is not None:
        sets.append(f"udp.port={args.udp_port}")
    if getattr(args, "log_level", None):
        sets.append(f"log.level={args.log_level}")
    if getattr(args, "log_format", None):
        sets.append(f"log.format={args.log_format}")
    return resolve(path, environ, sets, check_files=check_files)


def _print_errors(exc: ConfigError, prefix: str) -> None:
    for message in exc.messages:
        print(f"{prefix}{message}", file=sys.stderr)


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> str:
    """Run ``main`` on uvloop when it is installed, else on asyncio's loop; name the loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
        return "asyncio"
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    return "uvloop"


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = build_settings(args, os.environ)
    except ConfigError as exc:
        _print_errors(exc, "shoal: ")
        return 2
    setup_logging(settings.log.level, settings.log.format)
    from shoal.server.app import Tracker

    try:
        tracker = Tracker(
            settings,
            reload_settings=lambda: build_settings(args, os.environ),
            reconfigure_logging=setup_logging,
        )
    except ConfigError as exc:
        _print_errors(exc, "shoal: ")
        return 2
    try:
        _run(tracker.serve)
    except OSError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def cmd_print_config(args: argparse.Namespace) -> int:
    sys.stdout.write(render_toml())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        load_file(args.file)
    except ConfigError as exc:
        _print_errors(exc, f"{args.file}: ")
        return 1
    print(f"{args.file}: OK")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Print a running tracker's /stats (from its admin listener) as tables."""
    import urllib.error
    import urllib.request

    from shoal.cli.tables import format_stats

    if args.url:
        base = args.url.rstrip("/")
    else:
        try:
            base = admin_url(build_settings(args, os.environ, check_files=False))
        except ConfigError as exc:
            _print_errors(exc, "shoal: ")
            return 2
    try:
        with urllib.request.urlopen(base + "/stats", timeout=args.timeout) as reply:
            stats = json.load(reply)
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"shoal: cannot read {base}/stats: {reason}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        sys.stdout.write(format_stats(stats, base))
    return 0 if stats.get("healthy") else 3


def admin_url(settings: Settings) -> str:
    """Where ``settings``' admin listener can be reached from this machine: a wildcard host
    is reached over loopback. Raises :class:`ConfigError` when it cannot be reached."""
    a = settings.admin
    if not a.enabled:
        raise ConfigError("the admin listener is disabled (admin.enabled = false); "
                          "pass --url if it runs elsewhere")
    if a.port == 0:
        raise ConfigError("admin.port is 0 (chosen at start): pass --url with the port "
                          "the tracker logged")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(a.host, a.host)
    return f"http://[{host}]:{a.port}" if ":" in host else f"http://{host}:{a.port}"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="shoal", description="Shoal BitTorrent tracker")
    top.add_argument("--version", action="version", version=f"shoal {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the tracker")
    serve.add_argument("--config", "-c", help=f"TOML config file (or ${CONFIG_ENV})")
    serve.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="set any setting (repeatable); see `shoal print-config`")
    serve.add_argument("--host", action="append",
                       help="listen address for HTTP and UDP (repeatable)")
    serve.add_argument("--http-port", type=int, help="HTTP port (http.port)")
    serve.add_argument("--udp-port", type=int, help="UDP port (udp.port)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (log.level)")
    serve.add_argument("--log-format", choices=("text", "json"), help="log.format")
    serve.set_defaults(func=cmd_serve)

    show = sub.add_parser("print-config", help="print every setting with its default as TOML")
    show.set_defaults(func=cmd_print_config)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    stats = sub.add_parser(
        "stats", help="print a running tracker's figures as tables",
        description="Print /stats of a running tracker's admin listener. Exit status: 0 "
        "healthy, 1 unreachable, 2 bad settings, 3 a tracker listener is down.",
    )
    stats.add_argument("--url",
                       help="the tracker's admin listener (default: admin.host and admin.port "
                       f"of the settings `serve` would use: --config or ${CONFIG_ENV}, then "
                       "SHOAL_* variables, then --set)")
    stats.add_argument("--config", "-c", help=f"TOML config file (or ${CONFIG_ENV})")
    stats.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="set any setting (repeatable), as for serve")
    stats.add_argument("--json", action="store_true", help="print the raw /stats JSON")
    stats.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    stats.set_defaults(func=cmd_stats)

    from shoal.cli.api import add_commands

    add_commands(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result
