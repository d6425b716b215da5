"""The ``shoal`` command: ``serve``, ``print-config``, ``check-config`` and ``stats``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from shoal import __version__
from shoal.config import (
    ConfigError,
    Settings,
    apply_assignments,
    apply_env,
    load_file,
    render_toml,
)

log = logging.getLogger("shoal")
CONFIG_ENV = "SHOAL_CONFIG"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def build_settings(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Defaults, then the config file, then ``SHOAL_*`` variables, then flags."""
    settings = Settings()
    path = args.config or environ.get(CONFIG_ENV)
    if path:
        settings = load_file(path, settings)
    settings = apply_env(settings, {k: v for k, v in environ.items() if k != CONFIG_ENV})
    sets = list(args.set or [])
    if args.host:
        hosts = json.dumps(args.host)
        sets += [f"http.hosts={hosts}", f"udp.hosts={hosts}"]
    if args.http_port is not None:
        sets.append(f"http.port={args.http_port}")
    if args.udp_port is not None:
        sets.append(f"udp.port={args.udp_port}")
    if args.log_level:
        sets.append(f"log.level={args.log_level}")
    if args.log_format:
        sets.append(f"log.format={args.log_format}")
    return apply_assignments(settings, sets)


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
        settings = build_settings(args, dict(os.environ))
    except ConfigError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log.level, settings.log.format)
    from shoal.server.app import Tracker

    tracker = Tracker(settings)
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
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: OK")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Print a running tracker's /stats (from its admin listener) as tables."""
    import urllib.error
    import urllib.request

    from shoal.server.dashboard import format_stats

    base = args.url.rstrip("/")
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
        "healthy, 1 unreachable, 3 a tracker listener is down.",
    )
    stats.add_argument("--url", default="http://127.0.0.1:6970",
                       help="the tracker's admin listener (default %(default)s)")
    stats.add_argument("--json", action="store_true", help="print the raw /stats JSON")
    stats.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    stats.set_defaults(func=cmd_stats)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result
