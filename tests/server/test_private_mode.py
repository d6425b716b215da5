"""Private mode on real sockets: passkeys over HTTP (path and query) and UDP (BEP 41 URL
data), refusals with their reasons, the peer limit, hybrid torrents as one swarm, the
accounting written to the database, and passkeys kept out of the access log."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.postgres import fresh_database, postgres_server
from support.running import RunningTracker

from shoal.config import Settings
from shoal.engine.accounting import Torrent, User
from shoal.protocol import udp as codec
from shoal.protocol.bencode import decode
from shoal.storage.accounts import AccountsDb
from shoal.types import Event

PK, PK2 = "Pk0123456789abcdefghijklmnopqrST", "Qk0123456789abcdefghijklmnopqrST"
TORRENT, V2, UNREGISTERED = bytes([0xA1]) * 20, bytes([0xA2]) * 20, bytes([0xB3]) * 20
WAIT = 5.0


def settings(**accounting: Any) -> Settings:
    base = Settings()
    return dataclasses.replace(
        base,
        tracker=dataclasses.replace(base.tracker, mode="private"),
        http=dataclasses.replace(base.http, hosts=["127.0.0.1"], port=0, access_log=True),
        udp=dataclasses.replace(base.udp, hosts=["127.0.0.1"], port=0),
        admin=dataclasses.replace(base.admin, enabled=False),
        accounting=dataclasses.replace(base.accounting, **accounting),
    )


def register(rt: RunningTracker, *users: User, torrents: tuple[Torrent, ...] = (
        Torrent(TORRENT, V2),)) -> None:
    mode = rt.tracker.private_mode
    assert mode is not None
    for user in users:
        mode.db.add_user(user, 0)
        rt.in_loop(lambda user=user: mode.tracker.put_user(user))  # type: ignore[misc]
    for torrent in torrents:
        mode.db.add_torrent(torrent, 0)
        rt.in_loop(lambda torrent=torrent: mode.tracker.put_torrent(torrent))  # type: ignore[misc]


def raw_get(rt: RunningTracker, target: str) -> bytes:
    port = rt.listener("http")[1]
    with socket.create_connection(("127.0.0.1", port), WAIT) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def http_get(rt: RunningTracker, target: str) -> dict[bytes, Any]:
    found = decode(raw_get(rt, target).partition(b"\r\n\r\n")[2])
    assert isinstance(found, dict)
    return found


def query(torrent: bytes = TORRENT, peer: int = 1, left: int = 5, uploaded: int = 0,
          downloaded: int = 0, event: str = "") -> str:
    values: dict[str, Any] = {"info_hash": torrent, "peer_id": f"-TR3000-{peer:012d}",
                              "port": 6881 + peer, "uploaded": uploaded,
                              "downloaded": downloaded, "left": left}
    if event:
        values["event"] = event
    return urllib.parse.urlencode(values)


def announce(rt: RunningTracker, passkey: str = PK, **params: Any) -> dict[bytes, Any]:
    return http_get(rt, f"/{passkey}/announce?{query(**params)}")


def reason(reply: dict[bytes, Any]) -> bytes | None:
    found = reply.get(b"failure reason")
    assert found is None or isinstance(found, bytes)
    return found


class Udp:
    def __init__(self, rt: RunningTracker) -> None:
        self.server = rt.listener("udp")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(WAIT)
        self.sock.sendto(codec.encode_connect_request(1), self.server)
        self.conn = codec.parse_connect_reply(self.sock.recv(2048)).connection_id

    def announce(self, url_data: bytes, torrent: bytes = TORRENT, peer: int = 50,
                 left: int = 5) -> codec.AnnounceReply | codec.ErrorReply:
        request = codec.AnnounceRequestUdp(
            self.conn, 2, torrent, f"-TR3000-{peer:012d}".encode(), 0, left, 0,
            Event.STARTED, 0, 0, -1, 7000 + peer, url_data)
        self.sock.sendto(codec.encode_announce_request(request), self.server)
        reply = codec.parse_reply(self.sock.recv(2048))
        assert isinstance(reply, codec.AnnounceReply | codec.ErrorReply)
        return reply

    def scrape(self, torrent: bytes = TORRENT) -> codec.Reply:
        self.sock.sendto(codec.encode_scrape_request(self.conn, 3, [torrent]), self.server)
        return codec.parse_reply(self.sock.recv(2048))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def rt(launch_tracker: Callable[..., RunningTracker]) -> RunningTracker:
    tracker = launch_tracker(settings())
    register(tracker, User(1, PK), User(2, PK2, enabled=False))
    return tracker


def test_a_good_passkey_is_served_in_the_path_and_in_the_query(rt: RunningTracker) -> None:
    assert reason(announce(rt)) is None
    reply = http_get(rt, f"/announce?{query(peer=2)}&passkey={PK}")
    assert reason(reply) is None
    assert reply[b"incomplete"] == 2


@pytest.mark.parametrize(("target", "expected"), [
    (f"/announce?{query()}", b"passkey required: use the announce URL the site gave you"),
    (f"/{'X' * 32}/announce?{query()}", b"unknown passkey"),
    (f"/{PK2}/announce?{query()}", b"account disabled"),
    (f"/{PK}/announce?{query(torrent=UNREGISTERED)}",
     b"torrent not registered on this tracker"),
])
def test_refusals_over_http_say_why_and_for_how_long(rt: RunningTracker, target: str,
                                                     expected: bytes) -> None:
    reply = http_get(rt, target)
    assert (reason(reply), reply[b"retry in"]) == (expected, 60)


def test_a_rotated_passkey_is_refused_at_once(rt: RunningTracker) -> None:
    assert reason(announce(rt)) is None
    new = "Rk0123456789abcdefghijklmnopqrST"
    register(rt, torrents=())
    mode = rt.tracker.private_mode
    assert mode is not None
    rt.in_loop(lambda: mode.tracker.put_user(User(1, new)))
    assert reason(announce(rt)) == b"unknown passkey"
    assert reason(announce(rt, passkey=new)) is None


def test_a_leecher_past_the_peer_limit_is_refused(rt: RunningTracker) -> None:
    for peer in (1, 2, 3):
        assert reason(announce(rt, peer=peer)) is None
    assert reason(announce(rt, peer=4)) == (
        b"too many peers for this torrent from your account (limit 3)")
    assert reason(announce(rt, peer=1, event="stopped")) is None
    assert reason(announce(rt, peer=4)) is None


def test_a_user_who_may_not_leech_is_told_so_and_may_seed(
        launch_tracker: Callable[..., RunningTracker]) -> None:
    rt = launch_tracker(settings())
    register(rt, User(1, PK, can_leech=False))
    assert reason(announce(rt)) == b"leeching not allowed for your account: you may only seed"
    assert reason(announce(rt, left=0)) is None


def test_a_hybrid_torrents_two_hashes_are_one_swarm(rt: RunningTracker) -> None:
    announce(rt, peer=1)
    reply = announce(rt, peer=2, torrent=V2)
    assert (reply[b"incomplete"], len(reply[b"peers"])) == (2, 6)


def test_scrape_needs_a_passkey_and_counts_registered_torrents_only(rt: RunningTracker) -> None:
    announce(rt, peer=1)
    hashes = "&".join("info_hash=" + urllib.parse.quote(h) for h in (V2, UNREGISTERED))
    assert reason(http_get(rt, f"/scrape?{hashes}")) == (
        b"passkey required: use the announce URL the site gave you")
    files = http_get(rt, f"/{PK}/scrape?{hashes}")[b"files"]
    assert files[V2][b"incomplete"] == 1
    assert files[UNREGISTERED][b"incomplete"] == 0


def test_udp_announces_carry_the_passkey_in_url_data(rt: RunningTracker) -> None:
    udp = Udp(rt)
    try:
        served = udp.announce(f"/{PK}/announce".encode())
        assert isinstance(served, codec.AnnounceReply) and served.leechers == 1
        for url_data, expected in [
            (b"", "passkey required: use the announce URL the site gave you"),
            (b"/announce", "passkey required: use the announce URL the site gave you"),
            (f"/{'X' * 32}/announce".encode(), "unknown passkey"),
            (f"/{PK2}/announce".encode(), "account disabled"),
        ]:
            refused = udp.announce(url_data, peer=51)
            assert isinstance(refused, codec.ErrorReply) and refused.message == expected
        refused = udp.announce(f"/{PK}/announce".encode(), torrent=UNREGISTERED)
        assert isinstance(refused, codec.ErrorReply)
        assert refused.message == "torrent not registered on this tracker"
        query_form = udp.announce(f"/announce?passkey={PK}".encode(), peer=52)
        assert isinstance(query_form, codec.AnnounceReply) and query_form.leechers == 2
    finally:
        udp.close()


def test_udp_scrape_cannot_carry_a_passkey_and_is_refused(rt: RunningTracker) -> None:
    udp = Udp(rt)
    try:
        reply = udp.scrape()
        assert isinstance(reply, codec.ErrorReply)
        assert reply.message.startswith("passkey required")
    finally:
        udp.close()


def test_the_accounting_reaches_the_database_after_a_flush(
        launch_tracker: Callable[..., RunningTracker]) -> None:
    rt = launch_tracker(settings())
    register(rt, User(1, PK))
    announce(rt, event="started")
    announce(rt, uploaded=1000, downloaded=4000)
    announce(rt, uploaded=1500, downloaded=5000, left=0, event="completed")
    mode = rt.tracker.private_mode
    assert mode is not None
    rt.run(mode.flush())
    total, per, flagged = mode.db.user_stats(1)
    assert (total.uploaded, total.downloaded, total.snatches, total.announces) == (
        1500, 5000, 1, 3)
    assert list(per) == [TORRENT] and flagged == 0


def test_the_access_log_never_shows_a_passkey(rt: RunningTracker,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="shoal.access"):
        announce(rt)
        http_get(rt, f"/announce?{query()}&passkey={PK}")
        assert raw_get(rt, f"/{PK}/announce.php").startswith(b"HTTP/1.1 404")
    lines = [r.getMessage() for r in caplog.records if r.name == "shoal.access"]
    assert len(lines) == 3
    assert not any(PK in line for line in lines)
    assert all(PK[:4] + "*" in line for line in lines)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_a_tracker_on_postgresql_keeps_users_and_accounting_there(
        launch_tracker: Callable[..., RunningTracker], postgres: str) -> None:
    url = fresh_database(postgres, "tracker_" + os.urandom(4).hex())
    base = settings()
    rt = launch_tracker(dataclasses.replace(
        base, database=dataclasses.replace(base.database, url=url)))
    register(rt, User(1, PK))
    announce(rt, event="started")
    announce(rt, uploaded=2500, downloaded=100)
    mode = rt.tracker.private_mode
    assert mode is not None
    assert mode.db.dialect == "postgresql"
    rt.run(mode.flush())
    reader = AccountsDb(url)
    try:
        users, torrents = reader.load()
        assert [u.id for u in users] == [1] and [t.info_hash for t in torrents] == [TORRENT]
        assert reader.user_stats(1)[0].uploaded == 2500
    finally:
        reader.close()


def test_a_reload_changes_the_peer_limit_live(rt: RunningTracker) -> None:
    from shoal.server.app import configuration_from

    assert reason(announce(rt, peer=1)) is None
    current = rt.tracker.settings
    new = dataclasses.replace(current, accounting=dataclasses.replace(
        current.accounting, peer_limit=1))
    rt.in_loop(lambda: rt.tracker.apply(new, configuration_from(new)))
    assert reason(announce(rt, peer=2)) == (
        b"too many peers for this torrent from your account (limit 1)")


def ws_announce(rt: RunningTracker, path: str, peer: int = 70) -> dict[str, Any]:
    from websockets.sync.client import connect
    with connect(f"ws://127.0.0.1:{rt.listener('http')[1]}{path}", open_timeout=WAIT,
                 compression=None) as ws:
        ws.send(json.dumps({
            "action": "announce", "info_hash": TORRENT.decode("latin-1"),
            "peer_id": f"-WW0207-{peer:012d}", "uploaded": 0, "downloaded": 0, "left": 5}))
        reply = json.loads(ws.recv(timeout=WAIT))
    assert isinstance(reply, dict)
    return reply


def test_websocket_announces_need_the_passkey_route_too(rt: RunningTracker) -> None:
    assert ws_announce(rt, f"/{PK}/announce")["incomplete"] == 1
    assert ws_announce(rt, "/announce")["failure reason"] == (
        "passkey required: use the announce URL the site gave you")
    assert ws_announce(rt, f"/{'X' * 32}/announce")["failure reason"] == "unknown passkey"
