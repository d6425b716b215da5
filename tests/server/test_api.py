"""The REST API on the admin listener: users, passkeys, torrents, stats, peers, access
rules and bulk import, over real sockets, with announces seeing each change at once."""

from __future__ import annotations

import dataclasses
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from support.running import RunningTracker

from shoal.config import Settings
from shoal.engine.passkeys import ALPHABET
from shoal.protocol.bencode import decode

TOKEN = "s3cret-token"
H1, H2, H3 = "a1" * 20, "a2" * 20, "b3" * 20
WAIT = 5.0


def settings(mode: str = "private", token: str = TOKEN) -> Settings:
    base = Settings()
    return dataclasses.replace(
        base,
        tracker=dataclasses.replace(base.tracker, mode=mode),
        http=dataclasses.replace(base.http, hosts=["127.0.0.1"], port=0),
        udp=dataclasses.replace(base.udp, enabled=False),
        admin=dataclasses.replace(base.admin, port=0, api_token=token),
    )


def call(rt: RunningTracker, method: str, path: str, body: Any = None,
         token: str | None = TOKEN, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(rt.admin_url + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as reply:
            text = reply.read()
            return reply.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def announce(rt: RunningTracker, passkey: str, info_hash: str = H1, peer: int = 1,
             **values: Any) -> dict[bytes, Any]:
    params = {"info_hash": bytes.fromhex(info_hash), "peer_id": f"-TR3000-{peer:012d}",
              "port": 6881 + peer, "uploaded": 0, "downloaded": 0, "left": 5, **values}
    port = rt.listener("http")[1]
    target = f"/{passkey}/announce?{urllib.parse.urlencode(params)}"
    with socket.create_connection(("127.0.0.1", port), WAIT) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    found = decode(data.partition(b"\r\n\r\n")[2])
    assert isinstance(found, dict)
    return found


@pytest.fixture
def rt(launch_tracker: Callable[..., RunningTracker]) -> RunningTracker:
    return launch_tracker(settings())


def test_a_created_user_gets_a_generated_passkey_and_can_announce(rt: RunningTracker) -> None:
    status, user = call(rt, "POST", "/api/v1/users", {"id": 42})
    assert status == 201
    assert len(user["passkey"]) == 32 and set(user["passkey"]) <= set(ALPHABET)
    assert call(rt, "POST", "/api/v1/torrents", {"info_hash": H1})[0] == 201
    assert b"failure reason" not in announce(rt, user["passkey"])
    assert call(rt, "GET", "/api/v1/users/42") == (200, user)


def test_rotating_the_passkey_stops_the_old_one_at_once(rt: RunningTracker) -> None:
    old = call(rt, "POST", "/api/v1/users", {"id": 1})[1]["passkey"]
    call(rt, "POST", "/api/v1/torrents", {"info_hash": H1})
    status, rotated = call(rt, "POST", "/api/v1/users/1/passkey")
    assert status == 200 and rotated["passkey"] != old
    assert announce(rt, old)[b"failure reason"] == b"unknown passkey"
    assert b"failure reason" not in announce(rt, rotated["passkey"])


def test_disabling_a_user_refuses_its_announces(rt: RunningTracker) -> None:
    key = call(rt, "POST", "/api/v1/users", {"id": 1})[1]["passkey"]
    call(rt, "POST", "/api/v1/torrents", {"info_hash": H1})
    assert call(rt, "PATCH", "/api/v1/users/1", {"enabled": False})[1]["enabled"] is False
    assert announce(rt, key)[b"failure reason"] == b"account disabled"


def test_deleting_a_torrent_unregisters_it(rt: RunningTracker) -> None:
    key = call(rt, "POST", "/api/v1/users", {"id": 1})[1]["passkey"]
    call(rt, "POST", "/api/v1/torrents", {"info_hash": H1})
    assert call(rt, "DELETE", f"/api/v1/torrents/{H1}") == (204, None)
    assert announce(rt, key)[b"failure reason"] == b"torrent not registered on this tracker"
    assert call(rt, "GET", f"/api/v1/torrents/{H1}")[0] == 404


def test_stats_show_the_accounting_before_and_after_a_flush(rt: RunningTracker) -> None:
    key = call(rt, "POST", "/api/v1/users", {"id": 1})[1]["passkey"]
    call(rt, "POST", "/api/v1/torrents", {"info_hash": H1, "download_factor": 0.5})
    announce(rt, key, event="started")
    announce(rt, key, uploaded=300, downloaded=1000)
    status, stats = call(rt, "GET", "/api/v1/users/1/stats")
    assert status == 200
    assert (stats["totals"]["uploaded"], stats["totals"]["downloaded"],
            stats["totals"]["raw_downloaded"]) == (300, 500, 1000)
    mode = rt.tracker.private_mode
    assert mode is not None
    rt.run(mode.flush())
    assert call(rt, "GET", "/api/v1/users/1/stats")[1]["totals"] == stats["totals"]
    (row,) = stats["torrents"]
    assert (row["info_hash"], row["peers"], row["announces"]) == (H1, 1, 2)


def test_peers_lists_the_swarm_with_each_peers_user(rt: RunningTracker) -> None:
    key = call(rt, "POST", "/api/v1/users", {"id": 9})[1]["passkey"]
    call(rt, "POST", "/api/v1/torrents", {"info_hash": H1, "info_hash2": H2})
    announce(rt, key, info_hash=H2, left=0)
    status, peers = call(rt, "GET", f"/api/v1/torrents/{H1}/peers")
    assert status == 200
    assert (peers["seeders"], peers["leechers"]) == (1, 0)
    (peer,) = peers["peers"]
    assert (peer["address"], peer["seeder"], peer["user_id"]) == ("127.0.0.1", True, 9)


def test_conflicts_and_bad_input_are_json_errors(rt: RunningTracker) -> None:
    call(rt, "POST", "/api/v1/users", {"id": 1})
    status, body = call(rt, "POST", "/api/v1/users", {"id": 1})
    assert status == 409 and "conflict" in body["error"]
    for payload in ({"id": "x"}, {"id": 2, "passkey": "short"}, {"id": 3, "colour": 1}, {}):
        status, body = call(rt, "POST", "/api/v1/users", payload)
        assert status == 400 and body["error"]
    assert call(rt, "POST", "/api/v1/users", raw=b"{not json")[0] == 400
    assert call(rt, "GET", "/api/v1/torrents/xyz")[0] == 400
    assert call(rt, "GET", "/api/v1/users/77")[0] == 404


def test_without_the_right_token_nothing_is_answered_but_the_openapi_document(
        rt: RunningTracker) -> None:
    assert call(rt, "GET", "/api/v1/users/1", token=None)[0] == 401
    assert call(rt, "GET", "/api/v1/users/1", token="wrong")[0] == 401
    status, doc = call(rt, "GET", "/api/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"].startswith("3.")
    assert "/api/v1/users/{id}/stats" in doc["paths"]


def test_with_no_token_configured_the_api_is_off(
        launch_tracker: Callable[..., RunningTracker]) -> None:
    rt = launch_tracker(settings(token=""))
    status, body = call(rt, "GET", "/api/v1/access")
    assert status == 404 and "admin.api_token" in body["error"]


def test_bulk_import_is_all_or_nothing(rt: RunningTracker) -> None:
    good = "\n".join(json.dumps(x) for x in (
        {"type": "user", "id": 1, "passkey": "p" * 32},
        {"type": "user", "id": 2},
        {"type": "torrent", "info_hash": H1},
        {"type": "torrent", "info_hash": H3, "download_factor": 0},
    )).encode()
    assert call(rt, "POST", "/api/v1/import", raw=good) == (200, {"users": 2, "torrents": 2})
    assert b"failure reason" not in announce(rt, "p" * 32, info_hash=H3)
    bad = b'{"type": "user", "id": 5}\n{"type": "torrent", "info_hash": "zz"}\n'
    status, body = call(rt, "POST", "/api/v1/import", raw=bad)
    assert status == 400 and "line 2" in body["error"]
    assert call(rt, "GET", "/api/v1/users/5")[0] == 404


def test_access_rules_are_read_and_replaced_live_in_public_mode(
        launch_tracker: Callable[..., RunningTracker]) -> None:
    rt = launch_tracker(settings(mode="public"))
    assert call(rt, "GET", "/api/v1/access")[1]["torrents"] == "open"
    assert b"failure reason" not in announce(rt, "unused", info_hash=H3)
    rules = {"torrents": "allow", "torrent_list": [H1], "client_allow": [],
             "client_deny": ["-XX"], "banned_networks": ["10.0.0.0/8", "2001:db8::/32"]}
    assert call(rt, "PUT", "/api/v1/access", rules) == (200, rules)
    assert call(rt, "GET", "/api/v1/access") == (200, rules)
    refused = announce(rt, "unused", info_hash=H3)
    assert refused[b"failure reason"] == b"torrent not allowed on this tracker"
    assert call(rt, "PUT", "/api/v1/access", {"torrents": "maybe"})[0] == 400


def test_users_and_torrents_need_private_mode(
        launch_tracker: Callable[..., RunningTracker]) -> None:
    rt = launch_tracker(settings(mode="public"))
    status, body = call(rt, "POST", "/api/v1/users", {"id": 1})
    assert status == 404 and "private mode" in body["error"]
