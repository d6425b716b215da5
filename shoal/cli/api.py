"""``shoal user ...`` and ``shoal torrent ...``: the REST API of a running tracker, from the
command line. The admin listener and the token come from ``--url``/``--token`` or from the
settings ``serve`` would use (``--config``, ``SHOAL_*`` variables such as
``SHOAL_ADMIN_API_TOKEN``, ``--set``). Replies are printed as JSON.

Exit status: 0 done, 1 the tracker cannot be reached, 2 bad settings or no token, 4 the
API refused (the message says why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from shoal.cli import admin_url, build_settings
from shoal.config import CONFIG_ENV, ConfigError


def _target(args: argparse.Namespace) -> tuple[str, str]:
    if args.url and args.token:
        return args.url.rstrip("/"), args.token
    settings = build_settings(args, os.environ, check_files=False)
    base = args.url.rstrip("/") if args.url else admin_url(settings)
    token = args.token or settings.admin.api_token
    if not token:
        raise ConfigError("no API token: pass --token or set admin.api_token "
                          "(SHOAL_ADMIN_API_TOKEN)")
    return base, token


def request(args: argparse.Namespace, method: str, path: str,
            body: dict[str, Any] | None = None) -> int:
    """Call the API and print the reply; returns the exit status."""
    try:
        base, token = _target(args)
    except ConfigError as exc:
        for message in exc.messages:
            print(f"shoal: {message}", file=sys.stderr)
        return 2
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as reply:
            text = reply.read()
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        print(f"shoal: {method} {path}: {exc.code} {message}", file=sys.stderr)
        return 4
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"shoal: cannot reach {base}: {reason}", file=sys.stderr)
        return 1
    try:
        if text:
            print(json.dumps(json.loads(text), indent=2))
        else:
            print(f"{method} {path}: done")
    except BrokenPipeError:  # piped into head and the like: nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _user_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if getattr(args, "passkey", None):
        fields["passkey"] = args.passkey
    if getattr(args, "no_leech", False):
        fields["can_leech"] = False
    for name in ("upload_factor", "download_factor", "peer_limit"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    return fields


def cmd_user(args: argparse.Namespace) -> int:
    path = f"/api/v1/users/{args.id}"
    if args.action == "add":
        return request(args, "POST", "/api/v1/users", {"id": args.id, **_user_fields(args)})
    if args.action == "show":
        return request(args, "GET", path + ("/stats" if args.stats else ""))
    if args.action == "rotate":
        return request(args, "POST", path + "/passkey",
                       {"passkey": args.passkey} if args.passkey else None)
    if args.action in ("disable", "enable"):
        return request(args, "PATCH", path, {"enabled": args.action == "enable"})
    return request(args, "DELETE", path)


def cmd_torrent(args: argparse.Namespace) -> int:
    path = f"/api/v1/torrents/{args.info_hash}"
    if args.action == "add":
        fields: dict[str, Any] = {"info_hash": args.info_hash}
        if args.hash2:
            fields["info_hash2"] = args.hash2
        if args.freeleech:
            fields["download_factor"] = 0
        for name in ("upload_factor", "download_factor"):
            value = getattr(args, name)
            if value is not None:
                fields[name] = value
        return request(args, "POST", "/api/v1/torrents", fields)
    if args.action == "show":
        return request(args, "GET", path + ("/peers" if args.peers else ""))
    return request(args, "DELETE", path)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the tracker's admin listener (default: from the "
                        "settings, as for `shoal stats`)")
    parser.add_argument("--token", help="the API token (default: admin.api_token of the "
                        "settings, e.g. SHOAL_ADMIN_API_TOKEN)")
    parser.add_argument("--config", "-c", help=f"TOML config file (or ${CONFIG_ENV})")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="set any setting (repeatable), as for serve")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")


def add_commands(sub: Any) -> None:
    """Add ``user`` and ``torrent`` to the ``shoal`` command's subparsers."""
    user = sub.add_parser("user", help="manage private-mode users of a running tracker")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create a user (passkey generated unless given)")
    add.add_argument("id", type=int, help="the site's user id")
    add.add_argument("--passkey", help="use this passkey (16-64 letters, digits, -._~)")
    add.add_argument("--no-leech", action="store_true", help="may seed only")
    add.add_argument("--upload-factor", type=float)
    add.add_argument("--download-factor", type=float)
    add.add_argument("--peer-limit", type=int)
    show = actions.add_parser("show", help="show a user")
    show.add_argument("id", type=int)
    show.add_argument("--stats", action="store_true", help="show the accounting instead")
    rotate = actions.add_parser("rotate", help="give a user a new passkey (the old one "
                                "stops working at once)")
    rotate.add_argument("id", type=int)
    rotate.add_argument("--passkey", help="use this passkey instead of a generated one")
    for name, text in (("disable", "refuse a user's announces"),
                       ("enable", "serve a disabled user again"),
                       ("remove", "delete a user (its accounting stays)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("id", type=int)
    for parser in actions.choices.values():
        _common(parser)
    user.set_defaults(func=cmd_user)

    torrent = sub.add_parser("torrent", help="manage private-mode torrents of a running "
                             "tracker")
    actions = torrent.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register a torrent")
    add.add_argument("info_hash", help="40 hex characters")
    add.add_argument("--hash2", help="a hybrid torrent's second info hash (v2, truncated)")
    add.add_argument("--freeleech", action="store_true", help="download factor 0")
    add.add_argument("--upload-factor", type=float)
    add.add_argument("--download-factor", type=float)
    show = actions.add_parser("show", help="show a torrent")
    show.add_argument("info_hash")
    show.add_argument("--peers", action="store_true", help="show its swarm and peers")
    remove = actions.add_parser("remove", help="unregister a torrent")
    remove.add_argument("info_hash")
    for parser in actions.choices.values():
        _common(parser)
    torrent.set_defaults(func=cmd_torrent)
